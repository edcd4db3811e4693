#include "support/multiprocess.h"

#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <sstream>
#include <thread>

#include "lockstep/assert.h"
#include "lockstep/error.h"

namespace lockstep::test {
namespace {

using Clock = std::chrono::steady_clock;

// The parent polls its children this often; short next to any test bound.
constexpr std::chrono::milliseconds kReapPoll{2};

void set_rank_env(const RanksOptions& options, const std::string& job_dir, int rank) {
  const std::string world = std::to_string(options.world_size);
  const std::string store =
      options.store_url.empty() ? "file:" + job_dir + "/store" : options.store_url;
  setenv("RANK", std::to_string(rank).c_str(), 1);
  setenv("WORLD_SIZE", world.c_str(), 1);
  setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
  setenv("LOCAL_WORLD_SIZE", world.c_str(), 1);
  setenv("LOCKSTEP_JOB_DIR", job_dir.c_str(), 1);
  setenv("LOCKSTEP_STORE", store.c_str(), 1);
  setenv("LOCKSTEP_JOB_ID", options.job_id.c_str(), 1);
  setenv("LOCKSTEP_JOB_TOKEN", options.job_token.c_str(), 1);
  for (const auto& [name, value] : options.env) setenv(name.c_str(), value.c_str(), 1);
}

[[noreturn]] void run_child(const RanksOptions& options, const std::string& job_dir, int rank,
                            const std::function<int(int)>& body) {
  // A child must never outlive the test that forked it.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  set_rank_env(options, job_dir, rank);
  int code = 1;
  try {
    code = body(rank);
  } catch (const Error& error) {
    std::fprintf(stderr, "[rank %d] lockstep::Error: %s\n", rank, error.what());
    code = exit_code_for(error.code());
  } catch (const std::exception& error) {
    std::fprintf(stderr, "[rank %d] exception: %s\n", rank, error.what());
  }
  std::fflush(stdout);
  std::fflush(stderr);
  _exit(code);
}

std::string make_job_dir() {
  const char* tmp = getenv("TMPDIR");
  std::string pattern = std::string(tmp != nullptr ? tmp : "/tmp") + "/lockstep-test-XXXXXX";
  LOCKSTEP_ASSERT(mkdtemp(pattern.data()) != nullptr);
  return pattern;
}

RankOutcome outcome_of(int rank, pid_t pid, int status, Clock::time_point start) {
  RankOutcome outcome;
  outcome.rank = rank;
  outcome.pid = pid;
  outcome.signaled = WIFSIGNALED(status);
  outcome.code = outcome.signaled ? WTERMSIG(status) : WEXITSTATUS(status);
  outcome.ended_after =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  return outcome;
}

void reap_ended(std::vector<pid_t>& running, RanksResult& result, Clock::time_point start) {
  for (std::size_t rank = 0; rank < result.ranks.size(); ++rank) {
    const pid_t pid = result.ranks[rank].pid;
    if (std::find(running.begin(), running.end(), pid) == running.end()) continue;
    int status = 0;
    const pid_t ended = waitpid(pid, &status, WNOHANG);
    LOCKSTEP_ASSERT(ended >= 0);
    if (ended == 0) continue;
    result.ranks[rank] = outcome_of(static_cast<int>(rank), pid, status, start);
    std::erase(running, pid);
  }
}

}  // namespace

bool RanksResult::all_ok() const {
  if (hung) return false;
  for (const RankOutcome& outcome : ranks) {
    if (!outcome.ok()) return false;
  }
  return true;
}

std::string RanksResult::describe() const {
  std::ostringstream out;
  out << "job_dir=" << job_dir << (hung ? " HUNG (wall bound expired)" : "") << "\n";
  for (const RankOutcome& outcome : ranks) {
    out << "  rank " << outcome.rank << " pid " << outcome.pid << ": "
        << (outcome.signaled ? "signal " : "exit ") << outcome.code << " after "
        << outcome.ended_after.count() << " ms\n";
  }
  return out.str();
}

RanksResult run_ranks(const RanksOptions& options, const std::function<int(int rank)>& body) {
  LOCKSTEP_ASSERT(options.world_size >= 1 && options.world_size <= kRanksMax);
  RanksResult result;
  result.job_dir = make_job_dir();
  result.ranks.resize(static_cast<std::size_t>(options.world_size));
  std::fflush(stdout);
  std::fflush(stderr);
  const Clock::time_point start = Clock::now();
  std::vector<pid_t> running;
  for (int rank = 0; rank < options.world_size; ++rank) {
    const pid_t pid = fork();
    LOCKSTEP_ASSERT(pid >= 0);
    if (pid == 0) run_child(options, result.job_dir, rank, body);
    result.ranks[static_cast<std::size_t>(rank)].pid = pid;
    running.push_back(pid);
  }
  const Clock::time_point deadline = start + options.wall_timeout;
  while (!running.empty()) {
    // Only our own children are reaped: a test may run other processes
    // (a redis-server) beside the ranks.
    reap_ended(running, result, start);
    if (running.empty()) break;
    if (Clock::now() >= deadline && !result.hung) {
      result.hung = true;
      for (const pid_t child : running) kill(child, SIGKILL);
    }
    std::this_thread::sleep_for(kReapPoll);
  }
  return result;
}

int pick_free_tcp_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  LOCKSTEP_ASSERT(fd >= 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  LOCKSTEP_ASSERT(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
  socklen_t length = sizeof(address);
  LOCKSTEP_ASSERT(getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0);
  close(fd);
  return ntohs(address.sin_port);
}

}  // namespace lockstep::test
