// The checks every guarded call passes before any backend sees it (SPEC §4B),
// apart from any backend: the Communicator runs its own Gloo/NCCL calls
// through a gate, and the Python package's guarded torch process groups run
// torch's calls through one (python/); a program with its own collective
// library can do the same. One gate per process holds the groups
// that process knows, each member group's Ledger, and the process-wide phase.
//
// admit() checks, in this order, and throws the first that fails:
//   1. this rank has not aborted                      else Error{kAborted}
//   2. the group exists and this rank is in it        else Error{kMembership} (B1)
//   3. the current phase allows the group             else Error{kPhase} (B2)
//   4. root/peer is a valid group rank (a peer is not this rank)
//                                                     else Error{kMembership}
//   5. buffers, count, dtype and timeout are sane     else Error{kInvalidArgument}
//      or Error{kLimit}
// Each error names rank, group, op and phase, and is reported to the observer
// as rejected. A passing call is appended to the group's ledger and reported
// as enqueued; the caller reports started / completed / failed itself.
//
// Threads: admit(), report(), set_phase() and every accessor may be called
// from any thread (the ledger append takes its own short lock, the phase is
// an atomic). add_group() is for start-up: it may run beside admit() on other
// groups, but every rank must add the same groups in the same order (B3).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lockstep/collective_observer.h"
#include "lockstep/dtype.h"
#include "lockstep/error.h"
#include "lockstep/group_table.h"
#include "lockstep/ledger.h"
#include "lockstep/phase.h"

namespace lockstep {

// One collective or p2p call moves at most this many bytes per rank (larger
// transfers are chunked by the caller; a bigger count is almost always a
// corrupted size).
inline constexpr std::size_t kCollectiveBytesMax = std::size_t{1} << 32;
// Longest timeout a call may ask for: a deadline is a deadline, not "forever".
inline constexpr std::chrono::milliseconds kCollectiveTimeoutMax{3'600'000};

// What one call asks for. `in`/`out` are the buffers the backend will read
// and write (null where the op has none; only their nullness is checked).
struct CollectiveCall {
  std::string_view group;
  CollectiveOp op = CollectiveOp::kBarrier;
  DType dtype = DType::kU8;
  std::uint64_t count = 0;
  int root_or_peer = kNoRootOrPeer;  // group rank
  std::chrono::milliseconds timeout{0};
  const void* in = nullptr;
  const void* out = nullptr;
};

// A call that passed the gate: its ledger seq and where its group sits.
struct GateAdmission {
  std::uint64_t seq = 0;
  std::size_t group_index = 0;  // position in the gate (= table order)
  int group_rank = -1;
};

class CollectiveGate {
 public:
  // Throws Error{kInvalidArgument} for a rank outside [0, world_size) or an
  // invalid phase value. `observer` may be null; when set it must outlive
  // the gate.
  CollectiveGate(int global_rank, int world_size, PhasePolicy policy, Phase initial_phase,
                 CollectiveObserver* observer);
  CollectiveGate(const CollectiveGate&) = delete;
  CollectiveGate& operator=(const CollectiveGate&) = delete;
  ~CollectiveGate();

  // Adds a group (GroupTable::add's checks and errors); returns its index.
  // Serialised by an internal lock.
  std::size_t add_group(std::string name, std::vector<int> member_ranks);

  // Checks 1-5 above; on success appends to the ledger and reports enqueued.
  GateAdmission admit(const CollectiveCall& call);
  // Reports a later state of an admitted call (started, completed, failed).
  void report(const CollectiveCall& call, std::uint64_t seq, CollectiveState state,
              ErrorCode code = ErrorCode::kInternal, std::string_view message = {}) noexcept;

  // The observer's view of an admitted call in `state` (phase: the current
  // one), for whoever reports it later (a completion tracker). Any thread.
  CollectiveEvent event_of(const CollectiveCall& call, std::uint64_t seq, CollectiveState state) const noexcept;

  // Crash-only: once set, every admit() throws Error{kAborted}. Any thread.
  void mark_aborted() noexcept { aborted_.store(true, std::memory_order_release); }
  bool aborted() const noexcept { return aborted_.load(std::memory_order_acquire); }

  // Throws Error{kInvalidArgument} for an invalid phase value.
  void set_phase(Phase phase);
  Phase phase() const noexcept { return phase_.load(std::memory_order_relaxed); }
  const PhasePolicy& policy() const noexcept { return policy_; }

  int global_rank() const noexcept { return global_rank_; }
  int world_size() const noexcept { return world_size_; }
  // The groups added so far, in order (a copy).
  GroupTable table() const;
  std::size_t group_count() const noexcept { return count_.load(std::memory_order_acquire); }
  // Group rank of `global_rank` in `group`; nullopt when absent or not a member.
  std::optional<int> group_rank_of(std::string_view group, int global_rank) const;
  // Groups this rank belongs to, in order.
  std::vector<std::string_view> member_groups() const;
  // Copy of a member group's ledger. Throws Error{kMembership} when this rank
  // is not in `group`.
  LedgerSnapshot ledger_snapshot(std::string_view group) const;

 private:
  struct Group;
  std::optional<std::size_t> find_index(std::string_view name) const;
  const Group* find(std::string_view name) const;
  [[noreturn]] void reject(const CollectiveCall& call, std::uint64_t would_be_seq, ErrorCode code,
                           const std::string& message);
  void check_arguments(const CollectiveCall& call, const Group& group, std::uint64_t seq);

  const int global_rank_;
  const int world_size_;
  const PhasePolicy policy_;
  CollectiveObserver* const observer_;
  std::atomic<Phase> phase_;
  std::atomic<bool> aborted_{false};
  // Groups are published by count_ (release) and never move or change after.
  std::array<std::unique_ptr<Group>, kGroupsMax> groups_;
  std::atomic<std::size_t> count_{0};
  mutable std::mutex add_mutex_;  // add_group() and table() only
  GroupTable table_;              // under add_mutex_
};

}  // namespace lockstep
