#include "launch/job.h"

#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <system_error>

#include "lockstep/assert.h"
#include "lockstep/error.h"
#include "lockstep/job_token.h"

extern char** environ;

namespace lockstep::launch_detail {
namespace {

namespace fs = std::filesystem;

// Random bytes behind a generated token and job id.
constexpr std::size_t kTokenBytes = 16;
constexpr std::size_t kJobIdBytes = 8;
// A grace longer than this is a typo, not a policy.
constexpr std::int64_t kGraceMsMax = 10 * 60 * 1000;
// $PATH when the launcher's environment has none (execvp's default).
constexpr std::string_view kDefaultPath = "/bin:/usr/bin";

std::string random_hex(std::size_t size_bytes) {
  unsigned char bytes[kTokenBytes];
  LOCKSTEP_ASSERT(size_bytes <= sizeof bytes);
  std::size_t filled_bytes = 0;
  while (filled_bytes < size_bytes) {
    const ssize_t n = ::getrandom(bytes + filled_bytes, size_bytes - filled_bytes, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(ErrorCode::kResource, std::string("launch: getrandom: ") + std::strerror(errno));
    filled_bytes += static_cast<std::size_t>(n);
  }
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (std::size_t i = 0; i < size_bytes; ++i) {
    hex.push_back(kDigits[bytes[i] >> 4]);
    hex.push_back(kDigits[bytes[i] & 0xf]);
  }
  return hex;
}

void check_options(const LaunchOptions& options) {
  auto invalid = [](const std::string& what) {
    throw Error(ErrorCode::kInvalidArgument, "launch: " + what);
  };
  if (options.nproc < 1 || options.nproc > kLaunchNprocMax) {
    invalid("nproc " + std::to_string(options.nproc) + " outside 1.." +
            std::to_string(kLaunchNprocMax));
  }
  if (options.nnodes < 1 || options.nnodes > kLaunchNodesMax) {
    invalid("nnodes " + std::to_string(options.nnodes) + " outside 1.." + std::to_string(kLaunchNodesMax));
  }
  if (options.node_rank < 0 || options.node_rank >= options.nnodes) {
    invalid("node_rank " + std::to_string(options.node_rank) + " outside 0.." + std::to_string(options.nnodes - 1));
  }
  if (options.nnodes > 1 && (options.store.empty() || options.job_id.empty() || options.job_token.empty())) {
    invalid("nnodes " + std::to_string(options.nnodes) +
            " needs a store, a job id and a job token shared by every machine's launcher "
            "(--store redis:HOST:PORT --job-id ID --job-token SECRET)");
  }
  if (options.master_port < 0 || options.master_port > 65535) {
    invalid("master_port " + std::to_string(options.master_port) + " outside 0..65535");
  }
  if (options.rendezvous_ms <= 0) invalid("rendezvous_ms " + std::to_string(options.rendezvous_ms) + " <= 0");
  if (options.on_fault == OnFault::kRestart &&
      (options.nnodes != 1 || options.restarts_max < 0 || options.restarts_max > kRestartsPerWindowMax ||
       options.restart_window_ms <= 0 || options.recovery_ms <= 0)) {
    invalid("on_fault restart needs nnodes 1, restarts_max in 0.." + std::to_string(kRestartsPerWindowMax) +
            ", restart_window_ms > 0 and recovery_ms > 0 (got nnodes " + std::to_string(options.nnodes) +
            ", restarts_max " + std::to_string(options.restarts_max) + ", restart_window_ms " +
            std::to_string(options.restart_window_ms) + ", recovery_ms " + std::to_string(options.recovery_ms) + ")");
  }
  if (options.generation > kJobGenerationMax) {
    invalid("generation " + std::to_string(options.generation) + " > " + std::to_string(kJobGenerationMax));
  }
  if (options.argv.empty() || options.argv.front().empty()) invalid("argv: no program given");
  if (options.grace_ms < 0 || options.grace_ms > kGraceMsMax) {
    invalid("grace_ms " + std::to_string(options.grace_ms) + " outside 0.." +
            std::to_string(kGraceMsMax));
  }
  if (options.timeout_ms < 0) invalid("timeout_ms " + std::to_string(options.timeout_ms) + " < 0");
  if (options.end_bound_ms < 0 || options.end_bound_ms > kLaunchEndBoundMsMax) {
    invalid("end_bound_ms " + std::to_string(options.end_bound_ms) + " is outside 0.." +
            std::to_string(kLaunchEndBoundMsMax));
  }
  for (const auto& [name, value] : options.env) {
    if (name.empty() || name.find('=') != std::string::npos) invalid("env name '" + name + "'");
  }
}

bool is_executable_file(const fs::path& path) {
  std::error_code ignored;
  return fs::is_regular_file(path, ignored) && ::access(path.c_str(), X_OK) == 0;
}

std::string resolve_program(const std::string& program) {
  if (program.find('/') != std::string::npos) {
    if (is_executable_file(program)) return program;
    throw Error(ErrorCode::kInvalidArgument, "launch: program '" + program + "' is not an executable file");
  }
  const char* path_env = std::getenv("PATH");
  std::string_view search = path_env != nullptr ? path_env : kDefaultPath;
  for (;;) {
    const std::size_t colon = search.find(':');
    const std::string_view dir = search.substr(0, colon);
    const fs::path candidate = fs::path(dir.empty() ? "." : std::string(dir)) / program;
    if (is_executable_file(candidate)) return candidate.string();
    if (colon == std::string_view::npos) break;
    search.remove_prefix(colon + 1);
  }
  throw Error(ErrorCode::kInvalidArgument, "launch: program '" + program + "' not found in PATH");
}

std::string make_job_dir(const std::string& requested) {
  std::error_code error;
  if (requested.empty()) {
    const char* tmpdir = std::getenv("TMPDIR");
    std::string pattern = std::string(tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp") +
                          "/lockstep-job-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      throw Error(ErrorCode::kResource, "launch: mkdtemp " + pattern + ": " + std::strerror(errno));
    }
    return pattern;
  }
  fs::create_directories(requested, error);
  if (error) throw Error(ErrorCode::kResource, "launch: job_dir " + requested + ": " + error.message());
  return fs::absolute(requested).lexically_normal().string();
}

void make_subdir(const std::string& path) {
  std::error_code error;
  fs::create_directories(path, error);
  if (error) throw Error(ErrorCode::kResource, "launch: " + path + ": " + error.message());
}

}  // namespace

JobSetup prepare_job(const LaunchOptions& options) {
  check_options(options);
  JobSetup job;
  job.program_path = resolve_program(options.argv.front());
  job.job_dir = make_job_dir(options.job_dir);
  make_subdir(job.job_dir + "/logs");
  make_subdir(job.job_dir + "/dumps");
  job.job_id = options.job_id.empty() ? "job-" + random_hex(kJobIdBytes) : options.job_id;
  job.job_token = options.job_token.empty() ? random_hex(kTokenBytes) : options.job_token;
  if (options.store.empty()) {
    make_subdir(job.job_dir + "/store");
    job.store = "file:" + job.job_dir + "/store";
  } else {
    job.store = options.store;
  }
  return job;
}

std::vector<std::pair<std::string, std::string>> torch_flight_recorder_env(const std::string& job_dir) {
  const std::string dumps = job_dir + "/dumps/";
  const std::string entries = std::to_string(kTorchFlightRecorderEntries);
  // torch <= 2.5 reads the TORCH_NCCL_* names, later versions TORCH_FR_* too.
  return {{"TORCH_NCCL_TRACE_BUFFER_SIZE", entries},
          {"TORCH_FR_BUFFER_SIZE", entries},
          {"TORCH_NCCL_DUMP_ON_TIMEOUT", "1"},
          {"TORCH_NCCL_DEBUG_INFO_TEMP_FILE", dumps + std::string(kTorchFrDumpPrefix)},
          {"TORCH_FR_DUMP_TEMP_FILE", dumps + std::string(kTorchFrDumpPrefix)},
          {"TORCH_NCCL_DEBUG_INFO_PIPE_FILE", dumps + std::string(kTorchFrPipePrefix)}};
}

RankCommand rank_command(const LaunchOptions& options, const JobSetup& job, int local_rank, std::uint32_t generation,
                         pid_t launcher_pid) {
  const std::string rank = std::to_string(options.node_rank * options.nproc + local_rank);
  const std::string world_size = std::to_string(options.nnodes * options.nproc);
  std::vector<std::pair<std::string, std::string>> defined = {
      {"RANK", rank},
      {"WORLD_SIZE", world_size},
      {"LOCAL_RANK", std::to_string(local_rank)},
      {"LOCAL_WORLD_SIZE", std::to_string(options.nproc)},
      {"GROUP_RANK", std::to_string(options.node_rank)},
      {"ROLE_RANK", rank},
      {"ROLE_WORLD_SIZE", world_size},
      {"MASTER_ADDR", job.master_addr},
      {"MASTER_PORT", std::to_string(job.master_port)},
      {"TORCHELASTIC_RUN_ID", job.job_id},
      {"LOCKSTEP_JOB_DIR", job.job_dir},
      {"LOCKSTEP_STORE", job.store},
      {"LOCKSTEP_JOB_ID", job.job_id},
      {"LOCKSTEP_JOB_TOKEN", job.job_token},
      {"LOCKSTEP_GENERATION", std::to_string(generation)},
      {"LOCKSTEP_LAUNCHER_PID", std::to_string(launcher_pid)},
      {"LOCKSTEP_ON_FAULT", std::string(on_fault_name(options.on_fault))},
  };
  // PyTorch's flight recorder, on for the job unless the user configured it:
  // its dumps land beside lockstep's, where the doctor reads both, and its
  // dump-request pipe lets the launcher ask a rank to dump before stopping it.
  for (auto& [name, value] : torch_flight_recorder_env(job.job_dir)) {
    if (std::getenv(name.c_str()) == nullptr) defined.emplace_back(std::move(name), std::move(value));
  }
  defined.insert(defined.end(), options.env.begin(), options.env.end());
  auto is_defined = [&defined](std::string_view entry) {
    const std::string_view name = entry.substr(0, entry.find('='));
    for (const auto& [defined_name, value] : defined) {
      if (defined_name == name) return true;
    }
    return false;
  };
  RankCommand command{job.program_path, options.argv, {}};
  for (char** entry = environ; *entry != nullptr; ++entry) {
    if (!is_defined(*entry)) command.envp.emplace_back(*entry);
  }
  // Walking `defined` backwards keeps the last definition of each name.
  for (auto it = defined.rbegin(); it != defined.rend(); ++it) {
    bool later = false;
    for (auto after = defined.rbegin(); after != it; ++after) later |= after->first == it->first;
    if (!later) command.envp.push_back(it->first + "=" + it->second);
  }
  return command;
}

}  // namespace lockstep::launch_detail
