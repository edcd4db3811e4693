// `lockstep launch [--nproc N] [--job-dir DIR] [--grace-ms MS] [--timeout-s S]
//  -- PROGRAM ARGS...`: the crash-only launcher (include/lockstep/launcher.h)
// for any multi-rank program. Exits 0 when every rank exited 0, otherwise with
// the first failed rank's code (128+signal for a signal), 20 on --timeout-s,
// 128+signal when the launcher itself was stopped by a signal.
#include <cmath>
#include <memory>

#include "commands.h"
#include "lockstep/launcher.h"

namespace lockstep::cli {
namespace {

constexpr double kMsPerSecond = 1000.0;

}  // namespace

void register_launch(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "launch",
      "crash-only supervisor: run N ranks of PROGRAM with RANK/WORLD_SIZE/LOCAL_RANK/"
      "LOCAL_WORLD_SIZE and LOCKSTEP_* set; if one fails, stop all within the grace");
  auto options = std::make_shared<LaunchOptions>();
  auto timeout_s = std::make_shared<double>(0.0);
  cmd->add_option("--nproc", options->nproc, "number of ranks")
      ->check(CLI::Range(1, kLaunchNprocMax))
      ->capture_default_str();
  cmd->add_option("--job-dir", options->job_dir,
                  "job directory (logs/, dumps/, store/, launch.json); default a fresh one "
                  "under $TMPDIR");
  cmd->add_option("--grace-ms", options->grace_ms, "SIGTERM to SIGKILL grace when stopping ranks")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--timeout-s", *timeout_s, "hard bound on the whole job; 0 means none")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("program", options->argv, "PROGRAM ARGS... (after --)")->required();
  cmd->callback([options, timeout_s] {
    options->timeout_ms = std::llround(*timeout_s * kMsPerSecond);
    const LaunchResult result = launch(*options);
    if (result.exit_code != 0) throw CLI::RuntimeError(result.exit_code);
  });
}

}  // namespace lockstep::cli
