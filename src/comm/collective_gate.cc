#include "lockstep/collective_gate.h"

#include <string>

#include "lockstep/assert.h"

namespace lockstep {

struct CollectiveGate::Group {
  GroupSpec spec;
  std::optional<int> group_rank;  // nullopt: this rank is not a member
  std::unique_ptr<Ledger> ledger;  // members only
};

namespace {

bool has_root(CollectiveOp op) { return op == CollectiveOp::kBroadcast; }
bool has_peer(CollectiveOp op) { return op == CollectiveOp::kSend || op == CollectiveOp::kRecv; }

std::string ranks_text(const std::vector<int>& ranks) {
  std::string text = "[";
  for (std::size_t i = 0; i < ranks.size(); ++i) text += (i ? "," : "") + std::to_string(ranks[i]);
  return text + "]";
}

std::string groups_text(const std::vector<std::string>& groups) {
  std::string text = "[";
  for (std::size_t i = 0; i < groups.size(); ++i) text += (i ? "," : "") + groups[i];
  return text + "]";
}

// Bytes the call moves per rank, or nullopt when count * element size (times
// the group size for all_gather's output, reduce_scatter's input and
// all_to_all's buffers) overflows kCollectiveBytesMax.
std::optional<std::uint64_t> call_bytes(std::uint64_t count, DType dtype, std::uint64_t factor) {
  const std::uint64_t element_bytes = dtype_size_bytes(dtype);
  if (count > kCollectiveBytesMax / element_bytes / factor) return std::nullopt;
  return count * element_bytes * factor;
}

void check_phase_value(Phase phase) {
  if (static_cast<std::size_t>(phase) >= kPhaseCount) {
    throw Error(ErrorCode::kInvalidArgument,
                "invalid phase value " + std::to_string(static_cast<int>(phase)));
  }
}

}  // namespace

CollectiveGate::CollectiveGate(int global_rank, int world_size, PhasePolicy policy,
                               Phase initial_phase, CollectiveObserver* observer)
    : global_rank_(global_rank),
      world_size_(world_size),
      policy_(std::move(policy)),
      observer_(observer),
      phase_(initial_phase),
      table_(world_size) {
  if (global_rank_ < 0 || global_rank_ >= world_size_) {
    throw Error(ErrorCode::kInvalidArgument, "collective gate: global_rank " +
                                                 std::to_string(global_rank_) + " outside world of " +
                                                 std::to_string(world_size_));
  }
  check_phase_value(initial_phase);
}

CollectiveGate::~CollectiveGate() = default;

std::size_t CollectiveGate::add_group(std::string name, std::vector<int> member_ranks) {
  const std::lock_guard lock(add_mutex_);
  table_.add(name, member_ranks);  // validates; throws before anything is published
  const std::size_t index = count_.load(std::memory_order_relaxed);
  LOCKSTEP_ASSERT(index < kGroupsMax);  // table_.add enforces kGroupsMax
  auto group = std::make_unique<Group>();
  group->spec = table_.groups().back();
  group->group_rank = table_.group_rank(group->spec.name, global_rank_);
  if (group->group_rank) group->ledger = std::make_unique<Ledger>(group->spec.name, *group->group_rank);
  groups_[index] = std::move(group);
  count_.store(index + 1, std::memory_order_release);
  return index;
}

std::optional<std::size_t> CollectiveGate::find_index(std::string_view name) const {
  const std::size_t count = count_.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < count; ++i) {
    if (groups_[i]->spec.name == name) return i;
  }
  return std::nullopt;
}

const CollectiveGate::Group* CollectiveGate::find(std::string_view name) const {
  const std::optional<std::size_t> index = find_index(name);
  return index ? groups_[*index].get() : nullptr;
}

CollectiveEvent CollectiveGate::event_of(const CollectiveCall& call, std::uint64_t seq,
                                         CollectiveState state) const noexcept {
  CollectiveEvent event;
  event.group = call.group;
  event.global_rank = global_rank_;
  event.group_seq = seq;
  event.op = call.op;
  event.dtype = call.dtype;
  event.count = call.count;
  event.root_or_peer = call.root_or_peer;
  event.phase = phase();
  event.state = state;
  event.timeout = call.timeout;
  return event;
}

void CollectiveGate::report(const CollectiveCall& call, std::uint64_t seq, CollectiveState state,
                            ErrorCode code, std::string_view message) noexcept {
  if (observer_ == nullptr) return;
  CollectiveEvent event = event_of(call, seq, state);
  event.error_code = code;
  event.error_message = message;
  observer_->on_collective(event);
}

void CollectiveGate::reject(const CollectiveCall& call, std::uint64_t would_be_seq, ErrorCode code,
                            const std::string& message) {
  const std::string full = "rank " + std::to_string(global_rank_) + ", group '" +
                           std::string(call.group) + "', op " +
                           std::string(collective_op_name(call.op)) + ", phase " +
                           std::string(phase_name(phase())) + ": " + message;
  report(call, would_be_seq, CollectiveState::kRejected, code, full);
  throw Error(code, full);
}

GateAdmission CollectiveGate::admit(const CollectiveCall& call) {
  const std::optional<std::size_t> index = find_index(call.group);
  const Group* group = index ? groups_[*index].get() : nullptr;
  const bool member = group != nullptr && group->group_rank.has_value();
  const std::uint64_t seq = member ? group->ledger->next_seq() : 0;
  if (aborted()) reject(call, seq, ErrorCode::kAborted, "this rank has aborted; no backend call is allowed");
  if (group == nullptr) {
    reject(call, seq, ErrorCode::kMembership, "no such group (table:\n" + table().describe() + ")");
  }
  if (!member) {
    reject(call, seq, ErrorCode::kMembership,
           "rank " + std::to_string(global_rank_) + " is not a member (members " +
               ranks_text(group->spec.member_ranks) + ")");
  }
  const Phase now = phase();
  if (!policy_.allows(now, call.group)) {
    reject(call, seq, ErrorCode::kPhase,
           "group not allowed in this phase (allowed: " + groups_text(policy_.allowed(now)) + ")");
  }
  const int size = static_cast<int>(group->spec.member_ranks.size());
  const int own = *group->group_rank;
  const bool root_peer_valid =
      (!has_root(call.op) && !has_peer(call.op)) ||
      (call.root_or_peer >= 0 && call.root_or_peer < size && !(has_peer(call.op) && call.root_or_peer == own));
  if (!root_peer_valid) {
    reject(call, seq, ErrorCode::kMembership,
           std::string(has_root(call.op) ? "root " : "peer ") + std::to_string(call.root_or_peer) +
               " is not a valid group rank (group size " + std::to_string(size) +
               (has_peer(call.op) ? ", own group rank " + std::to_string(own) : "") + ")");
  }
  check_arguments(call, *group, seq);
  const std::uint64_t appended = group->ledger->append(call.op, call.dtype, call.count, call.root_or_peer);
  report(call, appended, CollectiveState::kEnqueued);
  return GateAdmission{appended, *index, own};
}

void CollectiveGate::check_arguments(const CollectiveCall& call, const Group& group, std::uint64_t seq) {
  if (call.timeout < std::chrono::milliseconds(1) || call.timeout > kCollectiveTimeoutMax) {
    reject(call, seq, ErrorCode::kInvalidArgument,
           "timeout " + std::to_string(call.timeout.count()) + " ms outside [1, " +
               std::to_string(kCollectiveTimeoutMax.count()) + "] ms");
  }
  if (call.op == CollectiveOp::kBarrier) return;
  if (!dtype_from_wire(static_cast<std::uint8_t>(call.dtype))) {
    reject(call, seq, ErrorCode::kInvalidArgument,
           "invalid dtype value " + std::to_string(static_cast<int>(call.dtype)));
  }
  if (call.count == 0 || call.in == nullptr || call.out == nullptr) {
    reject(call, seq, ErrorCode::kInvalidArgument,
           "count " + std::to_string(call.count) + " must be > 0 with non-null buffers");
  }
  const bool scaled = call.op == CollectiveOp::kAllGather || call.op == CollectiveOp::kReduceScatter ||
                      call.op == CollectiveOp::kAllToAll;
  const std::uint64_t factor = scaled ? group.spec.member_ranks.size() : 1;
  if (!call_bytes(call.count, call.dtype, factor)) {
    reject(call, seq, ErrorCode::kLimit,
           "count " + std::to_string(call.count) + " of " + std::string(dtype_name(call.dtype)) +
               " exceeds kCollectiveBytesMax = " + std::to_string(kCollectiveBytesMax) + " bytes");
  }
}

void CollectiveGate::set_phase(Phase phase) {
  check_phase_value(phase);
  phase_.store(phase, std::memory_order_relaxed);
}

GroupTable CollectiveGate::table() const {
  const std::lock_guard lock(add_mutex_);
  return table_;
}

std::optional<int> CollectiveGate::group_rank_of(std::string_view group, int global_rank) const {
  const Group* found = find(group);
  if (found == nullptr) return std::nullopt;
  const auto& members = found->spec.member_ranks;
  for (std::size_t i = 0; i < members.size(); ++i) {
    if (members[i] == global_rank) return static_cast<int>(i);
  }
  return std::nullopt;
}

std::vector<std::string_view> CollectiveGate::member_groups() const {
  std::vector<std::string_view> names;
  const std::size_t count = count_.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < count; ++i) {
    if (groups_[i]->group_rank) names.emplace_back(groups_[i]->spec.name);
  }
  return names;
}

LedgerSnapshot CollectiveGate::ledger_snapshot(std::string_view group) const {
  const Group* found = find(group);
  if (found == nullptr || !found->group_rank) {
    throw Error(ErrorCode::kMembership, "rank " + std::to_string(global_rank_) +
                                            " has no ledger for group '" + std::string(group) +
                                            "' (not a member)");
  }
  return found->ledger->snapshot();
}

}  // namespace lockstep
