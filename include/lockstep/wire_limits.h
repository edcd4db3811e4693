// Static limits of the wire protocol (SPEC §4A). Each bounds what a frame may
// carry, so a sender fails in preflight (Error{kLimit}, naming the field)
// instead of a receiver allocating from hostile or corrupted numbers, and so
// the largest possible frame is known at compile time (kFrameBytesMax), which
// is what a control channel sizes its slots by.
#pragma once

#include <cstddef>
#include <cstdint>

namespace lockstep {

// Meta (canonical key → typed value map; meta.h).
inline constexpr std::size_t kMetaKeysMax = 64;           // entries per frame
inline constexpr std::size_t kMetaKeyBytesMax = 64;       // one key, [A-Za-z0-9_.:/-]
inline constexpr std::size_t kMetaListItemsMax = 256;     // items of one list value
inline constexpr std::size_t kStringBytesMax = 1024;      // one string value / ERROR reason, UTF-8
inline constexpr std::size_t kMetaBytesMax = 8 * 1024;    // encoded meta section of one frame

// Tensor manifest (tensor_manifest.h). Payload bytes travel over the backend,
// never in the frame; kPayloadBytesMax bounds what a receiver allocates.
inline constexpr std::size_t kTensorCountMax = 16;        // manifest entries per frame
inline constexpr std::size_t kTensorKeyBytesMax = 64;     // one tensor key, same alphabet as meta keys
inline constexpr std::size_t kShapeRankMax = 8;           // dimensions of one tensor
inline constexpr std::uint64_t kPayloadBytesMax = std::uint64_t{4} << 30;  // all tensors of one frame

// Plan (envelope.h).
inline constexpr std::size_t kDenoiseStepsMax = 256;      // num_denoise_steps and timesteps

// Encoded sizes of the variable parts, used to derive kBodyBytesMax.
inline constexpr std::size_t kManifestEntryBytesMax =
    1 + kTensorKeyBytesMax + 4 + 1 + 1 + 8 * kShapeRankMax + 8;
inline constexpr std::size_t kFixedBodyBytesMax = 256;    // every fixed-width field of any kind

// Largest body any frame can have: a decoder rejects a larger body_bytes from
// the header alone.
inline constexpr std::size_t kBodyBytesMax = kFixedBodyBytesMax + kMetaBytesMax +
                                             kTensorCountMax * kManifestEntryBytesMax +
                                             kDenoiseStepsMax * 8 + 4 + kStringBytesMax;

}  // namespace lockstep
