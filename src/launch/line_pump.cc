#include "launch/line_pump.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "lockstep/assert.h"
#include "lockstep/launcher.h"

namespace lockstep::launch_detail {
namespace {

// One read(2) takes at most this much; the pump returns to the poll loop
// after each read, so one chatty rank cannot starve supervision.
constexpr std::size_t kReadBytesMax = 64 * 1024;
// "[rank 255] " and the newline.
constexpr std::size_t kPrefixBytesMax = 16;
// A console line then fits one atomic pipe write: no interleaving with other
// writers, and POLLOUT on a pipe guarantees it cannot block.
static_assert(kLaunchLineBytesMax + kPrefixBytesMax <= PIPE_BUF);

bool console_accepts(int fd) {
  pollfd ready{fd, POLLOUT, 0};
  return ::poll(&ready, 1, kConsoleWaitMs) == 1 && (ready.revents & POLLOUT) != 0;
}

}  // namespace

LinePump::LinePump(int rank, Fd source, LineSinks sinks)
    : prefix_("[rank " + std::to_string(rank) + "] "), source_(std::move(source)), sinks_(sinks) {
  LOCKSTEP_ASSERT(prefix_.size() < kPrefixBytesMax);
  LOCKSTEP_ASSERT(sinks_.stats != nullptr && sinks_.log_fd >= 0);
  // Non-blocking so pump() never waits on a rank.
  const int flags = ::fcntl(source_.get(), F_GETFL);
  const int set = ::fcntl(source_.get(), F_SETFL, flags | O_NONBLOCK);
  LOCKSTEP_ASSERT(flags >= 0 && set == 0);
  partial_.reserve(kLaunchLineBytesMax);
}

bool LinePump::pump() {
  if (!source_.valid()) return false;
  char buffer[kReadBytesMax];
  const ssize_t n = ::read(source_.get(), buffer, sizeof buffer);
  if (n > 0) {
    forward(buffer, static_cast<std::size_t>(n));
    return true;
  }
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
  close();
  return false;
}

void LinePump::close() {
  if (!partial_.empty()) emit_line();
  source_.reset();
}

void LinePump::forward(const char* data, std::size_t size_bytes) {
  while (size_bytes > 0) {
    const char* newline = static_cast<const char*>(std::memchr(data, '\n', size_bytes));
    const std::size_t line_bytes =
        newline != nullptr ? static_cast<std::size_t>(newline - data) : size_bytes;
    const std::size_t room_bytes = kLaunchLineBytesMax - partial_.size();
    const std::size_t take_bytes = line_bytes < room_bytes ? line_bytes : room_bytes;
    partial_.append(data, take_bytes);
    const bool line_complete = newline != nullptr && take_bytes == line_bytes;
    const std::size_t consumed_bytes = take_bytes + (line_complete ? 1 : 0);
    data += consumed_bytes;
    size_bytes -= consumed_bytes;
    if (line_complete || partial_.size() == kLaunchLineBytesMax) emit_line();
  }
}

void LinePump::emit_line() {
  partial_.push_back('\n');
  if (!write_all(sinks_.log_fd, partial_)) ++sinks_.stats->log_lines_dropped;
  if (sinks_.console_fd >= 0 &&
      !(console_accepts(sinks_.console_fd) && write_all(sinks_.console_fd, prefix_ + partial_))) {
    ++sinks_.stats->console_lines_dropped;
  }
  partial_.clear();
}

}  // namespace lockstep::launch_detail
