// First mismatched collective: the lowest group_seq of a group at which the
// ranks that recorded it disagree on (op, dtype, count, root). Symmetric: the
// culprits are the ranks outside a strict majority; with no strict majority
// (a 1-1 tie, or all different) every disagreeing rank is named.
// A slot of p2p calls only is compared pairwise instead (a send to p must meet
// p's recv from us).
#include <algorithm>
#include <map>
#include <tuple>

#include "doctor/analysis.h"

namespace lockstep::doctor {
namespace {

using Signature = std::tuple<StrId, StrId, std::int64_t, std::int32_t>;

Signature signature_of(const OpRecord& r) { return {r.op, r.dtype, r.count, r.peer}; }

std::string describe_call(const Analysis& a, const OpRecord& r) {
  std::string out = a.str(r.op) + "(" + a.str(r.dtype) + " x" + std::to_string(r.count);
  if (r.peer >= 0) out += (r.kind == EventKind::kP2p ? ", peer " : ", root ") + std::to_string(r.peer);
  return out + ")";
}

struct SlotVerdict {
  std::vector<int> culprits;
  std::vector<int> others;
  std::vector<std::string> details;
  std::string summary_tail;
};

std::optional<SlotVerdict> judge_collective_slot(const Analysis& a, const OpRecord* lo, const OpRecord* hi) {
  // Fast path: almost every slot agrees, and grouping costs a map per slot.
  const Signature first = signature_of(*lo);
  if (std::all_of(lo, hi, [&](const OpRecord& r) { return signature_of(r) == first; })) return std::nullopt;
  std::map<Signature, std::vector<const OpRecord*>> by_sig;
  for (const OpRecord* r = lo; r != hi; ++r) by_sig[signature_of(*r)].push_back(r);
  std::size_t best = 0;
  std::size_t best_count = 0;
  for (const auto& [sig, rs] : by_sig) best = std::max(best, rs.size());
  for (const auto& [sig, rs] : by_sig) best_count += rs.size() == best ? 1 : 0;
  const bool has_majority = best_count == 1;
  SlotVerdict v;
  for (const auto& [sig, rs] : by_sig) {
    std::vector<int> ranks;
    for (const OpRecord* r : rs) ranks.push_back(r->rank);
    const bool majority = has_majority && rs.size() == best;
    auto& bucket = majority ? v.others : v.culprits;
    bucket.insert(bucket.end(), ranks.begin(), ranks.end());
    v.details.push_back(describe_ranks(ranks) + " called " + describe_call(a, *rs.front()));
  }
  std::sort(v.culprits.begin(), v.culprits.end());
  if (has_majority) {
    v.summary_tail = describe_ranks(v.culprits) + " disagreed with " + describe_ranks(v.others);
  } else {
    v.summary_tail = "no majority; suspects " + describe_ranks(v.culprits);
  }
  return v;
}

bool is_send(const Analysis& a, const OpRecord& r) { return a.str(r.op).find("send") != std::string::npos; }

// A p2p call pairs with the peer's call at the same seq when the peer names us
// back, the directions differ and the payload shape agrees.
std::optional<SlotVerdict> judge_p2p_slot(const Analysis& a, const OpRecord* lo, const OpRecord* hi) {
  for (const OpRecord* r = lo; r != hi; ++r) {
    for (const OpRecord* q = r + 1; q != hi; ++q) {
      if (r->peer != q->rank && q->peer != r->rank) continue;
      const bool paired = r->peer == q->rank && q->peer == r->rank && is_send(a, *r) != is_send(a, *q) &&
                          r->dtype == q->dtype && r->count == q->count;
      if (paired) continue;
      SlotVerdict v;
      v.culprits = {r->rank, q->rank};
      v.details = {describe_ranks({r->rank}) + " called " + describe_call(a, *r),
                   describe_ranks({q->rank}) + " called " + describe_call(a, *q)};
      v.summary_tail = "p2p pair disagrees; suspects " + describe_ranks(v.culprits);
      return v;
    }
  }
  return std::nullopt;
}

std::optional<Finding> first_mismatch_in(const Analysis& a, const GroupView& g, std::int64_t& t_ns) {
  for (auto lo = g.records.begin(); lo != g.records.end();) {
    auto hi = lo;
    bool all_p2p = true;
    while (hi != g.records.end() && hi->seq == lo->seq) all_p2p &= (hi++)->kind == EventKind::kP2p;
    const OpRecord* b = &*lo;
    const OpRecord* e = b + (hi - lo);
    const auto v = all_p2p ? judge_p2p_slot(a, b, e) : judge_collective_slot(a, b, e);
    if (v) {
      Finding f;
      f.kind = "mismatch";
      f.group = a.str(g.group);
      f.group_seq = lo->seq;
      f.ranks = v->culprits;
      f.others = v->others;
      f.details = v->details;
      // Name the op the culprit ran; the others' op is in the details.
      const auto* culprit = std::find_if(b, e, [&](const OpRecord& r) { return r.rank == v->culprits.front(); });
      f.op = a.str(culprit->op);
      f.summary = "first mismatched collective at " + f.group + " #" + std::to_string(f.group_seq) + ": " +
                  v->summary_tail;
      t_ns = std::min_element(b, e, [](const OpRecord& x, const OpRecord& y) {
               return x.first_t_ns < y.first_t_ns;
             })->first_t_ns;
      return f;
    }
    lo = hi;
  }
  return std::nullopt;
}

}  // namespace

std::optional<Finding> find_mismatch(const Analysis& a) {
  std::optional<Finding> earliest;
  std::int64_t earliest_t_ns = 0;
  for (const GroupView& g : a.groups) {
    std::int64_t t_ns = 0;
    auto f = first_mismatch_in(a, g, t_ns);
    if (f && (!earliest || t_ns < earliest_t_ns)) {
      earliest = std::move(f);
      earliest_t_ns = t_ns;
    }
  }
  return earliest;
}

}  // namespace lockstep::doctor
