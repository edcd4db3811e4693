// `lockstep launch [--nproc-per-node N] [--nnodes M --node-rank R --store redis:H:P
//  --job-id ID --job-token T] [--master-addr A] [--master-port P] [--standalone]
//  [--job-dir DIR] [--grace-ms MS] [--timeout-s S] [--end-bound-s S] (-m MODULE | -- PROGRAM) ARGS...`:
// the crash-only launcher (include/lockstep/launcher.h) for any multi-rank
// program, and a drop-in for torchrun: torchrun's flags and the environment
// torch's env:// init expects. Under SLURM (SLURM_JOB_ID set, one task per
// machine) the machine count, this machine's place and MASTER_ADDR come from
// SLURM's variables unless given. After a failure the doctor's verdict over
// the ranks' dumps is printed. Exits 0 when every rank exited 0, otherwise
// with the cause rank's code (128+signal for a signal), 20 on --timeout-s or
// --end-bound-s, 21 when another machine failed, 128+signal when the launcher
// was stopped.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include "commands.h"
#include "lockstep/doctor.h"
#include "lockstep/launcher.h"

namespace lockstep::cli {
namespace {

constexpr double kMsPerSecond = 1000.0;

std::optional<std::string> environment(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

// The interpreter for `-m MODULE`: $LOCKSTEP_PYTHON, else the one the Python
// package was built for, else python3 from PATH.
std::string python_interpreter() {
  if (auto chosen = environment("LOCKSTEP_PYTHON")) return *chosen;
#ifdef LOCKSTEP_PYTHON_INTERPRETER
  return LOCKSTEP_PYTHON_INTERPRETER;
#else
  return "python3";
#endif
}

struct LaunchFlags {
  LaunchOptions options;
  double timeout_s = 0.0;
  double end_bound_s = 0.0;
  std::string on_fault = "exit";
  std::string module;
  bool standalone = false;
  bool nnodes_given = false;
};

void apply_slurm(LaunchFlags& flags, const CLI::App& cmd) {
  const std::optional<SlurmPlacement> slurm = slurm_placement(environment);
  if (!slurm || cmd.count("--nnodes") != 0) return;
  LaunchOptions& o = flags.options;
  o.nnodes = slurm->nnodes;
  o.node_rank = slurm->node_rank;
  if (o.master_addr.empty()) o.master_addr = slurm->master_addr;
  if (o.job_id.empty()) o.job_id = slurm->job_id;
  // Mistakes, not attackers (job_token.h): every machine derives the same token.
  if (o.job_token.empty()) o.job_token = "token-" + slurm->job_id;
}

void report_failure(const LaunchResult& result) {
  try {
    std::fprintf(stderr, "%s", format_text(diagnose(result.job_dir, DoctorOptions{})).c_str());
  } catch (const std::exception& error) {
    std::fprintf(stderr, "lockstep launch: the doctor could not read the dumps: %s\n", error.what());
  }
}

}  // namespace

void register_launch(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "launch",
      "crash-only supervisor and torchrun drop-in: run N ranks of PROGRAM (or python -m MODULE) with "
      "RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT/... and LOCKSTEP_* set; if one fails, stop all "
      "(on every machine) within the grace and print the doctor's verdict");
  auto flags = std::make_shared<LaunchFlags>();
  LaunchOptions& o = flags->options;
  cmd->add_option("--nproc,--nproc-per-node,--nproc_per_node", o.nproc, "ranks on this machine")
      ->check(CLI::Range(1, kLaunchNprocMax))
      ->capture_default_str();
  cmd->add_option("--nnodes", o.nnodes, "machines in the job (one launcher each; needs --store, --job-id, --job-token)")
      ->check(CLI::Range(1, kLaunchNodesMax))
      ->capture_default_str();
  cmd->add_option("--node-rank,--node_rank", o.node_rank, "this machine's place, 0..nnodes-1")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--master-addr,--master_addr", o.master_addr,
                  "torch's MASTER_ADDR (default 127.0.0.1 on one machine, node 0's host name on several)");
  cmd->add_option("--master-port,--master_port", o.master_port, "torch's MASTER_PORT (default: a free port)")
      ->check(CLI::Range(0, 65535));
  cmd->add_flag("--standalone", flags->standalone, "one machine, local rendezvous (the default; for torchrun users)");
  cmd->add_option("--store", o.store, "rendezvous store: file:DIR or redis:HOST:PORT (default file:<job_dir>/store)");
  cmd->add_option("--job-id", o.job_id, "job id, equal on every machine (default: random)");
  cmd->add_option("--job-token", o.job_token, "job secret, equal on every machine (default: random)");
  cmd->add_option("--job-dir", o.job_dir,
                  "job directory (logs/, dumps/, store/, launch.json); default a fresh one under $TMPDIR");
  cmd->add_option("--grace-ms", o.grace_ms, "SIGTERM to SIGKILL grace when stopping ranks")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--timeout-s", flags->timeout_s, "hard bound on the whole job; 0 means none")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--end-bound-s", flags->end_bound_s,
                  "once a rank of this machine has exited 0, the others here must exit within this bound, else "
                  "the job ends as hung naming the rank still running (a hang in destroy_process_group); 0 means "
                  "none")
      ->check(CLI::Range(0.0, static_cast<double>(kLaunchEndBoundMsMax) / kMsPerSecond))
      ->capture_default_str();
  cmd->add_option("--on-fault", flags->on_fault,
                  "exit: a failed rank stops the job; restart: warm recovery — a rank that died of a curable "
                  "cause is started again under the next generation (one machine; see docs/manual/C-warm-recovery.md)")
      ->capture_default_str();
  cmd->add_option("--max-restarts,--max_restarts", o.restarts_max,
                  "warm recovery: recoveries per minute, at most (torchrun's flag; here per sliding minute)")
      ->capture_default_str();
  cmd->add_option("-m,--module", flags->module, "run `python -m MODULE ARGS...` (interpreter: $LOCKSTEP_PYTHON, "
                                                "else the one lockstep's Python package was built for)");
  cmd->add_option("program", o.argv, "PROGRAM ARGS... (after --), or the module's ARGS with -m");
  cmd->callback([flags, cmd] {
    LaunchOptions& options = flags->options;
    if (!flags->module.empty()) {
      options.argv.insert(options.argv.begin(), {python_interpreter(), "-m", flags->module});
    } else if (options.argv.empty()) {
      throw CLI::ValidationError("program", "give PROGRAM ARGS... after --, or -m MODULE");
    }
    if (flags->standalone && cmd->count("--nnodes") != 0 && options.nnodes != 1) {
      throw CLI::ValidationError("--standalone", "means one machine; it contradicts --nnodes " +
                                                     std::to_string(options.nnodes));
    }
    if (!flags->standalone) apply_slurm(*flags, *cmd);
    options.timeout_ms = std::llround(flags->timeout_s * kMsPerSecond);
    options.end_bound_ms = std::llround(flags->end_bound_s * kMsPerSecond);
    options.on_fault = on_fault_from_name(flags->on_fault);
    options.on_failure = report_failure;
    const LaunchResult result = launch(options);
    if (result.exit_code != 0) throw CLI::RuntimeError(result.exit_code);
  });
}

}  // namespace lockstep::cli
