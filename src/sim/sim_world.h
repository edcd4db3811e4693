// The simulated world of one seed: simulated time and event queue, the
// network between ranks (with its seeded faults), the shared store and
// collective board, the oracle, and the base class of simulated ranks.
// Single-threaded: everything here runs on the thread of run_simulation().
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <queue>
#include <string>
#include <vector>

#include "lockstep/error.h"
#include "lockstep/recovery.h"
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
  // The generation whose process of `rank` the event is for. Deliveries,
  // crashes and pauses go to whatever process holds the rank when they
  // happen (the network and the operator do not know generations).
  std::uint32_t generation = 0;
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
  std::uint32_t generation = 0;  // the sender's: ground truth for the oracle, never read by the protocol
};

class World;

enum class RankState : std::uint8_t { kRunning, kExited, kFailed, kCrashed };

// One simulated process of one generation. Handlers run to completion (no
// blocking); a thrown lockstep::Error is the rank's fatal path: poison mark,
// abort, and the rank ends with that ErrorCode as its diagnosis. Under
// OnFault::kRestart the World then starts the next generation (a new object
// per rank: a survivor's kept process and a restarted one run the same path).
class SimRank {
 public:
  SimRank(World& world, int rank, std::uint32_t generation) : world_(world), rank_(rank), generation_(generation) {}
  virtual ~SimRank() = default;
  SimRank(const SimRank&) = delete;
  SimRank& operator=(const SimRank&) = delete;

  // Runs one event's handler; `message` is set for kDeliver.
  void dispatch(const Event& event, Message* message);
  int rank() const noexcept { return rank_; }
  std::uint32_t generation() const noexcept { return generation_; }
  RankState state() const noexcept { return state_; }
  bool terminal() const noexcept { return state_ != RankState::kRunning; }
  const std::string& failure() const noexcept { return failure_; }
  ErrorCode failure_code() const noexcept { return failure_code_; }
  std::int64_t failed_at_ns() const noexcept { return failed_at_ns_; }
  virtual std::string describe_state() const = 0;
  // A stopped process (SIGSTOP): its events wait until then.
  std::int64_t paused_until_ns() const noexcept { return paused_until_ns_; }
  void pause_until(std::int64_t t_ns) noexcept { paused_until_ns_ = t_ns; }

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
  void schedule_timer(std::int64_t at_ns, std::uint64_t timer);
  // Puts a frame (and its payload) on the wire to rank `to`.
  void send(int to, const std::vector<std::uint8_t>& frame, std::vector<Bytes> payload);

  World& world_;
  const int rank_;
  const std::uint32_t generation_;

 private:
  void fail(ErrorCode code, const std::string& message) noexcept;
  // A frame of another generation (a straggler's, delayed or woken up) is
  // refused by its header's token and dropped where it arrives; the
  // runtime's rings and pairs are per generation, so there it cannot arrive.
  bool drop_if_other_generation(const Message& message);

  RankState state_ = RankState::kRunning;
  std::string failure_;
  ErrorCode failure_code_ = ErrorCode::kInternal;
  std::int64_t failed_at_ns_ = 0;
  std::int64_t paused_until_ns_ = 0;
  bool started_ = false;
};

// Makes the process of `rank` in `generation` (Stage 0 or a mesh rank).
using RankFactory = std::function<std::unique_ptr<SimRank>(World& world, int rank, std::uint32_t generation)>;

class World {
 public:
  World(const Scenario& scenario, bool record_schedule, RankFactory make_rank);

  const Scenario& scenario() const noexcept { return scenario_; }
  std::int64_t now_ns() const noexcept { return clock_.now_ns(); }
  SimStore& store() noexcept { return store_; }
  // Connects the groups of one generation (its own board slots, as the
  // runtime's pairs and rings are per generation).
  SimBackendFactory& backend_factory(std::uint32_t generation);
  CollectiveBoard& board() noexcept { return board_; }
  const BackendStats& backend_stats() const noexcept { return backend_stats_; }
  Oracle& oracle() noexcept { return oracle_; }
  SimCounters& counters() noexcept { return counters_; }
  // The current generation's process of rank r.
  SimRank& rank(int r) { return *generations_.back()[static_cast<std::size_t>(r)]; }
  std::uint32_t generation() const noexcept { return static_cast<std::uint32_t>(generations_.size() - 1); }
  int world_size() const noexcept { return scenario_.world_size(); }

  void schedule(std::int64_t at_ns, EventKind kind, int rank, std::uint32_t generation, std::uint64_t arg = 0);
  // Puts a message on the wire from → to, applying the seed's network faults.
  void send(const SimRank& from, int to, std::vector<std::uint8_t> frame, std::vector<Bytes> payload);
  // Counts a fault and, when recording, logs it with the time.
  void note_fault(SimFault fault, const std::string& detail);
  void note(const std::string& line);
  bool recording() const noexcept { return record_; }
  const std::string& schedule_text() const noexcept { return schedule_; }

  // Runs events until every process of every generation ended or the bound
  // passed; under OnFault::kRestart a generation that ended with curable
  // faults is followed by the next (the launcher's part). Returns whether
  // every process ended.
  bool run();

 private:
  void start_generation(std::int64_t at_ns);
  // Every process of the current generation ended — or, after a fault, the
  // rest are stopped (stragglers: replaced, and left running as they are).
  bool generation_ended() const;
  // OnFault::kRestart: every fault curable and the budget admits another
  // restart. Then bumps the stream's epoch and the current generation (the
  // job-level keys of recovery.h) and starts the next generation.
  bool begin_next_generation();
  void deliver_copies(Message message, std::int64_t delay_ns);
  void dispatch(const Event& event);
  bool all_terminal() const;

  const Scenario& scenario_;
  const bool record_;
  const RankFactory make_rank_;
  SimClock clock_;
  SimStore store_;
  CollectiveBoard board_;
  BackendStats backend_stats_;
  std::map<std::uint32_t, std::unique_ptr<SimBackendFactory>> factories_;  // by generation
  Oracle oracle_;
  Rng net_rng_;
  SimCounters counters_;
  RestartBudget restart_budget_;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events_;
  std::uint64_t next_order_ = 0;
  std::map<std::uint64_t, Message> in_flight_;  // by message id
  std::uint64_t next_message_id_ = 0;
  std::vector<std::vector<std::unique_ptr<SimRank>>> generations_;  // every process ever started
  std::string schedule_;
};

std::string frame_ids_text(const std::vector<std::uint8_t>& frame);

}  // namespace lockstep::sim
