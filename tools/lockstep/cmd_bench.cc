// `lockstep bench`: the benchmarks of SPEC §8. Each layer's Google Benchmark
// program is built as bench/lockstep_bench_<layer> beside this binary; this
// command runs the selected ones in turn with the given Google Benchmark
// flags, so one command reproduces every number in BENCHMARKS.md.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "lockstep/error.h"

namespace lockstep::cli {
namespace {

constexpr std::string_view kBenchPrefix = "lockstep_bench_";

struct BenchOptions {
  std::vector<std::string> only;  // layer names; empty: all
  std::string filter;             // --benchmark_filter
  bool list = false;
  int repetitions = 1;
};

std::vector<std::filesystem::path> bench_programs() {
  const std::filesystem::path dir = std::filesystem::read_symlink("/proc/self/exe").parent_path() / "bench";
  std::vector<std::filesystem::path> programs;
  if (!std::filesystem::is_directory(dir)) return programs;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && name.starts_with(kBenchPrefix)) programs.push_back(entry.path());
  }
  std::sort(programs.begin(), programs.end());
  return programs;
}

int run_program(const std::filesystem::path& program, const std::vector<std::string>& args) {
  std::vector<std::string> argv{program.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> raw;
  for (std::string& arg : argv) raw.push_back(arg.data());
  raw.push_back(nullptr);
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid < 0) throw Error(ErrorCode::kResource, "fork failed for " + program.string());
  if (pid == 0) {
    execv(raw[0], raw.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int run_benchmarks(const BenchOptions& options) {
  const std::vector<std::filesystem::path> programs = bench_programs();
  if (programs.empty()) {
    throw Error(ErrorCode::kInvalidArgument, "no benchmark programs beside this binary (build with "
                                             "-DLOCKSTEP_BUILD_BENCH=ON, the default preset does)");
  }
  std::vector<std::string> args;
  if (!options.filter.empty()) args.push_back("--benchmark_filter=" + options.filter);
  if (options.repetitions > 1) {
    args.push_back("--benchmark_repetitions=" + std::to_string(options.repetitions));
    args.push_back("--benchmark_report_aggregates_only=true");
  }
  int worst = 0;
  for (const auto& program : programs) {
    const std::string layer = program.filename().string().substr(kBenchPrefix.size());
    const bool chosen = options.only.empty() || std::find(options.only.begin(), options.only.end(), layer) !=
                                                    options.only.end();
    if (!chosen) continue;
    if (options.list) {
      std::printf("%s  %s\n", layer.c_str(), program.c_str());
      continue;
    }
    std::printf("=== %s ===\n", layer.c_str());
    worst = std::max(worst, run_program(program, args));
  }
  return worst;
}

}  // namespace

void register_bench(CLI::App& app) {
  auto options = std::make_shared<BenchOptions>();
  CLI::App* cmd = app.add_subcommand("bench", "run the SPEC §8 benchmarks (Google Benchmark programs)");
  cmd->add_option("--only", options->only, "layers to run (wire, comm, guard, doctor, flow); default all");
  cmd->add_option("--filter", options->filter, "Google Benchmark --benchmark_filter regex");
  cmd->add_option("--repetitions", options->repetitions, "repetitions; >1 reports aggregates only")
      ->check(CLI::Range(1, 100));
  cmd->add_flag("--list", options->list, "list the benchmark programs and exit");
  cmd->callback([options] {
    const int code = run_benchmarks(*options);
    if (code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace lockstep::cli
