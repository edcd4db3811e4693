#include "stage0.h"

#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>

#include "lockstep/assert.h"
#include "lockstep/chunk_protocol.h"
#include "lockstep/digest.h"
#include "lockstep/error.h"
#include "lockstep/control.h"
#include "gpu_rank.h"
#include "payload_transport.h"

namespace lockstep {
namespace {

using std::chrono::milliseconds;
constexpr int kLeaderBoundaryRank = 1;
// How long one comm-thread step may wait on one source before looking at
// the others (a bound on the added latency, not a deadline).
constexpr milliseconds kPollSlice{1};
// Default fault positions (SPEC §7 cases that need no rank: Stage 0's own).
constexpr std::int64_t kDefaultFaultChunk = 2;

double elapsed_ms(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - since).count();
}

TensorView float_view(std::string_view key, std::span<const float> values, std::int64_t rows, std::int64_t dim) {
  return TensorView{key, 0, DType::kF32, TensorShape{rows, dim}, {},
                    std::span(reinterpret_cast<const std::uint8_t*>(values.data()), values.size_bytes())};
}

// The longest a queue wait may legitimately last: a step of the mesh after a
// hard-cut drain.
milliseconds queue_timeout(const RunConfig& config) {
  return milliseconds(config.deadline_ms + config.drain_deadline_ms);
}

}  // namespace

Stage0::Stage0(const RankContext& context, ControlChannels& channels, MeshMember* local_mesh)
    : context_(context),
      start_(generation_start(context.job_store)),
      channels_(channels),
      local_mesh_(local_mesh),
      place_(chunk_tensor_place(context)),
      d_in_("d_in", static_cast<std::size_t>(context.config.depth_in)),
      d_out_("d_out", static_cast<std::size_t>(context.config.depth_out)),
      acceptance_(start_.epoch, kReorderWindowDefault),
      receive_buffer_(control_frame_bytes_max()),
      current_epoch_(start_.epoch),
      last_emitted_chunk_(static_cast<std::int64_t>(start_.next_chunk) - 1) {
  if (local_mesh_ != nullptr) fanout_.emplace(context, channels.mesh.get());
  summary_.chunks_requested = context.config.chunks;
  summary_.generation = context.generation;
  summary_.first_chunk = start_.next_chunk;
  if (context.payloads_on_device) summary_.stage0_device = "cuda:" + std::to_string(context.gpu->device_index());
}

template <typename Body>
void Stage0::guarded_thread(const char* name, Body body) noexcept {
  FlightRecorder::name_this_thread(name);
  try {
    body();
  } catch (...) {
    context_.fatal.fail_current_exception();
    // Returned: the fault ends the generation. Wake the other threads
    // waiting on the queues so they unwind too.
    d_in_.cancel();
    d_out_.cancel();
  }
}

RunSummary Stage0::run() {
  const auto started = started_ = std::chrono::steady_clock::now();
  std::thread producer([this] { guarded_thread("producer", [this] { producer_main(); }); });
  std::thread decode([this] { guarded_thread("decode", [this] { decode_main(); }); });
  guarded_thread("comm", [this] { comm_main(); });
  producer.join();
  decode.join();
  summary_.wall_s = elapsed_ms(started) / 1000.0;
  const AcceptanceCounters& counters = acceptance_.rule().counters();
  summary_.stale_drops += counters.stale_drops;
  summary_.duplicate_drops = counters.duplicate_drops;
  summary_.reordered = counters.reordered;
  summary_.discarded_at_cuts = static_cast<std::uint64_t>(flushed_at_cuts_.load());
  summary_.d_in_capacity = d_in_.capacity();
  summary_.d_in_high_water = d_in_.high_water();
  summary_.d_out_capacity = d_out_.capacity();
  summary_.d_out_high_water = d_out_.high_water();
  summary_.overlap = meter_.summary();
  return summary_;
}

// ---- producer --------------------------------------------------------------

void Stage0::producer_main() {
  const RunConfig& config = context_.config;
  std::uint64_t epoch = start_.epoch;
  std::int64_t chunk_in_epoch = 0;
  const auto first = static_cast<std::int64_t>(start_.next_chunk);
  for (std::int64_t chunk = first; chunk < config.chunks; ++chunk) {
    if (config.hard_cut_every > 0 && chunk > first && chunk % config.hard_cut_every == 0) {
      ++epoch;
      chunk_in_epoch = 0;
    }
    d_in_.push(make_draft(chunk, epoch, chunk_in_epoch), queue_timeout(config));
    ++chunk_in_epoch;
  }
  d_in_.push(std::nullopt, queue_timeout(config));
}

Meta Stage0::make_meta(std::int64_t chunk, std::uint64_t epoch) const {
  Meta meta;
  meta.set("scene", "scene-" + std::to_string(epoch));
  meta.set("prompt_id", static_cast<std::int64_t>(epoch));
  meta.set("chunk", chunk);
  meta.set("guidance_scale", 5.0);
  meta.set("seed", static_cast<std::int64_t>(context_.config.seed));
  if (context_.fires(FaultId::kA1, chunk, 0, kDefaultFaultChunk)) meta.set("guidance_scale", std::nan(""));
  return meta;
}

EnvelopeDraft Stage0::make_draft(std::int64_t chunk, std::uint64_t epoch, std::int64_t chunk_in_epoch) const {
  const auto started = std::chrono::steady_clock::now();
  const RunConfig& config = context_.config;
  const ModelConfig model = model_config_from_name(config.model);
  EnvelopeDraft draft;
  Envelope& envelope = draft.envelope;
  envelope.action = Action::kInfer;
  envelope.ids = {0, static_cast<std::uint64_t>(chunk), epoch};
  envelope.geometry = {static_cast<std::uint32_t>(model.frames_per_chunk),
                       static_cast<std::uint32_t>(model.tokens_per_frame), static_cast<std::uint32_t>(model.dim)};
  const Plan plan = plan_for_chunk({config.num_denoise_steps, config.recompute_every}, chunk_in_epoch, epoch);
  envelope.plan = plan;
  envelope.meta = make_meta(chunk, epoch);
  // Deterministic inputs: every run of the same seed streams the same chunks.
  draft.latents = PlacedFloats(place_.memory(), static_cast<std::size_t>(model.tokens_per_chunk()) * model.dim);
  place_.fill_inputs(draft.latents.values(), config.seed, static_cast<std::uint64_t>(chunk) * 2);
  if (plan.do_kv_recompute) {
    const auto held = std::min<std::int64_t>(chunk_in_epoch * model.frames_per_chunk, model.window_frames);
    draft.context_override =
        PlacedFloats(place_.memory(), static_cast<std::size_t>(held * model.tokens_per_frame) * model.dim);
    place_.fill_inputs(draft.context_override.values(), config.seed, static_cast<std::uint64_t>(chunk) * 2 + 1);
  }
  draft.produce_ms = elapsed_ms(started);
  return draft;
}

// ---- comm thread -----------------------------------------------------------

void Stage0::comm_main() {
  last_send_ns_ = last_progress_ns_ = steady_clock().now_ns();
  while (comm_step()) {
  }
  send_control(Action::kShutdown);
  DecodeItem end;
  end.kind = DecodeItem::Kind::kEnd;
  d_out_.push(std::move(end), queue_timeout(context_.config));
}

// One pass over the comm thread's sources. Returns false once the stream is
// done (everything sent, every awaited result received and handed on).
bool Stage0::comm_step() {
  flush_pending_out();
  const bool room = outstanding_.load() < context_.config.depth_in && pending_out_.empty();
  if (room && !producer_done_) {
    std::optional<std::optional<EnvelopeDraft>> item = d_in_.try_pop();
    if (item && !item->has_value()) producer_done_ = true;
    if (item && item->has_value()) send_infer(**item);
  }
  if (acceptance_.rule().awaited() > 0) {
    poll_result(kPollSlice);
  } else if (producer_done_) {
    return !pending_out_.empty();
  } else {
    std::this_thread::sleep_for(kPollSlice);  // waiting on the producer
  }
  const std::int64_t now_ns = steady_clock().now_ns();
  if (now_ns - last_send_ns_ > static_cast<std::int64_t>(context_.config.heartbeat_ms) * 1'000'000) {
    send_control(Action::kNoop);
  }
  if (acceptance_.rule().awaited() > 0 && now_ns - last_progress_ns_ > context_.deadline().count() * 1'000'000) {
    throw Error(ErrorCode::kTimeout, "no result from the mesh for call_id " +
                                         std::to_string(*acceptance_.rule().next_expected()) + " within " +
                                         std::to_string(context_.config.deadline_ms) + " ms");
  }
  return true;
}

void Stage0::flush_pending_out() {
  while (!pending_out_.empty() && d_out_.try_push(pending_out_.front())) pending_out_.pop_front();
}

void Stage0::send_control(Action action) {
  Envelope envelope;
  envelope.action = action;
  envelope.ids = {next_call_id_++, 0, current_epoch_.load()};
  const PreparedEnvelope prepared = preflight_envelope(envelope, {}, context_.frame_context);
  Channel* channel = local_mesh_ != nullptr ? channels_.mesh.get() : channels_.envelopes.get();
  if (channel != nullptr) channel->publish(prepared.frame(), context_.deadline());
  last_send_ns_ = steady_clock().now_ns();
  if (action == Action::kNoop) ++summary_.heartbeats;
}

void Stage0::send_infer(EnvelopeDraft& draft) {
  if (draft.envelope.ids.cache_epoch != acceptance_.rule().cache_epoch()) {
    begin_hard_cut(draft.envelope.ids.cache_epoch);
  }
  draft.envelope.ids.call_id = next_call_id_++;
  inject_before_send(draft);
  const ModelConfig model = model_config_from_name(context_.config.model);
  std::vector<TensorView> tensors{float_view(kLatentsKey, draft.latents.values(), model.tokens_per_chunk(), model.dim)};
  if (!draft.context_override.empty()) {
    const std::span<const float> context = draft.context_override.values();
    tensors.push_back(float_view(kContextOverrideKey, context, static_cast<std::int64_t>(context.size()) / model.dim,
                                 model.dim));
  }
  const std::uint8_t unsupported_dtype = kDTypeMaxValue + 1;
  if (context_.fires(FaultId::kA2, static_cast<std::int64_t>(draft.envelope.ids.chunk_index), 0, kDefaultFaultChunk)) {
    tensors.push_back(TensorView{"mask", 0, static_cast<DType>(unsupported_dtype), TensorShape{1}, {},
                                 std::span(reinterpret_cast<const std::uint8_t*>(&unsupported_dtype), 1)});
  }
  const Envelope& envelope = draft.envelope;
  PreparedEnvelope prepared = preflight_envelope(envelope, tensors, context_.frame_context);
  context_.set_call_context(envelope.ids);
  const auto chunk = static_cast<std::int64_t>(envelope.ids.chunk_index);
  if (!context_.fires(FaultId::kD3, chunk, 0, kDefaultFaultChunk)) acceptance_.expect(envelope.ids.call_id);
  sent_[envelope.ids.call_id] = {envelope.plan->expected_generator_calls, draft.produce_ms};
  if (envelope.plan->do_kv_recompute) ++summary_.recomputes;
  ++outstanding_;
  last_progress_ns_ = steady_clock().now_ns();
  if (local_mesh_ != nullptr) {
    run_local(envelope, prepared);
  } else {
    std::vector<std::uint8_t> frame(prepared.frame().begin(), prepared.frame().end());
    if (context_.fires(FaultId::kA5, chunk, 0, kDefaultFaultChunk)) frame[kHeaderBytes] ^= 0x40;
    channels_.envelopes->publish(frame, context_.deadline());
    EventSpec sent;
    sent.op = "header_sent";
    sent.group = kGroupBoundary;
    context_.recorder.record(sent);
    if (context_.fires(FaultId::kD1, chunk, 0, kDefaultFaultChunk)) {
      channels_.envelopes->publish(frame, context_.deadline());  // a resend of the same envelope
    }
    pending_payloads_.push_back(PendingPayload{std::move(draft), std::move(prepared)});
  }
  last_send_ns_ = steady_clock().now_ns();
}

// Stage 0's own faults (SPEC §7), applied to the draft just before preflight.
void Stage0::inject_before_send(EnvelopeDraft& draft) {
  const auto chunk = static_cast<std::int64_t>(draft.envelope.ids.chunk_index);
  const int mesh_leader = context_.config.first_mesh_rank();
  if (context_.fires(FaultId::kA3, chunk, 0, kDefaultFaultChunk)) {
    draft.envelope.meta = meta_from_json(R"({"scene": "x", "latents": [[0.5, 0.25], [1.0, 2.0]]})");
  }
  if (context_.fires(FaultId::kF1, chunk, 0, kDefaultFaultChunk)) {
    draft.envelope.plan->do_kv_recompute = true;  // but no context_override tensor
    draft.envelope.plan->expected_generator_calls = plan_generator_calls(draft.envelope.plan->num_denoise_steps, true);
    draft.context_override = PlacedFloats{};
  }
  if (context_.fires(FaultId::kD3, chunk, 0, kDefaultFaultChunk)) draft.envelope.ids.call_id -= 2;
  if (context_.fires(FaultId::kB6, chunk, 0, kDefaultFaultChunk)) draft.envelope.ids.chunk_index += 1;
  if (context_.fires(FaultId::kB1, chunk, 0, kDefaultFaultChunk) && mesh_leader > 0) {
    float probe = 0;
    context_.comm.all_reduce(kGroupMesh, &probe, 1, DType::kF32, ReduceOp::kSum, context_.deadline());
  }
  if (context_.fires(FaultId::kC1, chunk, 0, kDefaultFaultChunk)) raise(SIGKILL);
}

// tp: rank 0 is the leader; it forwards to the workers and runs the chunk.
void Stage0::run_local(const Envelope& envelope, PreparedEnvelope& prepared) {
  PayloadBuffers payload = copy_payload(prepared.manifest(), prepared.payload(), place_.memory());
  fanout_->forward(prepared.frame());
  fanout_->broadcast(prepared.manifest(), payload);
  const ChunkOutcome outcome =
      local_mesh_->run_chunk(envelope, payload_floats(prepared.manifest(), payload, kLatentsKey),
                             payload_floats(prepared.manifest(), payload, kContextOverrideKey));
  Result result;
  result.ids = envelope.ids;
  result.plan_id = envelope.plan->plan_id;
  result.observed_generator_calls = outcome.observed_generator_calls;
  result.geometry = envelope.geometry;
  result.durations.stage1_us = outcome.stage1_us;
  result.digests = {outcome.kv_state_digest, outcome.output_digest, outcome.input_digest, outcome.ledger_digest};
  // The member's output buffer is reused by the next chunk: decode gets a copy.
  const TensorView output = output_view(envelope.geometry, outcome.output);
  const TensorManifest manifest{TensorSpec{std::string(output.key), 0, output.dtype, output.shape, output.data.size()}};
  PayloadBuffers storage = copy_payload(manifest, std::span(&output.data, 1), place_.memory());
  const std::span<const float> copied = payload_floats(manifest, storage, kOutputKey);
  accept(std::move(result), std::move(storage), copied);
}

// Hard cut (SPEC §4E): bump the epoch, flush D_out, then drain and discard
// every in-flight result of the old epoch within the drain deadline.
void Stage0::begin_hard_cut(std::uint64_t new_epoch) {
  // Results already received but held for reordering are discarded by the
  // cut without an arrival to come: they leave the pipeline now.
  outstanding_ -= static_cast<std::int64_t>(acceptance_.rule().buffered());
  acceptance_.begin_epoch(new_epoch);
  current_epoch_.store(new_epoch);
  ++summary_.hard_cuts;
  std::int64_t flushed = 0;
  for (const DecodeItem& item : d_out_.flush()) flushed += item.kind == DecodeItem::Kind::kChunk ? 1 : 0;
  for (const DecodeItem& item : pending_out_) flushed += item.kind == DecodeItem::Kind::kChunk ? 1 : 0;
  pending_out_.clear();
  flushed_at_cuts_ += flushed;
  outstanding_ -= flushed;
  DecodeItem marker;
  marker.kind = DecodeItem::Kind::kHardCut;
  pending_out_.push_back(std::move(marker));
  const std::string detail = "epoch " + std::to_string(new_epoch);
  EventSpec note;
  note.op = "hard_cut";
  note.detail = detail;
  context_.recorder.record(note);
  const auto started = std::chrono::steady_clock::now();
  while (!acceptance_.rule().drained()) {
    if (elapsed_ms(started) > context_.config.drain_deadline_ms) {
      throw Error(ErrorCode::kTimeout, "hard cut to epoch " + std::to_string(new_epoch) + ": " +
                                           std::to_string(acceptance_.rule().abandoned_pending()) +
                                           " in-flight results not drained within " +
                                           std::to_string(context_.config.drain_deadline_ms) + " ms");
    }
    poll_result(kPollSlice);
  }
  flush_pending_out();
}

// Receives at most one frame from the leader (pp): a result, or its request
// for the next payload. Returns true when one arrived.
bool Stage0::poll_result(std::chrono::milliseconds slice) {
  if (local_mesh_ != nullptr) return false;
  std::size_t size = 0;
  try {
    size = channels_.results->receive(receive_buffer_, slice);
  } catch (const Error& error) {
    if (error.code() == ErrorCode::kTimeout) return false;
    throw;
  }
  const std::span<const std::uint8_t> frame = std::span(receive_buffer_).first(size);
  if (size < kHeaderBytes) {
    throw Error(ErrorCode::kDecode, "frame of " + std::to_string(size) + " bytes from the leader");
  }
  const FrameHeader header = decode_header(frame.first<kHeaderBytes>(), context_.expect);
  if (header.kind == MessageKind::kControl) {
    on_control_frame(frame);
  } else {
    handle_result_frame(frame);
  }
  return true;
}

void Stage0::on_control_frame(std::span<const std::uint8_t> frame) {
  const DecodedControl decoded = decode_control(frame, context_.expect);
  const Control& control = decoded.control;
  if (control.kind == ControlKind::kError) {
    throw Error(ErrorCode::kPeerFailure, "the leader sent ERROR for call_id " +
                                             std::to_string(control.ids.call_id) + ": " + control.reason);
  }
  if (control.kind != ControlKind::kPayloadReady || pending_payloads_.empty() ||
      pending_payloads_.front().draft.envelope.ids.call_id != control.ids.call_id) {
    throw Error(ErrorCode::kStaleWork, "the leader asked for the payload of call_id " +
                                           std::to_string(control.ids.call_id) +
                                           ", which is not the next payload Stage 0 owes");
  }
  const PendingPayload& pending = pending_payloads_.front();
  const CallIds& ids = pending.draft.envelope.ids;
  if (const auto awaited = acceptance_.rule().next_expected(); awaited && *awaited < ids.call_id) {
    ++summary_.payloads_pulled_ahead;  // the leader pulled it before sending an earlier result (mesh_loop.h)
  }
  context_.set_call_context(ids);
  // The leader now blocks in recv: from here the payload is owed (SPEC §2).
  context_.recorder.commit("payload_owed", kGroupBoundary, "INFER");
  if (context_.fires(FaultId::kC2, static_cast<std::int64_t>(ids.chunk_index), 0, kDefaultFaultChunk)) {
    throw Error(ErrorCode::kInternal, "injected C2: failing after the commitment point of call_id " +
                                          std::to_string(ids.call_id) + " (the leader waits for its payload)");
  }
  const auto sending = std::chrono::steady_clock::now();
  send_payload(context_.comm, kGroupBoundary, kLeaderBoundaryRank, pending.prepared.manifest(),
               pending.prepared.payload(), control.ids.call_id, context_.deadline());
  if (const auto sent = sent_.find(control.ids.call_id); sent != sent_.end()) {
    sent->second.boundary_ms += elapsed_ms(sending);
  }
  pending_payloads_.pop_front();
  last_progress_ns_ = steady_clock().now_ns();
}

void Stage0::handle_result_frame(std::span<const std::uint8_t> frame) {
  const DecodedResult decoded = decode_result(frame, context_.expect);
  const auto receiving = std::chrono::steady_clock::now();
  PayloadBuffers payload = recv_payload(context_.comm, kGroupBoundary, kLeaderBoundaryRank, decoded.manifest,
                                        decoded.result.ids.call_id, place_.memory(), context_.deadline());
  const std::span<const float> output = payload_floats(decoded.manifest, payload, kOutputKey);
  if (place_.digest(output) != decoded.result.digests.output) {
    throw Error(ErrorCode::kDigest, "result of call_id " + std::to_string(decoded.result.ids.call_id) +
                                        ": output bytes do not match the output digest the mesh reported");
  }
  if (const auto sent = sent_.find(decoded.result.ids.call_id); sent != sent_.end()) {
    sent->second.boundary_ms += elapsed_ms(receiving);
  }
  accept(decoded.result, std::move(payload), output);
}

void Stage0::accept(Result result, PayloadBuffers output_storage, std::span<const float> output) {
  last_progress_ns_ = steady_clock().now_ns();
  const std::uint64_t call_id = result.ids.call_id;
  const auto sent = sent_.find(call_id);
  if (sent != sent_.end() && result.ids.cache_epoch == acceptance_.rule().cache_epoch() &&
      result.observed_generator_calls != sent->second.expected_generator_calls) {
    throw Error(ErrorCode::kPlan, "result of call_id " + std::to_string(call_id) + " reports " +
                                      std::to_string(result.observed_generator_calls) +
                                      " generator calls; the plan expected " +
                                      std::to_string(sent->second.expected_generator_calls));
  }
  DecodeItem item;
  item.produce_ms = sent != sent_.end() ? sent->second.produce_ms : 0;
  item.boundary_ms = sent != sent_.end() ? sent->second.boundary_ms : 0;
  item.result = std::move(result);
  item.output_storage = std::move(output_storage);
  item.output = output;
  const std::uint64_t epoch = item.result.ids.cache_epoch;
  // An abandoned (old-epoch) result leaves the pipeline when it arrives; each
  // arrives at most once as abandoned, so a repeated stale copy is not
  // subtracted twice.
  const std::size_t abandoned_before = acceptance_.rule().abandoned_pending();
  for (auto& released : acceptance_.offer(call_id, epoch, std::move(item))) {
    pending_out_.push_back(std::move(released.result));
  }
  outstanding_ -= static_cast<std::int64_t>(abandoned_before - acceptance_.rule().abandoned_pending());
  if (sent != sent_.end()) sent_.erase(sent);
  flush_pending_out();
}

// ---- decode / emit ---------------------------------------------------------

// One line a supervisor on a TTY renders as a progress bar: emitted, total,
// seconds since start, queue depths. Replaced atomically (rename).
void Stage0::write_progress() const {
  const std::filesystem::path path = std::filesystem::path(context_.job_dir) / "progress";
  const std::filesystem::path temporary = path.string() + ".tmp";
  {
    std::ofstream out(temporary);
    out << summary_.emitted.size() << ' ' << context_.config.chunks << ' '
        << elapsed_ms(started_) / 1000.0 << ' ' << d_in_.depth() << ' ' << d_in_.capacity() << ' '
        << d_out_.depth() << ' ' << d_out_.capacity() << '\n';
  }
  std::error_code ignored;  // progress is a courtesy: never fail the job for it
  std::filesystem::rename(temporary, path, ignored);
}

void Stage0::decode_main() {
  for (;;) {
    DecodeItem item = d_out_.pop(queue_timeout(context_.config));
    if (item.kind == DecodeItem::Kind::kEnd) return;
    if (item.kind == DecodeItem::Kind::kHardCut) {
      meter_.break_segment();
      publish_position(static_cast<std::uint64_t>(last_emitted_chunk_ + 1), current_epoch_.load());
      continue;
    }
    if (item.result.ids.cache_epoch != current_epoch_.load()) {
      ++summary_.stale_drops;  // accepted just before a cut, caught on the way out
    } else {
      emit(item);
    }
    --outstanding_;
  }
}

void Stage0::emit(DecodeItem& item) {
  const auto started = std::chrono::steady_clock::now();
  const auto chunk = static_cast<std::int64_t>(item.result.ids.chunk_index);
  if (context_.fires(FaultId::kA6, chunk, 0, kDefaultFaultChunk)) {
    Channel* owned = local_mesh_ != nullptr ? channels_.mesh.get() : channels_.envelopes.get();
    if (owned != nullptr) owned->publish(std::vector<std::uint8_t>(kHeaderBytes), context_.deadline());
  }
  // E1: from its chunk on, decode costs its slowest.
  const bool slowed = context_.faults.active_since(FaultId::kE1, context_.rank, chunk, 0, kDefaultFaultChunk);
  const double decode_ms = slowed ? context_.config.slowest_decode_ms() : context_.config.decode_ms;
  const Geometry& geometry = item.result.geometry;
  place_.decode(item.output, static_cast<std::int64_t>(geometry.frames) * geometry.tokens_per_frame,
                static_cast<int>(geometry.dim), decode_ms);
  LOCKSTEP_ASSERT(chunk > last_emitted_chunk_);  // exactly once, in order
  publish_position(static_cast<std::uint64_t>(chunk) + 1, item.result.ids.cache_epoch);
  last_emitted_chunk_ = chunk;
  if (summary_.emitted.empty()) {
    summary_.first_emit_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count();
  }
  summary_.emitted.push_back({item.result.ids.chunk_index, item.result.ids.call_id, item.result.ids.cache_epoch,
                              item.result.digests.output});
  const double stage0_ms = item.produce_ms + elapsed_ms(started);
  write_progress();
  meter_.record({item.result.ids.chunk_index, stage0_ms, static_cast<double>(item.result.durations.stage1_us) / 1000.0,
                 steady_clock().now_ns(), item.boundary_ms,
                 static_cast<double>(item.result.durations.idle_us) / 1000.0});
}

// Warm recovery: a Stage 0 whose generation ended while it was stopped (a
// straggler woken up after the recovery) emits nothing; otherwise the
// position a replacement resumes from moves with every emit and cut.
void Stage0::publish_position(std::uint64_t next_chunk, std::uint64_t epoch) {
  if (context_.config.on_fault != OnFault::kRestart) return;  // nothing will resume
  advance_stream(context_.job_store, context_.generation, {next_chunk, epoch});
}

}  // namespace lockstep
