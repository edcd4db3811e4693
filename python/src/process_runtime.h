// The guard of one Python rank (lockstep.init()): the same objects the C++
// runtime builds in rank_main — job store, flight recorder, fatal path,
// watchdog — plus the CollectiveGate that guarded torch groups pass through
// and the CompletionTracker that follows their work without a host wait.
//
// An uncaught C++ exception anywhere in the process (a backend's thread)
// takes the fatal path too, instead of aborting with no dump.
//
// One ProcessRuntime serves one generation of the job (job_token.h). Under
// warm recovery (end_generation_on_curable, lockstep.run_generations) a
// curable fault ends the generation, not the process: the fatal path dumps,
// poisons and aborts — refuses every guarded call, cancels every control
// channel registered here, wakes wait_generation_end() — and returns; the
// Python side unwinds, destroys this runtime and builds the next
// generation's. The hard-exit deadline still bounds that unwinding.
//
// Nothing here takes the GIL or calls into Python: the watchdog, the poller
// and the fatal path run while any Python thread may hold the GIL. Every
// Python thread's stack is still written on the fatal path, by CPython's
// faulthandler, which the Python side registers for `stack_signal` on a
// reserved descriptor; the fatal path points that descriptor at
// dumps/rank-R.pystacks.txt and raises the signal (faulthandler reads the
// thread states without the GIL, as it does on a crash).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "lockstep/channel.h"
#include "lockstep/collective_gate.h"
#include "lockstep/completion_tracker.h"
#include "lockstep/fatal.h"
#include "lockstep/flight_recorder.h"
#include "lockstep/guard_observer.h"
#include "lockstep/rank_env.h"
#include "lockstep/store.h"
#include "lockstep/watchdog.h"

namespace lockstep::python {

struct ProcessRuntimeOptions {
  RankEnv env;
  std::string role = "rank";
  std::chrono::milliseconds startup_deadline = kStartupDeadlineDefault;
  std::chrono::milliseconds steady_deadline = kSteadyDeadlineDefault;
  std::chrono::milliseconds hard_exit_deadline = kHardExitDeadlineDefault;
  pid_t parent_pid = 0;  // > 0: the watchdog ends the rank when it is re-parented
  PhasePolicy policy = make_standard_phase_policy();
  // faulthandler's signal and descriptor (-1: no Python stacks).
  int stack_signal = -1;
  int stack_fd = -1;
  // Warm recovery: a curable cause ends this generation (FatalOptions).
  bool end_generation_on_curable = false;
};

// Control channels one runtime cancels on its fatal path, at most.
inline constexpr std::size_t kCancelledChannelsMax = 64;

class ProcessRuntime {
 public:
  // Joins the job under env.generation (token), then starts the watchdog.
  // Blocking up to startup_deadline for the job token. Throws what
  // join_job, open_store, FatalHandler and Watchdog throw.
  explicit ProcessRuntime(ProcessRuntimeOptions options);
  ~ProcessRuntime();  // stops the tracker and the watchdog
  ProcessRuntime(const ProcessRuntime&) = delete;
  ProcessRuntime& operator=(const ProcessRuntime&) = delete;

  const RankEnv& env() const noexcept { return options_.env; }
  Store& store() noexcept { return *store_; }  // this generation's key space
  Store& job_store() noexcept { return *job_store_; }  // the job level (recovery.h)
  FlightRecorder& recorder() noexcept { return recorder_; }
  CollectiveGate& gate() noexcept { return *gate_; }
  Watchdog& watchdog() noexcept { return *watchdog_; }  // stopped after close()
  // These two throw Error{kAborted} after close().
  FatalHandler& fatal() { return *open_or_throw(fatal_.get()); }
  CompletionTracker& tracker() { return *open_or_throw(tracker_.get()); }

  // Ends this guard now, whatever still refers to it from Python: stops the
  // poller and the watchdog, refuses every later guarded call, and destroys
  // the fatal path (its hard-exit clock with it), so an ended generation's
  // guard cannot end the process while the rank waits for the next.
  // Idempotent; the destructor calls it.
  void close();

  // Sets the process-wide phase (gate checks, recorder events, and the
  // watchdog's deadline: start-up until the first other phase).
  void set_phase(Phase phase);

  // Under warm recovery the fatal path cancels `channel` (waking its waiters
  // on every rank of the host) unless it is gone by then. Throws
  // Error{kLimit} past kCancelledChannelsMax live channels. Any thread.
  void cancel_on_fault(std::weak_ptr<Channel> channel);
  // Blocks until the fatal path has aborted this generation (true) or
  // release_waiters() was called (false). Any thread.
  bool wait_generation_end();
  void release_waiters();

 private:
  template <typename T>
  T* open_or_throw(T* part) const {
    if (part == nullptr) {
      throw Error(ErrorCode::kAborted,
                  "the guard of generation " + std::to_string(options_.env.generation) + " was closed");
    }
    return part;
  }
  void abort_generation() noexcept;
  void write_python_stacks() const noexcept;

  ProcessRuntimeOptions options_;
  // Declared first: the fatal path's abort action uses them until the end.
  std::mutex end_mutex_;  // the two flags and the channels
  std::condition_variable end_cv_;
  bool aborted_ = false;
  bool released_ = false;
  std::vector<std::weak_ptr<Channel>> channels_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Store> job_store_;
  FlightRecorder recorder_;
  std::unique_ptr<FatalHandler> fatal_;
  std::unique_ptr<Watchdog> watchdog_;
  std::unique_ptr<GuardObserver> observer_;
  std::unique_ptr<CollectiveGate> gate_;
  std::unique_ptr<CompletionTracker> tracker_;
  std::terminate_handler previous_terminate_ = nullptr;

};

}  // namespace lockstep::python
