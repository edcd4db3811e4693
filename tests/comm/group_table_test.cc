#include "lockstep/group_table.h"

#include <gtest/gtest.h>

#include "lockstep/error.h"
#include "lockstep/phase.h"

namespace lockstep {
namespace {

ErrorCode code_of(auto&& fn) {
  try {
    fn();
  } catch (const Error& error) {
    return error.code();
  }
  ADD_FAILURE() << "no lockstep::Error thrown";
  return ErrorCode::kInternal;
}

TEST(GroupTable, AddKeepsOrderAndTranslatesRanks) {
  GroupTable table(4);
  table.add("world", {0, 1, 2, 3});
  table.add("mesh", {1, 2, 3});
  ASSERT_EQ(table.groups().size(), 2u);
  EXPECT_EQ(table.groups()[0].name, "world");
  EXPECT_EQ(table.groups()[1].name, "mesh");
  EXPECT_EQ(table.group_rank("mesh", 1), 0);
  EXPECT_EQ(table.group_rank("mesh", 3), 2);
  EXPECT_EQ(table.group_rank("mesh", 0), std::nullopt);
  EXPECT_EQ(table.group_rank("nope", 0), std::nullopt);
  EXPECT_EQ(table.find("nope"), nullptr);
  EXPECT_EQ(table.describe(), "0 world [0,1,2,3]\n1 mesh [1,2,3]\n");
}

TEST(GroupTable, RejectsBadGroups) {
  GroupTable table(4);
  table.add("world", {0, 1, 2, 3});
  EXPECT_EQ(code_of([&] { table.add("world", {0}); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { table.add("a", {}); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { table.add("a", {2, 1}); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { table.add("a", {1, 1}); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { table.add("a", {0, 4}); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { table.add("a", {-1}); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { table.add("", {0}); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { table.add("a/b", {0}); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { table.add(std::string(kGroupNameBytesMax + 1, 'a'), {0}); }),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(table.groups().size(), 1u);
  EXPECT_EQ(code_of([] { GroupTable bad(0); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([] { GroupTable bad(kWorldSizeMax + 1); }), ErrorCode::kInvalidArgument);
}

TEST(GroupTable, GroupCountIsBounded) {
  GroupTable table(1);
  for (std::size_t i = 0; i < kGroupsMax; ++i) table.add("g" + std::to_string(i), {0});
  EXPECT_EQ(code_of([&] { table.add("one_more", {0}); }), ErrorCode::kLimit);
}

TEST(GroupTable, DigestIsCanonical) {
  const GroupTable a = make_standard_group_table(Topology::kPp1, 4);
  const GroupTable b = make_standard_group_table(Topology::kPp1, 4);
  EXPECT_EQ(a.digest(), b.digest());
  // A golden value pins the encoding across builds and hosts: changing the
  // encoding must bump kGroupTableDigestFormat and this value together.
  EXPECT_EQ(a.digest(), 0xb26db668c1889c6aULL);
  EXPECT_NE(GroupTable(1).digest(), GroupTable(2).digest());
}

TEST(GroupTable, DigestDependsOnOrderNameAndMembers) {  // B3
  GroupTable in_order(4);
  in_order.add("world", {0, 1, 2, 3});
  in_order.add("mesh", {1, 2, 3});
  GroupTable swapped(4);
  swapped.add("mesh", {1, 2, 3});
  swapped.add("world", {0, 1, 2, 3});
  GroupTable renamed(4);
  renamed.add("world", {0, 1, 2, 3});
  renamed.add("mesh2", {1, 2, 3});
  GroupTable other_members(4);
  other_members.add("world", {0, 1, 2, 3});
  other_members.add("mesh", {0, 2, 3});
  GroupTable shifted_name(4);  // same concatenated bytes, different split
  shifted_name.add("worldm", {0, 1, 2, 3});
  shifted_name.add("esh", {1, 2, 3});
  for (const GroupTable* other : {&swapped, &renamed, &other_members, &shifted_name}) {
    EXPECT_NE(in_order.digest(), other->digest()) << other->describe();
  }
}

TEST(GroupTable, StandardTopologies) {
  const GroupTable tp = make_standard_group_table(Topology::kTp, 3);
  EXPECT_EQ(tp.find("world")->member_ranks, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(tp.find("mesh")->member_ranks, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(tp.find("boundary"), nullptr);

  const GroupTable pp0 = make_standard_group_table(Topology::kPp0, 2);
  EXPECT_EQ(pp0.find("world")->member_ranks, (std::vector<int>{0, 1}));
  EXPECT_EQ(pp0.find("mesh")->member_ranks, (std::vector<int>{1}));
  EXPECT_EQ(pp0.find("boundary")->member_ranks, (std::vector<int>{0, 1}));

  const GroupTable pp1 = make_standard_group_table(Topology::kPp1, 5);
  EXPECT_EQ(pp1.find("world")->member_ranks, (std::vector<int>{0, 1, 2, 3, 4}));
  EXPECT_EQ(pp1.find("mesh")->member_ranks, (std::vector<int>{1, 2, 3, 4}));
  EXPECT_EQ(pp1.find("boundary")->member_ranks, (std::vector<int>{0, 1}));
  for (const GroupTable* table : {&pp0, &pp1}) {
    EXPECT_EQ(table->group_rank("mesh", 0), std::nullopt) << "rank 0 must never be in mesh for pp*";
  }
}

TEST(GroupTable, TopologyMustFitWorld) {
  EXPECT_EQ(code_of([] { make_standard_group_table(Topology::kPp0, 3); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([] { make_standard_group_table(Topology::kPp1, 2); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(topology_from_name("pp1"), Topology::kPp1);
  EXPECT_EQ(topology_from_name("tp"), Topology::kTp);
  EXPECT_EQ(topology_from_name("pp2"), std::nullopt);
  EXPECT_EQ(topology_name(Topology::kPp0), "pp0");
}

TEST(PhasePolicy, StandardPolicyConfinesGeneratorToMesh) {  // B2
  const PhasePolicy policy = make_standard_phase_policy();
  EXPECT_TRUE(policy.allows(Phase::kGenerator, "mesh"));
  EXPECT_FALSE(policy.allows(Phase::kGenerator, "world"));
  EXPECT_FALSE(policy.allows(Phase::kGenerator, "boundary"));
  for (Phase phase : {Phase::kStartup, Phase::kControl}) {
    for (const char* group : {"world", "mesh", "boundary"}) EXPECT_TRUE(policy.allows(phase, group));
  }
  EXPECT_TRUE(policy.allows(Phase::kShutdown, "world"));
  EXPECT_FALSE(policy.allows(Phase::kShutdown, "mesh"));
  EXPECT_FALSE(policy.allows(Phase::kControl, "unknown"));
}

TEST(PhasePolicy, AllowIsIdempotentAndValidated) {
  PhasePolicy policy;
  EXPECT_FALSE(policy.allows(Phase::kControl, "world"));
  policy.allow(Phase::kControl, "world");
  policy.allow(Phase::kControl, "world");
  EXPECT_EQ(policy.allowed(Phase::kControl), (std::vector<std::string>{"world"}));
  EXPECT_TRUE(policy.allowed(Phase::kGenerator).empty());
  EXPECT_EQ(code_of([&] { policy.allow(Phase::kControl, ""); }), ErrorCode::kInvalidArgument);
  EXPECT_EQ(code_of([&] { policy.allow(static_cast<Phase>(9), "x"); }), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(policy.allows(static_cast<Phase>(9), "world"));
  EXPECT_EQ(phase_name(Phase::kGenerator), "generator");
}

}  // namespace
}  // namespace lockstep
