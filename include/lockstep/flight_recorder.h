// The flight recorder (SPEC §4B, §4C): a per-process ring of the most recent
// events — collectives, p2p, commitment points, waits, stages, notes — that
// guard dumps to <job_dir>/dumps/rank-R.json on every failure so that
// `lockstep doctor` can say which rank stopped where. The dump format is
// "Flight-recorder dump format (version 1)" in docs/ARCHITECTURE.md.
//
// Appends are lock-free and allocation-free (a fetch_add on the ring index and
// a per-slot sequence stamp); a dump copies the ring's plain entries first and
// only then formats, so it cannot deadlock against a thread that hung while
// holding any lock.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "lockstep/clock.h"
#include "lockstep/collective_observer.h"
#include "lockstep/dtype.h"
#include "lockstep/dump_format.h"

namespace lockstep {

inline constexpr std::size_t kFlightRecorderEventsDefault = 4096;
// Smallest ring: fewer entries than this cannot hold one chunk's collectives.
inline constexpr std::size_t kFlightRecorderEventsMin = 64;
// Largest ring: bounds the dump (each event is a few hundred bytes of JSON).
inline constexpr std::size_t kFlightRecorderEventsMax = std::size_t{1} << 16;
// Phase names interned by the recorder (the runtime has a handful).
inline constexpr std::size_t kFlightRecorderPhasesMax = 16;
// Every dumped string field is truncated to these many bytes.
inline constexpr std::size_t kEventNameBytesMax = 23;
inline constexpr std::size_t kEventDetailBytesMax = 63;
// Upper bound of one dumped event and of the fixed part of a dump, in JSON
// bytes (worst case: every character escaped as \u00XX).
inline constexpr std::size_t kDumpEventBytesMax = 2048;
inline constexpr std::size_t kDumpHeaderBytesMax = 512 * 1024;
inline constexpr int kDumpFormatVersion = 1;



// A short string stored inline, NUL-terminated, truncated on assignment.
template <std::size_t N>
struct FixedText {
  std::array<char, N + 1> chars{};
  void assign(std::string_view text) noexcept {
    const std::size_t n = text.size() < N ? text.size() : N;
    if (n != 0) std::memcpy(chars.data(), text.data(), n);
    chars[n] = '\0';
  }
  std::string_view view() const noexcept { return std::string_view(chars.data()); }
};

// One ring entry. Plain data: copied word by word into and out of the ring.
struct FlightEvent {
  std::int64_t t_ns = 0;          // lockstep::Clock time of the append
  std::uint64_t seq = 0;          // process-wide append number
  std::uint64_t group_seq = 0;    // the group's ledger sequence number
  std::int64_t count = 0;         // elements (collective) or bytes (p2p)
  std::int64_t call_id = -1;      // -1: no current call
  std::int64_t chunk_index = -1;  // -1: no current chunk
  std::int64_t cache_epoch = -1;  // -1: before the first epoch
  std::int32_t peer = -1;         // root or peer in group ranks; -1: none
  EventKind kind = EventKind::kNote;
  EventState state = EventState::kCompleted;
  std::uint8_t dtype = 0;  // DType wire value; 0: none
  std::uint8_t pad = 0;
  FixedText<kEventNameBytesMax> thread;
  FixedText<kEventNameBytesMax> group;
  FixedText<kEventNameBytesMax> op;
  FixedText<kEventNameBytesMax> phase;
  FixedText<kEventDetailBytesMax> detail;
};

// What a caller says about an event; the recorder adds time, thread, sequence
// number, phase and the current (call_id, chunk_index, cache_epoch).
struct EventSpec {
  EventKind kind = EventKind::kNote;
  EventState state = EventState::kCompleted;
  std::string_view group;
  std::string_view op;
  std::string_view detail;
  std::string_view phase;  // empty: the recorder's current phase
  std::uint64_t group_seq = 0;
  std::int64_t count = 0;
  std::int32_t peer = -1;
  std::uint8_t dtype = 0;
};

// Also the Communicator's observer: every guarded call lands in the ring as
// enqueued / started / completed / failed (a rejected call as failed, with
// its error in detail).
class FlightRecorder final : public CollectiveObserver {
 public:
  // REQUIRES: kFlightRecorderEventsMin <= events_max <= kFlightRecorderEventsMax
  // and a power of two (throws Error{kInvalidArgument} otherwise). `clock`
  // must outlive the recorder.
  explicit FlightRecorder(std::size_t events_max = kFlightRecorderEventsDefault,
                          const Clock& clock = steady_clock());
  ~FlightRecorder() override;
  FlightRecorder(const FlightRecorder&) = delete;
  FlightRecorder& operator=(const FlightRecorder&) = delete;

  std::size_t events_max() const noexcept { return slots_max_; }
  const Clock& clock() const noexcept { return clock_; }

  // Appends one event. Non-blocking, lock-free, allocation-free; any thread,
  // concurrently with other appends and with snapshot(). An append that finds
  // its slot still being written by an older append (the ring lapped within
  // one append) is dropped and counted in dropped_events().
  void record(const EventSpec& spec) noexcept;

  // A commitment point (SPEC §2): `what` is e.g. "header_sent",
  // "mesh_broadcast_begun", "first_generator_collective". Same contract as record.
  void commit(std::string_view what, std::string_view group, std::string_view detail = {}) noexcept;

  // CollectiveObserver: records `event`. Same contract as record.
  void on_collective(const CollectiveEvent& event) noexcept override;

  // The context stamped on every later event, set by the runtime when a call
  // starts. Non-blocking; any thread (last writer wins).
  void set_context(std::int64_t call_id, std::int64_t chunk_index, std::int64_t cache_epoch) noexcept;
  // The current phase ("startup", "control", "generator", ...). Interns the
  // name on first use (takes a mutex and allocates: call it at phase
  // transitions, never per collective). Throws Error{kLimit} past
  // kFlightRecorderPhasesMax distinct names.
  void set_phase(std::string_view phase);

  // Names the calling thread in events it records and in the OS (truncated to
  // kEventNameBytesMax). Call once at thread start; threads that never call it
  // are named from the OS thread name on their first append.
  static void name_this_thread(std::string_view name) noexcept;

  // The ring's complete entries, oldest first (entries mid-write are skipped).
  // Non-blocking; allocates outside any lock; any thread.
  std::vector<FlightEvent> snapshot() const;

  std::uint64_t appended_events() const noexcept { return next_seq_.load(std::memory_order_relaxed); }
  std::uint64_t dropped_events() const noexcept { return dropped_.load(std::memory_order_relaxed); }

 private:
  struct Slot;
  struct Context {
    std::atomic<std::int64_t> call_id{-1};
    std::atomic<std::int64_t> chunk_index{-1};
    std::atomic<std::int64_t> cache_epoch{-1};
    std::atomic<std::uint32_t> phase_id{0};
  };

  std::size_t slots_max_;
  const Clock& clock_;
  std::unique_ptr<Slot[]> slots_;
  alignas(64) std::atomic<std::uint64_t> next_seq_{0};
  alignas(64) std::atomic<std::uint64_t> dropped_{0};
  Context context_;
  // Interned phase names: written once under phases_mutex_, published by
  // phases_count_ (release), then read without a lock.
  std::array<FixedText<kEventNameBytesMax>, kFlightRecorderPhasesMax> phases_{};
  std::atomic<std::uint32_t> phases_count_{0};
  std::mutex phases_mutex_;
};

// ---- dump (version 1) ----------------------------------------------------

enum class DumpReasonKind : std::uint8_t { kFatal = 1, kTimeout, kSignal, kRequest, kExit };
std::string_view dump_reason_kind_name(DumpReasonKind kind);

struct DumpReason {
  DumpReasonKind kind = DumpReasonKind::kRequest;
  std::string code;     // error_code_name(...), or "sigusr1", "sigterm", "exit"
  std::string message;
  int exit_code = 0;
};

// One blocking operation under a deadline at dump time (from the watchdog).
struct ArmedDeadline {
  std::string thread;
  std::string what;
  std::string group;
  std::uint64_t group_seq = 0;
  std::int64_t started_ns = 0;
  std::int64_t deadline_ns = 0;
};

struct LedgerSummary {
  std::string group;
  std::uint64_t next_seq = 0;
  std::string digest_hex;
};

struct DumpHeader {
  int rank = -1;
  int world_size = 0;
  std::string role = "rank";  // "stage0" | "leader" | "worker" | "rank"
  DumpReason reason;
  std::vector<ArmedDeadline> armed;
  std::vector<LedgerSummary> ledgers;
  std::vector<std::pair<std::string, std::int64_t>> counters;
};

// The dump file of `rank` under `job_dir`: <job_dir>/dumps/rank-<rank>.json.
std::filesystem::path dump_path(const std::filesystem::path& job_dir, int rank);

// Formats a version-1 dump of `events` (oldest first). Pure; allocates.
std::string format_dump(const DumpHeader& header, const std::vector<FlightEvent>& events,
                        std::int64_t dumped_at_ns);

// Snapshots `recorder`, formats and writes dump_path(job_dir, header.rank)
// atomically (temporary file, then rename), creating dumps/ if needed.
// Blocking on file I/O only; any thread; never takes a lock a recording
// thread can hold. Returns the path. Throws Error{kResource} naming the path
// when the file cannot be written.
std::filesystem::path write_dump(const std::filesystem::path& job_dir, const DumpHeader& header,
                                 const FlightRecorder& recorder);

}  // namespace lockstep
