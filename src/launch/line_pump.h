// Forwards one output stream of one rank, line by line: "[rank R] " + line
// onto the launcher's console stream, and the bare line into the rank's log
// file. Memory is bounded: a line longer than kLaunchLineBytesMax goes out in
// pieces of that size. Private to src/launch; launcher thread only.
#pragma once

#include <cstdint>
#include <string>

#include "launch/fd.h"

namespace lockstep::launch_detail {

// How long one console line may wait for the console to accept it. A console
// that stays full longer (a stalled `| less`) loses lines, never the
// launcher's ability to supervise; the log file still has every line.
inline constexpr int kConsoleWaitMs = 100;

// Lines that could not be written, summed over every pump of a job.
struct LineStats {
  std::int64_t console_lines_dropped = 0;
  std::int64_t log_lines_dropped = 0;
};

// Where one pump's lines go.
struct LineSinks {
  int console_fd = -1;  // launcher's stdout or stderr; -1: not forwarded
  int log_fd = -1;      // <job_dir>/logs/rank-R.log
  LineStats* stats = nullptr;
};

class LinePump {
 public:
  LinePump(int rank, Fd source, LineSinks sinks);

  // The descriptor to poll for POLLIN; -1 once the stream has ended.
  int fd() const { return source_.get(); }

  // Reads what is available without blocking and forwards complete lines.
  // At EOF or a read error, forwards the unterminated tail and closes the
  // source. Returns false once the stream has ended.
  bool pump();

  // Ends the stream now (the launcher stops draining a pipe that a stray
  // descendant keeps open), forwarding the unterminated tail.
  void close();

 private:
  void forward(const char* data, std::size_t size_bytes);
  void emit_line();

  std::string prefix_;
  Fd source_;
  LineSinks sinks_;
  std::string partial_;  // at most kLaunchLineBytesMax bytes
};

}  // namespace lockstep::launch_detail
