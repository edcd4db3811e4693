#include "lockstep/recovery.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "guard/fakes.h"
#include "lockstep/error.h"

namespace lockstep {
namespace {

using std::chrono::milliseconds;

TEST(RestartPolicy, OnlyWhatARestartCanCureIsRestarted) {
  for (ErrorCode code : {ErrorCode::kTimeout, ErrorCode::kPeerFailure, ErrorCode::kAborted, ErrorCode::kBackend,
                         ErrorCode::kStore}) {
    EXPECT_TRUE(restart_can_cure(code)) << error_code_name(code);
  }
  for (ErrorCode code : {ErrorCode::kLedger, ErrorCode::kPlan, ErrorCode::kParity, ErrorCode::kDigest,
                         ErrorCode::kDecode, ErrorCode::kInternal}) {
    EXPECT_FALSE(restart_can_cure(code)) << error_code_name(code);
  }
  EXPECT_TRUE(restart_can_cure_exit(0, 9));  // kill -9
  EXPECT_TRUE(restart_can_cure_exit(exit_code_for(ErrorCode::kTimeout), 0));
  EXPECT_FALSE(restart_can_cure_exit(exit_code_for(ErrorCode::kParity), 0));
  EXPECT_FALSE(restart_can_cure_exit(1, 0));  // an application's own failure
}

TEST(RestartPolicy, TheBudgetAdmitsAtMostNPerSlidingWindow) {
  RestartBudget budget(2, 1000);
  EXPECT_TRUE(budget.admit(0));
  EXPECT_TRUE(budget.admit(10));
  EXPECT_FALSE(budget.admit(999));  // a rank that faults again at once
  EXPECT_TRUE(budget.admit(1000));  // the first one left the window
  EXPECT_THROW(RestartBudget(-1, 1000), Error);
  EXPECT_THROW(RestartBudget(1, 0), Error);
}

TEST(RecoveryKeys, ANewGenerationStartsAfterTheLastEmitUnderTheNextEpoch) {
  test::MemoryStore job;
  EXPECT_FALSE(job_has_recovered(job));
  EXPECT_EQ(generation_start(job).next_chunk, 0u);
  EXPECT_EQ(generation_start(job).epoch, 0u);
  EXPECT_TRUE(generation_is_current(job, 0));  // no recovery yet: every generation may emit
  publish_stream_position(job, {7, 2});
  begin_generation(job, 1);
  EXPECT_TRUE(job_has_recovered(job));
  EXPECT_EQ(read_current_generation(job), 1u);
  const StreamPosition start = generation_start(job);
  EXPECT_EQ(start.next_chunk, 7u);
  EXPECT_EQ(start.epoch, 3u);
  EXPECT_FALSE(generation_is_current(job, 0));  // a straggler's emit is fenced
  EXPECT_TRUE(generation_is_current(job, 1));
  EXPECT_EQ(await_generation_after(job, 0, milliseconds(100)), 1u);
  try {
    await_generation_after(job, 1, milliseconds(20));
    FAIL() << "no generation 2 began";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kTimeout);
    EXPECT_NE(std::string(error.what()).find("generation 1 ended"), std::string::npos) << error.what();
  }
}

TEST(RecoveryKeys, KeptWeightsMustEqualTheFirstHandshakesFingerprint) {
  test::MemoryStore job;
  check_kept_weights(job, 2, 0, 0xabc);  // recorded
  check_kept_weights(job, 2, 1, 0xabc);  // a survivor, or a replacement that loaded the same weights
  check_kept_weights(job, 1, 1, 0xdef);  // another rank's shard is its own
  try {
    check_kept_weights(job, 2, 2, 0xabd);
    FAIL() << "changed weights were accepted";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kParity);
    const std::string what = error.what();
    EXPECT_NE(what.find("rank 2"), std::string::npos) << what;
    EXPECT_NE(what.find("0000000000000abd in generation 2"), std::string::npos) << what;
    EXPECT_NE(what.find("0000000000000abc recorded in generation 0"), std::string::npos) << what;
  }
}

}  // namespace
}  // namespace lockstep
