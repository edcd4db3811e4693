#include "sim/sim_world.h"

#include <cstdio>
#include <cstring>

#include "lockstep/assert.h"
#include "lockstep/frame.h"
#include "lockstep/group_table.h"
#include "sim/sim_job.h"

namespace lockstep::sim {
namespace {

constexpr std::uint64_t kNetworkStream = 0x4E37F00Dull;
constexpr std::int64_t kReorderJitterNsMax = 5 * kNsPerMs;
constexpr std::int64_t kDuplicateLagNsMax = 2 * kNsPerMs;

std::string poison_key(int rank) { return "poison/" + std::to_string(rank); }

// A rank's poison mark in its generation's keys, as its fatal path (or the
// launcher, for a rank it saw die) raises it.
void raise_poison_mark(SimStore& store, std::uint32_t generation, int rank, std::string_view code) {
  const std::string mark =
      R"({"rank": )" + std::to_string(rank) + R"(, "code": ")" + std::string(code) + R"("})";
  store.set(generation_key(generation, poison_key(rank)), Bytes(mark.begin(), mark.end()));
}

bool process_failed(const SimRank& rank) {
  return rank.state() == RankState::kFailed || rank.state() == RankState::kCrashed;
}

template <typename T>
T read_le(const std::vector<std::uint8_t>& frame, std::size_t offset) {
  T value{};
  if (frame.size() >= offset + sizeof(T)) std::memcpy(&value, frame.data() + offset, sizeof(T));
  return value;
}

}  // namespace

// For the fault log only: the ids as the (possibly corrupted) header says.
std::string frame_ids_text(const std::vector<std::uint8_t>& frame) {
  const auto kind = read_le<std::uint8_t>(frame, frame_layout::kKind);
  const auto action = read_le<std::uint8_t>(frame, frame_layout::kAction);
  const bool known = kind >= 1 && kind <= kMessageKindMaxValue && action >= 1 && action <= kActionMaxValue;
  const std::string what = known ? std::string(message_kind_name(static_cast<MessageKind>(kind))) + " " +
                                       std::string(action_name(static_cast<Action>(action)))
                                 : "frame";
  return what + " call_id " + std::to_string(read_le<std::uint64_t>(frame, frame_layout::kCallId)) + " epoch " +
         std::to_string(read_le<std::uint64_t>(frame, frame_layout::kCacheEpoch));
}

void SimRank::dispatch(const Event& event, Message* message) {
  try {
    switch (event.kind) {
      case EventKind::kStart:
        started_ = true;
        on_start();
        break;
      case EventKind::kTick: on_tick(); break;
      case EventKind::kDeliver:
        // Nothing listens before the process started (its channel is not open yet).
        if (started_ && !drop_if_other_generation(*message)) on_message(*message);
        break;
      case EventKind::kTimer: on_timer(event.arg); break;
      case EventKind::kCollectiveDone: on_collective_done(event.arg); break;
      case EventKind::kCrash: state_ = RankState::kCrashed; break;
      case EventKind::kPause: break;  // handled by the world
    }
  } catch (const Error& error) {
    fail(error.code(), error.what());
  } catch (const std::exception& error) {
    fail(ErrorCode::kInternal, std::string(error_code_name(ErrorCode::kInternal)) + ": " + error.what());
  }
}

void SimRank::fail(ErrorCode code, const std::string& message) noexcept {
  state_ = RankState::kFailed;
  failure_code_ = code;
  failed_at_ns_ = world_.now_ns();
  failure_ = "rank " + std::to_string(rank_) + ": " + message;  // Error::what() starts with the code name
  raise_poison_mark(world_.store(), generation_, rank_, error_code_name(code));
  on_fatal();
  if (world_.recording()) world_.note("fatal " + failure_ + " (generation " + std::to_string(generation_) + ")");
}

bool SimRank::drop_if_other_generation(const Message& message) {
  if (message.frame.size() < kHeaderBytes) return false;  // the decoder reports a short frame
  try {
    decode_header(std::span<const std::uint8_t, kHeaderBytes>(message.frame.data(), kHeaderBytes),
                  sim_frame_expectations(world_.scenario(), generation_));
  } catch (const Error& error) {
    if (error.code() != ErrorCode::kStaleWork) return false;  // the receiver's own decode reports it
    ++world_.counters().stale_generation_drops;
    if (world_.recording()) world_.note("rank " + std::to_string(rank_) + " dropped: " + error.what());
    return true;
  }
  return false;
}

void SimRank::check_poison() const {
  for (int peer = 0; peer < world_.world_size(); ++peer) {
    if (peer != rank_ && world_.store().check({generation_key(generation_, poison_key(peer))})) {
      throw Error(ErrorCode::kPeerFailure, "rank " + std::to_string(peer) + " left its poison mark in the store");
    }
  }
}

void SimRank::schedule_tick() { world_.schedule(world_.now_ns() + kTickNs, EventKind::kTick, rank_, generation_); }

void SimRank::schedule_timer(std::int64_t at_ns, std::uint64_t timer) {
  world_.schedule(at_ns, EventKind::kTimer, rank_, generation_, timer);
}

void SimRank::send(int to, const std::vector<std::uint8_t>& frame, std::vector<Bytes> payload) {
  world_.send(*this, to, frame, std::move(payload));
}

World::World(const Scenario& scenario, bool record_schedule, RankFactory make_rank)
    : scenario_(scenario),
      record_(record_schedule),
      make_rank_(std::move(make_rank)),
      oracle_(scenario.mesh_size),
      net_rng_(scenario.seed ^ kNetworkStream),
      restart_budget_(kSimRestartsMax, scenario.bound_ns()) {
  // Only the mesh gathers in the simulated pp job; its members are ranks 1..N.
  board_.set_completion_hook([this](const std::string& group, std::uint64_t seq) {
    const std::uint32_t generation = key_generation(group);
    LOCKSTEP_ASSERT(group == generation_key(generation, kGroupMesh));
    for (int r = 1; r < world_size(); ++r) {
      schedule(now_ns() + kLinkLatencyNs, EventKind::kCollectiveDone, r, generation, seq);
    }
  });
  if (record_) schedule_ = scenario.describe();
}

SimBackendFactory& World::backend_factory(std::uint32_t generation) {
  auto& factory = factories_[generation];
  if (!factory) factory = std::make_unique<SimBackendFactory>(board_, backend_stats_, generation);
  return *factory;
}

void World::schedule(std::int64_t at_ns, EventKind kind, int rank, std::uint32_t generation, std::uint64_t arg) {
  events_.push(Event{at_ns, next_order_++, kind, rank, generation, arg});
}

void World::note(const std::string& line) {
  char stamp[32];
  std::snprintf(stamp, sizeof stamp, "t=%9.3f ms  ", static_cast<double>(now_ns()) / kNsPerMs);
  schedule_ += stamp + line + "\n";
}

void World::note_fault(SimFault fault, const std::string& detail) {
  ++counters_.faults[static_cast<int>(fault)];
  if (record_) note(std::string(sim_fault_name(fault)) + ": " + detail);
}

void World::send(const SimRank& sender, int to, std::vector<std::uint8_t> frame, std::vector<Bytes> payload) {
  const int from = sender.rank();
  Message message{to, std::move(frame), std::move(payload), false, sender.generation()};
  const auto link = [&] {
    return record_ ? frame_ids_text(message.frame) + " " + std::to_string(from) + "->" + std::to_string(to) : "";
  };
  if (net_rng_.chance(scenario_.drop_p)) {
    note_fault(SimFault::kDrop, link());
    return;
  }
  if (!message.frame.empty() && net_rng_.chance(scenario_.corrupt_p)) {
    const auto at = static_cast<std::size_t>(net_rng_.between(0, static_cast<std::int64_t>(message.frame.size()) - 1));
    message.frame[at] ^= static_cast<std::uint8_t>(1u << net_rng_.between(0, 7));
    message.corrupted = true;
    note_fault(SimFault::kCorrupt, link() + " byte " + std::to_string(at));
  }
  std::int64_t delay_ns = kLinkLatencyNs;
  if (net_rng_.chance(scenario_.delay_p)) {
    delay_ns += net_rng_.between(kDeadlineNs / 4, kDelayNsMax);
    note_fault(SimFault::kDelay, link() + " by " + std::to_string(delay_ns / 1000) + " us");
  }
  if (net_rng_.chance(scenario_.reorder_p)) {
    delay_ns += net_rng_.between(kLinkLatencyNs, kReorderJitterNsMax);
    note_fault(SimFault::kReorder, link() + " held " + std::to_string(delay_ns / 1000) + " us");
  }
  if (net_rng_.chance(scenario_.duplicate_p)) {
    note_fault(SimFault::kDuplicate, link());
    deliver_copies(message, delay_ns + net_rng_.between(0, kDuplicateLagNsMax));
  }
  deliver_copies(std::move(message), delay_ns);
}

void World::deliver_copies(Message message, std::int64_t delay_ns) {
  const std::uint64_t id = next_message_id_++;
  const int to = message.to;
  in_flight_.emplace(id, std::move(message));
  schedule(now_ns() + delay_ns, EventKind::kDeliver, to, generation(), id);
}

bool World::all_terminal() const {
  for (const auto& processes : generations_) {
    for (const auto& process : processes) {
      if (!process->terminal()) return false;
    }
  }
  return true;
}

void World::dispatch(const Event& event) {
  // The network, kill -9 and SIGSTOP reach whichever process holds the rank now.
  const bool to_current =
      event.kind == EventKind::kDeliver || event.kind == EventKind::kCrash || event.kind == EventKind::kPause;
  SimRank& target = to_current ? rank(event.rank) : *generations_.at(event.generation)[static_cast<std::size_t>(event.rank)];
  auto node = event.kind == EventKind::kDeliver ? in_flight_.extract(event.arg) : decltype(in_flight_)::node_type{};
  if (target.terminal()) return;
  if (event.kind == EventKind::kPause) {
    target.pause_until(now_ns() + scenario_.pause_ns);
    note_fault(SimFault::kPause, "rank " + std::to_string(event.rank) + " for " +
                                     std::to_string(scenario_.pause_ns / 1000) + " us");
    return;
  }
  const std::int64_t resume_ns = target.paused_until_ns();
  if (resume_ns > now_ns()) {  // a stopped process: everything waits, in order
    if (node) in_flight_.insert(std::move(node));
    schedule(resume_ns, event.kind, event.rank, target.generation(), event.arg);
    return;
  }
  if (event.kind == EventKind::kCrash) {
    note_fault(SimFault::kCrash, "rank " + std::to_string(event.rank) + " killed (" + target.describe_state() + ")");
  }
  target.dispatch(event, node ? &node.mapped() : nullptr);
  // The launcher sees a killed rank's exit; under kRestart it marks the rank
  // poisoned for its peers at once instead of leaving them to their deadlines.
  if (event.kind == EventKind::kCrash && scenario_.on_fault == OnFault::kRestart) {
    raise_poison_mark(store_, target.generation(), event.rank, "crash");
  }
}

void World::start_generation(std::int64_t at_ns) {
  const auto generation = static_cast<std::uint32_t>(generations_.size());
  generations_.emplace_back();
  for (int r = 0; r < world_size(); ++r) {
    generations_.back().push_back(make_rank_(*this, r, generation));
    schedule(at_ns, EventKind::kStart, r, generation);
  }
}

bool World::generation_ended() const {
  bool faulted = false;
  for (const auto& process : generations_.back()) faulted = faulted || process_failed(*process);
  for (const auto& process : generations_.back()) {
    const bool straggler = faulted && process->paused_until_ns() > now_ns();
    if (!process->terminal() && !straggler) return false;
  }
  return true;
}

bool World::begin_next_generation() {
  if (scenario_.on_fault != OnFault::kRestart) return false;
  std::string cause;
  bool replaced = false;
  for (const auto& process : generations_.back()) {
    if (process->state() == RankState::kFailed && !restart_can_cure(process->failure_code())) return false;
    const bool gone = process->state() == RankState::kCrashed || !process->terminal();  // crashed, or a straggler
    replaced = replaced || gone;
    if (process_failed(*process) || gone) {
      cause += (cause.empty() ? "" : "; ") +
               (process->state() == RankState::kFailed ? process->failure()
                : process->state() == RankState::kCrashed ? "rank " + std::to_string(process->rank()) + " crashed"
                                                           : "rank " + std::to_string(process->rank()) + " stopped");
    }
  }
  if (cause.empty() || !restart_budget_.admit(now_ns())) return false;
  const std::uint32_t next = generation() + 1;
  begin_generation(store_, next);
  ++counters_.recoveries;
  if (record_) note("recovery: generation " + std::to_string(next) + " after " + cause);
  start_generation(now_ns() + (replaced ? kRestartNs : kRejoinNs));
  return true;
}

bool World::run() {
  start_generation(0);
  if (scenario_.crash_rank >= 0) schedule(scenario_.crash_at_ns, EventKind::kCrash, scenario_.crash_rank, 0);
  if (scenario_.pause_rank >= 0) schedule(scenario_.pause_at_ns, EventKind::kPause, scenario_.pause_rank, 0);
  const std::int64_t bound_ns = scenario_.bound_ns();
  bool job_over = false;
  for (;;) {
    if (!job_over && generation_ended()) job_over = !begin_next_generation();
    if (events_.empty() || all_terminal()) break;
    const Event event = events_.top();
    if (event.t_ns > bound_ns) break;
    events_.pop();
    clock_.advance_to(event.t_ns);
    ++counters_.events;
    dispatch(event);
  }
  return all_terminal();
}

}  // namespace lockstep::sim
