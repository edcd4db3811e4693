// Stranded commitment points, the first failure (who poisoned whom) and the
// supporting findings (stale drops, missing dumps).
#include <algorithm>

#include "doctor/analysis.h"

namespace lockstep::doctor {
namespace {


bool same_call(const Event& commit, std::int64_t call_id) { return commit.call_id < 0 || call_id == commit.call_id; }

// The payload behind a commitment point is a completed call of the same
// call_id after it; a failed event after it proves the sender gave up. A
// sender that began the payload (a call after the commit) and then failed did
// not strand anyone: the transfer itself broke, which the hang rules judge.
struct AfterCommit {
  bool payload_sent = false;
  bool payload_begun = false;
  bool failed = false;
};

AfterCommit after_commit(const Dump& d, std::size_t commit_index) {
  const Event& c = d.events[commit_index];
  AfterCommit out;
  for (std::size_t i = commit_index + 1; i < d.events.size(); ++i) {
    const Event& e = d.events[i];
    const bool call = is_call(e);
    out.payload_sent |= call && e.state == EventState::kCompleted && same_call(c, e.call_id);
    out.payload_begun |= call && same_call(c, e.call_id);
    out.failed |= e.state == EventState::kFailed;
  }
  return out;
}

bool received(const Dump& receiver, const Event& commit) {
  return std::any_of(receiver.events.begin(), receiver.events.end(), [&](const Event& e) {
    const bool call = is_call(e);
    return call && e.state == EventState::kCompleted && e.t_ns >= commit.t_ns && same_call(commit, e.call_id);
  });
}

std::vector<int> receivers_of(const Analysis& a, const Dump& sender, const Event& commit) {
  if (commit.peer >= 0) return {commit.peer};
  std::vector<int> out;
  if (const GroupView* g = a.group(commit.group)) {
    for (const MemberSeq& m : g->members) {
      if (m.rank != sender.rank) out.push_back(m.rank);
    }
  }
  return out;
}

std::optional<Finding> stranded_from(const Analysis& a, const Dump& d) {
  const auto it = std::find_if(d.events.rbegin(), d.events.rend(),
                               [](const Event& e) { return e.kind == EventKind::kCommit; });
  if (it == d.events.rend()) return std::nullopt;
  const Event& c = *it;
  const AfterCommit after = after_commit(d, static_cast<std::size_t>(d.events.rend() - it) - 1);
  if (after.payload_sent || after.payload_begun || !(after.failed || stopped(d))) return std::nullopt;
  Finding f;
  f.kind = std::string(verdict_name(Verdict::kStrandedCommit));
  f.ranks = {d.rank};
  for (const int r : receivers_of(a, d, c)) {
    const Dump* receiver = a.dump_of(r);
    if (receiver != nullptr && received(*receiver, c)) return std::nullopt;  // the payload did arrive
    f.others.push_back(r);
  }
  f.group = a.str(c.group);
  f.op = a.str(c.op);
  f.group_seq = c.group_seq;
  const std::string point = a.str(c.op).empty() ? a.str(c.detail) : a.str(c.op);
  f.summary = "rank " + std::to_string(d.rank) + " passed commitment point '" + point + "'" +
              (c.group != 0 ? " on group " + f.group : "") + " (call_id " + std::to_string(c.call_id) +
              ", chunk " + std::to_string(c.chunk_index) + ") and never sent the payload; " +
              (f.others.empty() ? std::string("no receiver is known") : describe_ranks(f.others) + " left waiting");
  if (!d.reason.code.empty()) f.details.push_back("sender stopped with " + d.reason.code + ": " + d.reason.message);
  return f;
}

}  // namespace

std::optional<Finding> find_stranded_commit(const Analysis& a) {
  for (const Dump& d : a.set.dumps) {
    if (auto f = stranded_from(a, d)) return f;
  }
  return std::nullopt;
}

// A backend failure that only says a peer's connection went away: the
// consequence of a peer that died, which the missing dump names better.
bool lost_connection(const Dump& d) {
  if (d.reason.code != "backend") return false;
  for (const char* text : {"Connection reset by peer", "Connection closed by peer", "Broken pipe",
                           "Connection refused"}) {
    if (d.reason.message.find(text) != std::string::npos) return true;
  }
  return false;
}

std::optional<Finding> find_first_failure(const Analysis& a) {
  std::vector<const Dump*> failed;  // ranks that failed on their own, not on a peer's poison
  std::vector<int> poisoned;
  for (const Dump& d : a.set.dumps) {
    if (!stopped(d)) continue;
    // Stopped from outside: a peer's poison, the launcher's SIGTERM after
    // another rank ended, or a connection lost to a rank that left no dump.
    const bool on_peer = d.reason.code == "peer_failure" || d.reason.code == "aborted" || d.reason.code == "sigterm" ||
                         (lost_connection(d) && !a.set.ranks_missing.empty());
    if (on_peer) poisoned.push_back(d.rank);
    else failed.push_back(&d);
  }
  if (failed.empty() && poisoned.empty()) return std::nullopt;
  Finding f;
  f.kind = std::string(verdict_name(Verdict::kCrash));
  f.others = poisoned;
  if (!failed.empty()) {
    const Dump& first = **std::min_element(failed.begin(), failed.end(), [](const Dump* x, const Dump* y) {
      return x->dumped_at_ns != y->dumped_at_ns ? x->dumped_at_ns < y->dumped_at_ns : x->rank < y->rank;
    });
    if (first.reason.kind == ReasonKind::kTimeout) f.kind = std::string(verdict_name(Verdict::kHang));
    f.ranks = {first.rank};
    // "fatal backend: ..." but "timeout: ...", not "timeout timeout: ...".
    const std::string kind(reason_kind_name(first.reason.kind));
    f.summary = "rank " + std::to_string(first.rank) + " failed first (" +
                (kind == first.reason.code ? "" : kind + " ") + first.reason.code + ": " + first.reason.message + ")" +
                (poisoned.empty() ? "" : "; " + describe_ranks(poisoned) + " stopped on its poison");
    for (const Dump* d : failed) {
      if (d != &first) f.details.push_back("rank " + std::to_string(d->rank) + " also failed: " + d->reason.code + ": " + d->reason.message);
    }
  } else if (!a.set.ranks_missing.empty()) {
    f.ranks = a.set.ranks_missing;
    f.summary = describe_ranks(f.ranks) + " left no dump (crashed or killed); " + describe_ranks(poisoned) +
                " stopped on a peer failure, a lost connection to it, or the launcher's SIGTERM";
  } else {
    f.ranks = poisoned;
    f.summary = describe_ranks(poisoned) + " stopped on a peer failure, but no dump names the first failure";
  }
  return f;
}

std::vector<Finding> find_supporting(const Analysis& a) {
  std::vector<Finding> out;
  Finding drops;
  drops.kind = "stale_drops";
  for (const Dump& d : a.set.dumps) {
    if (d.stale_drops <= 0 && d.duplicate_drops <= 0) continue;
    drops.ranks.push_back(d.rank);
    drops.details.push_back("rank " + std::to_string(d.rank) + " dropped " + std::to_string(d.stale_drops) +
                            " stale and " + std::to_string(d.duplicate_drops) + " duplicate results");
  }
  if (!drops.ranks.empty()) {
    drops.summary = describe_ranks(drops.ranks) + " dropped stale or duplicate work (see details)";
    out.push_back(std::move(drops));
  }
  if (!a.set.ranks_missing.empty()) {
    Finding missing;
    missing.kind = "missing_dump";
    missing.ranks = a.set.ranks_missing;
    missing.summary = "no usable dump from " + describe_ranks(missing.ranks) + " of world_size " +
                      std::to_string(a.set.world_size);
    out.push_back(std::move(missing));
  }
  return out;
}

}  // namespace lockstep::doctor
