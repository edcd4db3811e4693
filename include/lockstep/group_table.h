// The group table: the named groups of a job (`world`, `mesh`, `boundary`, …),
// each an ascending list of global ranks, in the order they were added.
//
// Every rank must build the same table in the same order: Gloo/NCCL connect
// groups by creating communicators in sequence, and a rank that creates them
// in another order deadlocks or cross-wires them (B3). digest() folds
// (position, name, members) of every group so the start-up handshake can
// compare a few bytes instead of the whole table.
//
// A GroupTable is a value: not thread-safe to mutate, safe to read
// concurrently once built (the Communicator keeps a const copy).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lockstep/rank_env.h"  // kWorldSizeMax

namespace lockstep {

// Limits: a job has a handful of groups; names are short identifiers.
inline constexpr std::size_t kGroupsMax = 32;
inline constexpr std::size_t kGroupNameBytesMax = 64;

// Standard group names (SPEC §2).
inline constexpr std::string_view kGroupWorld = "world";
inline constexpr std::string_view kGroupMesh = "mesh";
inline constexpr std::string_view kGroupBoundary = "boundary";

struct GroupSpec {
  std::string name;
  std::vector<int> member_ranks;  // global ranks, strictly ascending; group rank = index
};

class GroupTable {
 public:
  // REQUIRES 1 <= world_size <= kWorldSizeMax, else throws Error{kInvalidArgument}.
  explicit GroupTable(int world_size);

  // Appends a group. Non-blocking. Throws Error{kInvalidArgument} naming the
  // group when the name is empty, longer than kGroupNameBytesMax, not
  // [A-Za-z0-9_.-], already present, or when members are empty, not strictly
  // ascending or outside [0, world_size); Error{kLimit} past kGroupsMax.
  void add(std::string name, std::vector<int> member_ranks);

  int world_size() const { return world_size_; }
  // In the order added.
  const std::vector<GroupSpec>& groups() const { return groups_; }
  // nullptr when absent. Non-blocking.
  const GroupSpec* find(std::string_view name) const;
  // The group rank of `global_rank` in `name`; nullopt when the group is
  // absent or the rank is not a member. Non-blocking.
  std::optional<int> group_rank(std::string_view name, int global_rank) const;

  // XXH3-64 of the canonical encoding of (world_size, and for each group in
  // order: position, name, members). Equal tables ⇒ equal digests on every
  // rank and build; the same groups added in another order ⇒ another digest.
  std::uint64_t digest() const;

  // One line per group ("0 world [0,1,2]"), for handshake diffs and dumps.
  std::string describe() const;

 private:
  int world_size_;
  std::vector<GroupSpec> groups_;
};

// SPEC §2 topologies.
//  tp : world = mesh = all ranks (rank 0 is the mesh leader).
//  pp0: world_size 2; world {0,1}, mesh {1}, boundary {0,1}.
//  pp1: world {0..N}, mesh {1..N}, boundary {0,1}; world_size >= 3.
// Rank 0 is never in `mesh` for pp*.
enum class Topology : std::uint8_t { kTp = 1, kPp0 = 2, kPp1 = 3 };

std::string_view topology_name(Topology topology);
// nullopt for anything but "tp", "pp0", "pp1".
std::optional<Topology> topology_from_name(std::string_view name);

// The standard table for `topology`, groups added in the order world, mesh,
// boundary. Throws Error{kInvalidArgument} naming the topology when
// world_size does not fit it (tp: >= 1, pp0: == 2, pp1: >= 3).
GroupTable make_standard_group_table(Topology topology, int world_size);

}  // namespace lockstep
