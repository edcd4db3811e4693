#include "lockstep/tensor_manifest.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <string>
#include <tuple>

#include "lockstep/error.h"
#include "wire/manifest_codec.h"
#include "wire/text.h"

namespace lockstep {

TensorShape::TensorShape(std::initializer_list<std::int64_t> dims) {
  for (const std::int64_t d : dims) push_back(d);
}

void TensorShape::push_back(std::int64_t dim) {
  if (rank_ == kShapeRankMax) {
    throw Error(ErrorCode::kLimit, "tensor shape has more than kShapeRankMax " + std::to_string(kShapeRankMax) +
                                       " dimensions");
  }
  dims_[rank_++] = dim;
}

bool TensorShape::operator==(const TensorShape& other) const noexcept {
  return std::ranges::equal(dims(), other.dims());
}

std::string shape_string(const TensorShape& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.rank(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

std::string tensor_label(std::string_view key, std::uint32_t index) {
  return "tensor '" + std::string(key) + "[" + std::to_string(index) + "]'";
}

namespace wire_detail {

namespace {

constexpr std::size_t kPayloadAlignmentBytes = 64;  // cache line; also fine for any DMA/vector load

bool canonical_less(std::string_view key_a, std::uint32_t index_a, std::string_view key_b, std::uint32_t index_b) {
  return std::tie(key_a, index_a) < std::tie(key_b, index_b);
}

// Checks key, dtype and dims; returns product(dims) × dtype size, bounded by
// kPayloadBytesMax so the arithmetic cannot overflow.
std::uint64_t spec_bytes(std::string_view key, std::uint32_t index, DType dtype, const TensorShape& shape) {
  check_key(key, "tensor key", kTensorKeyBytesMax);
  if (!dtype_from_wire(static_cast<std::uint8_t>(dtype))) {
    throw Error(ErrorCode::kEncode, tensor_label(key, index) + " has unsupported dtype " +
                                        std::to_string(static_cast<unsigned>(dtype)));
  }
  bool any_zero = false;
  for (const std::int64_t d : shape.dims()) {
    if (d < 0) throw Error(ErrorCode::kEncode, tensor_label(key, index) + " has negative dimension in " + shape_string(shape));
    any_zero = any_zero || d == 0;
  }
  if (any_zero) return 0;
  std::uint64_t bytes = dtype_size_bytes(dtype);
  for (const std::int64_t d : shape.dims()) {
    if (static_cast<std::uint64_t>(d) > kPayloadBytesMax / bytes) {
      throw Error(ErrorCode::kLimit, tensor_label(key, index) + " of shape " + shape_string(shape) +
                                         " exceeds kPayloadBytesMax " + std::to_string(kPayloadBytesMax) + " bytes");
    }
    bytes *= static_cast<std::uint64_t>(d);
  }
  return bytes;
}

void check_contiguous(const TensorView& view) {
  if (view.strides_elements.empty()) return;
  bool contiguous = view.strides_elements.rank() == view.shape.rank();
  std::int64_t expected = 1;
  for (std::size_t i = view.shape.rank(); contiguous && i-- > 0;) {
    // A dimension of extent 0 or 1 is never stepped over, so its stride is free.
    if (view.shape[i] > 1 && view.strides_elements[i] != expected) contiguous = false;
    expected *= std::max<std::int64_t>(view.shape[i], 1);
  }
  if (!contiguous) {
    throw Error(ErrorCode::kSchema, tensor_label(view.key, view.index) + " with shape " + shape_string(view.shape) +
                                        " has strides " + shape_string(view.strides_elements) +
                                        ": not contiguous row-major (make it contiguous before preflight)");
  }
}

std::size_t entry_bytes(const TensorSpec& spec) { return 1 + spec.key.size() + 4 + 1 + 1 + 8 * spec.shape.rank() + 8; }

void check_count(std::size_t count) {
  if (count > kTensorCountMax) {
    throw Error(ErrorCode::kLimit, "manifest has " + std::to_string(count) + " tensors, more than kTensorCountMax " +
                                       std::to_string(kTensorCountMax));
  }
}

std::uint64_t add_payload(std::uint64_t total, std::uint64_t bytes, const TensorSpec& spec) {
  if (bytes > kPayloadBytesMax - total) {
    throw Error(ErrorCode::kLimit, "payload exceeds kPayloadBytesMax " + std::to_string(kPayloadBytesMax) +
                                       " bytes at " + tensor_label(spec.key, spec.index));
  }
  return total + bytes;
}

}  // namespace

ManifestBuild build_manifest(std::span<const TensorView> tensors) {
  check_count(tensors.size());
  std::array<std::size_t, kTensorCountMax> order{};
  for (std::size_t i = 0; i < tensors.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(tensors.size()), [&](std::size_t a, std::size_t b) {
    return canonical_less(tensors[a].key, tensors[a].index, tensors[b].key, tensors[b].index);
  });
  ManifestBuild out;
  out.manifest.reserve(tensors.size());
  out.payload.reserve(tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const TensorView& view = tensors[order[i]];
    if (i > 0 && view.key == out.manifest.back().key && view.index == out.manifest.back().index) {
      throw Error(ErrorCode::kSchema, tensor_label(view.key, view.index) + " appears twice");
    }
    const std::uint64_t bytes = spec_bytes(view.key, view.index, view.dtype, view.shape);
    check_contiguous(view);
    if (view.data.size() != bytes) {
      throw Error(ErrorCode::kSchema, tensor_label(view.key, view.index) + " data is " + std::to_string(view.data.size()) +
                                          " bytes but " + shape_string(view.shape) + " x " +
                                          std::string(dtype_name(view.dtype)) + " is " + std::to_string(bytes));
    }
    out.manifest.push_back(TensorSpec{std::string(view.key), view.index, view.dtype, view.shape, bytes});
    out.payload_bytes = add_payload(out.payload_bytes, bytes, out.manifest.back());
    out.payload.push_back(view.data);
    out.encoded_bytes += entry_bytes(out.manifest.back());
  }
  return out;
}

std::uint64_t check_manifest(std::span<const TensorSpec> manifest, ErrorCode order_code) {
  check_count(manifest.size());
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < manifest.size(); ++i) {
    const TensorSpec& spec = manifest[i];
    if (i > 0 && !canonical_less(manifest[i - 1].key, manifest[i - 1].index, spec.key, spec.index)) {
      throw Error(order_code, tensor_label(spec.key, spec.index) + " is not after " +
                                  tensor_label(manifest[i - 1].key, manifest[i - 1].index) +
                                  " (manifest entries must be unique, ordered by key then index)");
    }
    const std::uint64_t bytes = spec_bytes(spec.key, spec.index, spec.dtype, spec.shape);
    if (spec.size_bytes != bytes) {
      throw Error(ErrorCode::kSchema, tensor_label(spec.key, spec.index) + " says " + std::to_string(spec.size_bytes) +
                                          " bytes but " + shape_string(spec.shape) + " x " +
                                          std::string(dtype_name(spec.dtype)) + " is " + std::to_string(bytes));
    }
    total = add_payload(total, bytes, spec);
  }
  return total;
}

void write_manifest(Writer& out, const TensorManifest& manifest) {
  for (const TensorSpec& spec : manifest) {
    out.u8(static_cast<std::uint8_t>(spec.key.size()));
    out.bytes(spec.key);
    out.u32(spec.index);
    out.u8(static_cast<std::uint8_t>(spec.dtype));
    out.u8(static_cast<std::uint8_t>(spec.shape.rank()));
    for (const std::int64_t d : spec.shape.dims()) out.i64(d);
    out.u64(spec.size_bytes);
  }
}

TensorManifest read_manifest(Reader& in, const FrameHeader& header) {
  const std::size_t count = header.manifest_count;
  check_count(count);
  TensorManifest manifest;
  manifest.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    TensorSpec spec;
    const std::uint8_t key_bytes = in.u8("tensor key length");
    spec.key = std::string(in.bytes("tensor key", key_bytes));
    in.set_context("tensor", spec.key);
    spec.index = in.u32("index");
    spec.dtype = static_cast<DType>(in.u8("dtype"));
    const std::uint8_t rank = in.u8("rank");
    if (rank > kShapeRankMax) {
      throw Error(ErrorCode::kLimit, tensor_label(spec.key, spec.index) + " has rank " + std::to_string(rank) +
                                         ", more than kShapeRankMax " + std::to_string(kShapeRankMax));
    }
    for (std::uint8_t d = 0; d < rank; ++d) spec.shape.push_back(in.i64("dim"));
    spec.size_bytes = in.u64("size_bytes");
    in.set_context({}, {});
    manifest.push_back(std::move(spec));
  }
  const std::uint64_t payload_bytes = check_manifest(manifest, ErrorCode::kDecode);
  if (payload_bytes != header.payload_bytes) {
    throw Error(ErrorCode::kDecode, "frame header payload_bytes " + std::to_string(header.payload_bytes) +
                                        " differs from the manifest's " + std::to_string(payload_bytes));
  }
  return manifest;
}

const TensorSpec* find_tensor(std::span<const TensorSpec> manifest, std::string_view key, std::uint32_t index) {
  for (const TensorSpec& spec : manifest) {
    if (spec.key == key && spec.index == index) return &spec;
  }
  return nullptr;
}

}  // namespace wire_detail

namespace {
class HostPayloadMemory final : public PayloadMemory {
 public:
  std::uint8_t* allocate(std::size_t bytes) override {
    void* raw = ::operator new(bytes, std::align_val_t{wire_detail::kPayloadAlignmentBytes}, std::nothrow);
    if (raw == nullptr) {
      throw Error(ErrorCode::kResource, "cannot allocate " + std::to_string(bytes) + " bytes of tensor payload");
    }
    return static_cast<std::uint8_t*>(raw);
  }
  void release(std::uint8_t* block, std::size_t /*bytes*/) noexcept override {
    ::operator delete(block, std::align_val_t{wire_detail::kPayloadAlignmentBytes});
  }
  void copy(void* to, const void* from, std::size_t bytes) override { std::memcpy(to, from, bytes); }
};
}  // namespace

PayloadMemory& host_payload_memory() {
  static HostPayloadMemory memory;
  return memory;
}

std::span<std::uint8_t> PayloadBuffers::tensor(std::size_t manifest_position) const {
  if (manifest_position >= spans_.size()) {
    throw Error(ErrorCode::kInvalidArgument, "payload tensor position " + std::to_string(manifest_position) +
                                                 " is past the manifest's " + std::to_string(spans_.size()) + " tensors");
  }
  return spans_[manifest_position];
}

PayloadBuffers allocate_payload(std::span<const TensorSpec> manifest, PayloadMemory& memory) {
  constexpr std::uint64_t kAlign = wire_detail::kPayloadAlignmentBytes;
  PayloadBuffers out;
  out.payload_bytes_ = wire_detail::check_manifest(manifest, ErrorCode::kSchema);
  std::uint64_t storage_bytes = 0;
  for (const TensorSpec& spec : manifest) storage_bytes += (spec.size_bytes + kAlign - 1) / kAlign * kAlign;
  out.storage_ = std::unique_ptr<std::uint8_t, PayloadBuffers::Release>(
      storage_bytes > 0 ? memory.allocate(storage_bytes) : nullptr,
      PayloadBuffers::Release{&memory, storage_bytes});
  out.spans_.reserve(manifest.size());
  std::uint64_t offset = 0;
  for (const TensorSpec& spec : manifest) {
    out.spans_.emplace_back(out.storage_.get() + offset, spec.size_bytes);
    offset += (spec.size_bytes + kAlign - 1) / kAlign * kAlign;
  }
  return out;
}

}  // namespace lockstep
