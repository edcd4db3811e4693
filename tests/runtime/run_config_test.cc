// Bad `lockstep run` input gets a clear error naming what was wrong, before
// any process starts.
#include <gtest/gtest.h>

#include <string>

#include "lockstep/chunk_protocol.h"
#include "lockstep/error.h"
#include "lockstep/fault_injection.h"
#include "lockstep/run_config.h"

namespace lockstep {
namespace {

std::string error_of(const RunConfig& config) {
  try {
    config.validate();
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
    return error.what();
  }
  return "";
}

TEST(FaultInjection, ParsesIdRankAndChunk) {
  const Injection full = parse_injection("C4@2:10");
  EXPECT_EQ(full.id, FaultId::kC4);
  EXPECT_EQ(full.rank, 2);
  EXPECT_EQ(full.chunk, 10);
  const Injection bare = parse_injection("H2");
  EXPECT_EQ(bare.id, FaultId::kH2);
  EXPECT_FALSE(bare.rank.has_value());
  EXPECT_FALSE(bare.chunk.has_value());
  EXPECT_EQ(parse_injection("D4:3").chunk, 3);
}

TEST(FaultInjection, UnknownIdListsTheValidOnes) {
  try {
    parse_injection("Z9@1");
    FAIL() << "Z9 accepted";
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_NE(message.find("unknown fault id 'Z9'"), std::string::npos) << message;
    EXPECT_NE(message.find("A1 A2"), std::string::npos) << message;
    EXPECT_NE(message.find("H2"), std::string::npos) << message;
  }
}

TEST(FaultInjection, BadNumbersAreNamed) {
  EXPECT_THROW(parse_injection("C4@x"), Error);
  EXPECT_THROW(parse_injection("C4@-1"), Error);
  EXPECT_THROW(parse_injection("C4:"), Error);
  try {
    parse_injection("C4@1:ten");
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("chunk 'ten'"), std::string::npos) << error.what();
  }
}

TEST(FaultInjection, CasesThatAreNotInOneRunSayHowToRunThem) {
  try {
    parse_injection("C3");
    FAIL() << "C3 accepted";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("SIGTERM"), std::string::npos) << error.what();
  }
  EXPECT_THROW(parse_injection("E2"), Error);
}

TEST(FaultPlan, PersistentFaultsHoldFromTheirChunkOn) {
  const FaultPlan plan({parse_injection("E1:3")});
  EXPECT_FALSE(plan.active_since(FaultId::kE1, 0, 2, 0, 0));
  EXPECT_TRUE(plan.active_since(FaultId::kE1, 0, 3, 0, 0));
  EXPECT_TRUE(plan.active_since(FaultId::kE1, 0, 9, 0, 0));
  EXPECT_FALSE(plan.active_since(FaultId::kE1, 1, 9, 0, 0));
}

TEST(FaultPlan, FiresOnlyAtItsRankAndChunk) {
  const FaultPlan plan({parse_injection("C4@2:10"), parse_injection("D1")});
  EXPECT_TRUE(plan.fires(FaultId::kC4, 2, 10, 0, 0));
  EXPECT_FALSE(plan.fires(FaultId::kC4, 1, 10, 0, 0));
  EXPECT_FALSE(plan.fires(FaultId::kC4, 2, 9, 0, 0));
  EXPECT_TRUE(plan.fires(FaultId::kD1, 0, 2, 0, 2));   // defaults apply when unspecified
  EXPECT_FALSE(plan.fires(FaultId::kD1, 0, 3, 0, 2));
  EXPECT_EQ(plan.describe(), "C4@2:10,D1");
  EXPECT_THROW(FaultPlan(std::vector<Injection>(kInjectionsMax + 1, parse_injection("D1"))), Error);
}

TEST(RunConfig, DefaultIsValid) { EXPECT_EQ(error_of(RunConfig{}), ""); }

TEST(RunConfig, TopologyAndWorldSizeMustFit) {
  RunConfig pp0;
  pp0.topology = Topology::kPp0;
  pp0.nproc = 3;
  EXPECT_NE(error_of(pp0).find("pp0 needs --nproc 2"), std::string::npos);
  RunConfig pp1;
  pp1.nproc = 2;
  EXPECT_NE(error_of(pp1).find("pp1 needs --nproc >= 3"), std::string::npos);
  EXPECT_THROW(parse_topology("pp2"), Error);
}

TEST(RunConfig, MeshMustSplitTheHeads) {
  RunConfig config;
  config.nproc = 4;  // pp1: a mesh of 3 for a 4-head model
  EXPECT_NE(error_of(config).find("4 heads, which a mesh of 3 ranks cannot split"), std::string::npos);
}

TEST(RunConfig, RangesAreNamed) {
  RunConfig depth;
  depth.depth_in = 0;
  EXPECT_NE(error_of(depth).find("--depth"), std::string::npos);
  RunConfig heartbeat;
  heartbeat.heartbeat_ms = heartbeat.deadline_ms;
  EXPECT_NE(error_of(heartbeat).find("--heartbeat-ms"), std::string::npos);
  RunConfig model;
  model.model = "huge";
  EXPECT_THROW(model.validate(), Error);
}

TEST(RunConfig, NcclMeshIsRefusedNotSilentlyReplaced) {
  RunConfig config;
  config.backend = "nccl";
  EXPECT_NE(error_of(config).find("--backend nccl"), std::string::npos);
}

TEST(ChunkProtocol, PlanFollowsTheSchedule) {
  const ChunkSchedule schedule{3, 2};
  const Plan first = plan_for_chunk(schedule, 0, 4);
  EXPECT_TRUE(first.init_cache);
  EXPECT_FALSE(first.do_kv_recompute);  // never on the first chunk of an epoch
  EXPECT_EQ(first.expected_generator_calls, 3u);
  EXPECT_EQ(first.timesteps.size(), 3u);
  const Plan second = plan_for_chunk(schedule, 2, 4);
  EXPECT_FALSE(second.init_cache);
  EXPECT_TRUE(second.do_kv_recompute);
  EXPECT_EQ(second.expected_generator_calls, 4u);
  EXPECT_NE(first.plan_id, second.plan_id);
  EXPECT_NE(first.plan_id, 0u);
  EXPECT_THROW(plan_for_chunk({0, 2}, 0, 0), Error);
}

}  // namespace
}  // namespace lockstep
