// The fatal path (SPEC §4C, "crash > hang"): one FatalHandler per process
// turns any reason to stop — a watchdog expiry, a fatal Error caught by the
// runtime, a peer's poison mark, SIGTERM — into the same bounded sequence:
//   0. mark the rank tripped (no backend call from now on) and start the
//      hard-exit clock;
//   1. write the flight-recorder dump (reason, armed deadlines, ledger
//      digests, counters) to <job_dir>/dumps/rank-R.json;
//   2. raise this rank's poison mark in the store, unless a peer's poison is
//      the cause (its mark already stops everyone);
//   3. run the backend abort on a sacrificial detached thread;
//   4. _exit(exit_code_for(code)) — or _exit(kExitHardDeadline) from a
//      separate, pre-started thread when 0–3 have not finished within the hard
//      deadline (a hung abort, dump or store: C5).
// The first cause wins; later triggers, from any thread, block until the exit.
// Under warm recovery (FatalOptions::end_generation_on_curable) a curable
// cause replaces step 4 by the end of the rank's generation: the process,
// its weights and its device context stay; its communicators do not.
//
// SIGUSR1 writes a dump and the process continues. Signals are turned into
// work on a pre-started thread through a self-pipe, so no handler does more
// than one write(2).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "lockstep/error.h"
#include "lockstep/flight_recorder.h"
#include "lockstep/store.h"
#include "lockstep/watchdog.h"

namespace lockstep {

// From the first trigger to _exit, whatever hangs. Covers a dump of a full
// ring, one store write and a healthy abort with margin.
inline constexpr std::chrono::milliseconds kHardExitDeadlineDefault{1'500};
// 128 + SIGTERM, the shell's convention for "terminated by SIGTERM".
inline constexpr int kExitTerminated = 143;

struct FatalOptions {
  int rank = 0;
  int world_size = 1;
  std::string role = "rank";  // dump "role": stage0 | leader | worker | rank
  std::filesystem::path job_dir;  // dumps go under job_dir/dumps
  std::chrono::milliseconds hard_exit_deadline = kHardExitDeadlineDefault;
  // SIGTERM => fail, SIGUSR1 => dump and continue. The previous handlers are
  // restored by the destructor.
  bool install_signal_handlers = true;
  // Warm recovery (recovery.h, OnFault::kRestart): a cause a restart can
  // cure (restart_can_cure, and no forced exit code such as SIGTERM's) ends
  // this rank's *generation*, not its process: steps 0–3 run as always, then
  // instead of step 4 every fail() returns to its caller, which must unwind
  // (no backend call: tripped() stays true); the owner waits in
  // await_fatal_path() and destroys the handler with the generation. The
  // hard-exit deadline still bounds the whole unwinding.
  bool end_generation_on_curable = false;
};

struct FatalCause {
  DumpReasonKind kind = DumpReasonKind::kFatal;
  ErrorCode code = ErrorCode::kInternal;
  // The dump's and poison mark's "code"; empty: error_code_name(code).
  std::string code_name;
  std::string message;
  // True when a peer's poison mark is the cause: this rank then raises none.
  bool peer_poisoned = false;
  // 0: exit_code_for(code).
  int exit_code = 0;
};

// Where the dump's optional parts come from. Each runs on the failing thread
// during the fatal path and must not wait on a lock a blocked worker may hold
// (the hard deadline still bounds a mistake).
struct FatalSources {
  std::function<std::vector<ArmedDeadline>()> armed;
  std::function<std::vector<LedgerSummary>()> ledgers;
  std::function<std::vector<std::pair<std::string, std::int64_t>>()> counters;
  // Writes what the dump cannot hold into a file beside it, before the dump
  // (the Python package: every Python thread's stack, without the GIL).
  std::function<void()> beside_dump;
};

class FatalHandler {
 public:
  // At most one per process (signal handlers are per process): a second live
  // one throws Error{kInternal}. `recorder` must outlive the handler; `store`
  // may be null (no poison mark) and must outlive it otherwise. Starts the
  // hard-exit and signal threads. Throws Error{kResource} when the pipe or a
  // thread cannot be created.
  FatalHandler(FatalOptions options, FlightRecorder& recorder, Store* store);
  ~FatalHandler();
  FatalHandler(const FatalHandler&) = delete;
  FatalHandler& operator=(const FatalHandler&) = delete;

  // The abort of every backend (e.g. [&]{ communicator.abort(); }), run on a
  // sacrificial thread in step 3; tests inject one that hangs (C5). Set it
  // before anything can fail. Any thread.
  void set_abort_action(std::function<void()> abort);
  void set_sources(FatalSources sources);

  // Runs the fatal path; any thread; the first caller does the work. Never
  // returns — any other caller blocks until the process exits — unless the
  // first cause ends the generation (FatalOptions::end_generation_on_curable):
  // then the first caller returns once steps 0–3 are done and every other
  // caller returns at once.
  void fail(const FatalCause& cause) noexcept;
  // fail() for a lockstep::Error caught by the runtime (kind fatal, or
  // timeout for kTimeout).
  void fail(const Error& error) noexcept;
  // fail() for the exception being handled (call it inside a catch block, so
  // everything the abort action uses is still alive): a lockstep::Error keeps
  // its code, anything else is kInternal.
  void fail_current_exception() noexcept;
  // fail() for a watchdog firing: wire it as the Watchdog's on_fire.
  void fail(const WatchdogFiring& firing) noexcept;

  // After a fail() that ended the generation: blocks until the fatal path's
  // dump, poison mark and abort are done (the hard-exit deadline bounds it),
  // so the owner may then tear the generation down. Returns false at once
  // when fail() has not run. Any thread.
  bool await_fatal_path();
  // The cause that ended the generation (valid after await_fatal_path()).
  const FatalCause& generation_cause() const noexcept { return first_cause_; }

  // Writes a dump now and returns its path; the process continues (SIGUSR1,
  // "dump at clean exit"). Blocking on file I/O; any thread. Skipped (empty
  // path) once the fatal path has started, so it never replaces that dump.
  // Throws Error{kResource} when the file cannot be written.
  std::filesystem::path dump_now(const DumpReason& reason);

  // True once fail() has begun: the runtime must not call the backend.
  bool tripped() const noexcept { return tripped_.load(std::memory_order_acquire); }

 private:
  DumpHeader make_header(const DumpReason& reason) const;
  void write_beside_dump() noexcept;
  void write_fatal_dump(const DumpReason& reason);
  // Runs the abort action on a sacrificial thread; never returns if it
  // outlives the hard deadline.
  void run_abort();
  // fail() ran and its cause ends the generation, not the process.
  bool ending_generation();
  void hard_exit_thread();
  void signal_thread();
  void install_signals();
  void restore_signals();

  const FatalOptions options_;
  FlightRecorder& recorder_;
  Store* const store_;
  std::atomic<bool> tripped_{false};

  std::mutex trip_mutex_;  // the first fail() and what it decided
  bool ends_generation_ = false;
  FatalCause first_cause_;
  std::condition_variable fatal_path_cv_;
  bool fatal_path_done_ = false;

  mutable std::mutex sources_mutex_;  // set_* vs. the fatal path; never held while blocking
  std::function<void()> abort_;
  FatalSources sources_;
  // Serialises dump_now (SIGUSR1) with the fatal dump so neither replaces a
  // newer file with an older one; the fatal path waits for it only briefly.
  std::mutex dump_mutex_;

  std::mutex hard_mutex_;  // hard-exit thread and fail()/~FatalHandler only
  std::condition_variable hard_cv_;
  bool hard_armed_ = false;
  bool hard_stop_ = false;
  std::chrono::steady_clock::time_point hard_deadline_;
  std::thread hard_thread_;

  int signal_pipe_[2] = {-1, -1};
  std::thread signal_thread_;
  bool signals_installed_ = false;
};

}  // namespace lockstep
