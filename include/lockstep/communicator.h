// The guarded communicator (SPEC §4B): the only way protocol code reaches a
// collective backend. Every call names its group — there is no default
// group — and passes the CollectiveGate's checks (membership, phase,
// root/peer, arguments; collective_gate.h) *before* the backend sees it.
// A passing call is appended to the group's Ledger and reported to the
// CollectiveObserver: enqueued, then started and completed/failed around a
// blocking backend call, or — for a stream-ordered call — by the completion
// sink as the GPU gets there.
//
// Roots and peers are GROUP ranks (the Backend's numbering; the ledger stays
// comparable across ranks). group_rank() translates a global rank.
//
// Crash-only: after any backend failure, or after abort(), every later call
// throws Error{kAborted} before touching a backend ("a rank that timed out
// never calls into the backend again"). A communicator lives for one
// generation: warm recovery (recovery.h) builds a new one, never revives it.
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
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "lockstep/backend.h"
#include "lockstep/collective_gate.h"
#include "lockstep/collective_observer.h"
#include "lockstep/completion_probe.h"
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

  // Stream-ordered (SPEC §4C), for device memory on a group whose backend
  // has a stream (Backend::stream_ordered; Error{kInvalidArgument} otherwise):
  // the same checks, ledger entry and enqueued report as the blocking calls,
  // then the backend enqueues the sum and the call returns. The completion
  // sink watches it from there (started when the call before it on the
  // group's lane completed, then completed or failed): the host never waits
  // for the GPU here. REQUIRES: set_completion_sink() ran.
  void all_reduce_enqueue(std::string_view group, void* data, std::size_t count, DType dtype,
                          ReduceOp reduce, std::chrono::milliseconds timeout);
  // Where stream-ordered calls are watched; lane = the group's table index.
  // Owner thread, before the first all_reduce_enqueue. `sink` must outlive
  // the last call it is handed and be destroyed before this communicator
  // (its probes share the backends' state): declare it after.
  void set_completion_sink(CompletionSink* sink);

  // CUDA-graph capture of stream-ordered calls. Between begin_capture() and
  // end_capture(), all_reduce_enqueue only enqueues into the graph being
  // captured (the backend sees the capture on its stream) and records the
  // call: nothing runs, so nothing enters the ledger or the observer then.
  // replay() puts them where they belong, on every launch of the graph:
  // each captured call passes the gate again (checks, ledger entry, enqueued
  // report) before `launch` runs, so a replayed step's ledger digest equals
  // an eager step's; after `launch`, one marker per group completes them all
  // together (a replay is one watched operation). Owner thread. begin_capture
  // while capturing, or end_capture/replay misused, throw
  // Error{kInvalidArgument}.
  struct CapturedCall {
    CollectiveCall call;  // group points into the communicator's table
    ReduceOp reduce = ReduceOp::kSum;
  };
  void begin_capture();
  std::vector<CapturedCall> end_capture();
  void replay(const std::vector<CapturedCall>& calls, const std::function<void()>& launch);

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
  // Where `group`'s backend wants the buffers of its calls (device memory
  // goes device to device on NCCL); nullopt when not a member. Any thread.
  std::optional<MemoryKind> memory_kind(std::string_view group) const;
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

  // This rank's backend of `group`; null when absent or not a member.
  Backend* member_backend(std::string_view group) const;
  // The admitted call's backend failed: crash-only, then rethrow.
  [[noreturn]] void fail_admitted(const CollectiveCall& call, std::uint64_t seq);
  // Hands an enqueued call's probe to the sink (or a failure report).
  void track(const CollectiveCall& call, const GateAdmission& admission,
             std::unique_ptr<CompletionProbe> probe);

  const GroupTable groups_;
  SingleOwner owner_;
  CollectiveGate gate_;  // checks, ledgers, phase, the aborted flag
  std::atomic<bool> abort_requested_{false};  // abort() ran (backends aborted)
  // Indexed like the table; null where this rank is not a member.
  std::vector<std::unique_ptr<Backend>> backends_;
  CompletionSink* sink_ = nullptr;
  bool capturing_ = false;                 // owner thread only
  std::vector<CapturedCall> captured_;     // since begin_capture(); at most kCapturedCallsMax
};

// Calls one captured graph may hold (a 40-layer step holds 120).
inline constexpr std::size_t kCapturedCallsMax = 4096;

}  // namespace lockstep
