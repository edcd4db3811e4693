#include "lockstep/group_table.h"

#include <algorithm>
#include <string>

#include "comm/canonical_bytes.h"
#include "lockstep/digest.h"
#include "lockstep/error.h"

namespace lockstep {
namespace {

// Bumped whenever the canonical encoding below changes, so tables digested by
// different builds never compare equal by accident.
constexpr std::uint32_t kGroupTableDigestFormat = 1;

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '-';
}

void check_name(const std::string& name) {
  if (name.empty() || name.size() > kGroupNameBytesMax ||
      !std::all_of(name.begin(), name.end(), is_name_char)) {
    throw Error(ErrorCode::kInvalidArgument,
                "group name '" + name + "' must be 1.." + std::to_string(kGroupNameBytesMax) +
                    " characters of [A-Za-z0-9_.-]");
  }
}

std::string ranks_text(const std::vector<int>& ranks) {
  std::string text = "[";
  for (std::size_t i = 0; i < ranks.size(); ++i) {
    if (i > 0) text += ",";
    text += std::to_string(ranks[i]);
  }
  return text + "]";
}

void check_members(const std::string& name, const std::vector<int>& members, int world_size) {
  if (members.empty()) {
    throw Error(ErrorCode::kInvalidArgument, "group '" + name + "' has no members");
  }
  for (std::size_t i = 0; i < members.size(); ++i) {
    const bool in_world = members[i] >= 0 && members[i] < world_size;
    const bool ascending = i == 0 || members[i - 1] < members[i];
    if (!in_world || !ascending) {
      throw Error(ErrorCode::kInvalidArgument,
                  "group '" + name + "' members " + ranks_text(members) +
                      " must be strictly ascending global ranks in [0, " +
                      std::to_string(world_size) + ")");
    }
  }
}

std::vector<int> rank_range(int first, int last_exclusive) {
  std::vector<int> ranks;
  for (int r = first; r < last_exclusive; ++r) ranks.push_back(r);
  return ranks;
}

}  // namespace

GroupTable::GroupTable(int world_size) : world_size_(world_size) {
  if (world_size < 1 || world_size > kWorldSizeMax) {
    throw Error(ErrorCode::kInvalidArgument, "world_size " + std::to_string(world_size) +
                                                 " outside [1, " + std::to_string(kWorldSizeMax) +
                                                 "]");
  }
}

void GroupTable::add(std::string name, std::vector<int> member_ranks) {
  check_name(name);
  if (find(name) != nullptr) {
    throw Error(ErrorCode::kInvalidArgument, "group '" + name + "' added twice");
  }
  if (groups_.size() >= kGroupsMax) {
    throw Error(ErrorCode::kLimit, "group '" + name + "' would exceed kGroupsMax = " +
                                       std::to_string(kGroupsMax));
  }
  check_members(name, member_ranks, world_size_);
  groups_.push_back(GroupSpec{std::move(name), std::move(member_ranks)});
}

const GroupSpec* GroupTable::find(std::string_view name) const {
  for (const GroupSpec& group : groups_) {
    if (group.name == name) return &group;
  }
  return nullptr;
}

std::optional<int> GroupTable::group_rank(std::string_view name, int global_rank) const {
  const GroupSpec* group = find(name);
  if (group == nullptr) return std::nullopt;
  const auto it = std::lower_bound(group->member_ranks.begin(), group->member_ranks.end(), global_rank);
  if (it == group->member_ranks.end() || *it != global_rank) return std::nullopt;
  return static_cast<int>(it - group->member_ranks.begin());
}

std::uint64_t GroupTable::digest() const {
  comm_detail::CanonicalBytes bytes;
  bytes.u32(kGroupTableDigestFormat);
  bytes.i32(world_size_);
  bytes.u32(static_cast<std::uint32_t>(groups_.size()));
  for (std::size_t position = 0; position < groups_.size(); ++position) {
    bytes.u32(static_cast<std::uint32_t>(position));
    bytes.str(groups_[position].name);
    bytes.u32(static_cast<std::uint32_t>(groups_[position].member_ranks.size()));
    for (int rank : groups_[position].member_ranks) bytes.i32(rank);
  }
  return digest_bytes(bytes.bytes());
}

std::string GroupTable::describe() const {
  std::string text;
  for (std::size_t position = 0; position < groups_.size(); ++position) {
    text += std::to_string(position) + " " + groups_[position].name + " " +
            ranks_text(groups_[position].member_ranks) + "\n";
  }
  return text;
}

std::string_view topology_name(Topology topology) {
  switch (topology) {
    case Topology::kTp: return "tp";
    case Topology::kPp0: return "pp0";
    case Topology::kPp1: return "pp1";
  }
  return "unknown";
}

std::optional<Topology> topology_from_name(std::string_view name) {
  for (Topology topology : {Topology::kTp, Topology::kPp0, Topology::kPp1}) {
    if (topology_name(topology) == name) return topology;
  }
  return std::nullopt;
}

GroupTable make_standard_group_table(Topology topology, int world_size) {
  const bool fits = (topology == Topology::kTp && world_size >= 1) ||
                    (topology == Topology::kPp0 && world_size == 2) ||
                    (topology == Topology::kPp1 && world_size >= 3);
  if (!fits) {
    throw Error(ErrorCode::kInvalidArgument,
                "topology " + std::string(topology_name(topology)) + " does not fit world_size " +
                    std::to_string(world_size) + " (tp: >= 1, pp0: == 2, pp1: >= 3)");
  }
  GroupTable table(world_size);
  table.add(std::string(kGroupWorld), rank_range(0, world_size));
  if (topology == Topology::kTp) {
    table.add(std::string(kGroupMesh), rank_range(0, world_size));
    return table;
  }
  table.add(std::string(kGroupMesh), rank_range(1, world_size));
  table.add(std::string(kGroupBoundary), {0, 1});
  return table;
}

}  // namespace lockstep
