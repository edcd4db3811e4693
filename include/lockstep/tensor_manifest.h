// The tensor manifest (SPEC §4A): one TensorSpec per tensor an envelope or
// result carries, in canonical order (key, then index). Payload bytes never
// travel inside a frame; they follow over the backend, in manifest order, and
// the receiver allocates strictly from the manifest (allocate_payload).
//
// Wire form of one spec: u8 key_bytes, key, u32 index, u8 dtype (DType),
// u8 rank, rank × i64 dims, u64 size_bytes. Rules (checked at preflight and at
// decode, each failing with an Error naming the tensor "key[index]"):
//   key empty, too long or outside [A-Za-z0-9_.:/-]          → kEncode
//   dtype not a DType enumerator (unsupported dtype, A2)     → kEncode
//   rank > kShapeRankMax                                     → kLimit
//   negative dimension                                       → kEncode
//   size_bytes != product(dims) × dtype size                 → kSchema
//   not contiguous row-major (TensorView::strides_elements)  → kSchema
//   duplicate (key, index); order not canonical on the wire  → kSchema / kDecode
//   more than kTensorCountMax specs; sum > kPayloadBytesMax   → kLimit
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lockstep/dtype.h"
#include "lockstep/wire_limits.h"

namespace lockstep {

// A shape of at most kShapeRankMax dimensions, stored inline (no heap).
class TensorShape {
 public:
  TensorShape() = default;
  // Throws Error{kLimit} when dims.size() > kShapeRankMax.
  TensorShape(std::initializer_list<std::int64_t> dims);
  // Throws Error{kLimit} when the shape already has kShapeRankMax dims.
  void push_back(std::int64_t dim);

  std::size_t rank() const noexcept { return rank_; }
  bool empty() const noexcept { return rank_ == 0; }
  std::span<const std::int64_t> dims() const noexcept { return {dims_.data(), rank_}; }
  std::int64_t operator[](std::size_t i) const noexcept { return dims_[i]; }
  bool operator==(const TensorShape& other) const noexcept;

 private:
  std::array<std::int64_t, kShapeRankMax> dims_{};
  std::size_t rank_ = 0;
};

// "[2160, 5120]".
std::string shape_string(const TensorShape& shape);

struct TensorSpec {
  std::string key;
  std::uint32_t index = 0;
  DType dtype = DType::kF32;
  TensorShape shape;
  std::uint64_t size_bytes = 0;

  bool operator==(const TensorSpec&) const = default;
};

using TensorManifest = std::vector<TensorSpec>;

// What a sender hands to preflight: a tensor's description and its bytes.
// `data` must stay valid and unchanged until the payload has been sent.
struct TensorView {
  std::string_view key;
  std::uint32_t index = 0;
  DType dtype = DType::kF32;
  TensorShape shape;
  // Element strides; empty means contiguous row-major. Anything else must
  // equal the contiguous strides (the backend sends flat bytes).
  TensorShape strides_elements;
  std::span<const std::uint8_t> data;
};

// Where payload buffers live: host memory by default; a rank that drives a
// GPU supplies device memory for groups whose backend takes it
// (Communicator::memory_kind), so a payload goes device to device and is
// never staged through the host. Implementations are thread-safe.
class PayloadMemory {
 public:
  virtual ~PayloadMemory() = default;
  // Throws Error{kResource} when `bytes` cannot be had.
  virtual std::uint8_t* allocate(std::size_t bytes) = 0;
  virtual void release(std::uint8_t* block, std::size_t bytes) noexcept = 0;
  // Copies between two blocks of this memory; done when it returns.
  virtual void copy(void* to, const void* from, std::size_t bytes) = 0;
};

// Host memory, 64-byte aligned.
PayloadMemory& host_payload_memory();

// Receiver-side storage for one frame's payload: a single 64-byte-aligned
// allocation from one PayloadMemory, carved into one span per manifest entry
// (manifest order), each starting on a 64-byte boundary. The spans point into
// that memory (device memory is not readable here). Move-only.
class PayloadBuffers {
 public:
  PayloadBuffers() = default;
  std::span<std::uint8_t> tensor(std::size_t manifest_position) const;
  std::size_t count() const noexcept { return spans_.size(); }
  std::uint64_t payload_bytes() const noexcept { return payload_bytes_; }
  PayloadMemory& memory() const noexcept { return *storage_.get_deleter().memory; }

 private:
  friend PayloadBuffers allocate_payload(std::span<const TensorSpec> manifest, PayloadMemory& memory);
  struct Release {
    Release() noexcept : memory(&host_payload_memory()) {}
    Release(PayloadMemory* from, std::size_t size) noexcept : memory(from), bytes(size) {}
    void operator()(std::uint8_t* p) const noexcept { memory->release(p, bytes); }
    PayloadMemory* memory;
    std::size_t bytes = 0;
  };
  std::unique_ptr<std::uint8_t, Release> storage_;
  std::vector<std::span<std::uint8_t>> spans_;
  std::uint64_t payload_bytes_ = 0;
};

// Allocates exactly what `manifest` names from `memory`, uninitialised (the
// backend receive overwrites every byte). Re-checks the
// manifest rules above before allocating anything (a manifest not produced by
// the decoder is still bounded): throws Error{kLimit} beyond kTensorCountMax
// or kPayloadBytesMax, Error{kSchema}/kEncode for an inconsistent spec, and
// Error{kResource} when the allocation fails. Non-blocking; any thread.
PayloadBuffers allocate_payload(std::span<const TensorSpec> manifest,
                                PayloadMemory& memory = host_payload_memory());

// The spec's tensor identity for messages: "latents[0]".
std::string tensor_label(std::string_view key, std::uint32_t index);

}  // namespace lockstep
