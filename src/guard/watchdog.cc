#include "lockstep/watchdog.h"

#include <unistd.h>

#include "guard/atomic_words.h"
#include "guard/thread_name.h"
#include "lockstep/poison.h"

namespace lockstep {

namespace {

struct ArmedInfo {
  std::int64_t started_ns = 0;
  std::uint64_t group_seq = 0;
  FixedText<kEventNameBytesMax> thread;
  FixedText<kEventNameBytesMax> what;
  FixedText<kEventNameBytesMax> group;
};

std::int64_t to_ns(std::chrono::milliseconds ms) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(ms).count();
}

ArmedDeadline to_armed(const ArmedInfo& info, std::int64_t deadline_ns) {
  return ArmedDeadline{std::string(info.thread.view()), std::string(info.what.view()),
                       std::string(info.group.view()), info.group_seq, info.started_ns, deadline_ns};
}

std::string describe_expiry(const ArmedDeadline& a, std::int64_t now_ns) {
  std::string text = "watchdog: '" + a.what + "'";
  if (!a.group.empty()) text += " on group '" + a.group + "' seq " + std::to_string(a.group_seq);
  text += " on thread '" + a.thread + "' exceeded its deadline of " +
          std::to_string((a.deadline_ns - a.started_ns) / 1'000'000) + " ms (blocked " +
          std::to_string((now_ns - a.started_ns) / 1'000'000) + " ms)";
  return text;
}

}  // namespace

// busy: claimed by an arming thread. generation: bumped at each arming, so a
// reader that sees it unchanged around its reads saw one consistent arming.
// deadline_ns: 0 while free or still being described; published last.
struct Watchdog::Slot {
  alignas(64) std::atomic<std::uint32_t> busy{0};
  std::atomic<std::uint64_t> generation{0};
  std::atomic<std::int64_t> deadline_ns{0};
  guard_detail::AtomicWords<ArmedInfo> info;
};

Watchdog::Watchdog(WatchdogOptions options, std::function<void(const WatchdogFiring&)> on_fire,
                   const Clock& clock)
    : options_(std::move(options)), on_fire_(std::move(on_fire)), clock_(clock),
      slots_(std::make_unique<Slot[]>(kWatchdogSlotsMax)) {
  using std::chrono::milliseconds;
  const bool periods_ok = options_.startup_deadline > milliseconds(0) &&
                          options_.steady_deadline > milliseconds(0) &&
                          options_.check_period > milliseconds(0) &&
                          options_.poison_poll_period > milliseconds(0) &&
                          options_.parent_poll_period > milliseconds(0);
  if (!periods_ok || options_.world_size < 1 || options_.rank < 0 ||
      options_.rank >= options_.world_size || !on_fire_) {
    throw Error(ErrorCode::kInvalidArgument,
                "watchdog options: deadlines and periods must be > 0, rank " +
                    std::to_string(options_.rank) + " in [0, world_size " +
                    std::to_string(options_.world_size) + "), on_fire set");
  }
}

Watchdog::~Watchdog() { stop(); }

void Watchdog::start() {
  if (thread_.joinable()) throw Error(ErrorCode::kInternal, "watchdog started twice");
  {
    std::lock_guard<std::mutex> lock(stop_mutex_);
    stop_requested_ = false;
  }
  thread_ = std::thread([this] { run(); });
}

void Watchdog::stop() {
  {
    std::lock_guard<std::mutex> lock(stop_mutex_);
    stop_requested_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Watchdog::run() {
  guard_detail::set_current_thread_name("watchdog");
  std::unique_lock<std::mutex> lock(stop_mutex_);
  while (!stop_requested_) {
    lock.unlock();
    if (check_now()) return;  // the process is going down through on_fire
    lock.lock();
    stop_cv_.wait_for(lock, options_.check_period, [this] { return stop_requested_; });
  }
}

Watchdog::Ticket Watchdog::arm(std::string_view what, std::string_view group,
                               std::uint64_t group_seq) noexcept {
  return arm_for(current_deadline(), what, group, group_seq);
}

Watchdog::Ticket Watchdog::arm_for(std::chrono::milliseconds timeout, std::string_view what,
                                   std::string_view group, std::uint64_t group_seq) noexcept {
  for (std::uint32_t i = 0; i < kWatchdogSlotsMax; ++i) {
    Slot& slot = slots_[i];
    std::uint32_t expected = 0;
    if (slot.busy.load(std::memory_order_relaxed) != 0 ||
        !slot.busy.compare_exchange_strong(expected, 1, std::memory_order_acquire)) {
      continue;
    }
    const std::uint64_t generation = slot.generation.fetch_add(1, std::memory_order_acq_rel) + 1;
    ArmedInfo info;
    info.started_ns = clock_.now_ns();
    info.group_seq = group_seq;
    info.thread = guard_detail::current_thread_name();
    info.what.assign(what);
    info.group.assign(group);
    slot.info.store(info);
    slot.deadline_ns.store(info.started_ns + to_ns(timeout), std::memory_order_release);
    return Ticket{i, generation};
  }
  slots_exhausted_.store(true, std::memory_order_release);
  return Ticket{};
}

void Watchdog::disarm(Ticket ticket) noexcept {
  if (ticket.slot >= kWatchdogSlotsMax) return;
  Slot& slot = slots_[ticket.slot];
  if (slot.generation.load(std::memory_order_acquire) != ticket.generation) return;
  slot.deadline_ns.store(0, std::memory_order_relaxed);
  slot.busy.store(0, std::memory_order_release);
}

void Watchdog::enter_steady_state() noexcept { steady_.store(true, std::memory_order_relaxed); }

std::chrono::milliseconds Watchdog::current_deadline() const noexcept {
  return steady_.load(std::memory_order_relaxed) ? options_.steady_deadline
                                                  : options_.startup_deadline;
}

void Watchdog::on_collective(const CollectiveEvent& event) noexcept {
  if (event.state == CollectiveState::kStarted) {
    const auto timeout = event.phase == Phase::kStartup ? options_.startup_deadline
                                                         : options_.steady_deadline;
    arm_for(timeout, collective_op_name(event.op), event.group, event.group_seq);
    return;
  }
  if (event.state != CollectiveState::kCompleted && event.state != CollectiveState::kFailed) return;
  // The comm thread that armed the call is the one completing it; the slot
  // is found by (group, seq), unique per group on this rank.
  FixedText<kEventNameBytesMax> group;
  group.assign(event.group);
  for (std::uint32_t i = 0; i < kWatchdogSlotsMax; ++i) {
    Slot& slot = slots_[i];
    if (slot.deadline_ns.load(std::memory_order_acquire) == 0) continue;
    const std::uint64_t generation = slot.generation.load(std::memory_order_acquire);
    const ArmedInfo info = slot.info.load();
    if (info.group_seq == event.group_seq && info.group.view() == group.view()) {
      disarm(Ticket{i, generation});
      return;
    }
  }
}

std::optional<ArmedDeadline> Watchdog::read_slot(std::uint32_t index) const {
  const Slot& slot = slots_[index];
  const std::uint64_t generation = slot.generation.load(std::memory_order_acquire);
  const std::int64_t deadline_ns = slot.deadline_ns.load(std::memory_order_acquire);
  if (deadline_ns == 0) return std::nullopt;
  const ArmedInfo info = slot.info.load();
  if (slot.generation.load(std::memory_order_relaxed) != generation ||
      slot.deadline_ns.load(std::memory_order_relaxed) != deadline_ns) {
    return std::nullopt;  // disarmed or re-armed while we read: the next look sees it whole
  }
  return to_armed(info, deadline_ns);
}

std::vector<ArmedDeadline> Watchdog::armed() const {
  std::vector<ArmedDeadline> out;
  for (std::uint32_t i = 0; i < kWatchdogSlotsMax; ++i) {
    if (auto armed = read_slot(i)) out.push_back(std::move(*armed));
  }
  return out;
}

std::optional<WatchdogFiring> Watchdog::find_expired(std::int64_t now_ns) const {
  for (std::uint32_t i = 0; i < kWatchdogSlotsMax; ++i) {
    // Atomics only on the common path; the description is read on expiry.
    const std::int64_t deadline_ns = slots_[i].deadline_ns.load(std::memory_order_relaxed);
    if (deadline_ns == 0 || now_ns < deadline_ns) continue;
    const std::optional<ArmedDeadline> expired = read_slot(i);
    if (!expired || now_ns < expired->deadline_ns) continue;
    WatchdogFiring firing;
    firing.cause = WatchdogCause::kDeadline;
    firing.code = ErrorCode::kTimeout;
    firing.message = describe_expiry(*expired, now_ns);
    firing.expired = *expired;
    return firing;
  }
  return std::nullopt;
}

std::optional<WatchdogFiring> Watchdog::poll_peers(std::int64_t now_ns) {
  if (options_.store != nullptr && now_ns >= next_poison_poll_ns_) {
    next_poison_poll_ns_ = now_ns + to_ns(options_.poison_poll_period);
    std::optional<PoisonMark> mark;
    try {
      mark = find_poisoned_peer(*options_.store, options_.rank, options_.world_size);
    } catch (const std::exception& e) {
      return WatchdogFiring{WatchdogCause::kStoreFailed, ErrorCode::kStore,
                            std::string("watchdog: polling poison marks failed: ") + e.what(), {}, -1};
    }
    if (mark) {
      return WatchdogFiring{WatchdogCause::kPeerPoison, ErrorCode::kPeerFailure,
                            "rank " + std::to_string(mark->rank) + " poisoned the job (" +
                                mark->code + "): " + mark->message,
                            {}, mark->rank};
    }
  }
  if (options_.parent_pid > 0 && now_ns >= next_parent_poll_ns_) {
    next_parent_poll_ns_ = now_ns + to_ns(options_.parent_poll_period);
    if (getppid() != options_.parent_pid) {
      return WatchdogFiring{WatchdogCause::kParentGone, ErrorCode::kPeerFailure,
                            "parent process " + std::to_string(options_.parent_pid) + " is gone",
                            {}, -1};
    }
  }
  return std::nullopt;
}

bool Watchdog::check_now() {
  if (fired()) return true;
  const std::int64_t now_ns = clock_.now_ns();
  std::optional<WatchdogFiring> firing;
  if (slots_exhausted_.load(std::memory_order_acquire)) {
    firing = WatchdogFiring{WatchdogCause::kSlotsExhausted, ErrorCode::kLimit,
                            "watchdog: more than " + std::to_string(kWatchdogSlotsMax) +
                                " blocking operations armed at once; one ran unguarded",
                            {}, -1};
  }
  if (!firing) firing = find_expired(now_ns);
  if (!firing) firing = poll_peers(now_ns);
  if (!firing) return false;
  fire(*firing);
  return true;
}

void Watchdog::fire(const WatchdogFiring& firing) {
  if (fired_.exchange(true, std::memory_order_acq_rel)) return;
  on_fire_(firing);
}

}  // namespace lockstep
