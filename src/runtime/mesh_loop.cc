#include "mesh_loop.h"

#include <chrono>
#include <thread>

#include "lockstep/chunk_protocol.h"
#include "lockstep/error.h"
#include "lockstep/recovery.h"
#include "payload_transport.h"
#include "tensor_place.h"

namespace lockstep {
namespace {

constexpr int kStage0BoundaryRank = 0;
// D2: how long the leader holds the last result before a hard cut — long
// enough for Stage 0 to have begun the cut, well inside the drain deadline.
constexpr double kDelayedResultFractionOfDrain = 0.25;

}  // namespace

TensorView output_view(const Geometry& geometry, std::span<const float> output) {
  const auto rows = static_cast<std::int64_t>(geometry.frames) * geometry.tokens_per_frame;
  return TensorView{kOutputKey, 0, DType::kF32, TensorShape{rows, static_cast<std::int64_t>(geometry.dim)}, {},
                    std::span(reinterpret_cast<const std::uint8_t*>(output.data()), output.size_bytes())};
}

void WorkerFanout::forward(std::span<const std::uint8_t> frame) {
  if (mesh_ == nullptr) return;
  context_.recorder.commit("mesh_broadcast_begun", kGroupMesh);
  mesh_->publish(frame, context_.deadline());
}

void WorkerFanout::broadcast(const TensorManifest& manifest, PayloadBuffers& payload) {
  broadcast_payload(context_.comm, kGroupMesh, 0, manifest, payload, chunk_tensor_place(context_).memory(),
                    context_.deadline());
}

void WorkerFanout::broadcast_error(const CallIds& ids, const std::string& reason) noexcept {
  if (mesh_ == nullptr) return;
  try {
    Control control;
    control.kind = ControlKind::kError;
    control.ids = ids;
    control.reason = reason.substr(0, kStringBytesMax);
    const PreparedControl prepared = preflight_control(control, context_.frame_context);
    mesh_->publish(prepared.frame(), context_.deadline());
  } catch (const std::exception&) {
    // The fatal path that follows stops the workers through the poison mark.
  }
}

MeshLoop::MeshLoop(const RankContext& context, ControlChannels& channels, MeshMember& member)
    : context_(context),
      channels_(channels),
      member_(member),
      fanout_(context, context.is_leader() ? channels.mesh.get() : nullptr),
      sequencer_([&context] {
        const StreamPosition start = generation_start(context.job_store);
        return EnvelopeSequencer(kFirstCallId, start.next_chunk, start.epoch);
      }()),
      buffer_(control_frame_bytes_max()) {}

MeshLoop::Inbound MeshLoop::receive(Channel& channel) {
  const std::size_t size = channel.receive(buffer_, context_.deadline());
  return decode({buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(size)});
}

MeshLoop::Inbound MeshLoop::decode(std::vector<std::uint8_t> frame) const {
  Inbound inbound;
  inbound.frame = std::move(frame);
  inbound.decoded = decode_mesh_frame(inbound.frame, context_.expect);
  return inbound;
}

MeshLoop::Inbound MeshLoop::next_inbound(Channel& channel) {
  if (!next_frame_) return receive(channel);
  std::vector<std::uint8_t> frame = std::move(*next_frame_);
  next_frame_.reset();
  return decode(std::move(frame));
}

// Reads the next frame only if it has already arrived, and pulls its payload
// if it is the next INFER. The frame is decoded again at its turn, where a
// bad one fails as it would have (its error then names its own call).
void MeshLoop::pull_next_payload(Channel& input, const CallIds& current) {
  if (!input.frame_waiting()) return;  // nothing there yet: the result goes first
  const std::size_t size = input.receive(buffer_, context_.deadline());
  next_frame_.emplace(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(size));
  DecodedEnvelope decoded;
  try {
    decoded = decode_mesh_frame(*next_frame_, context_.expect);
  } catch (const Error&) {
    return;
  }
  const Envelope& envelope = decoded.envelope;
  // Only the envelope the sequencer will apply next; anything else (a
  // resend, a regression, a gap) is judged in its turn, nothing pulled for it.
  if (envelope.action != Action::kInfer || !sequencer_.would_apply(sequencer_ids(decoded))) return;
  context_.set_call_context(envelope.ids);
  pulled_ = Pulled{envelope.ids.call_id, pull_payload(envelope.ids, decoded.manifest)};
  context_.set_call_context(current);
}

void MeshLoop::run() {
  const bool leader = context_.is_leader() && context_.config.topology != Topology::kTp;
  Channel& input = leader ? *channels_.envelopes : *channels_.mesh;
  idle_since_ns_ = steady_clock().now_ns();
  for (bool more = true; more;) {
    CallIds ids;
    try {
      Inbound inbound = next_inbound(input);
      ids = inbound.decoded.envelope.ids;
      const EnvelopeSequencer::Admission admission = sequencer_.admit(sequencer_ids(inbound.decoded));
      if (admission.verdict == EnvelopeVerdict::kDuplicate) {
        EventSpec note;
        note.op = "duplicate_dropped";
        note.detail = "envelope";
        context_.recorder.record(note);
        continue;
      }
      more = leader ? handle_leader(inbound) : handle_worker(inbound);
    } catch (const Error& error) {
      if (leader) {
        // Tell the workers, then stop at once: the leader is the origin and
        // must own the cause before any worker's reaction can reach it.
        fanout_.broadcast_error(ids, error.what());
        context_.fatal.fail(error);
      }
      if (error.code() == ErrorCode::kPeerFailure) {
        // Stopped by a peer's failure (the leader's ERROR, a dead writer):
        // that peer raises the poison mark; this rank only follows it.
        context_.fatal.fail(FatalCause{DumpReasonKind::kFatal, error.code(), "", error.what(), true, 0});
      }
      throw;
    }
  }
}

bool MeshLoop::handle_leader(Inbound& inbound) {
  const Envelope& envelope = inbound.decoded.envelope;
  switch (envelope.action) {
    case Action::kNoop:
      fanout_.forward(inbound.frame);
      return true;
    case Action::kShutdown:
      fanout_.forward(inbound.frame);
      return false;
    case Action::kError:
      fanout_.forward(inbound.frame);
      throw Error(ErrorCode::kPeerFailure, "Stage 0 sent ERROR: " + envelope.error_reason);
    case Action::kInfer: break;
  }
  context_.set_call_context(envelope.ids);
  PayloadBuffers payload = pulled_ && pulled_->call_id == envelope.ids.call_id
                               ? std::move(pulled_->payload)
                               : pull_payload(envelope.ids, inbound.decoded.manifest);
  pulled_.reset();
  run_infer_as_leader(inbound, payload);
  return true;
}

// Pulls the envelope's payload: Stage 0 sends it only once asked, so the
// boundary never has sends in flight in both directions (control.h).
PayloadBuffers MeshLoop::pull_payload(const CallIds& ids, const TensorManifest& manifest) {
  Control ready;
  ready.kind = ControlKind::kPayloadReady;
  ready.ids = ids;
  const PreparedControl prepared = preflight_control(ready, context_.frame_context);
  channels_.results->publish(prepared.frame(), context_.deadline());
  return recv_payload(context_.comm, kGroupBoundary, kStage0BoundaryRank, manifest, ids.call_id,
                      chunk_tensor_place(context_).memory(), context_.deadline());
}

void MeshLoop::run_infer_as_leader(const Inbound& inbound, PayloadBuffers& payload) {
  const TensorManifest& manifest = inbound.decoded.manifest;
  fanout_.forward(inbound.frame);
  fanout_.broadcast(manifest, payload);
  // The mesh's time between two steps: from the end of the last one (its
  // result sent, the next payload pulled) until every mesh rank has this
  // chunk's inputs (envelope, payload, fan-out).
  idle_us_ = static_cast<std::uint64_t>((steady_clock().now_ns() - idle_since_ns_) / 1000);
  const ChunkOutcome outcome =
      member_.run_chunk(inbound.decoded.envelope, payload_floats(manifest, payload, kLatentsKey),
                        payload_floats(manifest, payload, kContextOverrideKey));
  ++chunks_run_;
  idle_since_ns_ = steady_clock().now_ns();
  pull_next_payload(*channels_.envelopes, inbound.decoded.envelope.ids);
  send_result(inbound.decoded.envelope, outcome);
}

bool MeshLoop::handle_worker(Inbound& inbound) {
  const Envelope& envelope = inbound.decoded.envelope;
  switch (envelope.action) {
    case Action::kNoop: return true;
    case Action::kShutdown: return false;
    case Action::kError: throw Error(ErrorCode::kPeerFailure, "Stage 0 sent ERROR: " + envelope.error_reason);
    case Action::kInfer: break;
  }
  context_.set_call_context(envelope.ids);
  PayloadBuffers payload;
  broadcast_payload(context_.comm, kGroupMesh, 0, inbound.decoded.manifest, payload,
                    chunk_tensor_place(context_).memory(), context_.deadline());
  member_.run_chunk(envelope, payload_floats(inbound.decoded.manifest, payload, kLatentsKey),
                    payload_floats(inbound.decoded.manifest, payload, kContextOverrideKey));
  ++chunks_run_;
  return true;
}

void MeshLoop::send_result(const Envelope& envelope, const ChunkOutcome& outcome) {
  Result result;
  result.action = Action::kInfer;
  result.ids = envelope.ids;
  result.plan_id = envelope.plan->plan_id;
  result.observed_generator_calls = outcome.observed_generator_calls;
  result.geometry = envelope.geometry;
  result.durations = {outcome.stage1_us, idle_us_};
  result.digests = {outcome.kv_state_digest, outcome.output_digest, outcome.input_digest, outcome.ledger_digest};
  if (context_.frame_context.version >= kProtocolVersionResultKvFrames) result.kv_frames = outcome.kv_frames;
  const TensorView output = output_view(envelope.geometry, outcome.output);
  PreparedResult prepared = preflight_result(result, std::span(&output, 1), context_.frame_context);
  HeldResult ready{std::vector<std::uint8_t>(prepared.frame().begin(), prepared.frame().end()),
                   copy_payload(prepared.manifest(), prepared.payload(), chunk_tensor_place(context_).memory()),
                   prepared.manifest(),
                   envelope.ids.call_id};
  const auto chunk = static_cast<std::int64_t>(envelope.ids.chunk_index);
  const int leader = context_.config.first_mesh_rank();
  if (context_.fires(FaultId::kD4, chunk, leader, 3)) {
    held_ = std::move(ready);  // sent after its successor: a reorder inside the window
    return;
  }
  if (context_.fires(FaultId::kD2, chunk, leader, context_.config.hard_cut_every - 1)) {
    std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(
        context_.config.drain_deadline_ms * kDelayedResultFractionOfDrain));
  }
  publish_result(ready);
  if (held_) {
    publish_result(*held_);
    held_.reset();
  }
}

void MeshLoop::publish_result(HeldResult& ready) {
  channels_.results->publish(ready.frame, context_.deadline());
  std::vector<std::span<const std::uint8_t>> spans;
  for (std::size_t i = 0; i < ready.output.count(); ++i) spans.emplace_back(ready.output.tensor(i));
  send_payload(context_.comm, kGroupBoundary, kStage0BoundaryRank, ready.manifest, spans, ready.call_id,
               context_.deadline());
}

}  // namespace lockstep
