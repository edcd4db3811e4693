// Single-threaded shm ring behaviour (label unit): protocol, limits, bounds.
#include "lockstep/shm_ring.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <span>

#include "comm/shm_test_util.h"

namespace lockstep {
namespace {

using std::chrono::milliseconds;
using test::code_of;
// Short: only for waits that are expected to time out.
constexpr milliseconds kExpectTimeout{20};
constexpr milliseconds kTimeout{5000};

bool segment_exists(const std::string& name) {
  struct stat stats {};
  return ::stat(("/dev/shm" + name).c_str(), &stats) == 0;
}

TEST(ShmRing, DeliversEveryFrameToEveryReaderInOrder) {
  ShmRing ring = ShmRing::create(test::unique_ring_options(2, 4, 128));
  auto writer = ring.writer();
  auto reader0 = ring.reader(0);
  auto reader1 = ring.reader(1);
  std::vector<std::uint8_t> buffer(128);
  for (std::uint64_t n = 0; n < 20; ++n) {
    writer->publish(test::pattern_frame(n, 128), kTimeout);
    for (Channel* reader : {reader0.get(), reader1.get()}) {
      const std::size_t size = reader->receive(buffer, kTimeout);
      EXPECT_EQ(std::vector<std::uint8_t>(buffer.begin(), buffer.begin() + size), test::pattern_frame(n, 128));
    }
  }
  writer->publish({}, kTimeout);
  EXPECT_EQ(reader0->receive(buffer, kTimeout), 0u) << "empty frames are frames";
}

TEST(ShmRing, FrameWaitingTellsEachReaderWithoutConsumingOrWaiting) {
  ShmRing ring = ShmRing::create(test::unique_ring_options(2, 4, 128));
  auto writer = ring.writer();
  auto reader0 = ring.reader(0);
  auto reader1 = ring.reader(1);
  std::vector<std::uint8_t> buffer(128);
  EXPECT_FALSE(reader0->frame_waiting());
  writer->publish(test::pattern_frame(1, 128), kTimeout);
  EXPECT_TRUE(reader0->frame_waiting());
  EXPECT_TRUE(reader0->frame_waiting()) << "asking consumes nothing";
  reader0->receive(buffer, kTimeout);
  EXPECT_FALSE(reader0->frame_waiting());
  EXPECT_TRUE(reader1->frame_waiting()) << "each reader has its own position";
}

TEST(ShmRing, FullRingIsBackpressureHeldBySlowestReader) {
  constexpr std::uint32_t kSlots = 4;
  ShmRing ring = ShmRing::create(test::unique_ring_options(2, kSlots, 64));
  auto writer = ring.writer();
  auto fast = ring.reader(0);
  auto slow = ring.reader(1);
  std::vector<std::uint8_t> buffer(64);
  for (std::uint64_t n = 0; n < kSlots; ++n) writer->publish(test::pattern_frame(n, 64), kTimeout);
  EXPECT_EQ(code_of([&] { writer->publish(test::pattern_frame(kSlots, 64), kExpectTimeout); }),
            ErrorCode::kTimeout);
  for (std::uint32_t n = 0; n < kSlots; ++n) fast->receive(buffer, kTimeout);
  try {
    writer->publish(test::pattern_frame(kSlots, 64), kExpectTimeout);
    FAIL() << "the slow reader has acked nothing; the ring must still be full";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kTimeout);
    EXPECT_NE(std::string(error.what()).find("slowest reader 1 acked 0"), std::string::npos) << error.what();
  }
  slow->receive(buffer, kTimeout);
  writer->publish(test::pattern_frame(kSlots, 64), kTimeout);  // exactly one slot freed
  EXPECT_EQ(code_of([&] { writer->publish(test::pattern_frame(kSlots + 1, 64), kExpectTimeout); }),
            ErrorCode::kTimeout);
  EXPECT_EQ(fast->receive(buffer, kTimeout), test::pattern_frame(kSlots, 64).size());
}

TEST(ShmRing, ReaderThatNeverAttachedHoldsTheWriterAndIsNamed) {
  ShmRing ring = ShmRing::create(test::unique_ring_options(2, 1, 64));
  auto writer = ring.writer();
  auto reader0 = ring.reader(0);
  std::vector<std::uint8_t> buffer(64);
  writer->publish(test::pattern_frame(0, 64), kTimeout);
  reader0->receive(buffer, kTimeout);
  try {
    writer->publish(test::pattern_frame(1, 64), kExpectTimeout);
    FAIL() << "reader 1 has not acked frame 0";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kTimeout);
    EXPECT_NE(std::string(error.what()).find("slowest reader 1 acked 0 (never attached)"), std::string::npos)
        << error.what();
  }
}

TEST(ShmRing, EmptyRingTimesOutReader) {
  ShmRing ring = ShmRing::create(test::unique_ring_options(1, 2, 64));
  auto writer = ring.writer();
  auto reader = ring.reader(0);
  std::vector<std::uint8_t> buffer(64);
  EXPECT_EQ(code_of([&] { reader->receive(buffer, kExpectTimeout); }), ErrorCode::kTimeout);
}

TEST(ShmRing, LimitsAndRolesAreChecked) {
  ShmRing ring = ShmRing::create(test::unique_ring_options(1, 2, 64));
  auto writer = ring.writer();
  auto reader = ring.reader(0);
  std::vector<std::uint8_t> too_big(65);
  std::vector<std::uint8_t> small(63);
  EXPECT_EQ(code_of([&] { writer->publish(too_big, kTimeout); }), ErrorCode::kLimit);
  EXPECT_EQ(code_of([&] { reader->receive(small, kTimeout); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { reader->publish(small, kTimeout); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { writer->receive(too_big, kTimeout); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { ring.writer(); }), ErrorCode::kInvalidArgument) << "one writer per segment";
  EXPECT_EQ(code_of([&] { ring.reader(0); }), ErrorCode::kInvalidArgument) << "one claim per reader";
  EXPECT_EQ(code_of([&] { ring.reader(1); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(writer->frame_bytes_max(), 64u);
}

TEST(ShmRing, OptionsAreValidated) {
  auto options = test::unique_ring_options(1, 2, 64);
  auto with = [&](auto change) {
    ShmRingOptions changed = options;
    change(changed);
    return code_of([&] { ShmRing::create(changed); });
  };
  EXPECT_EQ(with([](ShmRingOptions& o) { o.readers = 0; }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(with([](ShmRingOptions& o) { o.readers = kShmRingReadersMax + 1; }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(with([](ShmRingOptions& o) { o.slots = 0; }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(with([](ShmRingOptions& o) { o.slots = kShmRingSlotsMax + 1; }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(with([](ShmRingOptions& o) { o.slot_payload_bytes = kShmRingSlotPayloadBytesMax + 1; }),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(with([](ShmRingOptions& o) { o.job_id = "a/b"; }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(with([](ShmRingOptions& o) { o.channel_name = ""; }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(with([](ShmRingOptions& o) { o.spin = kShmRingSpinMax + std::chrono::microseconds(1); }),
            ErrorCode::kInvalidArgument);
  ShmRingOptions named;
  named.job_id = "job1";
  named.channel_name = "ctl";
  EXPECT_EQ(shm_ring_segment_name(named), "/lockstep-job1-g0-ctl");
  named.generation = 3;  // a restarted generation never opens the old one's rings
  EXPECT_EQ(shm_ring_segment_name(named), "/lockstep-job1-g3-ctl");
}

TEST(ShmRing, CreatorUnlinksAndLeftoversAreReported) {
  const auto options = test::unique_ring_options(1, 2, 64);
  const std::string name = shm_ring_segment_name(options);
  {
    ShmRing ring = ShmRing::create(options);
    EXPECT_TRUE(segment_exists(name));
    EXPECT_EQ(ring.segment_bytes(), shm_ring_segment_bytes(options));
    try {
      ShmRing::create(options);
      FAIL() << "a second create must not reuse a live segment";
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), ErrorCode::kResource);
      EXPECT_NE(std::string(error.what()).find(name), std::string::npos) << error.what();
    }
  }
  EXPECT_FALSE(segment_exists(name));
}

TEST(ShmRing, OpenAttachesWaitsAndChecksGeometry) {
  const auto options = test::unique_ring_options(2, 4, 64);
  EXPECT_EQ(code_of([&] { ShmRing::open(options, kExpectTimeout); }), ErrorCode::kTimeout);
  ShmRing created = ShmRing::create(options);
  auto writer = created.writer();
  ShmRing opened = ShmRing::open(options, kTimeout);
  auto reader = opened.reader(1);  // a second mapping of the same segment
  writer->publish(test::pattern_frame(5, 64), kTimeout);
  std::vector<std::uint8_t> buffer(64);
  const std::size_t size = reader->receive(buffer, kTimeout);
  EXPECT_EQ(std::vector<std::uint8_t>(buffer.begin(), buffer.begin() + size), test::pattern_frame(5, 64));
  ShmRingOptions other = options;
  other.slots = 8;
  EXPECT_EQ(code_of([&] { ShmRing::open(other, kTimeout); }), ErrorCode::kInvalidArgument);
}

TEST(ShmRing, ReaderDrainsThenSeesDetachedWriter) {
  ShmRing ring = ShmRing::create(test::unique_ring_options(1, 4, 64));
  auto writer = ring.writer();
  auto reader = ring.reader(0);
  writer->publish(test::pattern_frame(1, 64), kTimeout);
  writer.reset();
  std::vector<std::uint8_t> buffer(64);
  EXPECT_EQ(reader->receive(buffer, kTimeout), 2u) << "frames published before the writer left still arrive";
  EXPECT_EQ(code_of([&] { reader->receive(buffer, kTimeout); }), ErrorCode::kPeerFailure);
}

TEST(ShmRing, WriterBlockedByDetachedReaderFails) {
  ShmRing ring = ShmRing::create(test::unique_ring_options(2, 1, 64));
  auto writer = ring.writer();
  auto reader0 = ring.reader(0);
  auto reader1 = ring.reader(1);
  writer->publish(test::pattern_frame(0, 64), kTimeout);
  reader1.reset();
  std::vector<std::uint8_t> buffer(64);
  reader0->receive(buffer, kTimeout);
  try {
    writer->publish(test::pattern_frame(1, 64), kTimeout);
    FAIL();
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kPeerFailure);
    EXPECT_NE(std::string(error.what()).find("reader 1 detached"), std::string::npos) << error.what();
  }
}

TEST(ShmRing, CancelIsSegmentWide) {
  ShmRing ring = ShmRing::create(test::unique_ring_options(1, 2, 64));
  auto writer = ring.writer();
  auto reader = ring.reader(0);
  reader->cancel();
  std::vector<std::uint8_t> buffer(64);
  EXPECT_EQ(code_of([&] { writer->publish(buffer, kTimeout); }), ErrorCode::kAborted);
  EXPECT_EQ(code_of([&] { reader->receive(buffer, kTimeout); }), ErrorCode::kAborted);
}

}  // namespace
}  // namespace lockstep

namespace lockstep {
namespace {

// A job with no lockstep launcher (torchrun) whose ranks are killed leaves
// its rings behind; the next ring created on the host removes them, and
// never a ring whose owner lives.
TEST(ShmRing, CreateSweepsRingsEveryOwnerLeftButNoLiveOnes) {
  const ShmRingOptions orphan = test::unique_ring_options(1, 2, 64);
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    ShmRing ring = ShmRing::create(orphan);
    auto writer = ring.writer();
    const char byte = 1;
    (void)!::write(ready[1], &byte, 1);
    ::pause();  // until SIGKILL: the ring is never unlinked by its owner
    ::_exit(0);
  }
  ::close(ready[1]);
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  ::close(ready[0]);
  const ShmRingOptions live = test::unique_ring_options(1, 2, 64);
  ShmRing mine = ShmRing::create(live);
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(segment_exists(shm_ring_segment_name(orphan)));

  ShmRing next = ShmRing::create(test::unique_ring_options(1, 2, 64));  // sweeps first
  EXPECT_FALSE(segment_exists(shm_ring_segment_name(orphan)));
  EXPECT_TRUE(segment_exists(shm_ring_segment_name(live)));
}

}  // namespace
}  // namespace lockstep
