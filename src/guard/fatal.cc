#include "lockstep/fatal.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

#include "guard/thread_name.h"
#include "lockstep/poison.h"
#include "lockstep/recovery.h"

namespace lockstep {

namespace {

// Signal handlers are per process, so the write end of the live handler's
// self-pipe and the handlers it replaced are necessarily process-wide; the fd
// is -1 when no handler is live.
std::atomic<int> g_signal_write_fd{-1};
std::atomic<bool> g_handler_live{false};

// Wakes the signal thread to leave (never a real signal number).
constexpr unsigned char kStopByte = 0;
constexpr int kHandledSignals[] = {SIGTERM, SIGUSR1};
struct sigaction g_previous_actions[2];

extern "C" void forward_signal(int signal_number) {
  const int saved_errno = errno;
  const int fd = g_signal_write_fd.load(std::memory_order_relaxed);
  const auto byte = static_cast<unsigned char>(signal_number);
  if (fd >= 0) {
    [[maybe_unused]] const ssize_t n = ::write(fd, &byte, 1);
  }
  errno = saved_errno;
}

// stderr without stdio: another thread may hold stdio's lock while it hangs.
void log_line(const std::string& line) noexcept {
  const std::string text = line + "\n";
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(STDERR_FILENO, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<std::size_t>(n);
  }
}

[[noreturn]] void wait_for_exit() noexcept {
  // Another thread runs the fatal path; the hard-exit thread bounds it.
  for (;;) ::pause();
}

}  // namespace

FatalHandler::FatalHandler(FatalOptions options, FlightRecorder& recorder, Store* store)
    : options_(std::move(options)), recorder_(recorder), store_(store) {
  if (g_handler_live.exchange(true)) {
    throw Error(ErrorCode::kInternal, "a FatalHandler already exists in this process");
  }
  if (::pipe2(signal_pipe_, O_CLOEXEC) != 0) {
    g_handler_live.store(false);
    throw Error(ErrorCode::kResource, "fatal handler: cannot create the signal pipe");
  }
  hard_thread_ = std::thread([this] { hard_exit_thread(); });
  signal_thread_ = std::thread([this] { signal_thread(); });
  if (options_.install_signal_handlers) install_signals();
}

FatalHandler::~FatalHandler() {
  if (signals_installed_) restore_signals();
  {
    std::lock_guard<std::mutex> lock(hard_mutex_);
    hard_stop_ = true;
  }
  hard_cv_.notify_all();
  hard_thread_.join();
  const unsigned char stop = kStopByte;
  while (::write(signal_pipe_[1], &stop, 1) < 0 && errno == EINTR) {
  }
  signal_thread_.join();
  ::close(signal_pipe_[0]);
  ::close(signal_pipe_[1]);
  g_handler_live.store(false);
}

void FatalHandler::install_signals() {
  g_signal_write_fd.store(signal_pipe_[1]);
  struct sigaction action = {};
  action.sa_handler = forward_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (std::size_t i = 0; i < std::size(kHandledSignals); ++i) {
    ::sigaction(kHandledSignals[i], &action, &g_previous_actions[i]);
  }
  signals_installed_ = true;
}

void FatalHandler::restore_signals() {
  for (std::size_t i = 0; i < std::size(kHandledSignals); ++i) {
    ::sigaction(kHandledSignals[i], &g_previous_actions[i], nullptr);
  }
  g_signal_write_fd.store(-1);
  signals_installed_ = false;
}

void FatalHandler::set_abort_action(std::function<void()> abort) {
  std::lock_guard<std::mutex> lock(sources_mutex_);
  abort_ = std::move(abort);
}

void FatalHandler::set_sources(FatalSources sources) {
  std::lock_guard<std::mutex> lock(sources_mutex_);
  sources_ = std::move(sources);
}

void FatalHandler::signal_thread() {
  guard_detail::set_current_thread_name("signals");
  for (;;) {
    unsigned char byte = 0;
    const ssize_t n = ::read(signal_pipe_[0], &byte, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || byte == kStopByte) return;
    if (byte == SIGUSR1) {
      try {
        dump_now(DumpReason{DumpReasonKind::kSignal, "sigusr1", "dump requested by SIGUSR1", 0});
      } catch (const std::exception& e) {
        log_line(std::string("lockstep: SIGUSR1 dump failed: ") + e.what());
      }
    } else if (byte == SIGTERM && ending_generation()) {
      ::_exit(kExitTerminated);  // the launcher stops a rank whose generation already ended
    } else if (byte == SIGTERM) {
      fail(FatalCause{DumpReasonKind::kSignal, ErrorCode::kPeerFailure, "sigterm",
                      "terminated by SIGTERM", false, kExitTerminated});
    }
  }
}

void FatalHandler::hard_exit_thread() {
  guard_detail::set_current_thread_name("hard-exit");
  std::unique_lock<std::mutex> lock(hard_mutex_);
  hard_cv_.wait(lock, [this] { return hard_armed_ || hard_stop_; });
  if (!hard_armed_) return;
  // Only the end of a generation (the handler's destruction once the rank
  // unwound) cancels an armed hard exit: otherwise fail() never returns.
  if (hard_cv_.wait_until(lock, hard_deadline_, [this] { return hard_stop_; })) return;
  log_line("lockstep: rank " + std::to_string(options_.rank) + ": fatal path exceeded its " +
           std::to_string(options_.hard_exit_deadline.count()) + " ms hard deadline; exiting " +
           std::to_string(kExitHardDeadline));
  ::_exit(kExitHardDeadline);
}

DumpHeader FatalHandler::make_header(const DumpReason& reason) const {
  FatalSources sources;
  {
    std::lock_guard<std::mutex> lock(sources_mutex_);
    sources = sources_;
  }
  DumpHeader header;
  header.rank = options_.rank;
  header.world_size = options_.world_size;
  header.role = options_.role;
  header.reason = reason;
  if (sources.armed) header.armed = sources.armed();
  if (sources.ledgers) header.ledgers = sources.ledgers();
  if (sources.counters) header.counters = sources.counters();
  header.counters.emplace_back("recorder_dropped_events",
                               static_cast<std::int64_t>(recorder_.dropped_events()));
  return header;
}

std::filesystem::path FatalHandler::dump_now(const DumpReason& reason) {
  std::lock_guard<std::mutex> lock(dump_mutex_);
  if (tripped()) return {};
  return write_dump(options_.job_dir, make_header(reason), recorder_);
}

void FatalHandler::write_beside_dump() noexcept {
  std::function<void()> beside;
  {
    std::lock_guard<std::mutex> lock(sources_mutex_);
    beside = sources_.beside_dump;
  }
  if (!beside) return;
  try {
    beside();
  } catch (const std::exception& e) {
    log_line(std::string("lockstep: writing beside the dump failed: ") + e.what());
  }
}

void FatalHandler::write_fatal_dump(const DumpReason& reason) {
  // A SIGUSR1 dump in progress finishes first (it cannot block on workers);
  // if it is somehow stuck, write anyway: the rename keeps the file whole.
  // Polled with try_lock rather than a timed lock: ThreadSanitizer's runtime
  // does not see pthread_mutex_clocklock, and took the unlock for a bug.
  std::unique_lock<std::mutex> lock(dump_mutex_, std::defer_lock);
  const auto give_up = std::chrono::steady_clock::now() + options_.hard_exit_deadline / 4;
  while (!lock.try_lock() && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  write_dump(options_.job_dir, make_header(reason), recorder_);
}

void FatalHandler::fail(const FatalCause& cause) noexcept {
  {
    std::lock_guard<std::mutex> lock(trip_mutex_);
    if (tripped_.load(std::memory_order_acquire)) {
      if (ends_generation_) return;  // the caller unwinds with its generation
      wait_for_exit();
    }
    ends_generation_ =
        options_.end_generation_on_curable && cause.exit_code == 0 && restart_can_cure(cause.code);
    first_cause_ = cause;
    tripped_.store(true, std::memory_order_release);
  }
  {
    std::lock_guard<std::mutex> lock(hard_mutex_);
    hard_armed_ = true;
    hard_deadline_ = std::chrono::steady_clock::now() + options_.hard_exit_deadline;
  }
  hard_cv_.notify_all();
  const int exit_code = cause.exit_code != 0 ? cause.exit_code : exit_code_for(cause.code);
  const std::string code_name =
      cause.code_name.empty() ? std::string(error_code_name(cause.code)) : cause.code_name;
  log_line("lockstep: rank " + std::to_string(options_.rank) + " fatal (" + code_name +
           ", exit " + std::to_string(exit_code) + "): " + cause.message);
  write_beside_dump();
  try {
    write_fatal_dump(DumpReason{cause.kind, code_name, cause.message, exit_code});
  } catch (const std::exception& e) {
    log_line(std::string("lockstep: dump failed: ") + e.what());
  }
  if (!cause.peer_poisoned && store_ != nullptr) {
    try {
      raise_poison(*store_, PoisonMark{options_.rank, code_name, cause.message});
    } catch (const std::exception& e) {
      log_line(std::string("lockstep: raising the poison mark failed: ") + e.what());
    }
  }
  run_abort();
  if (!ends_generation_) ::_exit(exit_code);
  log_line("lockstep: rank " + std::to_string(options_.rank) +
           ": the fault ends this generation; the process stays for the next one");
  {
    std::lock_guard<std::mutex> lock(trip_mutex_);
    fatal_path_done_ = true;
  }
  fatal_path_cv_.notify_all();
}

bool FatalHandler::ending_generation() {
  std::lock_guard<std::mutex> lock(trip_mutex_);
  return tripped_.load(std::memory_order_acquire) && ends_generation_;
}

bool FatalHandler::await_fatal_path() {
  std::unique_lock<std::mutex> lock(trip_mutex_);
  if (!tripped_.load(std::memory_order_acquire)) return false;
  // Only a generation-ending path returns; the hard exit bounds the wait.
  fatal_path_cv_.wait(lock, [this] { return fatal_path_done_; });
  return true;
}

void FatalHandler::fail(const Error& error) noexcept {
  const bool timeout = error.code() == ErrorCode::kTimeout;
  fail(FatalCause{timeout ? DumpReasonKind::kTimeout : DumpReasonKind::kFatal, error.code(), "",
                  error.what(), false, 0});
}

void FatalHandler::fail_current_exception() noexcept {
  try {
    throw;
  } catch (const Error& error) {
    fail(error);
  } catch (const std::exception& error) {
    fail(FatalCause{DumpReasonKind::kFatal, ErrorCode::kInternal, "", error.what(), false, 0});
  } catch (...) {
    fail(FatalCause{DumpReasonKind::kFatal, ErrorCode::kInternal, "", "unknown exception", false, 0});
  }
}

void FatalHandler::fail(const WatchdogFiring& firing) noexcept {
  const bool timeout = firing.cause == WatchdogCause::kDeadline;
  fail(FatalCause{timeout ? DumpReasonKind::kTimeout : DumpReasonKind::kFatal, firing.code, "",
                  firing.message, firing.cause == WatchdogCause::kPeerPoison, 0});
}

void FatalHandler::run_abort() {
  std::function<void()> abort;
  {
    std::lock_guard<std::mutex> lock(sources_mutex_);
    abort = abort_;
  }
  if (abort) {
    struct Done {
      std::mutex mutex;
      std::condition_variable cv;
      bool done = false;
    };
    auto done = std::make_shared<Done>();
    try {
      // Sacrificial: if abort hangs inside the library, this thread is left
      // behind and the hard-exit thread ends the process.
      std::thread([abort, done] {
        guard_detail::set_current_thread_name("abort");
        try {
          abort();
        } catch (const std::exception& e) {
          log_line(std::string("lockstep: backend abort threw: ") + e.what());
        }
        std::lock_guard<std::mutex> lock(done->mutex);
        done->done = true;
        done->cv.notify_all();
      }).detach();
      std::unique_lock<std::mutex> lock(done->mutex);
      done->cv.wait_until(lock, hard_deadline_, [&] { return done->done; });
      if (!done->done) wait_for_exit();
    } catch (const std::exception& e) {
      log_line(std::string("lockstep: cannot run the backend abort: ") + e.what());
    }
  }
}

}  // namespace lockstep
