// The simulated world of one seed: simulated time and event queue, the
// network between ranks (with its seeded faults), the shared store and
// collective board, the oracle, and the base class of simulated ranks.
// Single-threaded: everything here runs on the thread of run_simulation().
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <queue>
#include <string>
#include <vector>

#include "lockstep/error.h"
#include "lockstep/simulator.h"
#include "sim/sim_oracle.h"
#include "sim/sim_random.h"
#include "sim/sim_scenario.h"
#include "sim/sim_seams.h"

namespace lockstep::sim {

enum class EventKind : std::uint8_t { kStart, kTick, kDeliver, kTimer, kCollectiveDone, kCrash, kPause };

struct Event {
  std::int64_t t_ns = 0;
  std::uint64_t order = 0;  // FIFO among equal times: the schedule is a total order
  EventKind kind = EventKind::kTick;
  int rank = 0;
  std::uint64_t arg = 0;  // message id, timer id or collective seq
  bool operator>(const Event& other) const {
    return t_ns != other.t_ns ? t_ns > other.t_ns : order > other.order;
  }
};

// A frame on the wire, with the tensor bytes that follow it in manifest order.
struct Message {
  int to = 0;
  std::vector<std::uint8_t> frame;
  std::vector<Bytes> payload;
  bool corrupted = false;
};

class World;

enum class RankState : std::uint8_t { kRunning, kExited, kFailed, kCrashed };

// One simulated process. Handlers run to completion (no blocking); a thrown
// lockstep::Error is the rank's fatal path: poison mark, abort, and the rank
// ends with that ErrorCode as its diagnosis.
class SimRank {
 public:
  SimRank(World& world, int rank) : world_(world), rank_(rank) {}
  virtual ~SimRank() = default;
  SimRank(const SimRank&) = delete;
  SimRank& operator=(const SimRank&) = delete;

  // Runs one event's handler; `message` is set for kDeliver.
  void dispatch(const Event& event, Message* message);
  int rank() const noexcept { return rank_; }
  RankState state() const noexcept { return state_; }
  bool terminal() const noexcept { return state_ != RankState::kRunning; }
  const std::string& failure() const noexcept { return failure_; }
  ErrorCode failure_code() const noexcept { return failure_code_; }
  std::int64_t failed_at_ns() const noexcept { return failed_at_ns_; }
  virtual std::string describe_state() const = 0;

 protected:
  virtual void on_start() = 0;
  virtual void on_tick() = 0;
  virtual void on_message(Message& message) = 0;
  virtual void on_timer(std::uint64_t timer) = 0;
  virtual void on_collective_done(std::uint64_t seq) = 0;
  // Part of the fatal path after the poison mark: abort the backend, tell
  // workers. Must not throw.
  virtual void on_fatal() noexcept = 0;

  void exit_cleanly() { state_ = RankState::kExited; }
  // Throws Error{kPeerFailure} when a peer left its poison mark (what every
  // rank's watchdog polls).
  void check_poison() const;
  void schedule_tick();

  World& world_;
  const int rank_;

 private:
  void fail(ErrorCode code, const std::string& message) noexcept;

  RankState state_ = RankState::kRunning;
  std::string failure_;
  ErrorCode failure_code_ = ErrorCode::kInternal;
  std::int64_t failed_at_ns_ = 0;
};

class World {
 public:
  World(const Scenario& scenario, bool record_schedule);

  const Scenario& scenario() const noexcept { return scenario_; }
  std::int64_t now_ns() const noexcept { return clock_.now_ns(); }
  SimStore& store() noexcept { return store_; }
  SimBackendFactory& backend_factory() noexcept { return factory_; }
  CollectiveBoard& board() noexcept { return board_; }
  const BackendStats& backend_stats() const noexcept { return backend_stats_; }
  Oracle& oracle() noexcept { return oracle_; }
  SimCounters& counters() noexcept { return counters_; }
  SimRank& rank(int r) { return *ranks_[static_cast<std::size_t>(r)]; }
  int world_size() const noexcept { return static_cast<int>(ranks_.size()); }
  void add_rank(std::unique_ptr<SimRank> rank) { ranks_.push_back(std::move(rank)); }

  void schedule(std::int64_t at_ns, EventKind kind, int rank, std::uint64_t arg = 0);
  // Puts a message on the wire from → to, applying the seed's network faults.
  void send(int from, int to, std::vector<std::uint8_t> frame, std::vector<Bytes> payload);
  // Counts a fault and, when recording, logs it with the time.
  void note_fault(SimFault fault, const std::string& detail);
  void note(const std::string& line);
  bool recording() const noexcept { return record_; }
  const std::string& schedule_text() const noexcept { return schedule_; }

  // Runs events until every rank ended or the bound passed. Returns whether
  // every rank ended.
  bool run();

 private:
  void deliver_copies(Message message, std::int64_t delay_ns);
  void dispatch(const Event& event);
  bool all_terminal() const;

  const Scenario& scenario_;
  const bool record_;
  SimClock clock_;
  SimStore store_;
  CollectiveBoard board_;
  BackendStats backend_stats_;
  SimBackendFactory factory_;
  Oracle oracle_;
  Rng net_rng_;
  SimCounters counters_;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events_;
  std::uint64_t next_order_ = 0;
  std::map<std::uint64_t, Message> in_flight_;  // by message id
  std::uint64_t next_message_id_ = 0;
  std::vector<std::unique_ptr<SimRank>> ranks_;
  std::vector<std::int64_t> paused_until_ns_;  // by rank
  std::string schedule_;
};

std::string frame_ids_text(const std::vector<std::uint8_t>& frame);

}  // namespace lockstep::sim
