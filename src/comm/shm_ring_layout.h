// The shared-memory layout of a ShmRing segment. Everything another process
// reads is a lock-free std::atomic (address-free, so valid across mappings)
// or slot bytes published through the release/acquire sequences.
//
//   SegmentHeader | WriterLine | SpaceLine | ReaderLine × readers | slots
//
// Each line is one cache line so the writer's stores and each reader's acks
// never false-share.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace lockstep::comm_detail {

inline constexpr std::size_t kCacheLineBytes = 64;
inline constexpr std::uint64_t kShmRingMagic = 0x314d4853'4b434f4cULL;  // "LOCKSHM1"
// 2: the creator's pid, so a later job can tell a ring every owner left.
inline constexpr std::uint32_t kShmRingLayoutVersion = 2;
// Claim values of an endpoint's pid word besides a live pid.
inline constexpr std::int32_t kPidUnclaimed = 0;
inline constexpr std::int32_t kPidDetached = -1;

struct alignas(kCacheLineBytes) SegmentHeader {
  std::uint64_t magic;
  std::uint32_t layout_version;
  std::uint32_t readers;
  std::uint32_t slots;
  std::uint32_t slot_stride_bytes;
  std::uint64_t slot_payload_bytes;
  std::atomic<std::uint32_t> ready;  // 1 once the creator initialised everything (release)
  std::atomic<std::int32_t> writer_pid;  // kPidUnclaimed, a pid, or kPidDetached
  std::atomic<std::uint32_t> cancelled;  // 1 once any endpoint cancelled
  std::atomic<std::int32_t> cancelled_by_pid;
  std::atomic<std::int32_t> creator_pid;  // set before ready
};

struct alignas(kCacheLineBytes) WriterLine {
  std::atomic<std::uint64_t> published;     // frames published; frame n lives in slot n % slots
  std::atomic<std::uint32_t> data_futex;    // readers sleep here for `published` to move
  std::atomic<std::uint32_t> data_sleepers;
};

struct alignas(kCacheLineBytes) SpaceLine {
  std::atomic<std::uint32_t> space_futex;   // the writer sleeps here for acks to move
  std::atomic<std::uint32_t> space_sleepers;
};

struct alignas(kCacheLineBytes) ReaderLine {
  std::atomic<std::uint64_t> acked;  // frames this reader has copied out
  std::atomic<std::int32_t> pid;     // kPidUnclaimed, a pid, or kPidDetached
};

struct SlotHeader {
  std::uint64_t frame_bytes;
};

static_assert(sizeof(SegmentHeader) % kCacheLineBytes == 0);
static_assert(sizeof(WriterLine) == kCacheLineBytes);
static_assert(sizeof(SpaceLine) == kCacheLineBytes);
static_assert(sizeof(ReaderLine) == kCacheLineBytes);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
static_assert(std::atomic<std::int32_t>::is_always_lock_free);

inline constexpr std::size_t kWriterLineOffset = sizeof(SegmentHeader);
inline constexpr std::size_t kSpaceLineOffset = kWriterLineOffset + sizeof(WriterLine);
inline constexpr std::size_t kReaderLinesOffset = kSpaceLineOffset + sizeof(SpaceLine);

inline std::size_t slots_offset(std::size_t readers) {
  return kReaderLinesOffset + readers * sizeof(ReaderLine);
}
inline std::size_t slot_stride_bytes(std::size_t payload_bytes) {
  const std::size_t raw = sizeof(SlotHeader) + payload_bytes;
  return (raw + kCacheLineBytes - 1) / kCacheLineBytes * kCacheLineBytes;
}

// Typed views of a mapped segment.
struct SegmentView {
  std::uint8_t* base;

  SegmentHeader& header() const { return *reinterpret_cast<SegmentHeader*>(base); }
  WriterLine& writer() const { return *reinterpret_cast<WriterLine*>(base + kWriterLineOffset); }
  SpaceLine& space() const { return *reinterpret_cast<SpaceLine*>(base + kSpaceLineOffset); }
  ReaderLine& reader(std::size_t index) const {
    return *reinterpret_cast<ReaderLine*>(base + kReaderLinesOffset + index * sizeof(ReaderLine));
  }
  std::uint8_t* slot(std::uint64_t seq) const {
    const SegmentHeader& h = header();
    return base + slots_offset(h.readers) + (seq % h.slots) * h.slot_stride_bytes;
  }
};

}  // namespace lockstep::comm_detail
