// A mesh rank of the simulated job (the leader is mesh group rank 0, global
// rank 1), event-driven: the same steps as src/runtime/mesh_loop.cc and
// mesh_member.cc — decode (real checksums), EnvelopeSequencer admission,
// forwarding to workers, payload broadcast and generator collectives through
// a real guarded Communicator over the simulated backend, KV-cache lifecycle
// per plan, the chunk-end digest exchange, and the result preflight.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lockstep/acceptance.h"
#include "lockstep/communicator.h"
#include "lockstep/envelope.h"
#include "lockstep/kv_cache.h"
#include "sim/sim_world.h"

namespace lockstep::sim {

class MeshRankSim final : public SimRank {
 public:
  // Starts from the job's stream position, as Stage 0 does (sim_stage0.h).
  MeshRankSim(World& world, int rank, std::uint32_t generation);
  std::string describe_state() const override;
  std::uint64_t duplicate_drops() const noexcept { return sequencer_.duplicate_drops(); }

 protected:
  void on_start() override;
  void on_tick() override;
  void on_message(Message& message) override;
  void on_timer(std::uint64_t timer) override;
  void on_collective_done(std::uint64_t seq) override;
  void on_fatal() noexcept override;

 private:
  enum class Activity : std::uint8_t { kIdle, kComputing, kExchanging };
  struct Chunk {
    Envelope envelope;
    std::vector<float> output;
    std::uint64_t input_digest = 0;
    std::uint32_t observed_calls = 0;
  };

  bool leader() const noexcept { return rank_ == 1; }
  void handle_frame(Message& message);
  void forward(const Message& message);
  void start_chunk(const DecodedEnvelope& decoded, const std::vector<Bytes>& payload);
  void prepare_cache(const Envelope& envelope);
  void before_generator_call(const Plan& plan, std::uint32_t observed) const;
  // Returns the generator calls made.
  std::uint32_t run_generator(const Plan& plan, std::span<const float> context);
  void generator_collectives(int tokens);
  void finish_exchange();
  void send_result();
  void drain_inbox();

  const Scenario& scenario_;
  std::unique_ptr<Communicator> comm_;
  EnvelopeSequencer sequencer_;
  KvCache cache_;
  Activity activity_ = Activity::kIdle;
  std::deque<Message> inbox_;  // frames that arrived while busy (the channel buffers them)
  std::int64_t wait_started_ns_ = 0;  // last frame handled, or end of the last chunk
  std::int64_t exchange_started_ns_ = 0;
  std::uint64_t exchange_seq_ = 0;
  std::optional<Chunk> chunk_;
  std::uint64_t last_call_id_ = 0;  // for the ERROR broadcast
  std::vector<float> scratch_;      // collective buffers (values unused by the sim model)
};

}  // namespace lockstep::sim
