// `lockstep run`: the reference job (SPEC §5, §6). The supervisor spawns the
// ranks through the crash-only launcher, each as `lockstep _rank` with the
// same configuration, then prints the summary — or, when the job failed, the
// doctor's verdict over the ranks' dumps.
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <thread>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "lockstep/doctor.h"
#include "lockstep/error.h"
#include "lockstep/launcher.h"
#include "lockstep/run_config.h"
#include "runtime/rank_main.h"

namespace lockstep::cli {
namespace {

// Grace between SIGTERM and SIGKILL for ranks of a failed job: above the
// fatal path's hard-exit deadline, so a rank finishing its dump is not cut.
constexpr std::int64_t kRunGraceMs = 3000;

struct RunOptions {
  RunConfig config;
  std::string topology = "pp1";
  std::string on_fault = "exit";
  std::vector<std::string> injections;
  bool json = false;
  bool verbose = false;
  int timeout_s = 600;
};

void add_config_options(CLI::App* cmd, RunOptions& o) {
  RunConfig& c = o.config;
  cmd->add_option("--topology", o.topology, "tp | pp0 | pp1")->capture_default_str();
  cmd->add_option("--nproc", c.nproc, "world size (ranks)")->capture_default_str();
  cmd->add_option("--chunks", c.chunks, "chunks to stream")->capture_default_str();
  cmd->add_option("--hard-cut-every", c.hard_cut_every, "hard cut every K chunks (0: never)")->capture_default_str();
  cmd->add_option("--recompute-every", c.recompute_every, "KV recompute every K chunks of an epoch (0: never)")
      ->capture_default_str();
  cmd->add_option("--steps", c.num_denoise_steps, "denoise steps per chunk")->capture_default_str();
  cmd->add_option("--depth", c.depth_in, "D_in: envelopes in flight")->capture_default_str();
  cmd->add_option("--depth-out", c.depth_out, "D_out: results waiting for decode")->capture_default_str();
  cmd->add_option("--model", c.model, "tiny | small | dit14b-layer")->capture_default_str();
  cmd->add_option("--backend", c.backend, "gloo | nccl (mesh group)")->capture_default_str();
  cmd->add_flag("--graph-capture", c.graph_capture, "capture each denoise call as a CUDA graph (nccl, mesh of one rank)");
  cmd->add_option("--seed", c.seed, "weights and inputs seed")->capture_default_str();
  cmd->add_option("--decode-ms", c.decode_ms, "Stage 0 decode cost per chunk")->capture_default_str();
  cmd->add_option("--generate-ms", c.generate_ms, "mesh minimum time per chunk")->capture_default_str();
  cmd->add_option("--deadline-ms", c.deadline_ms, "steady-state deadline of every blocking op")
      ->capture_default_str();
  cmd->add_option("--startup-deadline-ms", c.startup_deadline_ms, "rendezvous/connect/handshake deadline")
      ->capture_default_str();
  cmd->add_option("--heartbeat-ms", c.heartbeat_ms, "Stage 0 NOOP interval when idle")->capture_default_str();
  cmd->add_option("--drain-deadline-ms", c.drain_deadline_ms, "hard-cut drain deadline")->capture_default_str();
  cmd->add_option("--inject", o.injections, "fault ID[@rank][:chunk] (SPEC §7), repeatable");
  cmd->add_flag("--dump-on-exit", c.dump_on_exit, "every rank writes its flight-recorder dump at a clean end");
  cmd->add_option("--on-fault", o.on_fault,
                  "exit: a fault ends the job; restart: warm recovery — survivors keep their process and weights, "
                  "dead ranks are restarted, the stream resumes under a new generation")
      ->capture_default_str();
}

RunConfig finish_config(RunOptions& o) {
  RunConfig config = o.config;
  config.topology = parse_topology(o.topology);
  config.on_fault = on_fault_from_name(o.on_fault);
  for (const std::string& text : o.injections) config.injections.push_back(parse_injection(text));
  // Validates, and refuses a mesh this machine's GPUs cannot hold before any
  // rank starts.
  plan_group_backends_here(config);
  return config;
}

// The flags that make a rank see exactly this configuration.
std::vector<std::string> rank_arguments(const RunOptions& o) {
  const RunConfig& c = o.config;
  std::vector<std::string> args{
      "--topology", o.topology, "--nproc", std::to_string(c.nproc), "--chunks", std::to_string(c.chunks),
      "--hard-cut-every", std::to_string(c.hard_cut_every), "--recompute-every", std::to_string(c.recompute_every),
      "--steps", std::to_string(c.num_denoise_steps), "--depth", std::to_string(c.depth_in), "--depth-out",
      std::to_string(c.depth_out), "--model", c.model, "--backend", c.backend, "--seed", std::to_string(c.seed),
      "--decode-ms", fmt::format("{}", c.decode_ms), "--generate-ms", fmt::format("{}", c.generate_ms),
      "--deadline-ms", std::to_string(c.deadline_ms), "--startup-deadline-ms", std::to_string(c.startup_deadline_ms),
      "--heartbeat-ms", std::to_string(c.heartbeat_ms), "--drain-deadline-ms", std::to_string(c.drain_deadline_ms)};
  if (c.graph_capture) args.push_back("--graph-capture");
  if (c.dump_on_exit) args.push_back("--dump-on-exit");
  args.insert(args.end(), {"--on-fault", o.on_fault});
  for (const std::string& injection : o.injections) {
    args.push_back("--inject");
    args.push_back(injection);
  }
  return args;
}

nlohmann::json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw Error(ErrorCode::kResource, "cannot read " + path.string());
  return nlohmann::json::parse(in);
}

std::uint64_t mesh_duplicate_drops(const std::filesystem::path& job_dir) {
  std::uint64_t drops = 0;
  for (const auto& entry : std::filesystem::directory_iterator(job_dir / "ranks")) {
    drops += read_json(entry.path()).value("duplicate_drops", std::uint64_t{0});
  }
  return drops;
}

void print_table(const nlohmann::json& s, const std::filesystem::path& job_dir) {
  const auto& o = s["overlap"];
  const auto& q = s["queues"];
  std::printf("lockstep run: %s, %d ranks, model %s, backend %s\n",
              s["config"]["topology"].get<std::string>().c_str(), s["config"]["nproc"].get<int>(),
              s["config"]["model"].get<std::string>().c_str(), s["config"]["backend"].get<std::string>().c_str());
  std::printf("  chunks emitted      %zu of %lld (the rest discarded by hard cuts)\n",
              s["chunks_emitted"].get<std::size_t>(), s["chunks_requested"].get<long long>());
  std::printf("  FPS (chunks/s)      %.1f over %.2f s\n", s["fps"].get<double>(), s["wall_s"].get<double>());
  std::printf("  period (median)     %.2f ms   max(stage0, stage1) %.2f ms   sum %.2f ms\n",
              o["period_ms"]["median"].get<double>(), o["max_stage_ms"].get<double>(),
              o["sum_stage_ms"].get<double>());
  std::printf("  OverlapScore        %.2f   mesh idle %.1f ms in total\n", o["overlap_score"].get<double>(),
              o["mesh_idle_ms_total"].get<double>());
  std::printf("  drops               stale %llu, duplicate results %llu, duplicate envelopes %llu\n",
              s["stale_drops"].get<unsigned long long>(), s["duplicate_result_drops"].get<unsigned long long>(),
              s["mesh_duplicate_envelope_drops"].get<unsigned long long>());
  std::printf("  hard cuts           %llu   recomputes %llu   reordered %llu\n",
              s["hard_cuts"].get<unsigned long long>(), s["recomputes"].get<unsigned long long>(),
              s["reordered"].get<unsigned long long>());
  std::printf("  queues (high/bound) D_in %zu/%zu   D_out %zu/%zu\n", q["d_in"]["high_water"].get<std::size_t>(),
              q["d_in"]["capacity"].get<std::size_t>(), q["d_out"]["high_water"].get<std::size_t>(),
              q["d_out"]["capacity"].get<std::size_t>());
  if (!s["recoveries"].empty()) {
    const auto& last = s["recoveries"].back();
    std::printf("  recoveries          %zu; generation %u resumed at chunk %llu, first chunk %lld ms after the "
                "recovery began (%s)\n",
                s["recoveries"].size(), s["generation"].get<unsigned>(), s["first_chunk"].get<unsigned long long>(),
                s["resume_ms"].get<long long>(), last["cause"].get<std::string>().c_str());
  }
  std::printf("  job dir             %s\n", job_dir.c_str());
}

// Warm recovery, for the summary: every recovery the launcher made (as it
// wrote them to launch.json), and the time from the last one's start to the
// first chunk emitted after it.
void add_recoveries(nlohmann::json& summary, const LaunchResult& result) {
  summary["recoveries"] = read_json(std::filesystem::path(result.job_dir) / "launch.json")["recoveries"];
  if (result.recoveries.empty()) return;
  const std::int64_t began_unix_ms = result.started_unix_ms + result.recoveries.back().after_ms;
  summary["resume_ms"] = summary["first_emit_unix_ms"].get<std::int64_t>() - began_unix_ms;
}

int report_failure(const LaunchResult& result, bool json) {
  const Diagnosis diagnosis = diagnose(result.job_dir, DoctorOptions{});
  if (json) {
    nlohmann::json out = {{"ok", false},
                          {"exit_code", result.exit_code},
                          {"first_failed_rank", result.first_failed_rank},
                          {"cause_rank", result.cause_rank},
                          {"summary", result.summary},
                          {"job_dir", result.job_dir},
                          {"doctor", nlohmann::json::parse(format_json(diagnosis))}};
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::fprintf(stderr, "%s", format_text(diagnosis).c_str());
  }
  return result.exit_code;
}

// On a TTY, a one-line progress bar from the file Stage 0 rewrites per chunk
// (<job_dir>/progress). Its thread blocks the launcher's signals, as
// launch() requires of every other thread.
class ProgressBar {
 public:
  explicit ProgressBar(std::filesystem::path job_dir) : job_dir_(std::move(job_dir)) {
    if (isatty(STDERR_FILENO) == 0) return;
    sigset_t launcher_signals, previous;
    sigemptyset(&launcher_signals);
    for (const int signal : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&launcher_signals, signal);
    pthread_sigmask(SIG_BLOCK, &launcher_signals, &previous);
    thread_ = std::thread([this] { render_until_stopped(); });
    pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  }
  ~ProgressBar() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    stopped_.notify_all();
    thread_.join();
    std::fputs("\n", stderr);
  }

 private:
  static constexpr std::chrono::milliseconds kRefresh{100};
  static constexpr int kBarCells = 30;

  void render_until_stopped() {
    std::unique_lock lock(mutex_);
    while (!stopped_.wait_for(lock, kRefresh, [this] { return stop_; })) render();
  }
  void render() const {
    std::ifstream in(job_dir_ / "progress");
    std::size_t emitted = 0, total = 0, d_in = 0, d_in_max = 0, d_out = 0, d_out_max = 0;
    double seconds = 0;
    if (!(in >> emitted >> total >> seconds >> d_in >> d_in_max >> d_out >> d_out_max) || total == 0) return;
    const int filled = static_cast<int>(kBarCells * std::min<std::size_t>(emitted, total) / total);
    const std::string bar = std::string(static_cast<std::size_t>(filled), '#') +
                            std::string(static_cast<std::size_t>(kBarCells - filled), '.');
    std::fprintf(stderr, "\r  [%s] %zu/%zu chunks  %.1f chunks/s  D_in %zu/%zu  D_out %zu/%zu ", bar.c_str(),
                 emitted, total, seconds > 0 ? static_cast<double>(emitted) / seconds : 0.0, d_in, d_in_max, d_out,
                 d_out_max);
  }

  const std::filesystem::path job_dir_;
  std::mutex mutex_;
  std::condition_variable stopped_;
  bool stop_ = false;
  std::thread thread_;
};

std::string make_job_dir(const std::string& requested) {
  if (!requested.empty()) return requested;
  std::string templ = (std::filesystem::temp_directory_path() / "lockstep-job-XXXXXX").string();
  if (mkdtemp(templ.data()) == nullptr) throw Error(ErrorCode::kResource, "cannot create a job directory in " + templ);
  return templ;
}

int supervise(RunOptions& o) {
  const RunConfig config = finish_config(o);
  LaunchOptions launch_options;
  launch_options.nproc = config.nproc;
  launch_options.job_dir = make_job_dir(o.config.job_dir);
  launch_options.argv = {std::filesystem::read_symlink("/proc/self/exe").string(), "_rank"};
  for (std::string& arg : rank_arguments(o)) launch_options.argv.push_back(std::move(arg));
  // One BLAS thread per rank: ranks already share the cores.
  launch_options.env = {{"OPENBLAS_NUM_THREADS", "1"}, {"OMP_NUM_THREADS", "1"}};
  launch_options.grace_ms = kRunGraceMs;
  launch_options.timeout_ms = static_cast<std::int64_t>(o.timeout_s) * 1000;
  launch_options.forward_output = o.verbose;
  launch_options.on_fault = config.on_fault;
  // A survivor rejoins within a fraction of a deadline; one still absent
  // after two is stopped or wedged, and is killed and started again.
  launch_options.recovery_ms = 2 * static_cast<std::int64_t>(config.deadline_ms);
  launch_options.end_bound_ms = config.end_bound().count();
  LaunchResult result;
  {
    const ProgressBar progress(launch_options.job_dir);
    result = launch(launch_options);
  }
  if (result.exit_code != 0) return report_failure(result, o.json);
  const std::filesystem::path job_dir = result.job_dir;
  nlohmann::json summary = read_json(job_dir / "summary.json");
  summary["mesh_duplicate_envelope_drops"] = mesh_duplicate_drops(job_dir);
  add_recoveries(summary, result);
  summary["job_dir"] = result.job_dir;
  summary["ok"] = true;
  if (o.json) {
    std::printf("%s\n", summary.dump(2).c_str());
  } else {
    print_table(summary, job_dir);
  }
  return 0;
}

}  // namespace

void register_run(CLI::App& app) {
  auto supervisor = std::make_shared<RunOptions>();
  CLI::App* run = app.add_subcommand("run", "run the reference streaming job (CPU backend, file-store rendezvous)");
  add_config_options(run, *supervisor);
  run->add_flag("--json", supervisor->json, "print the summary (or the doctor's verdict) as JSON");
  run->add_flag("--verbose", supervisor->verbose, "forward every rank's log lines");
  run->add_option("--job-dir", supervisor->config.job_dir, "job directory (default: a fresh temporary one)");
  run->add_option("--timeout-s", supervisor->timeout_s, "hard bound on the whole job")->capture_default_str();
  run->callback([supervisor] {
    const int code = supervise(*supervisor);
    if (code != 0) throw CLI::RuntimeError(code);
  });

  auto rank = std::make_shared<RunOptions>();
  CLI::App* rank_cmd = app.add_subcommand("_rank", "one rank of `lockstep run` (started by it)");
  rank_cmd->group("");  // hidden from --help
  add_config_options(rank_cmd, *rank);
  rank_cmd->callback([rank] {
    const int code = run_rank(finish_config(*rank));
    if (code != 0) throw CLI::RuntimeError(code);
  });
}

}  // namespace lockstep::cli
