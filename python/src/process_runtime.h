// The guard of one Python rank (lockstep.init()): the same objects the C++
// runtime builds in rank_main — job store, flight recorder, fatal path,
// watchdog — plus the CollectiveGate that guarded torch groups pass through
// and the CompletionTracker that follows their work without a host wait.
//
// An uncaught C++ exception anywhere in the process (a backend's thread)
// takes the fatal path too, instead of aborting with no dump.
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
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <vector>

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
};

class ProcessRuntime {
 public:
  // Joins the job (token, generation), then starts the watchdog. Blocking up
  // to startup_deadline for the job token. Throws what join_job,
  // open_store, FatalHandler and Watchdog throw.
  explicit ProcessRuntime(ProcessRuntimeOptions options);
  ~ProcessRuntime();  // stops the tracker and the watchdog
  ProcessRuntime(const ProcessRuntime&) = delete;
  ProcessRuntime& operator=(const ProcessRuntime&) = delete;

  const RankEnv& env() const noexcept { return options_.env; }
  Store& store() noexcept { return *store_; }
  FlightRecorder& recorder() noexcept { return recorder_; }
  FatalHandler& fatal() noexcept { return *fatal_; }
  Watchdog& watchdog() noexcept { return *watchdog_; }
  CollectiveGate& gate() noexcept { return *gate_; }
  CompletionTracker& tracker() noexcept { return *tracker_; }

  // Sets the process-wide phase (gate checks, recorder events, and the
  // watchdog's deadline: start-up until the first other phase).
  void set_phase(Phase phase);

 private:
  void write_python_stacks() const noexcept;

  ProcessRuntimeOptions options_;
  std::unique_ptr<Store> store_;
  FlightRecorder recorder_;
  std::unique_ptr<FatalHandler> fatal_;
  std::unique_ptr<Watchdog> watchdog_;
  std::unique_ptr<GuardObserver> observer_;
  std::unique_ptr<CollectiveGate> gate_;
  std::unique_ptr<CompletionTracker> tracker_;
  std::terminate_handler previous_terminate_ = nullptr;
};

}  // namespace lockstep::python
