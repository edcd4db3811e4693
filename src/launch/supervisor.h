// The supervision loop behind launch(): starts the ranks, then polls their
// output, the launcher's signals and the ranks' exits on one thread until
// every rank is reaped. Private to src/launch.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "launch/fd.h"
#include "launch/job.h"
#include "launch/line_pump.h"
#include "launch/nodes.h"
#include "launch/signals.h"
#include "launch/spawn.h"
#include "lockstep/launcher.h"
#include "lockstep/recovery.h"
#include "lockstep/store.h"

namespace lockstep::launch_detail {

// How long a stop waits for PyTorch's flight-recorder dumps it asked for.
inline constexpr std::int64_t kTorchDumpWaitMs = 3000;
// torch writes its dump in place, not by rename: a dump counts as written once
// it is non-empty and its size held this long (a stop sooner could cut it).
inline constexpr std::int64_t kTorchDumpSettleMs = 100;

class Supervisor {
 public:
  // Blocks the launcher's signals and forks the sentinel. `nodes` must
  // outlive the supervisor. Throws Error{kResource}.
  Supervisor(const LaunchOptions& options, JobSetup job, NodeGroup& nodes);
  // SIGKILLs and reaps any rank still running (the exception path), then
  // disarms the sentinel and restores the signal mask.
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Starts every rank. Throws Error{kResource} naming the rank.
  void start_ranks();

  // Runs until every rank is reaped and its output drained; fills every
  // field of the result except summary and dump_files.
  LaunchResult supervise();

 private:
  struct RankSlot {
    pid_t pid = -1;
    bool running = false;
    std::uint32_t started_in = 0;  // the generation its process was started into
    Fd log;
    std::vector<LinePump> streams;  // stdout, stderr of each process the slot ran
  };

  void spawn(int rank, std::uint32_t generation);
  // Warm recovery (LaunchOptions::on_fault kRestart).
  bool warm() const { return options_.on_fault == OnFault::kRestart; }
  std::unique_ptr<Store> current_generation_store() const;
  void refresh_established(Store& generation_store);
  // Begins the next generation when the budget admits it; false otherwise.
  bool begin_recovery(const std::string& cause);
  // A curable death: the rank starts again into the current generation
  // (beginning the next one first unless the death belongs to the recovery
  // under way). False when the budget is spent.
  bool restart_rank(int rank, const std::string& cause);
  // Poison marks of the current generation, and survivors that did not
  // rejoin it within recovery_ms.
  void watch_generation();
  std::int64_t now_ns() const;
  std::int64_t elapsed_ms() const;
  int poll_timeout_ms() const;
  void poll_streams();
  void handle_signals();
  void reap_exited();
  void record_exit(int rank, int wait_status);
  void enforce_deadlines();
  void watch_other_nodes();
  // PyTorch flight-recorder dumps before the stop (job.h kTorchFr*).
  std::string torch_fr_path(const char* variable, std::string_view default_prefix, int rank,
                            std::string_view suffix) const;
  bool request_torch_dumps();
  bool torch_dumps_written();
  void send_term_if_due();
  void prefer_killed_rank_as_cause();
  void begin_stop(LaunchEnd why);
  int running_count() const;
  // When the ranks still running must have ended: a rank exited 0 and the
  // end bound is on; nullopt otherwise.
  std::optional<std::int64_t> end_bound_ns() const;
  bool any_stream_open() const;
  void finish_result();

  const LaunchOptions& options_;
  JobSetup job_;
  NodeGroup& nodes_;
  pid_t launcher_pid_;
  SignalScope signals_;
  Fd devnull_;
  Sentinel sentinel_;
  std::vector<RankSlot> slots_;
  LaunchResult result_;
  LineStats stats_;
  std::int64_t start_ns_ = 0;
  bool stopping_ = false;
  bool term_sent_ = false;
  std::int64_t term_at_ns_ = 0;   // SIGTERM the ranks at this time (or once asked dumps exist)
  struct AskedDump {
    int rank = 0;                  // local rank whose PyTorch was asked to dump
    std::uintmax_t size = 0;       // the dump's size when last looked at
    std::int64_t size_since_ns = 0;  // when it last changed
  };
  std::vector<AskedDump> torch_dumps_asked_;
  bool kill_sent_ = false;
  std::int64_t kill_at_ns_ = 0;   // SIGKILL the rest at this time once stopping
  std::optional<std::int64_t> drain_until_ns_;  // set once no rank runs
  std::optional<std::int64_t> first_clean_exit_ns_;  // when a rank first exited 0
  int first_clean_rank_ = -1;                        // that rank (global)
  // Warm recovery state.
  std::shared_ptr<Store> base_store_;  // opened only under kRestart
  std::unique_ptr<Store> job_store_;   // the job-level keys (recovery.h)
  std::optional<RestartBudget> restart_budget_;
  std::int64_t generation_begun_ns_ = 0;
  bool generation_established_ = false;  // every rank published its parity record in result_.generation
  std::int64_t next_generation_check_ns_ = 0;
};

}  // namespace lockstep::launch_detail
