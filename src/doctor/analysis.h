// The doctor's analysis: per-group alignment of collectives by group_seq and
// the rules that turn it into findings. Each rule is a pure function of the
// Analysis; diagnose() (doctor.cc) orders their findings by specificity.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "doctor/dump.h"

namespace lockstep::doctor {

// One rank's view of one collective or p2p call: its events at one
// (group, group_seq) collapsed to the furthest state reached.
struct OpRecord {
  std::int64_t seq = 0;
  std::int64_t count = 0;
  std::int64_t first_t_ns = 0;
  int rank = 0;
  std::int32_t peer = -1;
  StrId op = 0;
  StrId dtype = 0;
  StrId detail = 0;
  EventKind kind = EventKind::kCollective;
  EventState state = EventState::kEnqueued;
};

struct MemberSeq {
  int rank = 0;
  std::int64_t max_seq = 0;  // highest group_seq this rank recorded in the group
};

struct GroupView {
  StrId group = 0;
  std::vector<OpRecord> records;  // sorted by (seq, rank)
  std::vector<MemberSeq> members;  // ranks with any record in the group, by rank

  // Ranks of the group that never recorded `seq` and nothing after it.
  std::vector<int> ranks_behind(std::int64_t seq) const;
  // The records at `seq` (a contiguous run of `records`).
  std::pair<const OpRecord*, const OpRecord*> slot(std::int64_t seq) const;
};

struct Analysis {
  const DumpSet& set;
  std::vector<GroupView> groups;
  // True when every dump was a requested snapshot (SIGUSR1): ranks are then
  // legitimately mid-flight, so "behind" is not evidence of a fault.
  bool snapshot_only = false;

  explicit Analysis(const DumpSet& dumps);
  const Dump* dump_of(int rank) const;
  const std::string& str(StrId id) const { return set.strings.str(id); }
  const GroupView* group(StrId id) const;
};

// "all_reduce #41 on group mesh"
std::string describe_op(const Analysis& a, StrId op, std::int64_t seq, StrId group);
// "rank 2" / "ranks 0,1,3"
std::string describe_ranks(const std::vector<int>& ranks);

// Rules, most specific first. Each returns its findings; the first finding of
// the earliest rule that has one becomes the verdict.
std::vector<Finding> find_reason_codes(const Analysis& a);  // wrong group, parity, plan, digest, protocol
std::optional<Finding> find_mismatch(const Analysis& a);
std::optional<Finding> find_stranded_commit(const Analysis& a);
std::optional<Finding> find_stuck(const Analysis& a);
std::optional<Finding> find_missing_participant(const Analysis& a);
std::optional<Finding> find_first_failure(const Analysis& a);
std::vector<Finding> find_supporting(const Analysis& a);  // stale drops, missing dumps

// True when the dump was written because the rank stopped (fatal error,
// timeout or signal), not as a snapshot or at a clean exit.
inline bool stopped(const Dump& d) {
  return d.reason.kind == ReasonKind::kFatal || d.reason.kind == ReasonKind::kTimeout ||
         d.reason.kind == ReasonKind::kSignal;
}

}  // namespace lockstep::doctor
