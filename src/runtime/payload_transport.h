// Tensor payloads travel over the guarded communicator, never through a
// control ring (SPEC §4A): after a frame, each tensor its manifest names
// follows in manifest order, and the receiver allocates strictly from the
// manifest it already validated.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "lockstep/communicator.h"
#include "lockstep/tensor_manifest.h"

namespace lockstep {

// Point-to-point: sends `payload` (one span per manifest entry) to `peer`
// (group rank) of `group`. Blocking, each tensor bounded by `timeout`.
void send_payload(Communicator& comm, std::string_view group, int peer, const TensorManifest& manifest,
                  std::span<const std::span<const std::uint8_t>> payload, std::uint64_t call_id,
                  std::chrono::milliseconds timeout);

// Point-to-point: allocates from `manifest` in `memory` and receives every
// tensor from `peer`. Blocking like send_payload.
PayloadBuffers recv_payload(Communicator& comm, std::string_view group, int peer,
                            const TensorManifest& manifest, std::uint64_t call_id, PayloadMemory& memory,
                            std::chrono::milliseconds timeout);

// Broadcast inside `group` from group rank `root`: the root's `buffers` hold
// the tensors; every other rank's are allocated from `manifest` in `memory`.
void broadcast_payload(Communicator& comm, std::string_view group, int root,
                       const TensorManifest& manifest, PayloadBuffers& buffers, PayloadMemory& memory,
                       std::chrono::milliseconds timeout);

// Copies a frame's payload spans (in `memory`) into fresh buffers there (the
// root of a broadcast forwards what it received or produced).
PayloadBuffers copy_payload(const TensorManifest& manifest,
                            std::span<const std::span<const std::uint8_t>> payload, PayloadMemory& memory);

}  // namespace lockstep

namespace lockstep {

// The fp32 tensor `key`[0] of a received payload, or an empty span when the
// manifest has none. Throws Error{kSchema} when it is not f32.
std::span<const float> payload_floats(const TensorManifest& manifest, const PayloadBuffers& payload,
                                      std::string_view key);

}  // namespace lockstep
