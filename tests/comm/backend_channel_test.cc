#include "lockstep/backend_channel.h"

#include <gtest/gtest.h>

#include <vector>

#include "comm/recording_backend.h"

namespace lockstep {
namespace {

using std::chrono::milliseconds;
constexpr milliseconds kTimeout{1000};

ErrorCode code_of(auto&& fn) {
  try {
    fn();
  } catch (const Error& error) {
    return error.code();
  }
  ADD_FAILURE() << "no lockstep::Error thrown";
  return ErrorCode::kInternal;
}

// Three ranks of one group "ctl" sharing mailboxes: rank 0 writes, 1 and 2 read.
class BackendChannelTest : public ::testing::Test {
 protected:
  test::RecordingBackend& backend(int rank) { return *backends[rank]; }

  std::vector<test::RecordedCall> log;
  test::Mailboxes mailboxes;
  std::vector<std::unique_ptr<test::RecordingBackend>> backends = [this] {
    std::vector<std::unique_ptr<test::RecordingBackend>> made;
    for (int rank = 0; rank < 3; ++rank) {
      made.push_back(std::make_unique<test::RecordingBackend>("ctl", rank, 3, log, mailboxes));
    }
    return made;
  }();
  BackendChannelOptions options{"ctl", 0, 7, 64};
};

TEST_F(BackendChannelTest, EveryReaderGetsEveryFrameInOrder) {
  BackendChannel writer(backend(0), options);
  BackendChannel reader1(backend(1), options);
  BackendChannel reader2(backend(2), options);
  const std::vector<std::uint8_t> first{1, 2, 3};
  const std::vector<std::uint8_t> empty;
  writer.publish(first, kTimeout);
  writer.publish(empty, kTimeout);
  std::vector<std::uint8_t> buffer(64);
  for (BackendChannel* reader : {&reader1, &reader2}) {
    ASSERT_EQ(reader->receive(buffer, kTimeout), 3u);
    EXPECT_EQ(std::vector<std::uint8_t>(buffer.begin(), buffer.begin() + 3), first);
    EXPECT_EQ(reader->receive(buffer, kTimeout), 0u);
  }
  EXPECT_EQ(writer.describe(), "backend:recording channel 'ctl' writer");
}

TEST_F(BackendChannelTest, LimitsAndRolesAreEnforcedBeforeTheBackend) {
  BackendChannel writer(backend(0), options);
  BackendChannel reader(backend(1), options);
  std::vector<std::uint8_t> too_big(65);
  std::vector<std::uint8_t> small(63);
  EXPECT_EQ(code_of([&] { writer.publish(too_big, kTimeout); }), ErrorCode::kLimit);
  EXPECT_EQ(code_of([&] { reader.receive(small, kTimeout); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { writer.receive(too_big, kTimeout); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { reader.publish(small, kTimeout); }), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(log.empty());
  EXPECT_EQ(code_of([&] { BackendChannel bad(backend(0), {"ctl", 3, 7, 64}); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { BackendChannel bad(backend(0), {"ctl", 0, 7, 0}); }), ErrorCode::kInvalidArgument);
}

TEST_F(BackendChannelTest, CorruptHeaderIsRejectedAndCancelsTheChannel) {
  BackendChannel reader(backend(1), options);
  mailboxes[{"ctl", 0, 1}].push_back(std::vector<std::uint8_t>(16, 0xAB));
  std::vector<std::uint8_t> buffer(64);
  EXPECT_EQ(code_of([&] { reader.receive(buffer, kTimeout); }), ErrorCode::kDecode);
  EXPECT_EQ(backend(1).abort_calls, 1);
  EXPECT_EQ(code_of([&] { reader.receive(buffer, kTimeout); }), ErrorCode::kAborted);
}

TEST_F(BackendChannelTest, OutOfSequenceFrameIsRejected) {
  BackendChannel writer(backend(0), options);
  BackendChannel reader(backend(1), options);
  const std::vector<std::uint8_t> frame{9};
  writer.publish(frame, kTimeout);
  writer.publish(frame, kTimeout);
  // Drop frame 0 (header and body) so the reader sees frame 1 first.
  mailboxes[{"ctl", 0, 1}].pop_front();
  mailboxes[{"ctl", 0, 1}].pop_front();
  std::vector<std::uint8_t> buffer(64);
  EXPECT_EQ(code_of([&] { reader.receive(buffer, kTimeout); }), ErrorCode::kDecode);
}

TEST_F(BackendChannelTest, CancelAbortsTheBackendOnce) {
  BackendChannel writer(backend(0), options);
  writer.cancel();
  writer.cancel();
  EXPECT_EQ(backend(0).abort_calls, 1);
  const std::vector<std::uint8_t> frame{1};
  EXPECT_EQ(code_of([&] { writer.publish(frame, kTimeout); }), ErrorCode::kAborted);
  EXPECT_TRUE(log.empty());
}

}  // namespace
}  // namespace lockstep
