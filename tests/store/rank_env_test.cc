// Parsing of the standard rank environment (torchrun and SLURM names).
#include <gtest/gtest.h>

#include <map>

#include "lockstep/error.h"
#include "lockstep/rank_env.h"

namespace lockstep {
namespace {

using Vars = std::map<std::string, std::string>;

RankEnv parse(const Vars& vars) {
  return parse_rank_env([&](const std::string& name) -> std::optional<std::string> {
    const auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  });
}

Vars torchrun() {
  return {{"RANK", "3"},
          {"WORLD_SIZE", "8"},
          {"LOCAL_RANK", "1"},
          {"LOCAL_WORLD_SIZE", "2"},
          {"LOCKSTEP_JOB_DIR", "/jobs/a"},
          {"LOCKSTEP_JOB_ID", "job-a"},
          {"LOCKSTEP_JOB_TOKEN", "secret-0123456789"}};
}

// The message of the kInvalidArgument that parsing `vars` throws.
std::string refusal(const Vars& vars) {
  try {
    parse(vars);
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
    return error.what();
  }
  ADD_FAILURE() << "parse succeeded";
  return "";
}

TEST(RankEnv, TorchrunNames) {
  const RankEnv env = parse(torchrun());
  EXPECT_EQ(env.rank, 3);
  EXPECT_EQ(env.world_size, 8);
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_EQ(env.local_world_size, 2);
  EXPECT_EQ(env.job_dir, "/jobs/a");
  EXPECT_EQ(env.dumps_dir(), "/jobs/a/dumps");
  EXPECT_EQ(env.store_url, "file:/jobs/a/store");
  EXPECT_EQ(env.job_id, "job-a");
  EXPECT_EQ(env.job_token, "secret-0123456789");
  EXPECT_EQ(env.generation, 0u);
}

TEST(RankEnv, GenerationIsBoundedAndNamedWhenBad) {
  Vars vars = torchrun();
  vars["LOCKSTEP_GENERATION"] = "4";
  EXPECT_EQ(parse(vars).generation, 4u);
  vars["LOCKSTEP_GENERATION"] = "-1";
  EXPECT_NE(refusal(vars).find("LOCKSTEP_GENERATION"), std::string::npos);
  vars["LOCKSTEP_GENERATION"] = "1000001";
  EXPECT_NE(refusal(vars).find("LOCKSTEP_GENERATION"), std::string::npos);
}

TEST(RankEnv, SlurmNamesAndTasksPerNodeSpec) {
  Vars vars = torchrun();
  for (const char* name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"}) vars.erase(name);
  vars["SLURM_PROCID"] = "5";
  vars["SLURM_NTASKS"] = "7";
  vars["SLURM_LOCALID"] = "0";
  vars["SLURM_TASKS_PER_NODE"] = "2(x3),1";
  vars["SLURM_NODEID"] = "3";
  RankEnv env = parse(vars);
  EXPECT_EQ(env.rank, 5);
  EXPECT_EQ(env.world_size, 7);
  EXPECT_EQ(env.local_rank, 0);
  EXPECT_EQ(env.local_world_size, 1);
  vars["SLURM_NODEID"] = "2";
  EXPECT_EQ(parse(vars).local_world_size, 2);
  vars["SLURM_NTASKS_PER_NODE"] = "4";  // wins over the per-node spec
  EXPECT_EQ(parse(vars).local_world_size, 4);
  vars.erase("SLURM_NTASKS_PER_NODE");
  vars["SLURM_NODEID"] = "4";
  EXPECT_NE(refusal(vars).find("SLURM_TASKS_PER_NODE"), std::string::npos);
  vars["SLURM_NODEID"] = "0";
  vars["SLURM_TASKS_PER_NODE"] = "2(x3";
  EXPECT_NE(refusal(vars).find("SLURM_TASKS_PER_NODE"), std::string::npos);
}

TEST(RankEnv, TorchrunNamesWinOverSlurm) {
  Vars vars = torchrun();
  vars["SLURM_PROCID"] = "0";
  vars["SLURM_NTASKS"] = "1";
  EXPECT_EQ(parse(vars).rank, 3);
  EXPECT_EQ(parse(vars).world_size, 8);
}

TEST(RankEnv, LocalVariablesAreOptionalTogether) {
  Vars vars = torchrun();
  vars.erase("LOCAL_RANK");
  vars.erase("LOCAL_WORLD_SIZE");
  const RankEnv env = parse(vars);
  EXPECT_EQ(env.local_rank, 3);
  EXPECT_EQ(env.local_world_size, 8);
  vars["LOCAL_RANK"] = "0";
  EXPECT_NE(refusal(vars).find("LOCAL_WORLD_SIZE is not set"), std::string::npos);
}

TEST(RankEnv, ErrorsNameTheVariable) {
  const std::vector<std::pair<Vars, std::string>> cases = [] {
    std::vector<std::pair<Vars, std::string>> out;
    const auto with = [](const std::string& name, const std::optional<std::string>& value) {
      Vars vars = torchrun();
      if (value) vars[name] = *value;
      else vars.erase(name);
      return vars;
    };
    out.push_back({with("RANK", std::nullopt), "RANK is not set"});
    out.push_back({with("WORLD_SIZE", std::nullopt), "WORLD_SIZE is not set"});
    out.push_back({with("RANK", "8"), "RANK = 8 is not below WORLD_SIZE = 8"});
    out.push_back({with("RANK", "-1"), "RANK = -1 is outside"});
    out.push_back({with("RANK", "1x"), "RANK = '1x' is not a whole number"});
    out.push_back({with("RANK", ""), "RANK = '' is not a whole number"});
    out.push_back({with("WORLD_SIZE", "0"), "WORLD_SIZE = 0 is outside"});
    out.push_back({with("WORLD_SIZE", "99999999999"), "WORLD_SIZE = '99999999999' is not a whole number"});
    out.push_back({with("LOCAL_RANK", "2"), "LOCAL_RANK = 2 is not below LOCAL_WORLD_SIZE = 2"});
    out.push_back({with("LOCAL_WORLD_SIZE", "9"), "LOCAL_WORLD_SIZE = 9 is outside 1..8"});
    out.push_back({with("LOCKSTEP_JOB_DIR", std::nullopt), "LOCKSTEP_JOB_DIR is not set"});
    out.push_back({with("LOCKSTEP_JOB_ID", ""), "LOCKSTEP_JOB_ID is not set"});
    out.push_back({with("LOCKSTEP_JOB_TOKEN", std::nullopt), "LOCKSTEP_JOB_TOKEN is not set"});
    out.push_back({with("LOCKSTEP_STORE", "tcp:host"), "LOCKSTEP_STORE = 'tcp:host'"});
    out.push_back({with("LOCKSTEP_STORE", "redis:host"), "LOCKSTEP_STORE = 'redis:host'"});
    out.push_back({with("LOCKSTEP_STORE", "redis::6379"), "LOCKSTEP_STORE = 'redis::6379'"});
    out.push_back({with("LOCKSTEP_STORE", "file:"), "LOCKSTEP_STORE = 'file:'"});
    return out;
  }();
  for (const auto& [vars, expected] : cases) {
    const std::string message = refusal(vars);
    EXPECT_NE(message.find(expected), std::string::npos) << "expected '" << expected << "' in: " << message;
  }
}

TEST(RankEnv, StoreUrls) {
  Vars vars = torchrun();
  vars["LOCKSTEP_STORE"] = "redis:10.0.0.1:6380";
  EXPECT_EQ(parse(vars).store_url, "redis:10.0.0.1:6380");
  vars["LOCKSTEP_STORE"] = "file:/shared/store";
  EXPECT_EQ(parse(vars).store_url, "file:/shared/store");
}

TEST(RankEnv, OpenStoreRefusesABadPort) {
  RankEnv env = parse(torchrun());
  env.store_url = "redis:127.0.0.1:70000";
  try {
    open_store(env);
    FAIL() << "open_store returned";
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(error.what()).find("LOCKSTEP_STORE"), std::string::npos) << error.what();
  }
}

}  // namespace
}  // namespace lockstep
