// Alignment: every rank's collective/p2p events are collapsed per
// (group, group_seq) and merged into one seq-ordered view per group, so a rule
// can ask "what did each rank do at mesh #41" in one contiguous slice.
#include <algorithm>
#include <unordered_map>

#include "doctor/analysis.h"

namespace lockstep::doctor {
namespace {

// A counting sort over the seq range pays off while the range is at most this
// many times the number of records.
constexpr std::uint64_t kDenseSeqFactor = 4;

// Collapses one rank's events into records ordered by (group, seq). The state
// enum is ordered so the furthest state reached is the largest.
std::vector<std::pair<StrId, OpRecord>> collapse_rank(const Dump& d) {
  std::vector<std::uint32_t> order;
  order.reserve(d.events.size());
  for (std::uint32_t i = 0; i < d.events.size(); ++i) {
    if (is_call(d.events[i])) order.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(), [&](std::uint32_t x, std::uint32_t y) {
    const Event& a = d.events[x];
    const Event& b = d.events[y];
    return a.group != b.group ? a.group < b.group : a.group_seq < b.group_seq;
  });
  std::vector<std::pair<StrId, OpRecord>> out;
  for (const std::uint32_t i : order) {
    const Event& e = d.events[i];
    if (!out.empty() && out.back().first == e.group && out.back().second.seq == e.group_seq) {
      OpRecord& r = out.back().second;
      r.state = std::max(r.state, e.state);
      if (e.state == EventState::kFailed) r.detail = e.detail;
      continue;
    }
    out.push_back({e.group, OpRecord{e.group_seq, e.count, e.t_ns, d.rank, e.peer, e.op, e.dtype, e.detail,
                                     e.kind, e.state}});
  }
  return out;
}

// Records arrive rank by rank (dumps are sorted by rank), so a stable sort by
// seq alone yields (seq, rank) order. Seqs of a group are dense in practice,
// so a counting sort does it in linear time; sparse seqs fall back to a sort.
void sort_by_seq_then_rank(std::vector<OpRecord>& records) {
  if (records.empty()) return;
  const auto [lo, hi] = std::minmax_element(records.begin(), records.end(),
      [](const OpRecord& a, const OpRecord& b) { return a.seq < b.seq; });
  const std::int64_t min_seq = lo->seq;
  const auto range = static_cast<std::uint64_t>(hi->seq - min_seq) + 1;
  if (range > kDenseSeqFactor * records.size()) {
    std::stable_sort(records.begin(), records.end(), [](const OpRecord& a, const OpRecord& b) { return a.seq < b.seq; });
    return;
  }
  std::vector<std::size_t> start(range + 1, 0);
  for (const OpRecord& r : records) ++start[static_cast<std::size_t>(r.seq - min_seq) + 1];
  for (std::size_t i = 1; i < start.size(); ++i) start[i] += start[i - 1];
  std::vector<OpRecord> sorted(records.size());
  for (const OpRecord& r : records) sorted[start[static_cast<std::size_t>(r.seq - min_seq)]++] = r;
  records.swap(sorted);
}

// Calls per group over all dumps: an upper bound on each group's records, so
// the (large) record vectors are allocated once instead of grown and copied.
std::unordered_map<StrId, std::size_t> calls_per_group(const DumpSet& dumps) {
  std::unordered_map<StrId, std::size_t> calls;
  for (const Dump& d : dumps.dumps) {
    for (const Event& e : d.events) calls[e.group] += is_call(e) ? 1 : 0;
  }
  return calls;
}

}  // namespace

Analysis::Analysis(const DumpSet& dumps) : set(dumps) {
  std::unordered_map<StrId, std::size_t> index;
  const std::unordered_map<StrId, std::size_t> calls = calls_per_group(dumps);
  snapshot_only = !dumps.dumps.empty();
  for (const Dump& d : dumps.dumps) {
    snapshot_only = snapshot_only && d.reason.kind == ReasonKind::kRequest;
    for (auto& [group, record] : collapse_rank(d)) {
      auto [it, inserted] = index.try_emplace(group, groups.size());
      if (inserted) {
        groups.push_back(GroupView{group, {}, {}});
        groups.back().records.reserve(calls.at(group));
      }
      GroupView& g = groups[it->second];
      if (g.members.empty() || g.members.back().rank != d.rank) g.members.push_back({d.rank, record.seq});
      g.members.back().max_seq = std::max(g.members.back().max_seq, record.seq);
      g.records.push_back(record);
    }
  }
  // A p2p call's peer belongs to its pair even if it never recorded a call
  // there (it never posted the matching send or recv): it is behind the
  // pair's first call. Only PyTorch's dumps name the peer as a global rank
  // (torch_fr.cc maps it); lockstep's name a group rank.
  for (GroupView& g : groups) {
    if (g.records.empty()) continue;
    const std::int64_t first_seq = std::min_element(g.records.begin(), g.records.end(), [](const OpRecord& x,
                                                                                          const OpRecord& y) {
                                     return x.seq < y.seq;
                                   })->seq;
    for (const OpRecord& r : g.records) {
      if (r.kind != EventKind::kP2p || r.peer < 0 || dump_of(r.peer) == nullptr) continue;
      if (const Dump* own = dump_of(r.rank); own == nullptr || own->role != "torch") continue;
      const auto at = std::lower_bound(g.members.begin(), g.members.end(), r.peer,
                                       [](const MemberSeq& m, int rank) { return m.rank < rank; });
      if (at == g.members.end() || at->rank != r.peer) g.members.insert(at, {r.peer, first_seq - 1});
    }
  }
  for (GroupView& g : groups) sort_by_seq_then_rank(g.records);
  std::sort(groups.begin(), groups.end(), [&](const GroupView& a, const GroupView& b) {
    return str(a.group) < str(b.group);
  });
}

const Dump* Analysis::dump_of(int rank) const {
  const auto it = std::lower_bound(set.dumps.begin(), set.dumps.end(), rank,
                                   [](const Dump& d, int r) { return d.rank < r; });
  return it != set.dumps.end() && it->rank == rank ? &*it : nullptr;
}

const GroupView* Analysis::group(StrId id) const {
  for (const GroupView& g : groups) {
    if (g.group == id) return &g;
  }
  return nullptr;
}

std::vector<int> GroupView::ranks_behind(std::int64_t seq) const {
  std::vector<int> behind;
  for (const MemberSeq& m : members) {
    if (m.max_seq < seq) behind.push_back(m.rank);
  }
  return behind;
}

std::pair<const OpRecord*, const OpRecord*> GroupView::slot(std::int64_t seq) const {
  const auto lo = std::lower_bound(records.begin(), records.end(), seq,
                                   [](const OpRecord& r, std::int64_t s) { return r.seq < s; });
  auto hi = lo;
  while (hi != records.end() && hi->seq == seq) ++hi;
  return {records.data() + (lo - records.begin()), records.data() + (hi - records.begin())};
}

std::string describe_op(const Analysis& a, StrId op, std::int64_t seq, StrId group) {
  std::string out = a.str(op);
  if (seq >= 0) out += " #" + std::to_string(seq);
  if (group != 0) out += " on group " + a.str(group);
  return out;
}

std::string describe_ranks(const std::vector<int>& ranks) {
  std::string out = ranks.size() == 1 ? "rank " : "ranks ";
  for (std::size_t i = 0; i < ranks.size(); ++i) {
    if (i != 0) out += ",";
    out += std::to_string(ranks[i]);
  }
  return out;
}

}  // namespace lockstep::doctor
