// The intra-host control channel (SPEC §4A): a POSIX shared-memory ring with
// one writer and up to kShmRingReadersMax readers, each reader receiving every
// frame.
//
// Layout and protocol (details in src/comm/shm_ring_layout.h):
//  - `slots` fixed-size slots; the writer publishes frame n into slot
//    n % slots and then release-stores published = n + 1;
//  - each reader has its own acknowledgement sequence on its own cache line
//    (alignas(64)); it acquire-loads `published`, copies the slot out, then
//    release-stores acked = n + 1;
//  - the writer may reuse a slot only once the slowest reader acked it: a
//    full ring is backpressure, never more than `slots` frames in flight;
//  - waits spin briefly, then sleep on a process-shared futex in the segment
//    in bounded slices, rechecking the state after every wake: cancel flag,
//    progress, the peer's liveness (kill(pid, 0)), and the deadline.
//
// Lifetime: ShmRing::create() makes the segment (checking free space on
// /dev/shm first) and unlinks its name when the creating ShmRing and every
// endpoint made from it are gone; ShmRing::open() attaches to an existing
// one. A process killed by a signal never unlinks: the launcher removes its
// job's rings after reaping every rank, and — for jobs with no lockstep
// launcher (torchrun) — every create() first sweeps the rings whose creator
// and endpoints are all dead (sweep_dead_shm_rings). Endpoints share the mapping of the ShmRing they came from, so threads
// of one process use one mapping.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "lockstep/channel.h"

namespace lockstep {

inline constexpr int kShmRingReadersMax = 8;
inline constexpr std::uint32_t kShmRingSlotsMax = 1024;
inline constexpr std::size_t kShmRingSlotPayloadBytesMax = std::size_t{1} << 20;
// Default slot payload: a control envelope (meta + manifest) with room to spare.
inline constexpr std::size_t kShmRingSlotPayloadBytesDefault = 16 * 1024;
// How long a wait spins before it sleeps on the futex: long enough to catch
// a frame published back-to-back without a syscall, short enough not to
// steal a shared core from the peer it is waiting for.
inline constexpr std::chrono::microseconds kShmRingSpinDefault{20};
inline constexpr std::chrono::microseconds kShmRingSpinMax{10'000};
// Job ids and channel names become part of a file name under /dev/shm.
inline constexpr std::size_t kShmRingNameBytesMax = 64;

struct ShmRingOptions {
  std::string job_id;        // [A-Za-z0-9_.-], <= kShmRingNameBytesMax
  std::string channel_name;  // same alphabet and bound
  std::uint32_t generation = 0;  // the job's generation (job_token.h)
  int readers = 1;           // 1 .. kShmRingReadersMax
  std::uint32_t slots = 4;   // 1 .. kShmRingSlotsMax
  std::size_t slot_payload_bytes = kShmRingSlotPayloadBytesDefault;  // .. kShmRingSlotPayloadBytesMax
  std::chrono::microseconds spin = kShmRingSpinDefault;  // 0 .. kShmRingSpinMax; per process
};

// "/lockstep-<job_id>-g<generation>-<channel_name>". Throws
// Error{kInvalidArgument} naming the field for an empty, too long or
// non-[A-Za-z0-9_.-] job id or name.
std::string shm_ring_segment_name(const ShmRingOptions& options);

class ShmRing {
 public:
  // Creates and initialises the segment. Non-blocking apart from the
  // syscalls. Throws Error{kInvalidArgument} for bad options,
  // Error{kResource} when /dev/shm lacks the space (naming bytes needed and
  // free) or the segment already exists (a leftover of a crashed job),
  // Error{kResource} for any other shm_open/posix_fallocate/mmap failure.
  static ShmRing create(const ShmRingOptions& options);

  // Attaches to a segment made by create() with the same job id and channel
  // name, waiting for it to appear and be initialised for at most `timeout`
  // (Error{kTimeout}). Throws Error{kInvalidArgument} when the segment's
  // geometry differs from `options` (readers, slots, slot size).
  static ShmRing open(const ShmRingOptions& options, std::chrono::milliseconds timeout);

  ShmRing(ShmRing&&) noexcept;
  ShmRing& operator=(ShmRing&&) noexcept;
  ~ShmRing();

  // The writer endpoint. At most one per segment across all processes: the
  // claim is recorded in the segment with this process's pid (Error{kInvalidArgument}
  // when already claimed). Non-blocking.
  std::unique_ptr<Channel> writer();
  // Reader endpoint `reader_index` (0 .. readers-1), claimed likewise.
  std::unique_ptr<Channel> reader(int reader_index);

  const std::string& segment_name() const;
  std::size_t segment_bytes() const;

 private:
  struct Mapping;
  explicit ShmRing(std::shared_ptr<Mapping> mapping);
  std::shared_ptr<Mapping> mapping_;
};

// Directory entries the sweep looks at, at most (bounds its cost on a host
// with a crowded /dev/shm).
inline constexpr std::size_t kShmSweepEntriesMax = 4096;

// Removes every /dev/shm/lockstep-* ring whose creator and every claimed
// endpoint are dead processes; returns how many. Segments still being
// created, of another layout, or of a live process are left alone. Blocking
// on syscalls only; any thread.
std::size_t sweep_dead_shm_rings();

// Bytes a segment with these options occupies (what create() checks against
// /dev/shm's free space). Throws like create() for bad options.
std::size_t shm_ring_segment_bytes(const ShmRingOptions& options);

}  // namespace lockstep
