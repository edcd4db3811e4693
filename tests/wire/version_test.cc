#include "lockstep/protocol_version.h"

#include <gtest/gtest.h>

#include <vector>

#include "wire/expect_error.h"

namespace lockstep {
namespace {

TEST(VersionNegotiation, PicksHighestCommonVersion) {
  const std::vector<VersionRange> same{{1, 2}, {1, 2}, {1, 2}};
  EXPECT_EQ(negotiate_protocol_version(same), 2);
  const std::vector<VersionRange> one_old{{1, 2}, {1, 1}, {1, 2}};
  EXPECT_EQ(negotiate_protocol_version(one_old), 1);
  const std::vector<VersionRange> shifted{{1, 3}, {2, 5}, {2, 4}};
  EXPECT_EQ(negotiate_protocol_version(shifted), 3);
  EXPECT_EQ(negotiate_protocol_version(std::vector<VersionRange>{supported_protocol_versions()}), kProtocolVersionMax);
}

TEST(VersionNegotiation, NoCommonVersionNamesTheOddRank) {
  const std::vector<VersionRange> ranges{{1, 2}, {1, 2}, {3, 3}, {1, 2}};
  try {
    negotiate_protocol_version(ranges);
    FAIL() << "expected Error(kVersion)";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kVersion);
    const std::string message = e.what();
    EXPECT_NE(message.find("rank 2: [3, 3]  <- lacks v2 (supported by 3 of 4 ranks)"), std::string::npos) << message;
    EXPECT_NE(message.find("rank 0: [1, 2]\n"), std::string::npos) << message;
    EXPECT_EQ(message.find("rank 0: [1, 2]  <-"), std::string::npos) << message;
  }
}

TEST(VersionNegotiation, DisjointPairMarksTheLowerMajorityLoser) {
  const std::vector<VersionRange> ranges{{1, 1}, {2, 2}};
  EXPECT_LOCKSTEP_ERROR(negotiate_protocol_version(ranges), ErrorCode::kVersion, "rank 0: [1, 1]  <- lacks v2");
}

TEST(VersionNegotiation, RejectsMalformedInput) {
  EXPECT_LOCKSTEP_ERROR(negotiate_protocol_version({}), ErrorCode::kInvalidArgument, "no ranks");
  const std::vector<VersionRange> inverted{{1, 2}, {3, 1}};
  EXPECT_LOCKSTEP_ERROR(negotiate_protocol_version(inverted), ErrorCode::kInvalidArgument, "rank 1");
  const std::vector<VersionRange> zero{{0, 2}};
  EXPECT_LOCKSTEP_ERROR(negotiate_protocol_version(zero), ErrorCode::kInvalidArgument, "rank 0");
}

TEST(VersionNegotiation, SupportedRangeIsConsistent) {
  EXPECT_TRUE(protocol_version_supported(kProtocolVersionMin));
  EXPECT_TRUE(protocol_version_supported(kProtocolVersionMax));
  EXPECT_FALSE(protocol_version_supported(kProtocolVersionMax + 1));
  EXPECT_FALSE(protocol_version_supported(0));
  EXPECT_TRUE(protocol_version_supported(kHandshakeProtocolVersion));
}

}  // namespace
}  // namespace lockstep
