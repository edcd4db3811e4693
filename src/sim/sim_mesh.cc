#include "sim/sim_mesh.h"

#include <algorithm>
#include <cstring>

#include "lockstep/chunk_protocol.h"
#include "lockstep/control.h"
#include "lockstep/digest.h"
#include "lockstep/group_table.h"
#include "lockstep/recovery.h"
#include "lockstep/result.h"
#include "lockstep/tensor_manifest.h"
#include "sim/sim_job.h"

namespace lockstep::sim {
namespace {

constexpr std::uint64_t kFirstCallId = 1;
constexpr int kStage0Rank = 0;
constexpr std::chrono::milliseconds kCollectiveTimeout{kDeadlineNs / kNsPerMs};
constexpr std::size_t kExchangeWords = 3;  // ledger digest, input digest, KV-state digest

KvGeometry sim_kv_geometry() {
  return KvGeometry{kLayers, 1, kHeadDim, kTokensPerFrame, kWindowFrames};  // one head per mesh rank
}

KvFrames zero_frames(const KvGeometry& geometry, int frames) {
  KvFrames kv;
  kv.frames = frames;
  const std::size_t floats = static_cast<std::size_t>(frames) * geometry.frame_floats();
  kv.k.assign(static_cast<std::size_t>(geometry.layers), std::vector<float>(floats, 0.0f));
  kv.v = kv.k;
  return kv;
}


std::span<const float> tensor_floats(const TensorManifest& manifest, const PayloadBuffers& buffers,
                                     std::string_view key) {
  for (std::size_t i = 0; i < manifest.size(); ++i) {
    if (manifest[i].key != key) continue;
    const std::span<std::uint8_t> bytes = buffers.tensor(i);
    return {reinterpret_cast<const float*>(bytes.data()), bytes.size() / sizeof(float)};
  }
  return {};
}

EnvelopeSequencer sequencer_from(Store& job_store) {
  const StreamPosition start = generation_start(job_store);
  return EnvelopeSequencer(kFirstCallId, start.next_chunk, start.epoch);
}

}  // namespace

MeshRankSim::MeshRankSim(World& world, int rank, std::uint32_t generation)
    : SimRank(world, rank, generation),
      scenario_(world.scenario()),
      sequencer_(sequencer_from(world.store())),
      cache_(sim_kv_geometry()) {}

std::string MeshRankSim::describe_state() const {
  static constexpr const char* kActivity[] = {"idle", "computing", "exchanging"};
  return std::string(leader() ? "leader" : "worker") + " rank " + std::to_string(rank_) + ": " +
         kActivity[static_cast<int>(activity_)] + ", last call_id " + std::to_string(last_call_id_);
}

void MeshRankSim::on_start() {
  CommunicatorOptions options;
  options.global_rank = rank_;
  options.groups = make_standard_group_table(scenario_.mesh_size == 1 ? Topology::kPp0 : Topology::kPp1,
                                             scenario_.world_size());
  comm_ = std::make_unique<Communicator>(std::move(options), world_.backend_factory(generation_), world_.store(),
                                         nullptr);
  comm_->set_phase(Phase::kControl);
  wait_started_ns_ = world_.now_ns();
  schedule_tick();
}

void MeshRankSim::on_tick() {
  check_poison();
  const std::int64_t now_ns = world_.now_ns();
  if (activity_ == Activity::kIdle && now_ns - wait_started_ns_ > kDeadlineNs) {
    throw Error(ErrorCode::kTimeout, std::string("no frame from ") + (leader() ? "Stage 0" : "the leader") +
                                         " (not even a heartbeat) within the deadline");
  }
  if (activity_ == Activity::kExchanging && now_ns - exchange_started_ns_ > kDeadlineNs) {
    std::string missing;
    const CollectiveBoard::Slot* slot = world_.board().find(generation_key(generation_, kGroupMesh), exchange_seq_);
    for (std::size_t r = 0; slot != nullptr && r < slot->size(); ++r) {
      if (!(*slot)[r]) missing += " " + std::to_string(r + 1);
    }
    throw Error(ErrorCode::kTimeout, "chunk-end digest exchange (mesh all_gather seq " +
                                         std::to_string(exchange_seq_) + ", call_id " + std::to_string(last_call_id_) +
                                         ") still waits for rank(s)" + missing);
  }
  schedule_tick();
}

void MeshRankSim::on_message(Message& message) {
  if (activity_ != Activity::kIdle) {
    inbox_.push_back(std::move(message));
    return;
  }
  handle_frame(message);
}

void MeshRankSim::handle_frame(Message& message) {
  wait_started_ns_ = world_.now_ns();
  const DecodedEnvelope decoded = decode_mesh_frame(message.frame, sim_frame_expectations(scenario_, generation_));
  if (message.corrupted) world_.oracle().on_corrupt_accepted(rank_, decoded.envelope.ids.call_id);
  world_.oracle().on_frame_accepted(rank_, generation_, message.generation, decoded.envelope.ids.call_id);
  last_call_id_ = decoded.envelope.ids.call_id;
  const EnvelopeSequencer::Admission admission = sequencer_.admit(sequencer_ids(decoded));
  if (admission.verdict == EnvelopeVerdict::kDuplicate) {
    ++world_.counters().duplicate_drops;
    return;
  }
  const Envelope& envelope = decoded.envelope;
  switch (envelope.action) {
    case Action::kNoop:
      forward(message);
      return;
    case Action::kShutdown:
      forward(message);
      exit_cleanly();
      return;
    case Action::kError:
      forward(message);
      throw Error(ErrorCode::kPeerFailure, "Stage 0 sent ERROR: " + envelope.error_reason);
    case Action::kInfer: break;
  }
  forward(message);
  start_chunk(decoded, message.payload);
}

// The leader relays every admitted frame to the workers; the payload follows
// over the mesh broadcast, not the channel.
void MeshRankSim::forward(const Message& message) {
  if (!leader()) return;
  for (int worker = 2; worker < world_.world_size(); ++worker) send(worker, message.frame, {});
}

void MeshRankSim::start_chunk(const DecodedEnvelope& decoded, const std::vector<Bytes>& payload) {
  PayloadBuffers buffers = allocate_payload(decoded.manifest);
  for (std::size_t i = 0; i < decoded.manifest.size(); ++i) {
    const TensorSpec& spec = decoded.manifest[i];
    if (leader()) {
      if (i >= payload.size() || payload[i].size() != spec.size_bytes) {
        throw Error(ErrorCode::kDecode, "call_id " + std::to_string(decoded.envelope.ids.call_id) + ": payload of " +
                                            tensor_label(spec.key, spec.index) + " does not match the manifest");
      }
      std::memcpy(buffers.tensor(i).data(), payload[i].data(), payload[i].size());
    }
    comm_->broadcast(kGroupMesh, buffers.tensor(i).data(), spec.size_bytes / dtype_size_bytes(spec.dtype), spec.dtype,
                     0, kCollectiveTimeout);
  }
  const std::span<const float> latents = tensor_floats(decoded.manifest, buffers, kLatentsKey);
  const std::span<const float> context = tensor_floats(decoded.manifest, buffers, kContextOverrideKey);
  const Envelope& envelope = decoded.envelope;
  const auto expected_floats = static_cast<std::size_t>(kFramesPerChunk * kTokensPerFrame * scenario_.dim());
  if (envelope.geometry != sim_geometry(scenario_) || latents.size() != expected_floats) {
    throw Error(ErrorCode::kSchema, "chunk " + std::to_string(envelope.ids.chunk_index) + " on rank " +
                                        std::to_string(rank_) + ": envelope geometry does not match the model");
  }
  Chunk chunk;
  chunk.envelope = envelope;
  chunk.input_digest = digest_combine(digest_floats(latents), digest_floats(context));
  prepare_cache(envelope);
  chunk.observed_calls = run_generator(*envelope.plan, context);
  chunk.output = sim_model_output(latents, chunk.observed_calls);
  chunk_ = std::move(chunk);
  activity_ = Activity::kComputing;
  const std::int64_t slow = scenario_.slow_rank == rank_ ? scenario_.slow_factor : 1;
  if (slow > 1) world_.note_fault(SimFault::kSlowStage, "rank " + std::to_string(rank_) + " generator x" +
                                                           std::to_string(slow));
  schedule_timer(world_.now_ns() + kGeneratorCallNs * chunk_->observed_calls * slow, 0);
}

// Lifecycle events before the first collective of the chunk (F3), as the
// runtime's MeshMember::prepare_cache.
void MeshRankSim::prepare_cache(const Envelope& envelope) {
  const Plan& plan = *envelope.plan;
  const auto bias = static_cast<float>(plan.attention_bias);
  if (plan.init_cache) {
    cache_.hard_cut();
    cache_.init(envelope.ids.cache_epoch, static_cast<std::int64_t>(envelope.ids.chunk_index) * kFramesPerChunk, bias);
  } else if (cache_.attention_bias() != bias) {
    cache_.set_attention_bias(bias);
  }
  cache_.require(plan.do_kv_recompute ? KvEvent::kRecompute : KvEvent::kAppend);
}

// The reference model's collective sequence per generator call: per layer an
// all_reduce of [2T] (q/k norms), [T·D] (attention out), [T·D] (MLP out).
void MeshRankSim::generator_collectives(int tokens) {
  const auto norm = static_cast<std::size_t>(2 * tokens);
  const auto full = static_cast<std::size_t>(tokens * scenario_.dim());
  scratch_.resize(std::max(norm, full));
  for (int layer = 0; layer < kLayers; ++layer) {
    for (const std::size_t count : {norm, full, full}) {
      comm_->all_reduce(kGroupMesh, scratch_.data(), count, DType::kF32, ReduceOp::kSum, kCollectiveTimeout);
    }
  }
}

// Stops before the collectives of a call the plan does not allow (B5).
void MeshRankSim::before_generator_call(const Plan& plan, std::uint32_t observed) const {
  if (observed >= plan.expected_generator_calls) {
    throw Error(ErrorCode::kPlan, "rank " + std::to_string(rank_) + " is about to make generator call " +
                                      std::to_string(observed + 1) + " but the plan expects " +
                                      std::to_string(plan.expected_generator_calls));
  }
}

std::uint32_t MeshRankSim::run_generator(const Plan& plan, std::span<const float> context) {
  std::uint32_t observed = 0;
  comm_->set_phase(Phase::kGenerator);
  if (plan.do_kv_recompute) {
    before_generator_call(plan, observed);
    const auto frame_floats = static_cast<std::size_t>(kTokensPerFrame * scenario_.dim());
    const int frames = static_cast<int>(context.size() / frame_floats);
    if (frames < 1 || context.size() % frame_floats != 0) {
      throw Error(ErrorCode::kSchema, "recompute planned without a whole-frame context_override (no local fallback)");
    }
    generator_collectives(frames * kTokensPerFrame);
    cache_.replace_all(zero_frames(cache_.geometry(), frames));
    ++observed;
  }
  for (std::size_t step = 0; step < plan.timesteps.size(); ++step) {
    before_generator_call(plan, observed);
    cache_.require(KvEvent::kAppend);
    generator_collectives(kFramesPerChunk * kTokensPerFrame);
    ++observed;
  }
  cache_.append(zero_frames(cache_.geometry(), kFramesPerChunk));
  comm_->set_phase(Phase::kControl);
  return observed;
}

// The generator finished: the chunk-end check of the runtime
// (check_chunk_digests), gathering {ledger, input, KV-state} digests.
void MeshRankSim::on_timer(std::uint64_t) {
  const LedgerSnapshot ledger = comm_->ledger_snapshot(kGroupMesh);
  const std::uint64_t kv_digest = cache_.state_digest();
  world_.oracle().on_chunk_state(generation_, rank_, chunk_->envelope.ids.call_id, kv_digest, ledger.digest);
  const std::uint64_t words[kExchangeWords] = {ledger.digest, chunk_->input_digest, kv_digest};
  std::vector<std::uint64_t> gathered(kExchangeWords * static_cast<std::size_t>(scenario_.mesh_size));
  activity_ = Activity::kExchanging;
  exchange_started_ns_ = world_.now_ns();
  exchange_seq_ = ledger.next_seq;  // every ledger entry is one backend call, so the seqs agree
  comm_->all_gather(kGroupMesh, words, gathered.data(), kExchangeWords, DType::kI64, kCollectiveTimeout);
}

void MeshRankSim::on_collective_done(std::uint64_t seq) {
  if (activity_ != Activity::kExchanging || seq != exchange_seq_) return;  // not the exchange this rank waits in
  finish_exchange();
  activity_ = Activity::kIdle;
  wait_started_ns_ = world_.now_ns();  // the next receive's deadline starts now, as in the runtime
  if (leader()) send_result();
  chunk_.reset();
  drain_inbox();
}

void MeshRankSim::finish_exchange() {
  const CollectiveBoard::Slot& slot = *world_.board().find(generation_key(generation_, kGroupMesh), exchange_seq_);
  static constexpr const char* kFields[kExchangeWords] = {"mesh ledger digest", "input digest", "kv-state digest"};
  for (std::size_t word = 0; word < kExchangeWords; ++word) {
    std::uint64_t first = 0;
    std::memcpy(&first, slot[0]->data() + word * sizeof(std::uint64_t), sizeof first);
    std::string values;
    bool agree = true;
    for (std::size_t r = 0; r < slot.size(); ++r) {
      std::uint64_t value = 0;
      std::memcpy(&value, slot[r]->data() + word * sizeof(std::uint64_t), sizeof value);
      agree = agree && value == first;
      values += " rank " + std::to_string(r + 1) + "=" + digest_hex(value);
    }
    if (!agree) {
      throw Error(word == 0 ? ErrorCode::kLedger : ErrorCode::kDigest,
                  std::string(kFields[word]) + " differs across group 'mesh' at call_id " +
                      std::to_string(chunk_->envelope.ids.call_id) + ":" + values);
    }
  }
}

void MeshRankSim::send_result() {
  const Envelope& envelope = chunk_->envelope;
  Result result;
  result.action = Action::kInfer;
  result.ids = envelope.ids;
  result.plan_id = envelope.plan->plan_id;
  result.observed_generator_calls = chunk_->observed_calls;
  result.geometry = envelope.geometry;
  const LedgerSnapshot ledger = comm_->ledger_snapshot(kGroupMesh);
  result.digests = {cache_.state_digest(), digest_floats(chunk_->output), chunk_->input_digest, ledger.digest};
  result.kv_frames = static_cast<std::uint32_t>(cache_.frames_held());
  const std::vector<float>& output = chunk_->output;
  const auto rows = static_cast<std::int64_t>(envelope.geometry.frames) * envelope.geometry.tokens_per_frame;
  const TensorView view{kOutputKey, 0, DType::kF32, TensorShape{rows, static_cast<std::int64_t>(envelope.geometry.dim)},
                        {}, std::span(reinterpret_cast<const std::uint8_t*>(output.data()), output.size() * sizeof(float))};
  const PreparedResult prepared =
      preflight_result(result, std::span(&view, 1), sim_frame_context(scenario_, rank_, generation_));
  std::vector<Bytes> payload;
  for (const auto& span : prepared.payload()) payload.emplace_back(span.begin(), span.end());
  send(kStage0Rank, {prepared.frame().begin(), prepared.frame().end()}, std::move(payload));
}

void MeshRankSim::drain_inbox() {
  while (!terminal() && activity_ == Activity::kIdle && !inbox_.empty()) {
    Message message = std::move(inbox_.front());
    inbox_.pop_front();
    handle_frame(message);
  }
}

// The rest of the fatal path: abort the backend, and as leader tell the
// workers (B6) so they stop before their deadline.
void MeshRankSim::on_fatal() noexcept {
  if (comm_) comm_->abort();
  if (!leader()) return;
  try {
    Control control;
    control.kind = ControlKind::kError;
    control.ids = {last_call_id_, 0, sequencer_.cache_epoch()};
    control.reason = "leader rank " + std::to_string(rank_) + " failed";
    const PreparedControl prepared = preflight_control(control, sim_frame_context(scenario_, rank_, generation_));
    for (int worker = 2; worker < world_.world_size(); ++worker) {
      send(worker, {prepared.frame().begin(), prepared.frame().end()}, {});
    }
  } catch (const std::exception&) {
    // Best effort: the poison mark already stops the workers.
  }
}

}  // namespace lockstep::sim
