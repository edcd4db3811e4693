#include "job_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <thread>

namespace lockstep::testing {
namespace {

constexpr std::size_t kCapturedBytesMax = 8 << 20;  // per stream
constexpr std::size_t kDescribedFileBytesMax = 6000;

std::filesystem::path fresh_job_dir() {
  std::string templ = (std::filesystem::temp_directory_path() / "lockstep-breakit-XXXXXX").string();
  if (mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  return templ;
}

const char* lockstep_bin() {
  const char* bin = std::getenv("LOCKSTEP_BIN");
  if (bin == nullptr) throw std::runtime_error("LOCKSTEP_BIN is not set (ctest sets it)");
  return bin;
}

void read_available(int& fd, std::string& into) {
  if (fd < 0) return;
  std::array<char, 65536> buffer;
  const ssize_t n = read(fd, buffer.data(), buffer.size());
  if (n > 0) {
    if (into.size() < kCapturedBytesMax) into.append(buffer.data(), static_cast<std::size_t>(n));
    return;
  }
  if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
    close(fd);
    fd = -1;
  }
}

std::string file_head(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.size() > kDescribedFileBytesMax) text = text.substr(0, kDescribedFileBytesMax) + "\n...(cut)";
  return text;
}

}  // namespace

JobHandle start_lockstep(const std::vector<std::string>& args) {
  JobHandle handle;
  handle.job_dir = fresh_job_dir();
  int out[2], err[2];
  if (pipe(out) != 0 || pipe(err) != 0) throw std::runtime_error("pipe failed");
  std::vector<std::string> argv{lockstep_bin()};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back("--job-dir");
  argv.push_back(handle.job_dir.string());
  handle.started = std::chrono::steady_clock::now();
  handle.pid = fork();
  if (handle.pid == 0) {
    setpgid(0, 0);
    dup2(out[1], STDOUT_FILENO);
    dup2(err[1], STDERR_FILENO);
    std::vector<char*> raw;
    for (std::string& arg : argv) raw.push_back(arg.data());
    raw.push_back(nullptr);
    execv(raw[0], raw.data());
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  handle.stdout_fd = out[0];
  handle.stderr_fd = err[0];
  return handle;
}

JobRun wait_lockstep(JobHandle& handle, std::chrono::milliseconds bound) {
  JobRun run;
  run.job_dir = handle.job_dir;
  const auto deadline = handle.started + bound;
  int status = 0;
  bool reaped = false;
  while (!reaped) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      kill(-handle.pid, SIGKILL);
      kill(handle.pid, SIGKILL);
      run.hung = true;
      waitpid(handle.pid, &status, 0);
      break;
    }
    std::array<pollfd, 2> fds{{{handle.stdout_fd, POLLIN, 0}, {handle.stderr_fd, POLLIN, 0}}};
    poll(fds.data(), fds.size(), static_cast<int>(std::min<std::int64_t>(left.count(), 20)));
    read_available(handle.stdout_fd, run.stdout_text);
    read_available(handle.stderr_fd, run.stderr_text);
    reaped = waitpid(handle.pid, &status, WNOHANG) == handle.pid;
  }
  while (handle.stdout_fd >= 0) read_available(handle.stdout_fd, run.stdout_text);
  while (handle.stderr_fd >= 0) read_available(handle.stderr_fd, run.stderr_text);
  run.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - handle.started);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  run.json = nlohmann::json::parse(run.stdout_text, nullptr, false);
  if (run.json.is_discarded()) run.json = nullptr;
  return run;
}

std::vector<std::string> run_json_args(RunFlags defaults, const std::vector<std::string>& extra) {
  for (std::size_t i = 0; i + 1 < extra.size(); i += 2) {
    const auto same = [&](const auto& flag) { return flag.first == extra[i] && extra[i] != "--inject"; };
    std::erase_if(defaults, same);
    defaults.emplace_back(extra[i], extra[i + 1]);
  }
  std::vector<std::string> args{"run", "--json"};
  for (const auto& [flag, value] : defaults) {
    args.push_back(flag);
    args.push_back(value);
  }
  return args;
}

JobRun run_lockstep(const std::vector<std::string>& args, std::chrono::milliseconds bound) {
  JobHandle handle = start_lockstep(args);
  return wait_lockstep(handle, bound);
}

namespace {

// Every process of the job with its RANK (-1 when it has none).
std::vector<std::pair<pid_t, int>> job_processes(const std::filesystem::path& job_dir) {
  const std::string needle = "LOCKSTEP_JOB_DIR=" + job_dir.string();
  std::vector<std::pair<pid_t, int>> found;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "environ", std::ios::binary);
    std::string environ((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    bool ours = false;
    int rank = -1;
    std::size_t at = 0;
    for (std::size_t end; (end = environ.find('\0', at)) != std::string::npos; at = end + 1) {
      const std::string_view variable(environ.data() + at, end - at);
      ours = ours || variable == needle;
      if (variable.starts_with("RANK=")) rank = std::stoi(std::string(variable.substr(5)));
    }
    if (ours) found.emplace_back(static_cast<pid_t>(std::stol(name)), rank);
  }
  return found;
}

}  // namespace

std::vector<pid_t> job_rank_pids(const std::filesystem::path& job_dir) {
  std::vector<pid_t> pids;
  for (const auto& [pid, rank] : job_processes(job_dir)) pids.push_back(pid);
  return pids;
}

pid_t job_rank_pid(const std::filesystem::path& job_dir, int rank) {
  for (const auto& [pid, its_rank] : job_processes(job_dir)) {
    if (its_rank == rank) return pid;
  }
  return -1;
}

bool wait_until(const std::function<bool()>& ready, std::chrono::milliseconds bound) {
  const auto deadline = std::chrono::steady_clock::now() + bound;
  for (;;) {
    if (ready()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::size_t chunks_emitted_so_far(const std::filesystem::path& job_dir) {
  std::ifstream in(job_dir / "progress");
  std::size_t emitted = 0;
  return in >> emitted ? emitted : 0;
}

std::string describe_job(const JobRun& run) {
  std::ostringstream out;
  out << "exit " << run.exit_code << (run.hung ? " (HUNG: killed at the bound)" : "") << " after "
      << run.elapsed.count() << " ms\n--- stdout ---\n" << run.stdout_text.substr(0, kDescribedFileBytesMax)
      << "\n--- stderr ---\n" << run.stderr_text.substr(0, kDescribedFileBytesMax) << "\n";
  for (const char* sub : {"dumps", "logs"}) {
    const auto dir = run.job_dir / sub;
    if (!std::filesystem::exists(dir)) continue;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      out << "--- " << entry.path().string() << " ---\n" << file_head(entry.path()) << "\n";
    }
  }
  return out.str();
}

std::vector<int> rank_exit_codes(const std::filesystem::path& job_dir) {
  std::ifstream in(job_dir / "launch.json");
  const nlohmann::json launch = nlohmann::json::parse(in, nullptr, false);
  std::vector<int> codes;
  if (launch.is_discarded() || !launch.contains("ranks")) return codes;
  for (const auto& rank : launch["ranks"]) {
    const bool signaled = rank.value("end", std::string()) == "signaled";
    codes.push_back(signaled ? 128 + rank.value("code", 0) : rank.value("code", 0));
  }
  return codes;
}

}  // namespace lockstep::testing
