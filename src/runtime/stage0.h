// Stage 0, the controller rank (SPEC §2, §4D, §4E): makes inputs, streams
// envelopes to the mesh, accepts results under the epoch/call_id rule and
// decodes/emits outputs, on three threads joined by two bounded queues:
//
//   producer ──D_in──▶ comm thread ──D_out──▶ decode/emit
//
// The comm thread alone owns the transport (the control rings and the
// communicator); it assigns call_ids, preflights, sends, heart-beats, and
// performs hard cuts (epoch+1, flush D_out, drain and discard in-flight
// results within the drain deadline). In tp, rank 0 is also the mesh leader:
// its comm thread runs the generator itself through a MeshMember.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <vector>

#include "control_channels.h"
#include "lockstep/acceptance.h"
#include "lockstep/bounded_queue.h"
#include "lockstep/overlap_meter.h"
#include "lockstep/recovery.h"
#include "lockstep/result.h"
#include "mesh_loop.h"
#include "mesh_member.h"
#include "rank_context.h"
#include "run_summary.h"
#include "tensor_place.h"

namespace lockstep {

// An envelope the producer made; the comm thread gives it its call_id.
// Its tensors live in Stage 0's tensor place (tensor_place.h).
struct EnvelopeDraft {
  Envelope envelope;
  PlacedFloats latents;
  PlacedFloats context_override;  // empty unless the plan recomputes
  double produce_ms = 0;
};

// What flows from the comm thread to decode.
struct DecodeItem {
  enum class Kind : std::uint8_t { kChunk, kHardCut, kEnd };
  Kind kind = Kind::kChunk;
  Result result;
  PayloadBuffers output_storage;  // in Stage 0's tensor place
  std::span<const float> output;  // into output_storage
  double produce_ms = 0;
  double boundary_ms = 0;
};

class Stage0 {
 public:
  // `local_mesh` is rank 0's own MeshMember in tp, null in pp. Streams from
  // the job's stream position (recovery.h): after a warm recovery, the chunk
  // after the last one emitted, under the fresh epoch the launcher chose.
  Stage0(const RankContext& context, ControlChannels& channels, MeshMember* local_mesh);
  // Runs the stream to its end and returns the summary. Any failure on any
  // of the three threads goes through the fatal path: it never returns, or,
  // when the fault ends the generation, the threads unwind and run()
  // returns with context.fatal.tripped() set.
  RunSummary run();

 private:
  // An envelope whose frame is out and whose payload waits for the leader's
  // PAYLOAD_READY (pp). The prepared payload spans point into `draft`.
  struct PendingPayload {
    EnvelopeDraft draft;
    PreparedEnvelope prepared;
  };
  struct SentCall {
    std::uint32_t expected_generator_calls = 0;
    double produce_ms = 0;
    double boundary_ms = 0;  // payload sent + result received (pp)
  };

  void producer_main();
  void comm_main();
  void decode_main();
  template <typename Body>
  void guarded_thread(const char* name, Body body) noexcept;

  EnvelopeDraft make_draft(std::int64_t chunk, std::uint64_t epoch, std::int64_t chunk_in_epoch) const;
  Meta make_meta(std::int64_t chunk, std::uint64_t epoch) const;
  bool comm_step();
  void send_infer(EnvelopeDraft& draft);
  void send_control(Action action);
  void run_local(const Envelope& envelope, PreparedEnvelope& prepared);
  void begin_hard_cut(std::uint64_t new_epoch);
  bool poll_result(std::chrono::milliseconds slice);
  void on_control_frame(std::span<const std::uint8_t> frame);
  void handle_result_frame(std::span<const std::uint8_t> frame);
  void accept(Result result, PayloadBuffers output_storage, std::span<const float> output);
  void flush_pending_out();
  void inject_before_send(EnvelopeDraft& draft);
  void emit(DecodeItem& item);
  // The generation fence and the stream position a replacement resumes from.
  void publish_position(std::uint64_t next_chunk, std::uint64_t epoch);
  void write_progress() const;

  const RankContext& context_;
  const StreamPosition start_;  // where this generation's stream begins
  ControlChannels& channels_;
  MeshMember* local_mesh_;
  TensorPlace& place_;
  std::optional<WorkerFanout> fanout_;
  BoundedQueue<std::optional<EnvelopeDraft>> d_in_;
  BoundedQueue<DecodeItem> d_out_;
  // Comm thread only.
  ResultAcceptance<DecodeItem> acceptance_;
  std::map<std::uint64_t, SentCall> sent_;  // awaited call_id → what it must show
  std::deque<DecodeItem> pending_out_;      // accepted, waiting for room in D_out
  std::deque<PendingPayload> pending_payloads_;  // frames sent, payloads not yet pulled
  std::uint64_t next_call_id_ = kFirstCallId;
  std::int64_t last_send_ns_ = 0;
  std::int64_t last_progress_ns_ = 0;
  bool producer_done_ = false;
  std::vector<std::uint8_t> receive_buffer_;
  // Shared between threads.
  std::atomic<std::uint64_t> current_epoch_;
  std::atomic<std::int64_t> flushed_at_cuts_{0};
  // Chunks sent and not yet emitted or discarded: D bounds the whole pipeline
  // (send → emit), so D = 1 runs the stages back to back and D >= 2 overlaps
  // them (SPEC §4E, E2).
  std::atomic<std::int64_t> outstanding_{0};
  std::chrono::steady_clock::time_point started_;
  // Decode thread only.
  OverlapMeter meter_;
  RunSummary summary_;
  std::int64_t last_emitted_chunk_;
};

}  // namespace lockstep
