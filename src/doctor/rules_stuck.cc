// Stuck ranks: a rank that waits in a collective (an armed deadline, or a call
// started and never completed) names a (group, seq); the culprits are the
// ranks of that group that never reached that seq. When every rank that left
// a dump reached it, ranks without a dump are the suspects; when all of them
// are inside it, the collective itself hung.
#include <algorithm>
#include <cstdio>

#include "doctor/analysis.h"

namespace lockstep::doctor {
namespace {

struct Waiting {
  int rank = 0;
  StrId group = 0;
  std::int64_t seq = 0;
  StrId op = 0;
  std::int64_t started_ns = 0;
  std::int64_t waited_ns = 0;
};

bool in_flight(EventState s) { return s != EventState::kCompleted; }

void collect_armed(const Dump& d, std::vector<Waiting>& out) {
  for (const Armed& armed : d.armed) {
    if (armed.group == 0 || armed.group_seq < 0) continue;  // a channel or queue wait: no peer to align with
    out.push_back({d.rank, armed.group, armed.group_seq, armed.what, armed.started_ns,
                   d.dumped_at_ns - armed.started_ns});
  }
}

// Each rank's last call in each group, when it never completed.
void collect_in_flight(const Analysis& a, std::vector<Waiting>& out) {
  for (const GroupView& g : a.groups) {
    for (const MemberSeq& m : g.members) {
      const auto [lo, hi] = g.slot(m.max_seq);
      const auto* r = std::find_if(lo, hi, [&](const OpRecord& x) { return x.rank == m.rank; });
      if (r == hi || !in_flight(r->state)) continue;
      const bool armed = std::any_of(out.begin(), out.end(), [&](const Waiting& w) {
        return w.rank == m.rank && w.group == g.group && w.seq == m.max_seq;
      });
      if (armed) continue;
      const Dump* d = a.dump_of(m.rank);
      out.push_back({m.rank, g.group, m.max_seq, r->op, r->first_t_ns, d->dumped_at_ns - r->first_t_ns});
    }
  }
}

std::string seconds(std::int64_t ns) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(std::max<std::int64_t>(ns, 0)) / 1e9);
  return buf;
}

// What a rank that never reached the collective was doing instead.
std::string last_seen(const Analysis& a, const Dump& d) {
  std::string out = "rank " + std::to_string(d.rank) + " was last seen ";
  if (!d.armed.empty()) {
    const Armed& w = d.armed.front();
    out += "waiting in " + describe_op(a, w.what, w.group_seq, w.group) + " (thread " + a.str(w.thread) + ")";
  } else if (!d.events.empty()) {
    const Event& e = d.events.back();
    out += "at " + std::string(event_kind_name(e.kind)) + " " + describe_op(a, e.op, e.group_seq, e.group) + " (" +
           std::string(event_state_name(e.state)) + ", thread " + a.str(e.thread) + ")";
    // PyTorch flight-recorder events carry the caller's own source line.
    if (e.detail != 0 && e.kind != EventKind::kNote) out += " called from " + a.str(e.detail);
  } else {
    out += "nowhere (no events recorded)";
  }
  if (d.reason.kind != ReasonKind::kNone) {
    out += "; it dumped on " + std::string(reason_kind_name(d.reason.kind)) + " " + d.reason.code;
  }
  return out;
}

bool failed_on_its_own(const Dump& d) {
  if (!stopped(d)) return false;
  const std::string& code = d.reason.code;
  return code != "peer_failure" && code != "aborted" && code != "sigterm" && code != "timeout";
}

Finding stuck_finding(const Analysis& a, const Waiting& target, const std::vector<Waiting>& all) {
  std::vector<int> waiters;
  std::int64_t waited_ns = 0;
  for (const Waiting& w : all) {
    if (w.group != target.group || w.seq != target.seq) continue;
    waiters.push_back(w.rank);
    waited_ns = std::max(waited_ns, w.waited_ns);
  }
  std::sort(waiters.begin(), waiters.end());
  waiters.erase(std::unique(waiters.begin(), waiters.end()), waiters.end());
  const GroupView* g = a.group(target.group);
  Finding f;
  f.group = a.str(target.group);
  f.op = a.str(target.op);
  f.group_seq = target.seq;
  f.others = waiters;
  const std::string op = describe_op(a, target.op, target.seq, target.group);
  const std::string waited = describe_ranks(waiters) + " waited in it (" + seconds(waited_ns) + ")";
  // A rank armed for a seq it has no event for yet is waiting, not behind.
  std::vector<int> behind = g->ranks_behind(target.seq);
  std::erase_if(behind, [&](int r) { return std::binary_search(waiters.begin(), waiters.end(), r); });
  // Ranks behind that stopped for a reason of their own did not hang: they
  // crashed first (C5), and their peers' waits are the consequence.
  const bool all_crashed = !behind.empty() && std::all_of(behind.begin(), behind.end(), [&](int r) {
    const Dump* d = a.dump_of(r);
    return d != nullptr && failed_on_its_own(*d);
  });
  if (all_crashed) {
    f.kind = std::string(verdict_name(Verdict::kCrash));
    f.ranks = behind;
    f.summary = describe_ranks(behind) + " failed before entering " + op + "; " + waited;
    for (const int r : behind) {
      const Dump& d = *a.dump_of(r);
      f.details.push_back("rank " + std::to_string(r) + ": " + d.reason.code + ": " + d.reason.message);
    }
  } else if (!behind.empty()) {
    f.kind = std::string(verdict_name(Verdict::kHang));
    f.ranks = behind;
    f.summary = describe_ranks(behind) + " never entered " + op + "; " + waited;
    for (const int r : behind) f.details.push_back(last_seen(a, *a.dump_of(r)));
  } else if (!a.set.ranks_missing.empty()) {
    f.kind = std::string(verdict_name(Verdict::kCrash));
    f.ranks = a.set.ranks_missing;
    f.summary = describe_ranks(f.ranks) + " left no dump (crashed, killed or stopped); " + waited + " of " + op;
  } else {
    f.kind = std::string(verdict_name(Verdict::kHang));
    f.ranks = waiters;
    f.summary = "every rank of group " + f.group + " entered " + op + " and " + describe_ranks(waiters) +
                " never completed it (backend or transport hang; " + seconds(waited_ns) + ")";
  }
  return f;
}

}  // namespace

std::optional<Finding> find_stuck(const Analysis& a) {
  if (a.snapshot_only) return std::nullopt;
  std::vector<Waiting> waiting;
  for (const Dump& d : a.set.dumps) collect_armed(d, waiting);
  collect_in_flight(a, waiting);
  // Waits on a group nobody else recorded cannot be aligned.
  std::erase_if(waiting, [&](const Waiting& w) { return a.group(w.group) == nullptr; });
  // A rank stopped from outside (SIGTERM from the launcher, a peer's poison)
  // while it sat in a call was not hung there: only a wait that the rank's
  // own deadline ended, or one of a rank still running (a snapshot), is a hang.
  std::erase_if(waiting, [&](const Waiting& w) {
    const Dump* d = a.dump_of(w.rank);
    return d != nullptr && stopped(*d) && d->reason.code != "timeout";
  });
  if (waiting.empty()) return std::nullopt;
  // Prefer a wait some rank never reached (it names a culprit), then the
  // earliest wait: later waits are usually consequences of the first.
  const auto key = [&](const Waiting& w) {
    const std::vector<int> behind = a.group(w.group)->ranks_behind(w.seq);
    const bool named = std::any_of(behind.begin(), behind.end(), [&](int r) { return r != w.rank; });
    return std::tuple(!named, w.started_ns, a.str(w.group), w.seq, w.rank);
  };
  const auto target = std::min_element(waiting.begin(), waiting.end(),
                                       [&](const Waiting& x, const Waiting& y) { return key(x) < key(y); });
  return stuck_finding(a, *target, waiting);
}

std::optional<Finding> find_missing_participant(const Analysis& a) {
  if (a.snapshot_only) return std::nullopt;
  for (const GroupView& g : a.groups) {
    const auto [lo_m, hi_m] = std::minmax_element(g.members.begin(), g.members.end(),
        [](const MemberSeq& x, const MemberSeq& y) { return x.max_seq < y.max_seq; });
    if (lo_m->max_seq == hi_m->max_seq) continue;
    const std::int64_t seq = lo_m->max_seq + 1;
    const auto [lo, hi] = g.slot(seq);
    Finding f;
    f.kind = std::string(verdict_name(Verdict::kMissingParticipant));
    f.ranks = g.ranks_behind(seq);
    // Ranks that stopped for any reason but their own deadline (an error of
    // their own, a peer's poison, the launcher's SIGTERM) did not skip the
    // collective: they were gone. The first-failure rule names the origin.
    const bool all_stopped_elsewhere = std::all_of(f.ranks.begin(), f.ranks.end(), [&](int r) {
      const Dump* d = a.dump_of(r);
      return d != nullptr && stopped(*d) && d->reason.code != "timeout";
    });
    if (all_stopped_elsewhere) continue;
    for (const OpRecord* r = lo; r != hi; ++r) f.others.push_back(r->rank);
    f.group = a.str(g.group);
    f.group_seq = seq;
    f.op = lo == hi ? "" : a.str(lo->op);
    f.summary = describe_ranks(f.ranks) + " never took part in " +
                describe_op(a, lo == hi ? 0 : lo->op, seq, g.group) + ", which " + describe_ranks(f.others) +
                " ran; no later activity in the group";
    for (const int r : f.ranks) f.details.push_back(last_seen(a, *a.dump_of(r)));
    return f;
  }
  return std::nullopt;
}

}  // namespace lockstep::doctor
