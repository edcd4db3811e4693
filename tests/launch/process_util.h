// Helpers shared by the launcher tests: bounded waits on conditions, process
// liveness through /proc, a scratch job directory. Test-only.
#pragma once

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace lockstep::launch_test {

// Every wait in these tests polls a condition at this period, up to a bound.
inline constexpr std::chrono::milliseconds kPollPeriod{10};

// Polls `done` until it holds or `bound` passes; returns whether it held.
template <typename Predicate>
bool wait_until(Predicate done, std::chrono::milliseconds bound) {
  const auto deadline = std::chrono::steady_clock::now() + bound;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(kPollPeriod);
  }
  return true;
}

// A process that no longer exists or is a zombie (nothing reaps orphans when
// the container's init does not) can no longer run.
inline bool process_gone(pid_t pid) {
  if (::kill(pid, 0) != 0) return errno == ESRCH;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const std::size_t close_paren = text.rfind(')');
  if (close_paren == std::string::npos || close_paren + 2 >= text.size()) return true;
  const char state = text[close_paren + 2];
  return state == 'Z' || state == 'X';
}

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Pids written one per file by ranks, from every file of `dir` whose name
// starts with `prefix`.
inline std::vector<pid_t> read_pids(const std::filesystem::path& dir, const std::string& prefix) {
  std::vector<pid_t> pids;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().filename().string().rfind(prefix, 0) != 0) continue;
    std::istringstream text(read_file(entry.path()));
    pid_t pid = 0;
    if (text >> pid) pids.push_back(pid);
  }
  return pids;
}

inline std::size_t count_files(const std::filesystem::path& dir, const std::string& prefix) {
  std::size_t count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    count += entry.path().filename().string().rfind(prefix, 0) == 0 ? 1 : 0;
  }
  return count;
}

// A fresh, empty directory under $TMPDIR (or /tmp), removed on destruction.
class ScratchDir {
 public:
  ScratchDir() {
    const char* tmpdir = std::getenv("TMPDIR");
    std::string pattern = std::string(tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp") +
                          "/lockstep-launch-test-XXXXXX";
    if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string str() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// Waits (bounded) for child `pid` to exit and returns its wait status;
// nullopt when it is still running at the bound (it is then SIGKILLed and
// reaped, so a hung launcher fails the test instead of hanging it).
inline std::optional<int> wait_child(pid_t pid, std::chrono::milliseconds bound) {
  int status = 0;
  const bool exited = wait_until([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, bound);
  if (exited) return status;
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return std::nullopt;
}

}  // namespace lockstep::launch_test
