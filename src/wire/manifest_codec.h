// The tensor manifest codec and its rules (include/lockstep/tensor_manifest.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "lockstep/frame.h"
#include "lockstep/tensor_manifest.h"
#include "wire/bytes.h"

namespace lockstep::wire_detail {

// What preflight derives from the caller's tensors.
struct ManifestBuild {
  TensorManifest manifest;                              // canonical order
  std::vector<std::span<const std::uint8_t>> payload;   // same order
  std::uint64_t payload_bytes = 0;
  std::size_t encoded_bytes = 0;
};

// Checks every view (dtype, rank, dims, contiguity, data size, duplicates,
// count and payload limits) and returns the canonical manifest. Throws
// Error{kEncode|kSchema|kLimit} naming the tensor.
ManifestBuild build_manifest(std::span<const TensorView> tensors);

// Checks a manifest (each spec, strictly canonical order, count and total
// limits) and returns its payload bytes. `order_code` is the error code for
// an out-of-order or duplicate entry: kDecode for wire bytes, kSchema else.
std::uint64_t check_manifest(std::span<const TensorSpec> manifest, ErrorCode order_code);

void write_manifest(Writer& out, const TensorManifest& manifest);

// Reads header.manifest_count entries, checks them with check_manifest(kDecode)
// and against header.payload_bytes (kDecode).
TensorManifest read_manifest(Reader& in, const FrameHeader& header);

// nullptr when (key, index) is not in the manifest.
const TensorSpec* find_tensor(std::span<const TensorSpec> manifest, std::string_view key, std::uint32_t index);

}  // namespace lockstep::wire_detail
