#include "launch/signals.h"

#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "lockstep/assert.h"
#include "lockstep/error.h"

namespace lockstep::launch_detail {
namespace {

// SIGPIPE is blocked too: a rank that died before reading its start byte, or
// a console pipe whose reader went away, must turn into EPIPE on that write,
// not kill the launcher and strand the job.
constexpr int kScopeSignals[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGPIPE};

}  // namespace

SignalScope::SignalScope() {
  sigset_t mask;
  sigemptyset(&mask);
  for (int signal_number : kScopeSignals) sigaddset(&mask, signal_number);
  const int blocked = ::pthread_sigmask(SIG_BLOCK, &mask, &previous_mask_);
  LOCKSTEP_ASSERT(blocked == 0);
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  sigemptyset(&default_action.sa_mask);
  const int set = ::sigaction(SIGCHLD, &default_action, &previous_sigchld_);
  LOCKSTEP_ASSERT(set == 0);
  fd_ = Fd(::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!fd_.valid()) {
    const std::string reason = std::strerror(errno);
    ::sigaction(SIGCHLD, &previous_sigchld_, nullptr);
    ::pthread_sigmask(SIG_SETMASK, &previous_mask_, nullptr);
    throw Error(ErrorCode::kResource, "launch: signalfd: " + reason);
  }
}

SignalScope::~SignalScope() {
  // A SIGPIPE left pending would kill the process the moment it is unblocked;
  // it has already been answered by EPIPE.
  sigset_t pipe_only;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  const timespec no_wait{};
  while (::sigtimedwait(&pipe_only, nullptr, &no_wait) == SIGPIPE) {
  }
  ::sigaction(SIGCHLD, &previous_sigchld_, nullptr);
  ::pthread_sigmask(SIG_SETMASK, &previous_mask_, nullptr);
}

int SignalScope::next() {
  signalfd_siginfo info{};
  for (;;) {
    const ssize_t n = ::read(fd_.get(), &info, sizeof info);
    if (n == static_cast<ssize_t>(sizeof info)) return static_cast<int>(info.ssi_signo);
    if (n < 0 && errno == EINTR) continue;
    return 0;  // EAGAIN: nothing pending
  }
}

bool is_stop_signal(int signal_number) {
  return signal_number == SIGTERM || signal_number == SIGINT || signal_number == SIGHUP;
}

}  // namespace lockstep::launch_detail
