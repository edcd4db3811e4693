// The mesh's loops (SPEC §2, §4A–§4D):
//  - the leader (pp0/pp1) receives each frame from Stage 0, validates it
//    fully (header, checksums, schema, sequence), and only then forwards it
//    to the workers with its payload; an invalid frame makes it broadcast
//    ERROR so every mesh rank exits cleanly instead of stranding (B6);
//  - a worker (tp and pp1) receives frames from the leader and runs each
//    INFER in lockstep with the rest of the mesh;
//  - both drop duplicate envelopes without re-applying cache mutations and
//    treat a silent Stage 0 (no frame, not even a heartbeat, within the
//    deadline) as fatal (C1).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "control_channels.h"
#include "lockstep/acceptance.h"
#include "lockstep/control.h"
#include "lockstep/envelope.h"
#include "lockstep/result.h"
#include "mesh_member.h"
#include "rank_context.h"

namespace lockstep {

// The first call_id of every generation's stream (Stage 0 starts here; the
// mesh expects it). The first chunk and epoch are the job's stream position
// (recovery.h): chunk 0 in epoch 0 for the first generation.
inline constexpr std::uint64_t kFirstCallId = 1;

// Forwards validated frames and payloads from the leader to the workers.
// Used by the pp leader and by rank 0 in tp (which is the leader there).
class WorkerFanout {
 public:
  // `mesh` may be null (a mesh of one rank has no workers).
  WorkerFanout(const RankContext& context, Channel* mesh) : context_(context), mesh_(mesh) {}
  // Publishes the frame to every worker. Blocking up to the deadline.
  void forward(std::span<const std::uint8_t> frame);
  // Broadcasts the payload inside `mesh` from the leader (group rank 0).
  void broadcast(const TensorManifest& manifest, PayloadBuffers& payload);
  // Best effort: tells every worker to stop because of `reason` (B6). Never throws.
  void broadcast_error(const CallIds& ids, const std::string& reason) noexcept;

 private:
  const RankContext& context_;
  Channel* mesh_;
};

// Runs one mesh rank until SHUTDOWN (returns normally) or a failure (throws).
// Main thread of the rank.
// The pp leader pulls the next chunk's payload before it sends the current
// chunk's result whenever the next envelope is already there, so Stage 0's
// checks of a result (digest, acceptance) are off the path between two mesh
// steps; both sides still move at most one payload each way at a time, in
// the same order (control.h).
class MeshLoop {
 public:
  MeshLoop(const RankContext& context, ControlChannels& channels, MeshMember& member);
  void run();

  std::uint64_t duplicate_drops() const { return sequencer_.duplicate_drops(); }
  std::uint64_t chunks_run() const { return chunks_run_; }

 private:
  struct Inbound {
    std::vector<std::uint8_t> frame;
    DecodedEnvelope decoded;
  };
  struct Pulled {
    std::uint64_t call_id;
    PayloadBuffers payload;
  };
  Inbound receive(Channel& channel);
  Inbound decode(std::vector<std::uint8_t> frame) const;
  Inbound next_inbound(Channel& channel);
  void pull_next_payload(Channel& input, const CallIds& current);
  bool handle_leader(Inbound& inbound);
  bool handle_worker(Inbound& inbound);
  PayloadBuffers pull_payload(const CallIds& ids, const TensorManifest& manifest);
  void run_infer_as_leader(const Inbound& inbound, PayloadBuffers& payload);
  void send_result(const Envelope& envelope, const ChunkOutcome& outcome);
  struct HeldResult {
    std::vector<std::uint8_t> frame;
    PayloadBuffers output;
    TensorManifest manifest;
    std::uint64_t call_id;
  };
  void publish_result(HeldResult& ready);

  const RankContext& context_;
  ControlChannels& channels_;
  MeshMember& member_;
  WorkerFanout fanout_;
  EnvelopeSequencer sequencer_;
  std::vector<std::uint8_t> buffer_;
  std::uint64_t chunks_run_ = 0;
  std::int64_t idle_since_ns_ = 0;  // when the last step ended
  std::uint64_t idle_us_ = 0;       // the mesh's time between the last step and this one
  std::optional<HeldResult> held_;  // D4: a result sent after its successor
  std::optional<std::vector<std::uint8_t>> next_frame_;  // read ahead of its turn, decoded at its turn
  std::optional<Pulled> pulled_;    // its payload, pulled before the last result left
};

// The output tensor of a result: [frames × tokens_per_frame, dim] f32.
TensorView output_view(const Geometry& geometry, std::span<const float> output);


}  // namespace lockstep
