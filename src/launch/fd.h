// Owned file descriptors and the two I/O loops the launcher needs; private to
// src/launch.
#pragma once

#include <cstddef>
#include <string_view>

namespace lockstep::launch_detail {

// Closes its descriptor on destruction. Move-only: a descriptor has one owner.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release();
  void reset();

 private:
  int fd_ = -1;
};

// A pipe whose ends are both O_CLOEXEC. Throws Error{kResource} naming `what`.
struct Pipe {
  Fd read;
  Fd write;
};
Pipe make_pipe(std::string_view what);

// Writes all of `bytes`, retrying EINTR and short writes. Blocking. Returns
// false on any other error (errno set).
bool write_all(int fd, std::string_view bytes);

}  // namespace lockstep::launch_detail
