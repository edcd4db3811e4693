#include "process_runtime.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <exception>
#include <string>
#include <utility>

#include "lockstep/job_token.h"
#include "lockstep/recovery.h"
#include "lockstep/tripwire.h"

namespace lockstep::python {
namespace {

// The poller's period for torch work: a completion seen 100 us late costs
// nothing (deadlines are seconds), and querying less often keeps the poller
// off the CUDA driver's locks while the Python thread launches kernels.
constexpr std::chrono::microseconds kPythonPollPeriod{100};

// The runtime whose fatal path std::terminate takes (one per process).
std::atomic<FatalHandler*> terminate_target{nullptr};

// A C++ exception nobody caught — typically on a backend's own thread, such
// as Gloo's "op.preamble.length <= op.nbytes" when ranks disagree on a count
// — would abort the rank with no dump and leave its peers to time out. Take
// the fatal path instead: dump, poison, exit with the backend's code.
[[noreturn]] void fail_on_terminate() {
  std::string what = "std::terminate without an exception";
  if (const std::exception_ptr current = std::current_exception()) {
    try {
      std::rethrow_exception(current);
    } catch (const std::exception& error) {
      what = std::string("uncaught C++ exception: ") + error.what();
    } catch (...) {
      what = "uncaught C++ exception of unknown type";
    }
  }
  if (FatalHandler* fatal = terminate_target.load()) {
    FatalCause cause;
    cause.code = ErrorCode::kBackend;
    cause.message = what;
    fatal->fail(cause);
  }
  std::abort();
}

}  // namespace

ProcessRuntime::ProcessRuntime(ProcessRuntimeOptions options) : options_(std::move(options)) {
  const RankEnv& env = options_.env;
  const std::shared_ptr<Store> base = open_store(env);
  const JobCredentials credentials{env.job_id, env.job_token, env.generation};
  store_ = join_job(base, credentials, env.rank, options_.startup_deadline);
  job_store_ = job_level_store(base, credentials);
  recorder_.set_phase(phase_name(Phase::kStartup));
  FatalOptions fatal_options;
  fatal_options.rank = env.rank;
  fatal_options.world_size = env.world_size;
  fatal_options.role = options_.role;
  fatal_options.job_dir = generation_dir(env.job_dir, env.generation);
  fatal_options.hard_exit_deadline = options_.hard_exit_deadline;
  fatal_options.end_generation_on_curable = options_.end_generation_on_curable;
  fatal_ = std::make_unique<FatalHandler>(fatal_options, recorder_, store_.get());

  WatchdogOptions watchdog_options;
  watchdog_options.startup_deadline = options_.startup_deadline;
  watchdog_options.steady_deadline = options_.steady_deadline;
  watchdog_options.store = store_.get();
  watchdog_options.rank = env.rank;
  watchdog_options.world_size = env.world_size;
  watchdog_options.parent_pid = options_.parent_pid;
  FatalHandler& fatal = *fatal_;
  watchdog_ = std::make_unique<Watchdog>(watchdog_options,
                                         [&fatal](const WatchdogFiring& firing) { fatal.fail(firing); });
  observer_ = std::make_unique<GuardObserver>(recorder_, watchdog_.get());
  gate_ = std::make_unique<CollectiveGate>(env.rank, env.world_size, options_.policy, Phase::kStartup,
                                           observer_.get());
  CompletionTrackerOptions tracker_options;
  tracker_options.poll_period = kPythonPollPeriod;
  tracker_ = std::make_unique<CompletionTracker>(*observer_, [&fatal](const Error& error) { fatal.fail(error); },
                                                 tracker_options);

  FatalSources sources;
  sources.armed = [this] { return watchdog_->armed(); };
  sources.ledgers = [this] { return ledger_summaries(*gate_); };
  sources.beside_dump = [this] { write_python_stacks(); };
  fatal_->set_sources(std::move(sources));
  // Crash-only: no guarded call reaches torch after the fatal path began.
  // torch offers no abort callable without the GIL: its communicators go
  // with the process (_exit), or under warm recovery are aborted by the
  // Python thread that wait_generation_end() wakes.
  fatal_->set_abort_action([this] { abort_generation(); });
  watchdog_->start();
  terminate_target.store(fatal_.get());
  previous_terminate_ = std::set_terminate(fail_on_terminate);
}

ProcessRuntime::~ProcessRuntime() { close(); }

void ProcessRuntime::close() {
  release_waiters();
  if (fatal_ == nullptr) return;
  std::set_terminate(previous_terminate_);
  terminate_target.store(nullptr);
  tracker_.reset();
  watchdog_->stop();
  gate_->mark_aborted();
  fatal_.reset();
}

void ProcessRuntime::set_phase(Phase phase) {
  gate_->set_phase(phase);
  recorder_.set_phase(phase_name(phase));
  if (phase != Phase::kStartup) watchdog_->enter_steady_state();
}

void ProcessRuntime::cancel_on_fault(std::weak_ptr<Channel> channel) {
  const std::lock_guard<std::mutex> lock(end_mutex_);
  std::erase_if(channels_, [](const std::weak_ptr<Channel>& entry) { return entry.expired(); });
  if (channels_.size() >= kCancelledChannelsMax) {
    throw Error(ErrorCode::kLimit, "more than " + std::to_string(kCancelledChannelsMax) +
                                       " control channels open in one process");
  }
  channels_.push_back(std::move(channel));
}

bool ProcessRuntime::wait_generation_end() {
  std::unique_lock<std::mutex> lock(end_mutex_);
  end_cv_.wait(lock, [this] { return aborted_ || released_; });
  return aborted_;
}

void ProcessRuntime::release_waiters() {
  {
    const std::lock_guard<std::mutex> lock(end_mutex_);
    released_ = true;
  }
  end_cv_.notify_all();
}

void ProcessRuntime::abort_generation() noexcept {
  gate_->mark_aborted();
  {
    const std::lock_guard<std::mutex> lock(end_mutex_);
    // Under "exit" the process goes down and its peers see a dead ring
    // endpoint; under warm recovery the process stays, so its rings are
    // cancelled: no rank waits on an ended generation's ring.
    if (options_.end_generation_on_curable) {
      for (const std::weak_ptr<Channel>& entry : channels_) {
        if (const std::shared_ptr<Channel> channel = entry.lock()) channel->cancel();
      }
    }
    aborted_ = true;
  }
  end_cv_.notify_all();
}

void ProcessRuntime::write_python_stacks() const noexcept {
  if (options_.stack_signal <= 0 || options_.stack_fd < 0) return;
  const std::string dumps = (generation_dir(options_.env.job_dir, options_.env.generation) / "dumps").string();
  ::mkdir(dumps.c_str(), 0755);  // EEXIST is the common case
  const std::string path = dumps + "/rank-" + std::to_string(options_.env.rank) + ".pystacks.txt";
  const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  ::dup2(fd, options_.stack_fd);
  ::close(fd);
  // faulthandler's handler runs on this thread, before raise() returns.
  ::raise(options_.stack_signal);
}

}  // namespace lockstep::python
