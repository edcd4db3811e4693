// Stage 0 of the simulated job, event-driven: the same steps as
// src/runtime/stage0.cc's comm and decode threads — call_id assignment,
// preflight_envelope, heartbeats, ResultAcceptance (expect / offer /
// begin_epoch with drain), decode and emit — one event at a time.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <string>

#include "lockstep/acceptance.h"
#include "lockstep/recovery.h"
#include "lockstep/result.h"
#include "sim/sim_world.h"

namespace lockstep::sim {

class Stage0Sim final : public SimRank {
 public:
  // Starts from the job's stream position (recovery.h): chunk 0 in epoch 0
  // for the first generation, after the last emitted chunk under a fresh
  // epoch for every later one — a surviving and a replaced Stage 0 alike.
  Stage0Sim(World& world, std::uint32_t generation);
  std::string describe_state() const override;
  const AcceptanceCounters& acceptance_counters() const { return acceptance_.rule().counters(); }
  std::uint64_t stale_at_decode() const noexcept { return stale_at_decode_; }

 protected:
  void on_start() override;
  void on_tick() override;
  void on_message(Message& message) override;
  void on_timer(std::uint64_t decode_flushes) override;
  void on_collective_done(std::uint64_t seq) override;
  void on_fatal() noexcept override {}  // Stage 0 holds no mesh backend: its poison mark is the whole signal

 private:
  struct Decoded {
    Result result;
    std::uint64_t output_digest = 0;
  };

  void try_send();
  void begin_hard_cut();
  void send_infer();
  void send_control(Action action);
  void accept(Decoded decoded);
  void note_verdict(const AcceptanceCounters& before, std::uint64_t call_id, std::uint64_t result_epoch);
  void start_decode();
  void emit(const Decoded& item);
  void maybe_finish();
  std::size_t outstanding() const { return acceptance_.rule().awaited() + decode_queue_.size(); }

  Stage0Sim(World& world, std::uint32_t generation, const StreamPosition& start);

  const Scenario& scenario_;
  ResultAcceptance<Decoded> acceptance_;
  std::uint64_t next_call_id_;
  std::uint64_t next_chunk_;
  std::uint64_t next_to_emit_;  // the stream position's chunk
  std::uint64_t epoch_;
  int chunk_in_epoch_ = 0;
  std::int64_t last_send_ns_ = 0;
  std::int64_t last_progress_ns_ = 0;
  bool draining_ = false;
  std::int64_t drain_started_ns_ = 0;
  std::map<std::uint64_t, std::uint32_t> expected_calls_;  // by call_id, until its result arrives
  std::deque<Decoded> decode_queue_;  // D_out and the item being decoded (front)
  bool decoding_ = false;
  std::uint64_t decode_flushes_ = 0;  // bumped by a flush so a stale decode timer is ignored
  std::uint64_t stale_at_decode_ = 0;
};

}  // namespace lockstep::sim
