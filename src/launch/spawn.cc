#include "launch/spawn.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "lockstep/assert.h"
#include "lockstep/error.h"
#include "lockstep/launcher.h"

namespace lockstep::launch_detail {
namespace {

// The sentinel's pipe lives at this descriptor once everything else is closed.
constexpr int kSentinelFd = 3;
// The record that tells the sentinel the job ended normally.
constexpr std::int32_t kDisarmRecord = 0;
// The sentinel exits right after reading the disarm record; this bounds the
// reap in case something stopped it.
constexpr int kSentinelExitMs = 2000;
// Signals whose disposition a rank gets back to default: an inherited SIG_IGN
// for SIGTERM would turn every graceful stop into a SIGKILL.
constexpr int kResetSignals[] = {SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD};
// Signals the sentinel ignores so that only the launcher's death ends it.
constexpr int kSentinelIgnored[] = {SIGTERM, SIGINT, SIGHUP, SIGPIPE};

std::string errno_text() { return std::strerror(errno); }

std::vector<char*> c_strings(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (const std::string& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

void set_disposition(int signal_number, void (*handler)(int)) {
  struct sigaction action {};
  action.sa_handler = handler;
  sigemptyset(&action.sa_mask);
  ::sigaction(signal_number, &action, nullptr);
}

// Raw fds and pointers prepared before fork() for the rank child.
struct ChildPlan {
  const char* path;
  char* const* argv;
  char* const* envp;
  pid_t launcher_pid;
  int go_read;
  int go_write;
  int stdout_write;
  int stderr_write;
  int devnull;
};

// Runs between fork() and execve(): async-signal-safe calls only.
[[noreturn]] void run_rank_child(const ChildPlan& plan) {
  ::setpgid(0, 0);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  // The launcher may have died between fork() and prctl(), in which case no
  // death signal will ever come.
  if (::getppid() != plan.launcher_pid) ::_exit(kExitSpawnFailed);
  ::close(plan.go_write);
  char go = 0;
  ssize_t n = 0;
  do {
    n = ::read(plan.go_read, &go, 1);
  } while (n < 0 && errno == EINTR);
  if (n != 1) ::_exit(kExitSpawnFailed);  // the launcher died before guarding us
  if (::dup2(plan.devnull, STDIN_FILENO) < 0 || ::dup2(plan.stdout_write, STDOUT_FILENO) < 0 ||
      ::dup2(plan.stderr_write, STDERR_FILENO) < 0) {
    ::_exit(kExitSpawnFailed);
  }
  for (int signal_number : kResetSignals) set_disposition(signal_number, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execve(plan.path, plan.argv, plan.envp);
  static constexpr char kMessage[] = "lockstep launch: execve failed\n";
  (void)!::write(STDERR_FILENO, kMessage, sizeof kMessage - 1);
  ::_exit(kExitSpawnFailed);
}

// Runs in the forked sentinel: async-signal-safe calls only.
[[noreturn]] void run_sentinel(int read_fd, int write_fd, int devnull) {
  ::close(write_fd);
  for (int signal_number : kSentinelIgnored) set_disposition(signal_number, SIG_IGN);
  // Holding the launcher's other descriptors would delay EOF for whoever reads
  // them (a shell pipe, a rank's output pipe), so keep only the record pipe.
  const int moved = ::fcntl(read_fd, F_DUPFD, kSentinelFd);
  if (moved < 0) ::_exit(1);
  ::dup2(devnull, STDIN_FILENO);
  ::dup2(devnull, STDOUT_FILENO);
  ::dup2(devnull, STDERR_FILENO);
  if (moved != kSentinelFd && ::dup2(moved, kSentinelFd) < 0) ::_exit(1);
  ::syscall(SYS_close_range, kSentinelFd + 1, ~0U, 0);
  pid_t groups[kLaunchNprocMax];
  int group_count = 0;
  for (;;) {
    std::int32_t record = 0;
    const ssize_t n = ::read(kSentinelFd, &record, sizeof record);
    if (n < 0 && errno == EINTR) continue;
    if (n != static_cast<ssize_t>(sizeof record)) break;  // EOF: the launcher is gone
    if (record == kDisarmRecord) ::_exit(0);
    if (group_count < kLaunchNprocMax) groups[group_count++] = record;
  }
  for (int i = 0; i < group_count; ++i) ::kill(-groups[i], SIGKILL);
  ::_exit(0);
}

}  // namespace

SpawnedRank spawn_rank(const RankCommand& command, int rank, pid_t launcher_pid,
                       int devnull_fd, Sentinel& sentinel) {
  const std::string name = "rank " + std::to_string(rank);
  std::vector<char*> argv = c_strings(command.argv);
  std::vector<char*> envp = c_strings(command.envp);
  Pipe out = make_pipe(name + " stdout");
  Pipe err = make_pipe(name + " stderr");
  Pipe go = make_pipe(name + " start");
  const pid_t pid = ::fork();
  if (pid < 0) throw Error(ErrorCode::kResource, "launch: fork for " + name + ": " + errno_text());
  if (pid == 0) {
    run_rank_child(ChildPlan{command.path.c_str(), argv.data(), envp.data(), launcher_pid,
                             go.read.get(), go.write.get(), out.write.get(), err.write.get(),
                             devnull_fd});
  }
  // Set the group from this side too, so kill(-pid) is valid whichever of the
  // two processes runs first.
  ::setpgid(pid, pid);
  go.read.reset();
  out.write.reset();
  err.write.reset();
  try {
    sentinel.guard(pid);
  } catch (...) {
    ::kill(-pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    throw;
  }
  // If this write fails the child has already gone; reaping reports it.
  const char go_byte = 1;
  (void)write_all(go.write.get(), std::string_view(&go_byte, 1));
  return SpawnedRank{pid, std::move(out.read), std::move(err.read)};
}

Sentinel::Sentinel(int devnull_fd) {
  Pipe records = make_pipe("sentinel");
  const pid_t pid = ::fork();
  if (pid < 0) throw Error(ErrorCode::kResource, "launch: fork for sentinel: " + errno_text());
  if (pid == 0) run_sentinel(records.read.get(), records.write.get(), devnull_fd);
  pid_ = pid;
  write_ = std::move(records.write);
}

Sentinel::~Sentinel() { disarm(); }

void Sentinel::guard(pid_t pgid) {
  LOCKSTEP_ASSERT(pgid > 0 && write_.valid());
  const std::int32_t record = pgid;
  if (!write_all(write_.get(), std::string_view(reinterpret_cast<const char*>(&record),
                                                sizeof record))) {
    throw Error(ErrorCode::kResource, "launch: sentinel (pid " + std::to_string(pid_) +
                                          ") is gone: " + errno_text());
  }
}

void Sentinel::disarm() {
  if (pid_ < 0) return;
  const std::int32_t record = kDisarmRecord;
  (void)write_all(write_.get(),
                  std::string_view(reinterpret_cast<const char*>(&record), sizeof record));
  write_.reset();
  const Fd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0)));
  pollfd ready{pidfd.get(), POLLIN, 0};
  if (!pidfd.valid() || ::poll(&ready, 1, kSentinelExitMs) != 1) ::kill(pid_, SIGKILL);
  while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

}  // namespace lockstep::launch_detail
