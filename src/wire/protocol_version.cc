#include "lockstep/protocol_version.h"

#include <algorithm>
#include <string>

#include "lockstep/error.h"

namespace lockstep {

VersionRange supported_protocol_versions() noexcept { return {kProtocolVersionMin, kProtocolVersionMax}; }

bool protocol_version_supported(ProtocolVersion version) noexcept {
  return supported_protocol_versions().contains(version);
}

namespace {

void check_ranges(std::span<const VersionRange> ranges) {
  if (ranges.empty()) throw Error(ErrorCode::kInvalidArgument, "negotiate_protocol_version: no ranks");
  for (std::size_t rank = 0; rank < ranges.size(); ++rank) {
    const VersionRange& r = ranges[rank];
    if (r.min == 0 || r.min > r.max) {
      throw Error(ErrorCode::kInvalidArgument, "rank " + std::to_string(rank) + " announced an invalid version range [" +
                                                   std::to_string(r.min) + ", " + std::to_string(r.max) + "]");
    }
  }
}

std::size_t ranks_supporting(std::span<const VersionRange> ranges, ProtocolVersion version) {
  return static_cast<std::size_t>(
      std::count_if(ranges.begin(), ranges.end(), [&](const VersionRange& r) { return r.contains(version); }));
}

// The version most ranks support (the highest on a tie): the ranks lacking it
// are the odd ones out that the table points at.
ProtocolVersion majority_version(std::span<const VersionRange> ranges) {
  ProtocolVersion best = ranges[0].max;
  std::size_t best_count = 0;
  for (const VersionRange& candidate_range : ranges) {
    for (ProtocolVersion v : {candidate_range.min, candidate_range.max}) {
      const std::size_t count = ranks_supporting(ranges, v);
      if (count > best_count || (count == best_count && v > best)) {
        best = v;
        best_count = count;
      }
    }
  }
  return best;
}

[[noreturn]] void throw_no_common(std::span<const VersionRange> ranges) {
  const ProtocolVersion majority = majority_version(ranges);
  const std::size_t supporting = ranks_supporting(ranges, majority);
  std::string table = "no protocol version is supported by every rank:";
  for (std::size_t rank = 0; rank < ranges.size(); ++rank) {
    const VersionRange& r = ranges[rank];
    table += "\n  rank " + std::to_string(rank) + ": [" + std::to_string(r.min) + ", " + std::to_string(r.max) + "]";
    if (!r.contains(majority)) {
      table += "  <- lacks v" + std::to_string(majority) + " (supported by " + std::to_string(supporting) + " of " +
               std::to_string(ranges.size()) + " ranks)";
    }
  }
  throw Error(ErrorCode::kVersion, table);
}

}  // namespace

ProtocolVersion negotiate_protocol_version(std::span<const VersionRange> ranges_by_rank) {
  check_ranges(ranges_by_rank);
  ProtocolVersion low = 0;
  ProtocolVersion high = ranges_by_rank[0].max;
  for (const VersionRange& r : ranges_by_rank) {
    low = std::max(low, r.min);
    high = std::min(high, r.max);
  }
  if (low > high) throw_no_common(ranges_by_rank);
  return high;
}

}  // namespace lockstep
