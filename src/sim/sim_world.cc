#include "sim/sim_world.h"

#include <cstdio>
#include <cstring>

#include "lockstep/assert.h"
#include "lockstep/frame.h"
#include "lockstep/group_table.h"

namespace lockstep::sim {
namespace {

constexpr std::uint64_t kNetworkStream = 0x4E37F00Dull;
constexpr std::int64_t kReorderJitterNsMax = 5 * kNsPerMs;
constexpr std::int64_t kDuplicateLagNsMax = 2 * kNsPerMs;

std::string poison_key(int rank) { return "poison/" + std::to_string(rank); }

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
      case EventKind::kStart: on_start(); break;
      case EventKind::kTick: on_tick(); break;
      case EventKind::kDeliver: on_message(*message); break;
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
  const std::string mark = R"({"rank": )" + std::to_string(rank_) + R"(, "code": ")" +
                           std::string(error_code_name(code)) + R"("})";
  world_.store().set(poison_key(rank_), Bytes(mark.begin(), mark.end()));
  on_fatal();
  if (world_.recording()) world_.note("fatal " + failure_);
}

void SimRank::check_poison() const {
  for (int peer = 0; peer < world_.world_size(); ++peer) {
    if (peer != rank_ && world_.store().check({poison_key(peer)})) {
      throw Error(ErrorCode::kPeerFailure, "rank " + std::to_string(peer) + " left its poison mark in the store");
    }
  }
}

void SimRank::schedule_tick() { world_.schedule(world_.now_ns() + kTickNs, EventKind::kTick, rank_); }

World::World(const Scenario& scenario, bool record_schedule)
    : scenario_(scenario),
      record_(record_schedule),
      factory_(board_, backend_stats_),
      oracle_(scenario.mesh_size),
      net_rng_(scenario.seed ^ kNetworkStream) {
  // Only the mesh gathers in the simulated pp job; its members are ranks 1..N.
  board_.set_completion_hook([this](const std::string& group, std::uint64_t seq) {
    LOCKSTEP_ASSERT(group == kGroupMesh);
    for (int r = 1; r < world_size(); ++r) schedule(now_ns() + kLinkLatencyNs, EventKind::kCollectiveDone, r, seq);
  });
  if (record_) schedule_ = scenario.describe();
}

void World::schedule(std::int64_t at_ns, EventKind kind, int rank, std::uint64_t arg) {
  events_.push(Event{at_ns, next_order_++, kind, rank, arg});
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

void World::send(int from, int to, std::vector<std::uint8_t> frame, std::vector<Bytes> payload) {
  Message message{to, std::move(frame), std::move(payload), false};
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
  schedule(now_ns() + delay_ns, EventKind::kDeliver, to, id);
}

bool World::all_terminal() const {
  for (const auto& rank : ranks_) {
    if (!rank->terminal()) return false;
  }
  return true;
}

void World::dispatch(const Event& event) {
  SimRank& target = rank(event.rank);
  auto node = event.kind == EventKind::kDeliver ? in_flight_.extract(event.arg) : decltype(in_flight_)::node_type{};
  if (target.terminal()) return;
  if (event.kind == EventKind::kPause) {
    paused_until_ns_[event.rank] = now_ns() + scenario_.pause_ns;
    note_fault(SimFault::kPause, "rank " + std::to_string(event.rank) + " for " +
                                     std::to_string(scenario_.pause_ns / 1000) + " us");
    return;
  }
  const std::int64_t resume_ns = paused_until_ns_[event.rank];
  if (resume_ns > now_ns()) {  // a stopped process: everything waits, in order
    if (node) in_flight_.insert(std::move(node));
    schedule(resume_ns, event.kind, event.rank, event.arg);
    return;
  }
  if (event.kind == EventKind::kCrash) {
    note_fault(SimFault::kCrash, "rank " + std::to_string(event.rank) + " killed (" + target.describe_state() + ")");
  }
  target.dispatch(event, node ? &node.mapped() : nullptr);
}

bool World::run() {
  paused_until_ns_.assign(ranks_.size(), 0);
  for (int r = 0; r < world_size(); ++r) schedule(0, EventKind::kStart, r);
  if (scenario_.crash_rank >= 0) schedule(scenario_.crash_at_ns, EventKind::kCrash, scenario_.crash_rank);
  if (scenario_.pause_rank >= 0) schedule(scenario_.pause_at_ns, EventKind::kPause, scenario_.pause_rank);
  const std::int64_t bound_ns = scenario_.bound_ns();
  while (!events_.empty() && !all_terminal()) {
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
