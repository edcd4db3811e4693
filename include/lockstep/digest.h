// Digests shared by every layer: frame checksums, meta digests, weight-shard
// fingerprints, KV-state digests, the job-token digest in every frame header
// (XXH3-64), and the digests of a chunk's tensors (digest_tensor, blockwise
// XXH64, so a GPU computes them where the tensor lives). A digest is a plain std::uint64_t; its text
// form is 16 lowercase hex digits. All functions are pure, thread-safe and
// non-blocking.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace lockstep {

// XXH3-64 of `bytes` (seed 0). Equal bytes ⇒ equal digest on every rank and build.
std::uint64_t digest_bytes(std::span<const std::uint8_t> bytes) noexcept;
std::uint64_t digest_bytes(const void* data, std::size_t size_bytes) noexcept;
std::uint64_t digest_string(std::string_view text) noexcept;

// Digest of tensor data (a chunk's input and output): XXH64 of each
// kTensorDigestBlockBytes block (seed: the block's index; the last block may
// be short), then digest_tensor_blocks of those. Defined block by block so a
// GPU computes the same value in parallel where the tensor lives and copies
// back only the block digests, 1/512 of the tensor (digest_tensor_on_device,
// src/model/cuda): a chunk's tensors never cross to the host to be checked.
inline constexpr std::size_t kTensorDigestBlockBytes = 4096;
std::uint64_t digest_tensor(const void* data, std::size_t size_bytes) noexcept;
// XXH64 (seed: size_bytes) of the block digests as little-endian 8-byte words.
std::uint64_t digest_tensor_blocks(std::span<const std::uint64_t> block_digests, std::size_t size_bytes) noexcept;

// Order-sensitive fold: digest_combine(digest_combine(s, a), b) differs from
// the (b, a) order. Use it to chain per-item digests (shards, chunks).
std::uint64_t digest_combine(std::uint64_t running, std::uint64_t next) noexcept;

// "00000000deadbeef": exactly 16 lowercase hex digits.
std::string digest_hex(std::uint64_t digest);
// Parses digest_hex output (16 hex digits, either case); nullopt otherwise.
std::optional<std::uint64_t> digest_from_hex(std::string_view text) noexcept;

// Low bits of the frame header's job-token field that carry the job's
// generation (job_token.h; kJobGenerationMax < 2^kFrameGenerationBits).
inline constexpr unsigned kFrameGenerationBits = 20;
inline constexpr std::uint64_t kFrameGenerationMask = (std::uint64_t{1} << kFrameGenerationBits) - 1;

// The job-token field of every frame header: a digest of the job token (high
// bits; domain-separated from digest_string) with the job's generation in the
// low kFrameGenerationBits. A frame of another job is rejected with
// Error{kJobToken}, one of another generation of this job (a straggler) with
// Error{kStaleWork} (frame.h), without putting the token itself on the wire.
std::uint64_t job_token_digest(std::string_view job_token, std::uint32_t generation) noexcept;

// Streaming XXH3-64 over several pieces (e.g. a weight shard row by row);
// equal to digest_bytes of the concatenation. Single-thread use per object;
// movable, not copyable.
class DigestStream {
 public:
  DigestStream();
  ~DigestStream();
  DigestStream(DigestStream&&) noexcept;
  DigestStream& operator=(DigestStream&&) noexcept;
  DigestStream(const DigestStream&) = delete;
  DigestStream& operator=(const DigestStream&) = delete;

  void update(std::span<const std::uint8_t> bytes) noexcept;
  // Appends `value` as 8 little-endian bytes (host-order independent).
  void update_u64(std::uint64_t value) noexcept;
  // Digest of everything so far; the stream may keep being updated.
  std::uint64_t digest() const noexcept;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace lockstep
