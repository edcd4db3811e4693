#include "lockstep/communicator.h"

#include <exception>
#include <string>

#include "lockstep/assert.h"
#include "lockstep/error.h"

namespace lockstep {

struct Communicator::Member {
  const GroupSpec* spec;
  int group_rank;
  std::unique_ptr<Backend> backend;
  Ledger ledger;
};

// What one call asks for; `in`/`out` are the buffers the backend will read
// and write (null where the op has none).
struct Communicator::Call {
  std::string_view group;
  CollectiveOp op;
  DType dtype;
  std::uint64_t count;
  int root_or_peer;
  std::chrono::milliseconds timeout;
  const void* in;
  const void* out;
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
// the group size for all_gather's output) overflows kCollectiveBytesMax.
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

Communicator::Communicator(CommunicatorOptions options, BackendFactory& factory, Store& store,
                           CollectiveObserver* observer)
    : global_rank_(options.global_rank),
      groups_(std::move(options.groups)),
      policy_(std::move(options.policy)),
      observer_(observer),
      owner_("communicator of rank " + std::to_string(options.global_rank)),
      phase_(options.initial_phase) {
  if (global_rank_ < 0 || global_rank_ >= groups_.world_size()) {
    throw Error(ErrorCode::kInvalidArgument,
                "communicator: global_rank " + std::to_string(global_rank_) + " outside world of " +
                    std::to_string(groups_.world_size()));
  }
  check_phase_value(options.initial_phase);
  for (const GroupSpec& spec : groups_.groups()) {
    const std::optional<int> group_rank = groups_.group_rank(spec.name, global_rank_);
    if (!group_rank) continue;
    BackendGroupSpec backend_spec{spec.name, spec.member_ranks, global_rank_, options.connect_timeout};
    std::unique_ptr<Backend> backend = factory.connect(store, backend_spec);
    LOCKSTEP_ASSERT(backend != nullptr);
    LOCKSTEP_ASSERT(backend->rank() == *group_rank);
    LOCKSTEP_ASSERT(backend->size() == static_cast<int>(spec.member_ranks.size()));
    members_.push_back(std::unique_ptr<Member>(
        new Member{&spec, *group_rank, std::move(backend), Ledger(spec.name, *group_rank)}));
  }
}

Communicator::~Communicator() = default;

Communicator::Member* Communicator::find_member(std::string_view group) const {
  for (const auto& member : members_) {
    if (member->spec->name == group) return member.get();
  }
  return nullptr;
}

void Communicator::notify(const Call& call, std::uint64_t seq, CollectiveState state,
                          ErrorCode code, std::string_view message) noexcept {
  if (observer_ == nullptr) return;
  CollectiveEvent event;
  event.group = call.group;
  event.global_rank = global_rank_;
  event.group_seq = seq;
  event.op = call.op;
  event.dtype = call.dtype;
  event.count = call.count;
  event.root_or_peer = call.root_or_peer;
  event.phase = phase_.load(std::memory_order_relaxed);
  event.state = state;
  event.timeout = call.timeout;
  event.error_code = code;
  event.error_message = message;
  observer_->on_collective(event);
}

void Communicator::reject(const Call& call, std::uint64_t would_be_seq, ErrorCode code,
                          const std::string& message) {
  const std::string full = "rank " + std::to_string(global_rank_) + ", group '" +
                           std::string(call.group) + "', op " +
                           std::string(collective_op_name(call.op)) + ", phase " +
                           std::string(phase_name(phase_.load(std::memory_order_relaxed))) +
                           ": " + message;
  notify(call, would_be_seq, CollectiveState::kRejected, code, full);
  throw Error(code, full);
}

Communicator::Member& Communicator::check_call(const Call& call) {
  owner_.check();
  const GroupSpec* spec = groups_.find(call.group);
  Member* member = find_member(call.group);
  const std::uint64_t seq = member != nullptr ? member->ledger.next_seq() : 0;
  if (aborted_.load(std::memory_order_acquire)) {
    reject(call, seq, ErrorCode::kAborted, "this rank has aborted; no backend call is allowed");
  }
  if (spec == nullptr) {
    reject(call, seq, ErrorCode::kMembership, "no such group (table:\n" + groups_.describe() + ")");
  }
  if (member == nullptr) {
    reject(call, seq, ErrorCode::kMembership,
           "rank " + std::to_string(global_rank_) + " is not a member (members " +
               ranks_text(spec->member_ranks) + ")");
  }
  const Phase phase = phase_.load(std::memory_order_relaxed);
  if (!policy_.allows(phase, call.group)) {
    reject(call, seq, ErrorCode::kPhase,
           "group not allowed in this phase (allowed: " + groups_text(policy_.allowed(phase)) + ")");
  }
  const int size = static_cast<int>(spec->member_ranks.size());
  const bool root_peer_valid =
      (!has_root(call.op) && !has_peer(call.op)) ||
      (call.root_or_peer >= 0 && call.root_or_peer < size &&
       !(has_peer(call.op) && call.root_or_peer == member->group_rank));
  if (!root_peer_valid) {
    reject(call, seq, ErrorCode::kMembership,
           std::string(has_root(call.op) ? "root " : "peer ") + std::to_string(call.root_or_peer) +
               " is not a valid group rank (group size " + std::to_string(size) +
               (has_peer(call.op) ? ", own group rank " + std::to_string(member->group_rank) : "") +
               ")");
  }
  check_arguments(call, *member, seq);
  return *member;
}

void Communicator::check_arguments(const Call& call, const Member& member, std::uint64_t seq) {
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
  const std::uint64_t out_factor =
      call.op == CollectiveOp::kAllGather ? member.spec->member_ranks.size() : 1;
  if (!call_bytes(call.count, call.dtype, out_factor)) {
    reject(call, seq, ErrorCode::kLimit,
           "count " + std::to_string(call.count) + " of " + std::string(dtype_name(call.dtype)) +
               " exceeds kCollectiveBytesMax = " + std::to_string(kCollectiveBytesMax) + " bytes");
  }
}

void Communicator::run_call(Member& member, const Call& call, auto&& backend_op) {
  const std::uint64_t seq = member.ledger.append(call.op, call.dtype, call.count, call.root_or_peer);
  notify(call, seq, CollectiveState::kEnqueued, ErrorCode::kInternal, {});
  notify(call, seq, CollectiveState::kStarted, ErrorCode::kInternal, {});
  try {
    backend_op(*member.backend);
  } catch (const Error& error) {
    // Crash-only: a failed backend is never used again, nor is any other.
    aborted_.store(true, std::memory_order_release);
    notify(call, seq, CollectiveState::kFailed, error.code(), error.what());
    throw;
  } catch (const std::exception& error) {
    aborted_.store(true, std::memory_order_release);
    notify(call, seq, CollectiveState::kFailed, ErrorCode::kBackend, error.what());
    throw;
  }
  notify(call, seq, CollectiveState::kCompleted, ErrorCode::kInternal, {});
}

void Communicator::broadcast(std::string_view group, void* data, std::size_t count, DType dtype,
                             int root, std::chrono::milliseconds timeout) {
  const Call call{group, CollectiveOp::kBroadcast, dtype, count, root, timeout, data, data};
  run_call(check_call(call), call,
           [&](Backend& backend) { backend.broadcast(data, count, dtype, root, timeout); });
}

void Communicator::all_reduce(std::string_view group, void* data, std::size_t count, DType dtype,
                              ReduceOp reduce, std::chrono::milliseconds timeout) {
  const Call call{group, CollectiveOp::kAllReduce, dtype, count, kNoRootOrPeer, timeout, data, data};
  run_call(check_call(call), call,
           [&](Backend& backend) { backend.all_reduce(data, count, dtype, reduce, timeout); });
}

void Communicator::all_gather(std::string_view group, const void* in, void* out, std::size_t count,
                              DType dtype, std::chrono::milliseconds timeout) {
  const Call call{group, CollectiveOp::kAllGather, dtype, count, kNoRootOrPeer, timeout, in, out};
  run_call(check_call(call), call,
           [&](Backend& backend) { backend.all_gather(in, out, count, dtype, timeout); });
}

void Communicator::barrier(std::string_view group, std::chrono::milliseconds timeout) {
  const Call call{group, CollectiveOp::kBarrier, DType::kU8, 0, kNoRootOrPeer, timeout, nullptr, nullptr};
  run_call(check_call(call), call, [&](Backend& backend) { backend.barrier(timeout); });
}

void Communicator::send(std::string_view group, const void* data, std::size_t count, DType dtype,
                        int peer, std::uint32_t tag, std::chrono::milliseconds timeout) {
  const Call call{group, CollectiveOp::kSend, dtype, count, peer, timeout, data, data};
  run_call(check_call(call), call, [&](Backend& backend) {
    backend.send(data, count * dtype_size_bytes(dtype), peer, tag, timeout);
  });
}

void Communicator::recv(std::string_view group, void* data, std::size_t count, DType dtype,
                        int peer, std::uint32_t tag, std::chrono::milliseconds timeout) {
  const Call call{group, CollectiveOp::kRecv, dtype, count, peer, timeout, data, data};
  run_call(check_call(call), call, [&](Backend& backend) {
    backend.recv(data, count * dtype_size_bytes(dtype), peer, tag, timeout);
  });
}

void Communicator::set_phase(Phase phase) {
  owner_.check();
  check_phase_value(phase);
  phase_.store(phase, std::memory_order_relaxed);
}

Phase Communicator::phase() const { return phase_.load(std::memory_order_relaxed); }

void Communicator::abort() noexcept {
  if (abort_requested_.exchange(true)) return;
  aborted_.store(true, std::memory_order_release);
  for (const auto& member : members_) {
    // Best effort on the fatal path: one backend failing to abort must not
    // stop the others; guard's hard-exit deadline covers a hang here.
    try {
      member->backend->abort();
    } catch (...) {
    }
  }
}

bool Communicator::aborted() const noexcept { return aborted_.load(std::memory_order_acquire); }

std::optional<int> Communicator::group_rank(std::string_view group) const {
  return groups_.group_rank(group, global_rank_);
}

std::optional<int> Communicator::group_rank_of(std::string_view group, int global_rank) const {
  return groups_.group_rank(group, global_rank);
}

std::vector<std::string_view> Communicator::member_groups() const {
  std::vector<std::string_view> names;
  for (const auto& member : members_) names.emplace_back(member->spec->name);
  return names;
}

LedgerSnapshot Communicator::ledger_snapshot(std::string_view group) const {
  const Member* member = find_member(group);
  if (member == nullptr) {
    throw Error(ErrorCode::kMembership, "rank " + std::to_string(global_rank_) +
                                            " has no ledger for group '" + std::string(group) +
                                            "' (not a member)");
  }
  return member->ledger.snapshot();
}

}  // namespace lockstep
