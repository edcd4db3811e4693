// Per-group backend choice: NCCL only when every member drives its own GPU.
#include "lockstep/backend_selection.h"

#include <gtest/gtest.h>

#include "lockstep/error.h"
#include "recording_backend.h"
#include "support/error_of.h"

namespace lockstep {
namespace {

TEST(BackendSelection, Pp0OnOneGpuRunsWorldOverGlooAndMeshOverNccl) {
  const auto devices = assign_devices_one_host(2, /*stage0_cpu_only=*/true, 1);
  ASSERT_EQ(devices.size(), 2u);
  EXPECT_EQ(devices[0].gpu_index, -1);
  EXPECT_EQ(devices[1].gpu_index, 0);
  const GroupBackendChoice world = choose_group_backend("world", {0, 1}, devices, true);
  EXPECT_EQ(world.backend, "gloo");
  EXPECT_NE(world.reason.find("rank 0 drives no GPU"), std::string::npos) << world.reason;
  const GroupBackendChoice mesh = choose_group_backend("mesh", {1}, devices, true);
  EXPECT_EQ(mesh.backend, "nccl") << mesh.reason;
}

TEST(BackendSelection, TwoRanksOnOneGpuFallBackToGlooNamingBoth) {
  const auto devices = assign_devices_one_host(3, true, 1);  // pp1 with a mesh of 2, 1 GPU
  const GroupBackendChoice mesh = choose_group_backend("mesh", {1, 2}, devices, true);
  EXPECT_EQ(mesh.backend, "gloo");
  EXPECT_NE(mesh.reason.find("ranks 1 and 2 share GPU 0"), std::string::npos) << mesh.reason;
}

TEST(BackendSelection, TpOnFourGpusUsesNcclEverywhere) {
  const auto devices = assign_devices_one_host(4, /*stage0_cpu_only=*/false, 4);
  for (int rank = 0; rank < 4; ++rank) EXPECT_EQ(devices[rank].gpu_index, rank);
  EXPECT_EQ(choose_group_backend("world", {0, 1, 2, 3}, devices, true).backend, "nccl");
}

TEST(BackendSelection, EqualGpuIndicesOnDifferentHostsDoNotConflict) {
  const std::vector<RankDevice> devices = {{0, 0}, {1, 0}};
  EXPECT_EQ(choose_group_backend("mesh", {0, 1}, devices, true).backend, "nccl");
}

TEST(BackendSelection, WithoutNcclEverythingIsGloo) {
  const auto devices = assign_devices_one_host(2, false, 2);
  EXPECT_EQ(choose_group_backend("mesh", {0, 1}, devices, false).backend, "gloo");
  EXPECT_EQ(assign_devices_one_host(2, false, 0)[1].gpu_index, -1);
}

TEST(BackendSelection, RejectsEmptyGroupsAndUnknownRanks) {
  const auto devices = assign_devices_one_host(2, false, 2);
  EXPECT_THROW(choose_group_backend("mesh", {}, devices, true), Error);
  EXPECT_THROW(choose_group_backend("mesh", {0, 5}, devices, true), Error);
  EXPECT_THROW(assign_devices_one_host(0, false, 1), Error);
}

// One Communicator, two kinds of group: each group reaches the factory its
// choice names, and only that one.
TEST(GroupBackendRouter, ConnectsEachGroupThroughItsChosenFactory) {
  test::RecordingFactory gloo;
  test::RecordingFactory nccl;
  GroupBackendRouter router({{"gloo", &gloo}, {"nccl", &nccl}}, {{"world", "gloo"}, {"mesh", "nccl"}});
  test::UnusedStore store;
  EXPECT_NE(router.connect(store, BackendGroupSpec{"mesh", {0}, 0}), nullptr);
  EXPECT_NE(router.connect(store, BackendGroupSpec{"world", {0}, 0}), nullptr);
  EXPECT_EQ(gloo.connected, std::vector<std::string>{"world"});
  EXPECT_EQ(nccl.connected, std::vector<std::string>{"mesh"});
}

TEST(GroupBackendRouter, AGroupWithoutAChoiceOrAFactoryIsNamed) {
  test::RecordingFactory gloo;
  EXPECT_EQ(test::error_of([&] { GroupBackendRouter({{"gloo", &gloo}}, {{"mesh", "nccl"}}); }).code(),
            ErrorCode::kInvalidArgument);
  GroupBackendRouter router({{"gloo", &gloo}}, {{"world", "gloo"}});
  test::UnusedStore store;
  const Error error = test::error_of([&] { router.connect(store, BackendGroupSpec{"boundary", {0}, 0}); });
  EXPECT_EQ(error.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(std::string(error.what()).find("'boundary'"), std::string::npos) << error.what();
  EXPECT_TRUE(gloo.connected.empty());
}

}  // namespace
}  // namespace lockstep
