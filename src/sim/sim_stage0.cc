#include "sim/sim_stage0.h"

#include <algorithm>

#include "lockstep/chunk_protocol.h"
#include "lockstep/digest.h"
#include "sim/sim_job.h"

namespace lockstep::sim {
namespace {

// The runtime's first ids (src/runtime/mesh_loop.h).
constexpr std::uint64_t kFirstCallId = 1;
constexpr int kLeaderRank = 1;
constexpr std::uint64_t kLatentsStream = 0x1A7E275ull;

std::vector<float> synthetic_floats(std::uint64_t seed, std::uint64_t stream, std::size_t count) {
  Rng rng(seed ^ (stream * kLatentsStream));
  std::vector<float> values(count);
  for (float& value : values) value = static_cast<float>(rng.real() * 2.0 - 1.0);
  return values;
}

TensorView float_view(std::string_view key, std::span<const float> values, std::int64_t dim) {
  return TensorView{key, 0, DType::kF32, TensorShape{static_cast<std::int64_t>(values.size()) / dim, dim}, {},
                    std::span(reinterpret_cast<const std::uint8_t*>(values.data()), values.size_bytes())};
}

}  // namespace

Stage0Sim::Stage0Sim(World& world, std::uint32_t generation)
    : Stage0Sim(world, generation, generation_start(world.store())) {}

Stage0Sim::Stage0Sim(World& world, std::uint32_t generation, const StreamPosition& start)
    : SimRank(world, 0, generation),
      scenario_(world.scenario()),
      acceptance_(start.epoch, kReorderWindowDefault),
      next_call_id_(kFirstCallId),
      next_chunk_(start.next_chunk),
      next_to_emit_(start.next_chunk),
      epoch_(start.epoch) {}

std::string Stage0Sim::describe_state() const {
  return "Stage 0 (generation " + std::to_string(generation_) + "): chunk " + std::to_string(next_chunk_) + "/" + std::to_string(scenario_.chunks) + ", epoch " +
         std::to_string(epoch_) + ", awaited " + std::to_string(acceptance_.rule().awaited()) + ", decode queue " +
         std::to_string(decode_queue_.size()) + (draining_ ? ", draining" : "");
}

void Stage0Sim::on_start() {
  last_send_ns_ = last_progress_ns_ = world_.now_ns();
  try_send();
  schedule_tick();
}

void Stage0Sim::on_tick() {
  check_poison();
  const std::int64_t now_ns = world_.now_ns();
  if (draining_ && acceptance_.rule().drained()) draining_ = false;
  if (draining_ && now_ns - drain_started_ns_ > kDrainDeadlineNs) {
    throw Error(ErrorCode::kTimeout, "hard cut to epoch " + std::to_string(epoch_) + ": " +
                                         std::to_string(acceptance_.rule().abandoned_pending()) +
                                         " in-flight results not drained within the drain deadline");
  }
  if (now_ns - last_send_ns_ > kHeartbeatNs) send_control(Action::kNoop);
  const bool deadline_armed = scenario_.bug != PlantedBug::kNoResultDeadline;  // planted: no deadline at all
  if (deadline_armed && acceptance_.rule().awaited() > 0 && now_ns - last_progress_ns_ > kDeadlineNs) {
    throw Error(ErrorCode::kTimeout, "no result from the mesh for call_id " +
                                         std::to_string(*acceptance_.rule().next_expected()) +
                                         " within the deadline");
  }
  try_send();
  maybe_finish();
  if (!terminal()) schedule_tick();
}

void Stage0Sim::try_send() {
  while (!terminal() && !draining_ && next_chunk_ < static_cast<std::uint64_t>(scenario_.chunks) &&
         outstanding() < static_cast<std::size_t>(scenario_.depth)) {
    if (scenario_.cut_before_chunk[next_chunk_] && chunk_in_epoch_ > 0) {
      begin_hard_cut();
      continue;
    }
    send_infer();
  }
}

// SPEC §4E: bump the epoch, flush D_out, then drain (discard) every result
// of the old epoch still in flight before the first envelope of the new one.
void Stage0Sim::begin_hard_cut() {
  ++epoch_;
  chunk_in_epoch_ = 0;
  world_.note_fault(SimFault::kHardCut, "Stage 0 cuts to epoch " + std::to_string(epoch_) + " before chunk " +
                                            std::to_string(next_chunk_));
  decode_queue_.clear();
  decoding_ = false;
  ++decode_flushes_;
  if (generation_is_current(scenario_, world_.store(), generation_)) {
    publish_stream_position(world_.store(), {next_to_emit_, epoch_});
  }
  if (scenario_.bug == PlantedBug::kSkipEpochFence) return;  // planted: no fence, no drain
  acceptance_.begin_epoch(epoch_);
  draining_ = !acceptance_.rule().drained();
  drain_started_ns_ = world_.now_ns();
}

void Stage0Sim::send_infer() {
  Envelope envelope;
  envelope.action = Action::kInfer;
  envelope.ids = {next_call_id_++, next_chunk_, epoch_};
  envelope.geometry = sim_geometry(scenario_);
  const Plan plan = plan_for_chunk({scenario_.denoise_steps, scenario_.recompute_every}, chunk_in_epoch_, epoch_);
  envelope.plan = plan;
  envelope.meta.set("chunk", static_cast<std::int64_t>(next_chunk_));
  const int dim = scenario_.dim();
  const std::vector<float> latents = synthetic_floats(scenario_.seed, next_chunk_ * 2,
                                                      static_cast<std::size_t>(kFramesPerChunk * kTokensPerFrame * dim));
  std::vector<TensorView> tensors{float_view(kLatentsKey, latents, dim)};
  std::vector<float> context;
  if (plan.do_kv_recompute) {
    const int held_frames = std::min(chunk_in_epoch_ * kFramesPerChunk, kWindowFrames);
    context = synthetic_floats(scenario_.seed, next_chunk_ * 2 + 1,
                               static_cast<std::size_t>(held_frames * kTokensPerFrame * dim));
    tensors.push_back(float_view(kContextOverrideKey, context, dim));
  }
  const PreparedEnvelope prepared = preflight_envelope(envelope, tensors, sim_frame_context(scenario_, rank_, generation_));
  acceptance_.expect(envelope.ids.call_id);
  expected_calls_[envelope.ids.call_id] = plan.expected_generator_calls;
  world_.oracle().on_sent(generation_, envelope.ids.call_id, next_chunk_, epoch_,
                          digest_floats(sim_model_output(latents, plan.expected_generator_calls)));
  std::vector<Bytes> payload;
  for (const auto& span : prepared.payload()) payload.emplace_back(span.begin(), span.end());
  send(kLeaderRank, {prepared.frame().begin(), prepared.frame().end()}, std::move(payload));
  last_send_ns_ = last_progress_ns_ = world_.now_ns();
  ++next_chunk_;
  ++chunk_in_epoch_;
}

void Stage0Sim::send_control(Action action) {
  Envelope envelope;
  envelope.action = action;
  envelope.ids = {next_call_id_++, 0, epoch_};
  const PreparedEnvelope prepared = preflight_envelope(envelope, {}, sim_frame_context(scenario_, rank_, generation_));
  send(kLeaderRank, {prepared.frame().begin(), prepared.frame().end()}, {});
  last_send_ns_ = world_.now_ns();
}

void Stage0Sim::on_message(Message& message) {
  const DecodedResult decoded = decode_result(message.frame, sim_frame_expectations(scenario_, generation_));
  if (message.corrupted) world_.oracle().on_corrupt_accepted(rank_, decoded.result.ids.call_id);
  world_.oracle().on_frame_accepted(rank_, generation_, message.generation, decoded.result.ids.call_id);
  if (message.payload.size() != 1 || decoded.manifest.size() != 1 ||
      message.payload[0].size() != decoded.manifest[0].size_bytes) {
    throw Error(ErrorCode::kDecode, "result of call_id " + std::to_string(decoded.result.ids.call_id) +
                                        ": payload does not match its manifest");
  }
  const std::uint64_t output_digest = digest_tensor(message.payload[0].data(), message.payload[0].size());
  if (output_digest != decoded.result.digests.output) {
    throw Error(ErrorCode::kDigest, "result of call_id " + std::to_string(decoded.result.ids.call_id) +
                                        ": output bytes do not match the output digest the mesh reported");
  }
  accept(Decoded{decoded.result, output_digest});
}

void Stage0Sim::accept(Decoded decoded) {
  last_progress_ns_ = world_.now_ns();
  const Result& result = decoded.result;
  const std::uint64_t call_id = result.ids.call_id;
  const auto expected = expected_calls_.find(call_id);
  if (expected != expected_calls_.end() && result.ids.cache_epoch == acceptance_.rule().cache_epoch() &&
      result.observed_generator_calls != expected->second) {
    throw Error(ErrorCode::kPlan, "result of call_id " + std::to_string(call_id) + " reports " +
                                      std::to_string(result.observed_generator_calls) +
                                      " generator calls; the plan expected " + std::to_string(expected->second));
  }
  // The planted bug offers every result under Stage 0's own (never advanced) epoch.
  const std::uint64_t offered_epoch =
      scenario_.bug == PlantedBug::kSkipEpochFence ? acceptance_.rule().cache_epoch() : result.ids.cache_epoch;
  const AcceptanceCounters before = acceptance_.rule().counters();
  const std::uint64_t result_epoch = result.ids.cache_epoch;
  for (auto& released : acceptance_.offer(call_id, offered_epoch, std::move(decoded))) {
    world_.oracle().on_accepted(generation_, released.call_id, released.result.result.ids.cache_epoch, epoch_);
    expected_calls_.erase(released.call_id);
    decode_queue_.push_back(std::move(released.result));
  }
  if (world_.recording()) note_verdict(before, call_id, result_epoch);
  if (draining_ && acceptance_.rule().drained()) draining_ = false;
  start_decode();
  try_send();
  maybe_finish();
}

// For the replay log: what acceptance did with one result.
void Stage0Sim::note_verdict(const AcceptanceCounters& before, std::uint64_t call_id, std::uint64_t result_epoch) {
  const AcceptanceCounters& after = acceptance_.rule().counters();
  const char* verdict = after.stale_drops > before.stale_drops           ? "dropped as stale"
                        : after.duplicate_drops > before.duplicate_drops ? "dropped as duplicate"
                        : after.reordered > before.reordered             ? "buffered (reordered)"
                                                                         : "accepted";
  world_.note("Stage 0: result call_id " + std::to_string(call_id) + " epoch " + std::to_string(result_epoch) + " " +
              verdict);
}

void Stage0Sim::start_decode() {
  if (decoding_ || decode_queue_.empty()) return;
  decoding_ = true;
  const std::int64_t slow = scenario_.slow_rank == rank_ ? scenario_.slow_factor : 1;
  if (slow > 1) world_.note_fault(SimFault::kSlowStage, "Stage 0 decode x" + std::to_string(slow));
  schedule_timer(world_.now_ns() + kDecodeNs * slow, decode_flushes_);
}

// Decode finished: emit unless a hard cut made the item stale on its way
// out (the runtime's decode-thread check).
void Stage0Sim::on_timer(std::uint64_t decode_flushes) {
  if (decode_flushes != decode_flushes_ || !decoding_) return;  // flushed by a hard cut
  const Decoded item = std::move(decode_queue_.front());
  decode_queue_.pop_front();
  decoding_ = false;
  if (item.result.ids.cache_epoch != epoch_) {
    ++stale_at_decode_;
  } else {
    emit(item);
  }
  start_decode();
  try_send();
  maybe_finish();
}

// The generation fence: a Stage 0 whose generation ended (a straggler that
// woke up after the recovery) emits nothing, moves no stream position and
// stops.
void Stage0Sim::emit(const Decoded& item) {
  const CallIds& ids = item.result.ids;
  if (!generation_is_current(scenario_, world_.store(), generation_)) {
    ++world_.counters().fenced_emits;
    throw Error(ErrorCode::kPeerFailure, "Stage 0 of generation " + std::to_string(generation_) + " fenced chunk " +
                                           std::to_string(ids.chunk_index) + ": generation " +
                                           std::to_string(read_current_generation(world_.store())) + " runs the job");
  }
  world_.oracle().on_emitted(generation_, ids.call_id, ids.chunk_index, ids.cache_epoch, epoch_, item.output_digest);
  if (world_.recording()) world_.note("Stage 0: emitted chunk " + std::to_string(ids.chunk_index));
  ++world_.counters().chunks_emitted;
  next_to_emit_ = ids.chunk_index + 1;
  publish_stream_position(world_.store(), {next_to_emit_, epoch_});
}

void Stage0Sim::on_collective_done(std::uint64_t seq) {
  throw Error(ErrorCode::kInternal, "Stage 0 is in no gathering group, yet collective " + std::to_string(seq) +
                                        " completed for it");
}

void Stage0Sim::maybe_finish() {
  if (terminal() || draining_ || outstanding() > 0 || next_chunk_ < static_cast<std::uint64_t>(scenario_.chunks)) {
    return;
  }
  send_control(Action::kShutdown);
  world_.oracle().on_completed(generation_, static_cast<std::uint64_t>(scenario_.chunks), epoch_);
  exit_cleanly();
}

}  // namespace lockstep::sim
