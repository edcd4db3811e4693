// The per-chunk decisions of the stream protocol that the real runtime and
// the deterministic simulator must make identically (SPEC §2, §4D, §4F):
// which plan a chunk gets, and which ids the mesh sequences an envelope by.
// Pure functions; any thread.
#pragma once

#include <cstdint>
#include <span>

#include "lockstep/acceptance.h"
#include "lockstep/envelope.h"

namespace lockstep {

struct ChunkSchedule {
  int denoise_steps = 1;              // 1 .. kDenoiseStepsMax
  std::int64_t recompute_every = 0;   // 0: never
};

// The plan of the chunk at `chunk_in_epoch` (0 = the first after a hard cut)
// of epoch `cache_epoch`: timesteps 1, 1-1/S, …; init_cache on the first chunk
// of an epoch; a KV recompute every `recompute_every` chunks after it (never
// on the first); an attention bias that changes with the epoch; the plan
// arithmetic filled in. Throws Error{kInvalidArgument} for a schedule out of
// range.
Plan plan_for_chunk(const ChunkSchedule& schedule, std::int64_t chunk_in_epoch, std::uint64_t cache_epoch);

// The ids the mesh's EnvelopeSequencer admits a decoded envelope by: the
// chunk_index for INFER only, and the body checksum as the content digest
// (a resend with other content is a conflict, not a duplicate).
EnvelopeIds sequencer_ids(const DecodedEnvelope& decoded);

// Decodes one frame a mesh rank received: a control ERROR from the leader
// becomes Error{kPeerFailure} naming the call and reason (B6); anything else
// must be a valid envelope (the errors of decode_header/decode_envelope).
DecodedEnvelope decode_mesh_frame(std::span<const std::uint8_t> frame, const FrameExpectations& expect);

}  // namespace lockstep
