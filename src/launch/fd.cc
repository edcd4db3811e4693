#include "launch/fd.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "lockstep/error.h"

namespace lockstep::launch_detail {

Fd& Fd::operator=(Fd&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = other.release();
  }
  return *this;
}

int Fd::release() {
  const int fd = fd_;
  fd_ = -1;
  return fd;
}

void Fd::reset() {
  if (fd_ >= 0) {
    // close() may report EINTR, but Linux has released the descriptor by
    // then; retrying would risk closing a descriptor another thread reused.
    ::close(fd_);
    fd_ = -1;
  }
}

Pipe make_pipe(std::string_view what) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    throw Error(ErrorCode::kResource,
                "launch: pipe for " + std::string(what) + ": " + std::strerror(errno));
  }
  return Pipe{Fd(fds[0]), Fd(fds[1])};
}

bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

}  // namespace lockstep::launch_detail
