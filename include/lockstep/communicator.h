// The guarded communicator (SPEC §4B): the only way protocol code reaches a
// collective backend. Every call names its group — there is no default
// group — and passes the CollectiveGate's checks (membership, phase,
// root/peer, arguments; collective_gate.h) *before* the backend sees it.
// A passing call is appended to the group's Ledger and reported to the
// CollectiveObserver (enqueued, started, completed/failed) around the
// backend call.
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
#include "lockstep/collective_gate.h"
#include "lockstep/collective_observer.h"
#include "lockstep/group_table.h"
#include "lockstep/ledger.h"
#include "lockstep/phase.h"
#include "lockstep/single_owner.h"
#include "lockstep/store.h"

namespace lockstep {

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

  int global_rank() const { return gate_.global_rank(); }
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

  // The checks, ledgers and phase behind this communicator. Any thread.
  const CollectiveGate& gate() const noexcept { return gate_; }

  // Binds the owner thread now (see SingleOwner::bind_to_current_thread).
  void bind_owner_thread() { owner_.bind_to_current_thread(); }

 private:
  // Owner check, the gate's checks, then the backend call between the
  // started and completed/failed reports.
  void run_call(const CollectiveCall& call, auto&& backend_op);

  const GroupTable groups_;
  SingleOwner owner_;
  CollectiveGate gate_;  // checks, ledgers, phase, the aborted flag
  std::atomic<bool> abort_requested_{false};  // abort() ran (backends aborted)
  // Indexed like the table; null where this rank is not a member.
  std::vector<std::unique_ptr<Backend>> backends_;
};

}  // namespace lockstep
