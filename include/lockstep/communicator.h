// The guarded communicator (SPEC §4B): the only way protocol code reaches a
// collective backend. Every call names its group — there is no default
// group — and is checked *before* the backend sees it:
//   1. this rank has not aborted            else Error{kAborted}
//   2. the group exists and this rank is in it     else Error{kMembership} (B1)
//   3. the current phase allows the group          else Error{kPhase} (B2)
//   4. root/peer is a valid group rank (a peer is not this rank)
//                                                  else Error{kMembership}
//   5. buffers, count, dtype and timeout are sane  else Error{kInvalidArgument}
//      or Error{kLimit}
// Each error names rank, group, op and phase. A passing call is appended to
// the group's Ledger and reported to the CollectiveObserver (enqueued,
// started, completed/failed) around the backend call.
//
// Roots and peers are GROUP ranks (the Backend's numbering; the ledger stays
// comparable across ranks). group_rank() translates a global rank.
//
// Crash-only: after any backend failure, or after abort(), every later call
// throws Error{kAborted} before touching a backend ("a rank that timed out
// never calls into the backend again").
//
// Threads: one owner thread (the comm thread; bound on first use or by
// bind_owner_thread()) may call everything except abort(), aborted(),
// ledger_snapshot() and the const accessors, which any thread may call. A
// call from another thread throws Error{kOwnership} naming both threads,
// before any other check and without an observer event (the observer is the
// owner thread's).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "lockstep/backend.h"
#include "lockstep/collective_observer.h"
#include "lockstep/group_table.h"
#include "lockstep/ledger.h"
#include "lockstep/phase.h"
#include "lockstep/single_owner.h"
#include "lockstep/store.h"

namespace lockstep {

// One collective or p2p call moves at most this many bytes per rank (larger
// transfers are chunked by the caller; a bigger count is almost always a
// corrupted size).
inline constexpr std::size_t kCollectiveBytesMax = std::size_t{1} << 32;
// Longest timeout a call may ask for: a deadline is a deadline, not "forever".
inline constexpr std::chrono::milliseconds kCollectiveTimeoutMax{3'600'000};

struct CommunicatorOptions {
  int global_rank = -1;
  GroupTable groups{1};
  PhasePolicy policy = make_standard_phase_policy();
  Phase initial_phase = Phase::kStartup;
  // Per group: how long connecting it may take (BackendGroupSpec).
  std::chrono::milliseconds connect_timeout{30000};
};

class Communicator {
 public:
  // Connects one Backend per group that contains global_rank, in table order
  // (every rank connects its groups in the same order, so no two ranks wait
  // on each other's different groups). Blocks at most connect_timeout per
  // group; propagates the factory's Error{kTimeout}. Throws
  // Error{kInvalidArgument} when global_rank is outside the table's world.
  // `observer` may be null; when set it must outlive the Communicator.
  Communicator(CommunicatorOptions options, BackendFactory& factory, Store& store,
               CollectiveObserver* observer);
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;
  ~Communicator();

  // Blocking collectives, each bounded by `timeout` (1 ms .. kCollectiveTimeoutMax).
  // Throw the check errors above, or what the backend threw (kTimeout,
  // kPeerFailure, kBackend, kAborted) after which the communicator is aborted.
  void broadcast(std::string_view group, void* data, std::size_t count, DType dtype,
                 int root, std::chrono::milliseconds timeout);
  void all_reduce(std::string_view group, void* data, std::size_t count, DType dtype,
                  ReduceOp reduce, std::chrono::milliseconds timeout);
  // `out` holds group_size * count elements.
  void all_gather(std::string_view group, const void* in, void* out, std::size_t count,
                  DType dtype, std::chrono::milliseconds timeout);
  void barrier(std::string_view group, std::chrono::milliseconds timeout);
  void send(std::string_view group, const void* data, std::size_t count, DType dtype, int peer,
            std::uint32_t tag, std::chrono::milliseconds timeout);
  void recv(std::string_view group, void* data, std::size_t count, DType dtype, int peer,
            std::uint32_t tag, std::chrono::milliseconds timeout);

  // Owner thread. Non-blocking. Throws Error{kInvalidArgument} for an invalid
  // phase value.
  void set_phase(Phase phase);
  Phase phase() const;  // any thread

  // Marks this rank aborted and aborts every backend (pending calls fail with
  // kAborted). Any thread; idempotent. May block inside a backend's abort
  // (NCCL), so guard calls it on a sacrificial thread.
  void abort() noexcept;
  bool aborted() const noexcept;  // any thread

  int global_rank() const { return global_rank_; }
  const GroupTable& groups() const { return groups_; }
  // This rank's group rank in `group`; nullopt when not a member. Any thread.
  std::optional<int> group_rank(std::string_view group) const;
  // Group rank of `global_rank` in `group`; nullopt when not a member.
  std::optional<int> group_rank_of(std::string_view group, int global_rank) const;
  // Groups this rank belongs to, in table order. Any thread.
  std::vector<std::string_view> member_groups() const;
  // Copy of a member group's ledger. Any thread. Throws Error{kMembership}
  // when this rank is not in `group`.
  LedgerSnapshot ledger_snapshot(std::string_view group) const;

  // Binds the owner thread now (see SingleOwner::bind_to_current_thread).
  void bind_owner_thread() { owner_.bind_to_current_thread(); }

 private:
  struct Member;  // a group this rank belongs to: spec, backend, ledger
  struct Call;    // one call's description, shared by the checks and events

  Member& check_call(const Call& call);
  void check_arguments(const Call& call, const Member& member, std::uint64_t seq);
  void run_call(Member& member, const Call& call, auto&& backend_op);
  [[noreturn]] void reject(const Call& call, std::uint64_t would_be_seq, ErrorCode code,
                           const std::string& message);
  void notify(const Call& call, std::uint64_t seq, CollectiveState state, ErrorCode code,
              std::string_view message) noexcept;
  Member* find_member(std::string_view group) const;

  const int global_rank_;
  const GroupTable groups_;
  const PhasePolicy policy_;
  CollectiveObserver* const observer_;
  SingleOwner owner_;
  std::atomic<Phase> phase_;
  std::atomic<bool> aborted_{false};          // no backend call from now on
  std::atomic<bool> abort_requested_{false};  // abort() ran (backends aborted)
  std::vector<std::unique_ptr<Member>> members_;  // table order
};

}  // namespace lockstep
