#include "launch/supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "launch/report.h"
#include "lockstep/assert.h"
#include "lockstep/clock.h"
#include "lockstep/error.h"
#include "lockstep/fatal.h"
#include "lockstep/job_token.h"
#include "lockstep/parity.h"
#include "lockstep/poison.h"
#include "lockstep/rank_env.h"

namespace lockstep::launch_detail {
namespace {

// The loop wakes at least this often, so a SIGCHLD taken by another thread
// of the host process delays a reap by one tick at most, never forever.
constexpr int kTickMs = 100;
// After the last rank is reaped, its pipes are drained for at most this long:
// a descendant that left the rank's process group may hold them open.
constexpr std::int64_t kDrainMs = 1000;
constexpr std::int64_t kNsPerMs = 1'000'000;
// Under warm recovery the loop looks at the store this often: a poison mark
// begins the next generation within about this long.
constexpr std::int64_t kGenerationCheckMs = 20;

// Whether a signal that ended the rank was the launcher's own stop: SIGTERM
// once it was sent, SIGKILL only once the grace ran out. Anything else (a
// SIGKILL the launcher never sent, a crash signal) came from outside.
bool ended_by_launcher_signal(const RankStatus& status) {
  if (status.end != RankStatus::End::kSignaled) return false;
  if (status.code == SIGKILL) return status.killed_by_launcher;
  return status.stopped_by_launcher && status.code == SIGTERM;
}

// How a rank ends when it only followed another's failure: it saw the peer
// fail (peer_failure), or the launcher's stop ended it.
bool ended_as_follower(const RankStatus& status) {
  if (status.end == RankStatus::End::kSignaled) return ended_by_launcher_signal(status);
  return status.code == exit_code_for(ErrorCode::kPeerFailure) || status.code == kExitTerminated;
}

void log_launcher_line(const std::string& line) { std::fprintf(stderr, "lockstep launch: %s\n", line.c_str()); }

Fd open_devnull() {
  Fd devnull(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!devnull.valid()) {
    throw Error(ErrorCode::kResource, std::string("launch: /dev/null: ") + std::strerror(errno));
  }
  return devnull;
}

Fd open_log(const std::string& path) {
  Fd log(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644));
  if (!log.valid()) {
    throw Error(ErrorCode::kResource, "launch: log " + path + ": " + std::strerror(errno));
  }
  return log;
}

}  // namespace

Supervisor::Supervisor(const LaunchOptions& options, JobSetup job, NodeGroup& nodes)
    : options_(options),
      job_(std::move(job)),
      nodes_(nodes),
      launcher_pid_(::getpid()),
      devnull_(open_devnull()),
      sentinel_(devnull_.get()) {
  result_.job_dir = job_.job_dir;
  result_.job_id = job_.job_id;
  result_.node_rank = options_.node_rank;
  result_.generation = options_.generation;
  if (warm()) {
    base_store_ = open_store(job_.store, job_.job_id);
    job_store_ = job_level_store(base_store_, {job_.job_id, job_.job_token, result_.generation});
    restart_budget_.emplace(options_.restarts_max, options_.restart_window_ms * kNsPerMs);
  }
  slots_.resize(static_cast<std::size_t>(options_.nproc));
  result_.ranks.resize(slots_.size());
  for (std::size_t rank = 0; rank < slots_.size(); ++rank) {
    result_.ranks[rank].rank = options_.node_rank * options_.nproc + static_cast<int>(rank);
  }
}

Supervisor::~Supervisor() {
  for (RankSlot& slot : slots_) {
    if (!slot.running) continue;
    ::kill(-slot.pid, SIGKILL);
    while (::waitpid(slot.pid, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
}

std::int64_t Supervisor::now_ns() const { return steady_clock().now_ns(); }

std::int64_t Supervisor::elapsed_ms() const { return (now_ns() - start_ns_) / kNsPerMs; }

void Supervisor::start_ranks() {
  start_ns_ = now_ns();
  result_.started_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
  for (int rank = 0; rank < options_.nproc; ++rank) {
    RankSlot& slot = slots_[static_cast<std::size_t>(rank)];
    slot.log = open_log(job_.job_dir + "/logs/rank-" + std::to_string(rank) + ".log");
    spawn(rank, result_.generation);
  }
  generation_begun_ns_ = now_ns();
}

void Supervisor::spawn(int rank, std::uint32_t generation) {
  RankSlot& slot = slots_[static_cast<std::size_t>(rank)];
  SpawnedRank spawned = spawn_rank(rank_command(options_, job_, rank, generation, launcher_pid_), rank,
                                   launcher_pid_, devnull_.get(), sentinel_);
  slot.pid = spawned.pid;
  slot.running = true;
  slot.started_in = generation;
  RankStatus& status = result_.ranks[static_cast<std::size_t>(rank)];
  status = RankStatus{status.rank, spawned.pid};
  const bool forward = options_.forward_output;
  slot.streams.emplace_back(rank, std::move(spawned.stdout_read),
                            LineSinks{forward ? STDOUT_FILENO : -1, slot.log.get(), &stats_});
  slot.streams.emplace_back(rank, std::move(spawned.stderr_read),
                            LineSinks{forward ? STDERR_FILENO : -1, slot.log.get(), &stats_});
}

LaunchResult Supervisor::supervise() {
  while (running_count() > 0 || (any_stream_open() && now_ns() < drain_until_ns_.value_or(0))) {
    poll_streams();
    handle_signals();
    reap_exited();
    enforce_deadlines();
    watch_other_nodes();
    watch_generation();
  }
  for (RankSlot& slot : slots_) {
    for (LinePump& stream : slot.streams) stream.close();
  }
  finish_result();
  return result_;
}

int Supervisor::poll_timeout_ms() const {
  std::int64_t timeout_ns = kTickMs * kNsPerMs;
  const std::int64_t now = now_ns();
  if (stopping_ && !term_sent_) timeout_ns = std::min(timeout_ns, term_at_ns_ - now);
  if (stopping_ && term_sent_ && !kill_sent_) timeout_ns = std::min(timeout_ns, kill_at_ns_ - now);
  if (!stopping_ && options_.timeout_ms > 0) {
    timeout_ns = std::min(timeout_ns, start_ns_ + options_.timeout_ms * kNsPerMs - now);
  }
  if (drain_until_ns_) timeout_ns = std::min(timeout_ns, *drain_until_ns_ - now);
  if (const std::optional<std::int64_t> end_by = end_bound_ns(); end_by && !stopping_) {
    timeout_ns = std::min(timeout_ns, *end_by - now);
  }
  if (warm() && !stopping_) timeout_ns = std::min(timeout_ns, next_generation_check_ns_ - now);
  // Round up: waking a little late is harmless, spinning on a 0 ms poll is not.
  return static_cast<int>(std::max<std::int64_t>(0, (timeout_ns + kNsPerMs - 1) / kNsPerMs));
}

void Supervisor::poll_streams() {
  std::vector<pollfd> fds;
  std::vector<LinePump*> pumps;
  fds.push_back(pollfd{signals_.fd(), POLLIN, 0});
  for (RankSlot& slot : slots_) {
    for (LinePump& stream : slot.streams) {
      if (stream.fd() < 0) continue;
      fds.push_back(pollfd{stream.fd(), POLLIN, 0});
      pumps.push_back(&stream);
    }
  }
  const int ready = ::poll(fds.data(), fds.size(), poll_timeout_ms());
  LOCKSTEP_ASSERT(ready >= 0 || errno == EINTR);
  for (std::size_t i = 0; i < pumps.size() && ready > 0; ++i) {
    if (fds[i + 1].revents != 0) pumps[i]->pump();
  }
}

void Supervisor::handle_signals() {
  for (int signal_number = signals_.next(); signal_number != 0; signal_number = signals_.next()) {
    if (!is_stop_signal(signal_number)) continue;  // SIGCHLD: reap_exited() looks anyway
    if (result_.launcher_signal == 0) result_.launcher_signal = signal_number;
    if (!stopping_) {
      begin_stop(LaunchEnd::kLauncherSignaled);
    } else {
      term_at_ns_ = now_ns();  // asked twice: no wait for dumps, no grace
      send_term_if_due();
      kill_at_ns_ = now_ns();
    }
  }
}

void Supervisor::reap_exited() {
  std::vector<std::pair<int, int>> exited;  // (rank, wait status) found in this pass
  for (std::size_t rank = 0; rank < slots_.size(); ++rank) {
    RankSlot& slot = slots_[rank];
    if (!slot.running) continue;
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(slot.pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
      // Only ECHILD is possible: other code of this process reaped the rank
      // (waitpid(-1)), so its status is lost and waiting would never end.
      slot.running = false;
      throw Error(ErrorCode::kInternal, "launch: rank " + std::to_string(rank) + " (pid " +
                                            std::to_string(slot.pid) +
                                            ") was reaped outside the launcher: " +
                                            std::strerror(errno));
    }
    if (info.si_pid == 0) continue;
    // The unreaped zombie pins the group id, so this cannot hit a stranger:
    // whatever the rank left behind in its group dies with it.
    ::kill(-slot.pid, SIGKILL);
    int wait_status = 0;
    pid_t reaped = -1;
    do {
      reaped = ::waitpid(slot.pid, &wait_status, 0);
    } while (reaped < 0 && errno == EINTR);
    LOCKSTEP_ASSERT(reaped == slot.pid);
    exited.emplace_back(static_cast<int>(rank), wait_status);
  }
  // Ranks that ended within one tick are recorded killed-by-a-signal first: a
  // rank killed from outside (kill -9, the OOM killer) is the likelier cause
  // than a peer that failed on the connection it lost, whatever their order.
  std::stable_partition(exited.begin(), exited.end(),
                        [](const std::pair<int, int>& e) { return WIFSIGNALED(e.second) != 0; });
  for (const auto& [rank, wait_status] : exited) record_exit(rank, wait_status);
}

void Supervisor::record_exit(int rank, int wait_status) {
  RankSlot& slot = slots_[static_cast<std::size_t>(rank)];
  slot.running = false;
  RankStatus& status = result_.ranks[static_cast<std::size_t>(rank)];
  if (WIFSIGNALED(wait_status)) {
    status.end = RankStatus::End::kSignaled;
    status.code = WTERMSIG(wait_status);
  } else {
    status.end = RankStatus::End::kExited;
    status.code = WEXITSTATUS(wait_status);
  }
  status.ended_after_ms = elapsed_ms();
  const bool failed = status.end == RankStatus::End::kSignaled || status.code != 0;
  if (!failed) {
    if (!first_clean_exit_ns_) {
      first_clean_exit_ns_ = now_ns();
      first_clean_rank_ = status.rank;
    }
    return;
  }
  const bool signaled = status.end == RankStatus::End::kSignaled;
  if (!stopping_ && warm() && restart_can_cure_exit(signaled ? 0 : status.code, signaled ? status.code : 0)) {
    const std::string cause = "rank " + std::to_string(status.rank) +
                              (signaled ? " killed by signal " + std::to_string(status.code)
                                        : " exited " + std::to_string(status.code) + " (" +
                                              exit_code_meaning(status.code) + ")");
    if (restart_rank(rank, cause)) return;
  }
  if (!stopping_) {
    result_.first_failed_rank = rank;
    begin_stop(LaunchEnd::kRankFailed);
  }
  if (result_.end == LaunchEnd::kRankFailed && result_.cause_rank < 0 && !ended_as_follower(status)) {
    result_.cause_rank = rank;
  }
}

std::unique_ptr<Store> Supervisor::current_generation_store() const {
  return generation_store(base_store_, {job_.job_id, job_.job_token, result_.generation});
}

void Supervisor::refresh_established(Store& generation_store) {
  if (generation_established_) return;
  std::vector<std::string> keys;
  for (const RankStatus& status : result_.ranks) keys.push_back(parity_key(status.rank));
  generation_established_ = generation_store.check(keys);
}

bool Supervisor::begin_recovery(const std::string& cause) {
  if (!restart_budget_->admit(now_ns())) {
    log_launcher_line("recovery refused after " + cause + ": " + std::to_string(options_.restarts_max) +
                      " restarts within " + std::to_string(options_.restart_window_ms) + " ms already");
    return false;
  }
  ++result_.generation;
  begin_generation(*job_store_, result_.generation);
  generation_begun_ns_ = now_ns();
  generation_established_ = false;
  result_.recoveries.push_back({result_.generation, cause, elapsed_ms(), {}});
  log_launcher_line("recovery: generation " + std::to_string(result_.generation) + " after " + cause);
  return true;
}

bool Supervisor::restart_rank(int rank, const std::string& cause) {
  const std::unique_ptr<Store> store = current_generation_store();
  refresh_established(*store);
  // A survivor that dies while the generation begun for an earlier fault is
  // still gathering belongs to that recovery; any other death is a new fault.
  const bool same_recovery = !generation_established_ &&
                             slots_[static_cast<std::size_t>(rank)].started_in < result_.generation &&
                             !result_.recoveries.empty();
  if (!same_recovery) {
    // A killed rank raises no poison mark: raise it for it, so its peers stop
    // at once instead of at their deadline (a peer blocked in an NCCL call
    // would not see the death otherwise).
    try {
      raise_poison(*store, PoisonMark{result_.ranks[static_cast<std::size_t>(rank)].rank, "crash", cause});
    } catch (const std::exception& error) {
      log_launcher_line(std::string("cannot raise the poison mark of a dead rank: ") + error.what());
    }
    if (!begin_recovery(cause)) return false;
  }
  spawn(rank, result_.generation);
  result_.recoveries.back().restarted_ranks.push_back(result_.ranks[static_cast<std::size_t>(rank)].rank);
  return true;
}

void Supervisor::watch_generation() {
  if (!warm() || stopping_ || now_ns() < next_generation_check_ns_) return;
  next_generation_check_ns_ = now_ns() + kGenerationCheckMs * kNsPerMs;
  const std::unique_ptr<Store> store = current_generation_store();
  refresh_established(*store);
  const std::optional<PoisonMark> mark = find_poisoned_peer(*store, -1, static_cast<int>(result_.ranks.size()));
  // A deterministic fault's rank exits with its code, which ends the job
  // through record_exit; only a curable mark begins a recovery from here.
  const std::optional<ErrorCode> code = mark ? error_code_from_name(mark->code) : std::nullopt;
  if (code && restart_can_cure(*code)) {
    if (!begin_recovery("rank " + std::to_string(mark->rank) + ": " + mark->code + ": " + mark->message)) {
      result_.first_failed_rank = mark->rank;
      begin_stop(LaunchEnd::kRankFailed);
    }
    return;
  }
  // Survivors that have not rejoined in time (stopped, wedged) are killed;
  // their exit starts them again into the generation.
  if (generation_established_ || result_.recoveries.empty() ||
      now_ns() - generation_begun_ns_ < options_.recovery_ms * kNsPerMs) {
    return;
  }
  for (std::size_t rank = 0; rank < slots_.size(); ++rank) {
    const RankSlot& slot = slots_[rank];
    const bool rejoined = store->check({parity_key(result_.ranks[rank].rank)});
    if (!slot.running || slot.started_in == result_.generation || rejoined) continue;
    log_launcher_line("rank " + std::to_string(result_.ranks[rank].rank) + " did not rejoin generation " +
                      std::to_string(result_.generation) + " within " + std::to_string(options_.recovery_ms) +
                      " ms: killed, to be started again");
    ::kill(-slot.pid, SIGKILL);
    result_.ranks[rank].killed_by_launcher = true;
  }
}

void Supervisor::watch_other_nodes() {
  if (stopping_) return;
  if (std::optional<std::string> failure = nodes_.peer_failure()) {
    result_.peer_node_failure = std::move(*failure);
    begin_stop(LaunchEnd::kPeerNodeFailed);
  }
}

void Supervisor::prefer_killed_rank_as_cause() {
  // A rank killed from outside (kill -9, the OOM killer, a crash signal) can
  // be reaped late — a GPU process's exit waits for its context to be torn
  // down — after a peer already failed on the connection it lost (backend)
  // or on its poison. Such a consequence is never the cause over it.
  const RankStatus& cause = result_.ranks[static_cast<std::size_t>(result_.cause_rank)];
  const bool consequence_shaped = cause.end == RankStatus::End::kExited &&
                                  (cause.code == exit_code_for(ErrorCode::kBackend) ||
                                   cause.code == exit_code_for(ErrorCode::kPeerFailure));
  if (!consequence_shaped) return;
  for (std::size_t rank = 0; rank < result_.ranks.size(); ++rank) {
    const RankStatus& status = result_.ranks[rank];
    if (status.end == RankStatus::End::kSignaled && !ended_by_launcher_signal(status)) {
      result_.cause_rank = static_cast<int>(rank);
      return;
    }
  }
}

void Supervisor::begin_stop(LaunchEnd why) {
  LOCKSTEP_ASSERT(!stopping_ && why != LaunchEnd::kSuccess);
  stopping_ = true;
  result_.end = why;
  // The other machines stop too (a no-op on one machine, or when it was
  // another machine's failure that stopped this one).
  if (why != LaunchEnd::kPeerNodeFailed) {
    nodes_.publish_failure(why == LaunchEnd::kRankFailed
                               ? "rank " + std::to_string(result_.ranks[static_cast<std::size_t>(result_.first_failed_rank)].rank) +
                                     " failed"
                               : std::string(why == LaunchEnd::kTimeout ? "job timed out or hung at its end"
                                                                        : "launcher signalled"));
  }
  // PyTorch in the surviving ranks dumps its flight recorder first, when it
  // listens on its dump-request pipe; the stop waits for those dumps, bounded.
  const bool asked = request_torch_dumps();
  term_at_ns_ = now_ns() + (asked ? kTorchDumpWaitMs * kNsPerMs : 0);
  send_term_if_due();
}

std::string Supervisor::torch_fr_path(const char* variable, std::string_view default_prefix, int rank,
                                      std::string_view suffix) const {
  const char* prefix = std::getenv(variable);
  return (prefix != nullptr ? std::string(prefix) : job_.job_dir + "/dumps/" + std::string(default_prefix)) +
         std::to_string(rank) + std::string(suffix);
}

bool Supervisor::request_torch_dumps() {
  for (std::size_t rank = 0; rank < slots_.size(); ++rank) {
    if (!slots_[rank].running) continue;
    const int global_rank = result_.ranks[rank].rank;
    const std::string pipe = torch_fr_path("TORCH_NCCL_DEBUG_INFO_PIPE_FILE", kTorchFrPipePrefix, global_rank, ".pipe");
    struct stat info {};
    if (::stat(pipe.c_str(), &info) != 0 || !S_ISFIFO(info.st_mode)) continue;
    // Non-blocking: a pipe nobody reads (ENXIO) or a full one is skipped.
    Fd fd(::open(pipe.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC));
    if (!fd.valid() || ::write(fd.get(), "1\n", 2) != 2) continue;
    torch_dumps_asked_.push_back({static_cast<int>(rank), 0, now_ns()});
  }
  return !torch_dumps_asked_.empty();
}

bool Supervisor::torch_dumps_written() {
  const std::int64_t now = now_ns();
  bool all = true;
  for (AskedDump& asked : torch_dumps_asked_) {
    if (!slots_[static_cast<std::size_t>(asked.rank)].running) continue;
    const std::string dump = torch_fr_path("TORCH_NCCL_DEBUG_INFO_TEMP_FILE", kTorchFrDumpPrefix,
                                           result_.ranks[static_cast<std::size_t>(asked.rank)].rank, "");
    std::error_code error;
    const std::uintmax_t size = std::filesystem::file_size(dump, error);
    const std::uintmax_t seen = error ? 0 : size;
    if (seen != asked.size) {
      asked.size = seen;
      asked.size_since_ns = now;
    }
    all = all && asked.size > 0 && now - asked.size_since_ns >= kTorchDumpSettleMs * kNsPerMs;
  }
  return all;
}

void Supervisor::send_term_if_due() {
  if (term_sent_ || (now_ns() < term_at_ns_ && !torch_dumps_written())) return;
  term_sent_ = true;
  for (std::size_t rank = 0; rank < slots_.size(); ++rank) {
    if (!slots_[rank].running) continue;
    ::kill(-slots_[rank].pid, SIGTERM);
    result_.ranks[rank].stopped_by_launcher = true;
    ++result_.stopped_ranks;
  }
  kill_at_ns_ = now_ns() + options_.grace_ms * kNsPerMs;
}

void Supervisor::enforce_deadlines() {
  const std::int64_t now = now_ns();
  if (!stopping_ && options_.timeout_ms > 0 && now >= start_ns_ + options_.timeout_ms * kNsPerMs) {
    begin_stop(LaunchEnd::kTimeout);
  }
  if (const std::optional<std::int64_t> end_by = end_bound_ns(); end_by && !stopping_ && now >= *end_by) {
    const auto lingering = std::find_if(slots_.begin(), slots_.end(), [](const RankSlot& slot) { return slot.running; });
    const int rank = static_cast<int>(lingering - slots_.begin());
    log_launcher_line("rank " + std::to_string(result_.ranks[static_cast<std::size_t>(rank)].rank) +
                      " still running " + std::to_string(options_.end_bound_ms) + " ms after rank " +
                      std::to_string(first_clean_rank_) + " ended cleanly: a hang at the end of the job");
    result_.first_failed_rank = rank;
    begin_stop(LaunchEnd::kTimeout);
  }
  if (stopping_) send_term_if_due();
  if (stopping_ && term_sent_ && !kill_sent_ && now >= kill_at_ns_) {
    kill_sent_ = true;
    for (std::size_t rank = 0; rank < slots_.size(); ++rank) {
      if (!slots_[rank].running) continue;
      ::kill(-slots_[rank].pid, SIGKILL);
      result_.ranks[rank].killed_by_launcher = true;
    }
  }
  if (running_count() == 0 && !drain_until_ns_) drain_until_ns_ = now + kDrainMs * kNsPerMs;
}

std::optional<std::int64_t> Supervisor::end_bound_ns() const {
  if (options_.end_bound_ms == 0 || !first_clean_exit_ns_ || running_count() == 0) return std::nullopt;
  return *first_clean_exit_ns_ + options_.end_bound_ms * kNsPerMs;
}

int Supervisor::running_count() const {
  return static_cast<int>(std::count_if(slots_.begin(), slots_.end(),
                                        [](const RankSlot& slot) { return slot.running; }));
}

bool Supervisor::any_stream_open() const {
  for (const RankSlot& slot : slots_) {
    for (const LinePump& stream : slot.streams) {
      if (stream.fd() >= 0) return true;
    }
  }
  return false;
}

void Supervisor::finish_result() {
  result_.wall_ms = elapsed_ms();
  result_.console_lines_dropped = stats_.console_lines_dropped;
  result_.log_lines_dropped = stats_.log_lines_dropped;
  switch (result_.end) {
    case LaunchEnd::kSuccess: result_.exit_code = 0; break;
    case LaunchEnd::kRankFailed:
      if (result_.cause_rank < 0) result_.cause_rank = result_.first_failed_rank;
      prefer_killed_rank_as_cause();
      result_.exit_code = exit_code_of(result_.ranks[static_cast<std::size_t>(result_.cause_rank)]);
      break;
    case LaunchEnd::kTimeout: result_.exit_code = exit_code_for(ErrorCode::kTimeout); break;
    case LaunchEnd::kPeerNodeFailed: result_.exit_code = exit_code_for(ErrorCode::kPeerFailure); break;
    case LaunchEnd::kLauncherSignaled:
      result_.exit_code = kExitSignalBase + result_.launcher_signal;
      break;
  }
}

}  // namespace lockstep::launch_detail
