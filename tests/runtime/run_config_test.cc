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

// The end bound covers what Stage 0 may still do after the mesh left at
// SHUTDOWN: decode every chunk in flight at its slowest cost (E1 multiplies
// it), drain, then tear down within a deadline and the hard-exit bound.
TEST(RunConfig, EndBoundCoversStage0DecodingWhatIsInFlightAtItsSlowest) {
  RunConfig config;
  config.decode_ms = 1500;
  const auto in_flight = [&](double decode_ms) {
    return std::chrono::milliseconds(static_cast<std::int64_t>((config.depth_out + 1) * decode_ms));
  };
  EXPECT_GT(config.end_bound(), in_flight(1500) + std::chrono::milliseconds(config.deadline_ms));
  config.injections = {parse_injection("E1")};
  EXPECT_EQ(config.slowest_decode_ms(), 1500 * kE1DecodeFactor);
  EXPECT_GT(config.end_bound(), in_flight(1500 * kE1DecodeFactor));
  config.decode_ms = 0;
  EXPECT_EQ(config.slowest_decode_ms(), kE1DecodeFactor) << "a slowed decode costs at least the factor in ms";
}

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

// Capture is of the CUDA model's denoise call: refused on Gloo, accepted on
// any NCCL mesh (the guarded all-reduce is stream-ordered, so a graph holds it).
TEST(RunConfig, GraphCaptureNeedsTheNcclBackend) {
  RunConfig one_rank_mesh;
  one_rank_mesh.topology = Topology::kPp0;
  one_rank_mesh.nproc = 2;
  one_rank_mesh.backend = "nccl";
  one_rank_mesh.graph_capture = true;
  EXPECT_EQ(error_of(one_rank_mesh), "");

  RunConfig wide_mesh = one_rank_mesh;
  wide_mesh.topology = Topology::kPp1;
  wide_mesh.nproc = 3;
  EXPECT_EQ(error_of(wide_mesh), "");

  RunConfig on_gloo = wide_mesh;
  on_gloo.backend = "gloo";
  EXPECT_NE(error_of(on_gloo).find("--graph-capture needs --backend nccl"), std::string::npos);
}

// B1 and C2 live on the pipeline boundary: on tp they could never fire.
TEST(RunConfig, BoundaryFaultsAreRefusedWhereThereIsNoBoundary) {
  RunConfig tp;
  tp.topology = Topology::kTp;
  tp.nproc = 2;
  tp.injections = {parse_injection("C2")};
  EXPECT_NE(error_of(tp).find("--inject C2 needs a pipeline boundary"), std::string::npos) << error_of(tp);
  tp.injections = {parse_injection("B1")};
  EXPECT_NE(error_of(tp).find("--inject B1 needs a pipeline boundary"), std::string::npos) << error_of(tp);
  tp.injections = {parse_injection("C4")};
  EXPECT_EQ(error_of(tp), "");
  RunConfig pp0 = tp;
  pp0.topology = Topology::kPp0;
  pp0.injections = {parse_injection("C2"), parse_injection("B1")};
  EXPECT_EQ(error_of(pp0), "");
}

std::string plan_error(const RunConfig& config, const MachineGpus& machine) {
  try {
    plan_group_backends(config, machine);
  } catch (const Error& error) {
    EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
    return error.what();
  }
  ADD_FAILURE() << "plan_group_backends accepted the config";
  return {};
}

RunConfig nccl_config(Topology topology, int nproc) {
  RunConfig config;
  config.topology = topology;
  config.nproc = nproc;
  config.backend = "nccl";
  return config;
}

// Issue 8: on one GPU the mesh runs over NCCL, the groups that carry Stage
// 0's host traffic over Gloo, and Stage 0 drives no GPU.
TEST(GroupBackendPlan, Pp0OnOneGpuPutsOnlyTheMeshOnNccl) {
  const GroupBackendPlan plan = plan_group_backends(nccl_config(Topology::kPp0, 2), MachineGpus{true, 1});
  EXPECT_EQ(plan.backend_of_group.at("mesh"), "nccl");
  EXPECT_EQ(plan.backend_of_group.at("world"), "gloo");
  EXPECT_EQ(plan.backend_of_group.at("boundary"), "gloo");
  EXPECT_EQ(plan.device_of_rank.at(0).gpu_index, -1);
  EXPECT_EQ(plan.device_of_rank.at(1).gpu_index, 0);
  const GroupBackendPlan tp = plan_group_backends(nccl_config(Topology::kTp, 1), MachineGpus{true, 1});
  EXPECT_EQ(tp.backend_of_group.at("mesh"), "nccl");
  EXPECT_EQ(tp.device_of_rank.at(0).gpu_index, 0);  // tp's rank 0 is in the mesh
}

// Issue 16: with a GPU for every rank, Stage 0 gets its own (rank r on GPU
// r) and the boundary runs on NCCL, device to device; one GPU short, Stage 0
// stays on the CPU and the boundary on Gloo.
TEST(GroupBackendPlan, AGpuForEveryRankPutsStage0AndTheBoundaryOnTheGpus) {
  for (const auto& [topology, nproc] : {std::pair{Topology::kPp0, 2}, std::pair{Topology::kPp1, 3},
                                        std::pair{Topology::kPp1, 5}}) {
    SCOPED_TRACE(std::string(topology_name(topology)) + " " + std::to_string(nproc));
    const GroupBackendPlan plan = plan_group_backends(nccl_config(topology, nproc), MachineGpus{true, nproc});
    EXPECT_TRUE(plan.stage0_on_gpu);
    EXPECT_EQ(plan.backend_of_group.at("boundary"), "nccl");
    EXPECT_EQ(plan.backend_of_group.at("mesh"), "nccl");
    EXPECT_EQ(plan.backend_of_group.at("world"), "gloo");
    for (int rank = 0; rank < nproc; ++rank) EXPECT_EQ(plan.device_of_rank.at(rank).gpu_index, rank);
    const GroupBackendPlan short_one =
        plan_group_backends(nccl_config(topology, nproc), MachineGpus{true, nproc - 1});
    EXPECT_FALSE(short_one.stage0_on_gpu);
    EXPECT_EQ(short_one.backend_of_group.at("boundary"), "gloo");
    EXPECT_EQ(short_one.device_of_rank.at(0).gpu_index, -1);
    EXPECT_EQ(short_one.device_of_rank.at(1).gpu_index, 0);
  }
  const GroupBackendPlan tp = plan_group_backends(nccl_config(Topology::kTp, 2), MachineGpus{true, 4});
  EXPECT_FALSE(tp.stage0_on_gpu);  // tp has no boundary: rank 0 is in the mesh
}

TEST(GroupBackendPlan, AMeshWiderThanTheGpusIsRefusedWithTheCount) {
  const std::string message = plan_error(nccl_config(Topology::kPp1, 3), MachineGpus{true, 1});
  EXPECT_NE(message.find("2 mesh ranks"), std::string::npos) << message;
  EXPECT_NE(message.find("this machine shows 1"), std::string::npos) << message;
  EXPECT_NE(message.find("share GPU 0"), std::string::npos) << message;
  EXPECT_NE(message.find("--topology pp0 --nproc 2"), std::string::npos) << message;
  const std::string none = plan_error(nccl_config(Topology::kPp0, 2), MachineGpus{true, 0});
  EXPECT_NE(none.find("this machine shows 0"), std::string::npos) << none;
  EXPECT_EQ(plan_group_backends(nccl_config(Topology::kPp1, 3), MachineGpus{true, 2}).backend_of_group.at("mesh"),
            "nccl");
}

TEST(GroupBackendPlan, ABinaryWithoutCudaSaysSo) {
  const std::string message = plan_error(nccl_config(Topology::kPp0, 2), MachineGpus{false, 0});
  EXPECT_NE(message.find("built without CUDA"), std::string::npos) << message;
}

TEST(GroupBackendPlan, GlooRunsEveryGroupOnGlooWithoutLookingForGpus) {
  RunConfig config;  // pp1, 3 ranks, gloo
  const GroupBackendPlan plan = plan_group_backends(config, MachineGpus{false, 0});
  for (const auto& [group, backend] : plan.backend_of_group) EXPECT_EQ(backend, "gloo") << group;
  EXPECT_EQ(plan.backend_of_group.size(), 3u);
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
