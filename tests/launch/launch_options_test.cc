// Option checks and exit-code names of the launcher: no process is started.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "launch/process_util.h"
#include "lockstep/error.h"
#include "lockstep/launcher.h"

namespace lockstep {
namespace {

void expect_refused(const LaunchOptions& options, const std::string& field) {
  try {
    launch(options);
    FAIL() << "expected Error naming " << field;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
  }
}

TEST(LaunchOptions, BadOptionsAreRefusedNamingTheFieldAndCreateNothing) {
  launch_test::ScratchDir dir;
  LaunchOptions good;
  good.job_dir = (dir.path() / "job").string();
  good.argv = {"/bin/true"};

  LaunchOptions options = good;
  options.nproc = 0;
  expect_refused(options, "nproc 0");
  options.nproc = kLaunchNprocMax + 1;
  expect_refused(options, "nproc");
  options = good;
  options.argv.clear();
  expect_refused(options, "argv");
  options = good;
  options.grace_ms = -1;
  expect_refused(options, "grace_ms");
  options = good;
  options.timeout_ms = -5;
  expect_refused(options, "timeout_ms");
  options = good;
  options.env = {{"A=B", "c"}};
  expect_refused(options, "env name");
  options = good;
  const std::string plain_file = (dir.path() / "plain").string();
  { std::ofstream(plain_file) << "not a program\n"; }
  std::filesystem::permissions(plain_file, std::filesystem::perms::owner_read |
                                               std::filesystem::perms::owner_write);
  options.argv = {plain_file};
  expect_refused(options, "not an executable file");
  options.argv = {"lockstep-no-such-program"};
  expect_refused(options, "not found in PATH");
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "job"));
}

TEST(LaunchOptions, ExitCodeMeaningInvertsExitCodeFor) {
  EXPECT_EQ(exit_code_meaning(exit_code_for(ErrorCode::kTimeout)), "timeout");
  EXPECT_EQ(exit_code_meaning(exit_code_for(ErrorCode::kPeerFailure)), "peer_failure");
  EXPECT_EQ(exit_code_meaning(exit_code_for(ErrorCode::kJobToken)), "job_token");
  EXPECT_EQ(exit_code_meaning(10), "encode/decode/checksum/schema/limit");
  EXPECT_EQ(exit_code_meaning(kExitHardDeadline), "hard_deadline");
  EXPECT_EQ(exit_code_meaning(1), "uncaught_exception");
  EXPECT_EQ(exit_code_meaning(0), "");
  EXPECT_EQ(exit_code_meaning(3), "");
  EXPECT_EQ(exit_code_meaning(137), "");
  // Every documented code has a name, and each name maps back to its code.
  for (int value = static_cast<int>(ErrorCode::kInvalidArgument);
       value <= static_cast<int>(ErrorCode::kInternal); ++value) {
    const auto code = static_cast<ErrorCode>(value);
    EXPECT_NE(exit_code_meaning(exit_code_for(code)).find(error_code_name(code)), std::string::npos)
        << error_code_name(code);
  }
}

}  // namespace
}  // namespace lockstep
