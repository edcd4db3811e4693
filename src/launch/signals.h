// The launcher's signals, read synchronously: while a SignalScope lives, the
// calling thread has SIGCHLD, SIGTERM, SIGINT, SIGHUP and SIGPIPE blocked and
// receives them through a signalfd, so the supervision loop handles them
// between polls instead of in an async handler. SIGCHLD's disposition is also
// SIG_DFL for the scope: under SIG_IGN the kernel would reap the ranks itself
// and their exit statuses would be lost. Private to src/launch.
#pragma once

#include <signal.h>

#include "launch/fd.h"

namespace lockstep::launch_detail {

class SignalScope {
 public:
  // Blocks the signals on the calling thread. Throws Error{kResource}.
  SignalScope();
  // Restores the caller's signal mask and SIGCHLD disposition.
  ~SignalScope();
  SignalScope(const SignalScope&) = delete;
  SignalScope& operator=(const SignalScope&) = delete;

  // Poll for POLLIN.
  int fd() const { return fd_.get(); }

  // The next pending signal number, or 0 when none is pending. Non-blocking.
  int next();

 private:
  sigset_t previous_mask_;
  struct sigaction previous_sigchld_ {};
  Fd fd_;
};

// True for the signals that stop the job when the launcher receives them.
bool is_stop_signal(int signal_number);

}  // namespace lockstep::launch_detail
