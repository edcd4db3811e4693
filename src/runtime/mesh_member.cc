#include "mesh_member.h"

#include <chrono>
#include <csignal>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

#include "lockstep/digest.h"
#include "lockstep/error.h"
#include "gpu_rank.h"
#include "lockstep/tripwire.h"

namespace lockstep {
namespace {

// Every mesh rank derives every shard's expected fingerprint from the seed,
// so a shard mutated on one rank is named by the others too (H2). They are a
// pure function of (model, seed, TP size, storage), derived once per process
// — generating every shard on the CPU costs seconds at the 14B layer shape —
// and kept across generations; the loaded weights' own fingerprint, which
// they are compared with, is computed again at every handshake.
std::vector<std::uint64_t> expected_fingerprints(const ModelConfig& config, std::uint64_t seed,
                                                 int tp_size, WeightStorage storage) {
  struct Derived {
    std::string model;
    std::uint64_t seed = 0;
    int tp_size = 0;
    WeightStorage storage{};
    std::vector<std::uint64_t> fingerprints;
  };
  static std::mutex mutex;
  static Derived derived;  // one model per process: the last one asked for
  const std::lock_guard<std::mutex> lock(mutex);
  if (derived.fingerprints.empty() || derived.model != config.name || derived.seed != seed ||
      derived.tp_size != tp_size || derived.storage != storage) {
    derived = Derived{config.name, seed, tp_size, storage, {}};
    for (int tp_rank = 0; tp_rank < tp_size; ++tp_rank) {
      derived.fingerprints.push_back(weight_shard_fingerprint(config, seed, tp_rank, tp_size, storage));
    }
  }
  return derived.fingerprints;
}

// --generate-ms sets the mesh's minimum time per chunk, so stage balance can
// be chosen (E2); the reference model alone is far faster on `tiny`.
void pad_stage_time(std::chrono::steady_clock::time_point started, double minimum_ms) {
  const auto until = started + std::chrono::microseconds(static_cast<std::int64_t>(minimum_ms * 1000));
  std::this_thread::sleep_until(until);
}

// The rank's generator: the one kept from the last generation, rebound to
// this one, else a freshly loaded one (a generator that could not outlive
// its generation was released at its end).
MeshGenerator& kept_or_loaded(const RankContext& context, std::unique_ptr<MeshGenerator>& generator) {
  if (generator != nullptr) {
    generator->rebind(context);
  } else {
    generator = context.gpu != nullptr ? context.gpu->make_generator(context) : make_cpu_generator(context);
  }
  return *generator;
}

}  // namespace

MeshMember::MeshMember(const RankContext& context, std::unique_ptr<MeshGenerator>& generator)
    : context_(context),
      config_(model_config_from_name(context.config.model)),
      generator_(kept_or_loaded(context, generator)),
      place_(chunk_tensor_place(context)),
      x_(place_.memory(), static_cast<std::size_t>(config_.tokens_per_chunk()) * config_.dim) {
  std::uint64_t loaded = generator_.weight_fingerprint();
  if (context.fires(FaultId::kH2, 0, context.config.nproc - 1, 0)) loaded ^= 1;  // a flipped bit
  check_weight_fingerprints(context.comm, kGroupMesh, loaded,
                            expected_fingerprints(config_, context.config.seed, context.config.mesh_size(),
                                                  generator_.weight_storage()),
                            std::chrono::milliseconds(context.config.startup_deadline_ms));
}

void MeshMember::check_geometry(const Envelope& envelope, std::size_t latents_floats,
                                std::size_t context_floats) const {
  const Geometry& geometry = envelope.geometry;
  const auto expected = static_cast<std::size_t>(config_.tokens_per_chunk()) * config_.dim;
  const bool shape_ok = geometry.dim == static_cast<std::uint32_t>(config_.dim) &&
                        geometry.tokens_per_frame == static_cast<std::uint32_t>(config_.tokens_per_frame) &&
                        geometry.frames == static_cast<std::uint32_t>(config_.frames_per_chunk);
  if (!shape_ok || latents_floats != expected) {
    throw Error(ErrorCode::kSchema,
                "chunk " + std::to_string(envelope.ids.chunk_index) + " on rank " +
                    std::to_string(context_.rank) + ": envelope geometry " + std::to_string(geometry.frames) +
                    "x" + std::to_string(geometry.tokens_per_frame) + "x" + std::to_string(geometry.dim) +
                    " with " + std::to_string(latents_floats) + " latent floats does not match model '" +
                    config_.name + "' (" + std::to_string(expected) + " floats); refusing before forward");
  }
  if (envelope.plan->do_kv_recompute && context_floats == 0) {
    throw Error(ErrorCode::kSchema, "chunk " + std::to_string(envelope.ids.chunk_index) +
                                        ": recompute planned without context_override (no local fallback)");
  }
}

// Lifecycle events before the first collective of the chunk (F3).
void MeshMember::prepare_cache(const Envelope& envelope) {
  const Plan& plan = *envelope.plan;
  const auto bias = static_cast<float>(plan.attention_bias);
  if (plan.init_cache) {
    generator_.kv_hard_cut();
    generator_.kv_init(envelope.ids.cache_epoch,
                        static_cast<std::int64_t>(envelope.ids.chunk_index) * config_.frames_per_chunk, bias);
  } else if (generator_.kv().attention_bias() != bias) {
    generator_.kv_set_attention_bias(bias);
  }
  generator_.kv().require(plan.do_kv_recompute ? KvEvent::kRecompute : KvEvent::kAppend);
}

void MeshMember::before_generator_call(const Plan& plan, std::uint32_t observed) const {
  if (observed >= plan.expected_generator_calls) {
    throw Error(ErrorCode::kPlan, "rank " + std::to_string(context_.rank) + " is about to make generator call " +
                                      std::to_string(observed + 1) + " but the plan expects " +
                                      std::to_string(plan.expected_generator_calls) +
                                      "; stopping before its collectives");
  }
}

void MeshMember::run_generator(const Envelope& envelope, std::span<const float> context_override) {
  const Plan& plan = *envelope.plan;
  const std::uint64_t calls_before = generator_.generator_calls();
  const auto observed = [&] { return static_cast<std::uint32_t>(generator_.generator_calls() - calls_before); };
  context_.comm.set_phase(Phase::kGenerator);
  context_.recorder.set_phase("generator");
  if (plan.do_kv_recompute) {
    before_generator_call(plan, observed());
    generator_.recompute(context_override);
  }
  const bool extra_call = context_.fires(FaultId::kB5, static_cast<std::int64_t>(envelope.ids.chunk_index),
                                         context_.config.nproc - 1, 2);
  const std::size_t steps = plan.timesteps.size() + (extra_call ? 1 : 0);
  for (std::size_t step = 0; step < steps; ++step) {
    before_generator_call(plan, observed());
    if (step == 0) context_.recorder.commit("first_generator_collective", kGroupMesh);
    generator_.denoise(static_cast<float>(plan.timesteps[step % plan.timesteps.size()]));
  }
  generator_.commit_chunk();
  context_.comm.set_phase(Phase::kControl);
  context_.recorder.set_phase("control");
}

// Faults that act inside one chunk on one mesh rank (SPEC §7).
void MeshMember::inject_chunk_faults(const Envelope& envelope, std::span<float> x) {
  const auto chunk = static_cast<std::int64_t>(envelope.ids.chunk_index);
  const int last = context_.config.nproc - 1;
  if (context_.fires(FaultId::kH1, chunk, last, 2)) place_.add(x, 0, 1e-3f);
  if (context_.fires(FaultId::kF2, chunk, last, 2)) {  // an out-of-band reset nobody planned
    const float bias = generator_.kv().attention_bias();
    generator_.kv_hard_cut();
    generator_.kv_init(envelope.ids.cache_epoch, 0, bias);
  }
  if (context_.fires(FaultId::kF3, chunk, last, 2)) {
    generator_.kv_init(envelope.ids.cache_epoch, 0, 0.0f);  // init on a live cache: illegal
  }
  if (context_.fires(FaultId::kB2, chunk, last, 2)) {
    context_.comm.set_phase(Phase::kGenerator);
    context_.comm.barrier("world", context_.deadline());  // world inside the generator phase
  }
  if (context_.fires(FaultId::kC4, chunk, last, 2)) raise(SIGSTOP);
  if (context_.fires(FaultId::kC5, chunk, last, 2)) {
    throw Error(ErrorCode::kInternal, "injected C5: failing on a rank whose backend abort hangs");
  }
}

ChunkOutcome MeshMember::run_chunk(const Envelope& envelope, std::span<const float> latents,
                                   std::span<const float> context_override) {
  const auto started = std::chrono::steady_clock::now();
  std::size_t latents_floats = latents.size();
  if (context_.fires(FaultId::kG2, static_cast<std::int64_t>(envelope.ids.chunk_index),
                     context_.config.nproc - 1, 2)) {
    latents_floats += static_cast<std::size_t>(config_.dim);  // a skewed shape on one rank
  }
  check_geometry(envelope, latents_floats, context_override.size());
  const std::span<float> x = x_.values();
  place_.memory().copy(x.data(), latents.data(), x.size_bytes());
  inject_chunk_faults(envelope, x);
  ChunkOutcome outcome;
  outcome.output = x;
  outcome.input_digest = digest_combine(place_.digest(x), place_.digest(context_override));
  prepare_cache(envelope);
  generator_.load(x);
  const std::uint64_t calls_before = generator_.generator_calls();
  run_generator(envelope, context_override);
  generator_.read_output(x);
  outcome.observed_generator_calls = static_cast<std::uint32_t>(generator_.generator_calls() - calls_before);
  outcome.kv_state_digest = generator_.kv().state_digest();
  outcome.kv_frames = static_cast<std::uint32_t>(generator_.kv().frames_held());
  pad_stage_time(started, context_.config.generate_ms);
  check_chunk_digests(context_.comm, kGroupMesh, outcome.input_digest, outcome.kv_state_digest, context_.deadline());
  outcome.ledger_digest = context_.comm.ledger_snapshot(kGroupMesh).digest;
  outcome.output_digest = place_.digest(x);
  const auto elapsed = std::chrono::steady_clock::now() - started;
  outcome.stage1_us = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count());
  return outcome;
}

}  // namespace lockstep
