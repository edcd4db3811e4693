#include "lockstep/flight_recorder.h"

#include <bit>

#include "guard/atomic_words.h"
#include "guard/thread_name.h"
#include "lockstep/error.h"

namespace lockstep {

namespace {

// One entry fills four cache lines with its stamp; keep it there.
static_assert(sizeof(FlightEvent) <= 4 * 64 - sizeof(std::uint64_t));
// Sequence stamps of a slot: odd while the append of `seq` writes it, even
// (2 * seq + 2) once it holds the complete event `seq`.
constexpr std::uint64_t writing_stamp(std::uint64_t seq) { return 2 * seq + 1; }
constexpr std::uint64_t complete_stamp(std::uint64_t seq) { return 2 * seq + 2; }

}  // namespace

// Every field is an atomic word so that a concurrent snapshot is a seqlock
// read, not a data race.
struct FlightRecorder::Slot {
  alignas(64) std::atomic<std::uint64_t> stamp{0};
  guard_detail::AtomicWords<FlightEvent> event;
};

FlightRecorder::FlightRecorder(std::size_t events_max, const Clock& clock)
    : slots_max_(events_max), clock_(clock) {
  if (events_max < kFlightRecorderEventsMin || events_max > kFlightRecorderEventsMax ||
      !std::has_single_bit(events_max)) {
    throw Error(ErrorCode::kInvalidArgument,
                "flight recorder events_max=" + std::to_string(events_max) +
                    " must be a power of two in [" + std::to_string(kFlightRecorderEventsMin) +
                    ", " + std::to_string(kFlightRecorderEventsMax) + "]");
  }
  slots_ = std::make_unique<Slot[]>(slots_max_);
}

FlightRecorder::~FlightRecorder() = default;

void FlightRecorder::record(const EventSpec& spec) noexcept {
  FlightEvent event;
  event.t_ns = clock_.now_ns();
  event.group_seq = spec.group_seq;
  event.count = spec.count;
  event.call_id = context_.call_id.load(std::memory_order_relaxed);
  event.chunk_index = context_.chunk_index.load(std::memory_order_relaxed);
  event.cache_epoch = context_.cache_epoch.load(std::memory_order_relaxed);
  event.peer = spec.peer;
  event.kind = spec.kind;
  event.state = spec.state;
  event.dtype = spec.dtype;
  event.thread = guard_detail::current_thread_name();
  event.group.assign(spec.group);
  event.op.assign(spec.op);
  event.detail.assign(spec.detail);
  if (!spec.phase.empty()) {
    event.phase.assign(spec.phase);
  } else if (const std::uint32_t id = context_.phase_id.load(std::memory_order_acquire); id != 0) {
    event.phase = phases_[id - 1];
  }

  const std::uint64_t seq = next_seq_.fetch_add(1, std::memory_order_relaxed);
  event.seq = seq;
  Slot& slot = slots_[seq & (slots_max_ - 1)];
  std::uint64_t stamp = slot.stamp.load(std::memory_order_relaxed);
  // An odd stamp or a newer one means an append that lapped the ring owns the
  // slot; writing now would tear its entry.
  if ((stamp & 1) != 0 || stamp >= writing_stamp(seq) ||
      !slot.stamp.compare_exchange_strong(stamp, writing_stamp(seq), std::memory_order_relaxed)) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  slot.event.store(event);
  slot.stamp.store(complete_stamp(seq), std::memory_order_release);
}

void FlightRecorder::commit(std::string_view what, std::string_view group,
                            std::string_view detail) noexcept {
  EventSpec spec;
  spec.kind = EventKind::kCommit;
  spec.state = EventState::kCompleted;
  spec.op = what;
  spec.group = group;
  spec.detail = detail;
  record(spec);
}

void FlightRecorder::on_collective(const CollectiveEvent& event) noexcept {
  const bool p2p = event.op == CollectiveOp::kSend || event.op == CollectiveOp::kRecv;
  EventSpec spec;
  spec.kind = p2p ? EventKind::kP2p : EventKind::kCollective;
  spec.group = event.group;
  spec.op = collective_op_name(event.op);
  spec.phase = phase_name(event.phase);
  spec.group_seq = event.group_seq;
  spec.count = static_cast<std::int64_t>(event.count);
  spec.peer = event.root_or_peer;
  spec.dtype = static_cast<std::uint8_t>(event.dtype);
  switch (event.state) {
    case CollectiveState::kEnqueued: spec.state = EventState::kEnqueued; break;
    case CollectiveState::kStarted: spec.state = EventState::kStarted; break;
    case CollectiveState::kCompleted: spec.state = EventState::kCompleted; break;
    case CollectiveState::kRejected:
    case CollectiveState::kFailed: spec.state = EventState::kFailed; break;
  }
  // "rejected: membership: ..." is what the doctor's wrong-group verdict reads.
  std::array<char, kEventDetailBytesMax> detail{};
  if (event.state == CollectiveState::kRejected || event.state == CollectiveState::kFailed) {
    const std::string_view prefix =
        event.state == CollectiveState::kRejected ? "rejected: " : "failed: ";
    std::size_t n = 0;
    for (const std::string_view part :
         {prefix, error_code_name(event.error_code), std::string_view(": "), event.error_message}) {
      for (std::size_t i = 0; i < part.size() && n < detail.size(); ++i) detail[n++] = part[i];
    }
    spec.detail = std::string_view(detail.data(), n);
  }
  record(spec);
}

void FlightRecorder::set_context(std::int64_t call_id, std::int64_t chunk_index,
                                 std::int64_t cache_epoch) noexcept {
  context_.call_id.store(call_id, std::memory_order_relaxed);
  context_.chunk_index.store(chunk_index, std::memory_order_relaxed);
  context_.cache_epoch.store(cache_epoch, std::memory_order_relaxed);
}

void FlightRecorder::set_phase(std::string_view phase) {
  std::lock_guard<std::mutex> lock(phases_mutex_);
  FixedText<kEventNameBytesMax> name;
  name.assign(phase);
  const std::uint32_t known = phases_count_.load(std::memory_order_relaxed);
  for (std::uint32_t i = 0; i < known; ++i) {
    if (phases_[i].view() == name.view()) {
      context_.phase_id.store(i + 1, std::memory_order_release);
      return;
    }
  }
  if (known == kFlightRecorderPhasesMax) {
    throw Error(ErrorCode::kLimit, "flight recorder: more than " +
                                       std::to_string(kFlightRecorderPhasesMax) +
                                       " phase names; refusing phase '" + std::string(phase) + "'");
  }
  phases_[known] = name;
  phases_count_.store(known + 1, std::memory_order_release);
  context_.phase_id.store(known + 1, std::memory_order_release);
}

void FlightRecorder::name_this_thread(std::string_view name) noexcept {
  guard_detail::set_current_thread_name(name);
}

std::vector<FlightEvent> FlightRecorder::snapshot() const {
  const std::uint64_t end = next_seq_.load(std::memory_order_acquire);
  const std::uint64_t begin = end > slots_max_ ? end - slots_max_ : 0;
  std::vector<FlightEvent> events;
  events.reserve(static_cast<std::size_t>(end - begin));
  for (std::uint64_t seq = begin; seq < end; ++seq) {
    const Slot& slot = slots_[seq & (slots_max_ - 1)];
    const std::uint64_t before = slot.stamp.load(std::memory_order_acquire);
    if (before != complete_stamp(seq)) continue;  // mid-write, dropped or overwritten
    const FlightEvent event = slot.event.load();
    if (slot.stamp.load(std::memory_order_relaxed) != before) continue;  // torn
    events.push_back(event);
  }
  return events;
}

}  // namespace lockstep
