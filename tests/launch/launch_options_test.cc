// Option checks and exit-code names of the launcher: no process is started.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>

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
  options.end_bound_ms = -1;
  expect_refused(options, "end_bound_ms");
  options.end_bound_ms = kLaunchEndBoundMsMax + 1;
  expect_refused(options, "end_bound_ms");
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

namespace lockstep {
namespace {

using Vars = std::map<std::string, std::string>;

std::optional<SlurmPlacement> placement_of(const Vars& vars) {
  return slurm_placement([&vars](const std::string& name) -> std::optional<std::string> {
    const auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  });
}

TEST(Slurm, CompressedNodelistsExpandInOrderWithTheirPadding) {
  EXPECT_EQ(expand_slurm_nodelist("gpu5"), std::vector<std::string>({"gpu5"}));
  EXPECT_EQ(expand_slurm_nodelist("node[01-03,07],gpu5"),
            std::vector<std::string>({"node01", "node02", "node03", "node07", "gpu5"}));
  EXPECT_EQ(expand_slurm_nodelist("rack[1-2]-n[8-9]"),
            std::vector<std::string>({"rack1-n8", "rack1-n9", "rack2-n8", "rack2-n9"}));
  EXPECT_EQ(expand_slurm_nodelist("h[098-101]"), std::vector<std::string>({"h098", "h099", "h100", "h101"}));
  for (const char* bad : {"node[1-3", "node1-3]", "node[3-1]", "node[a-b]", "a,,b", "n[0-99999]"}) {
    try {
      expand_slurm_nodelist(bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& error) {
      EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(std::string(error.what()).find(bad), std::string::npos) << error.what();
    }
  }
}

TEST(Slurm, OneTaskPerMachineGivesPlaceMasterAndJob) {
  EXPECT_FALSE(placement_of({{"SLURM_NNODES", "2"}}).has_value()) << "no SLURM_JOB_ID: not under SLURM";
  const Vars vars = {{"SLURM_JOB_ID", "4242"},
                     {"SLURM_NNODES", "3"},
                     {"SLURM_NODEID", "2"},
                     {"SLURM_JOB_NODELIST", "dgx[07-08],spare1"}};
  const auto placement = placement_of(vars);
  ASSERT_TRUE(placement.has_value());
  EXPECT_EQ(placement->nnodes, 3);
  EXPECT_EQ(placement->node_rank, 2);
  EXPECT_EQ(placement->master_addr, "dgx07");
  EXPECT_EQ(placement->job_id, "slurm-4242");

  Vars wrong = vars;
  wrong["SLURM_NNODES"] = "4";
  try {
    placement_of(wrong);
    ADD_FAILURE() << "3 hosts for 4 nodes accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("SLURM_NNODES = 4"), std::string::npos) << error.what();
  }
  wrong = vars;
  wrong["SLURM_NODEID"] = "3";
  EXPECT_THROW(placement_of(wrong), Error);
  wrong = vars;
  wrong.erase("SLURM_JOB_NODELIST");
  EXPECT_THROW(placement_of(wrong), Error);
}

TEST(LaunchOptions, SeveralMachinesNeedASharedStoreIdAndToken) {
  launch_test::ScratchDir dir;
  LaunchOptions options;
  options.job_dir = (dir.path() / "job").string();
  options.argv = {"/bin/true"};
  options.nnodes = 2;
  expect_refused(options, "needs a store, a job id and a job token");
  options.nnodes = 1;
  options.node_rank = 1;
  expect_refused(options, "node_rank 1 outside 0..0");
  options.node_rank = 0;
  options.master_port = 70000;
  expect_refused(options, "master_port");
}

}  // namespace
}  // namespace lockstep
