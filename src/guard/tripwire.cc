#include "lockstep/tripwire.h"

#include <algorithm>
#include <map>
#include <string>

#include "lockstep/digest.h"
#include "lockstep/error.h"

namespace lockstep {

namespace {

// Ledger block exchanged on a mismatch: next_seq, digest, entry count, then
// kLedgerRecentEntriesMax entries of kLedgerEntryWords words each.
constexpr std::size_t kLedgerHeaderWords = 3;
constexpr std::size_t kLedgerEntryWords = 5;
constexpr std::size_t kLedgerBlockWords = kLedgerHeaderWords + kLedgerRecentEntriesMax * kLedgerEntryWords;

// The group's global ranks, indexed by group rank.
const std::vector<int>& members_of(const Communicator& comm, std::string_view group) {
  const GroupSpec* spec = comm.groups().find(group);
  if (spec == nullptr || !comm.group_rank(group)) {
    throw Error(ErrorCode::kMembership, "tripwire on group '" + std::string(group) + "': rank " +
                                            std::to_string(comm.global_rank()) + " is not a member");
  }
  return spec->member_ranks;
}

// all_gather of mine.size() u64 per rank over the guarded Communicator.
GatherWords communicator_gather(Communicator& comm, std::string_view group, std::size_t ranks,
                                std::chrono::milliseconds timeout) {
  return [&comm, group, ranks, timeout](const std::vector<std::uint64_t>& mine) {
    std::vector<std::uint64_t> flat(ranks * mine.size());
    comm.all_gather(group, mine.data(), flat.data(), mine.size(), DType::kI64, timeout);
    std::vector<std::vector<std::uint64_t>> out(ranks);
    for (std::size_t r = 0; r < ranks; ++r) {
      out[r].assign(flat.begin() + static_cast<std::ptrdiff_t>(r * mine.size()),
                    flat.begin() + static_cast<std::ptrdiff_t>((r + 1) * mine.size()));
    }
    return out;
  };
}

// Checks what a gather returned: one row of `words` words per member.
void check_gathered(const std::vector<std::vector<std::uint64_t>>& rows, std::size_t members,
                    std::size_t words) {
  bool ok = rows.size() == members;
  for (const auto& row : rows) ok = ok && row.size() == words;
  if (!ok) {
    throw Error(ErrorCode::kInternal, "tripwire gather returned " + std::to_string(rows.size()) +
                                          " rows for " + std::to_string(members) + " ranks of " +
                                          std::to_string(words) + " words");
  }
}

std::string rank_list(const std::vector<int>& ranks) {
  std::string out = "[";
  for (std::size_t i = 0; i < ranks.size(); ++i) out += (i ? ", " : "") + std::to_string(ranks[i]);
  return out + "]";
}

// Group ranks by value; the culprits are the ranks outside the largest class
// (lowest rank wins a tie, and then every class is named anyway).
struct Verdict {
  bool agree = true;
  std::string description;  // "rank 2 has 00..ab; ranks [0, 1, 3] have 00..cd"
  std::vector<int> culprits;  // global ranks
};

Verdict judge(const std::vector<std::uint64_t>& values, const std::vector<int>& members) {
  std::map<std::uint64_t, std::vector<int>> classes;
  for (std::size_t r = 0; r < values.size(); ++r) classes[values[r]].push_back(members[r]);
  Verdict verdict;
  if (classes.size() == 1) return verdict;
  verdict.agree = false;
  const std::vector<int>* majority = nullptr;
  for (const auto& [value, ranks] : classes) {
    if (majority == nullptr || ranks.size() > majority->size() ||
        (ranks.size() == majority->size() && ranks.front() < majority->front())) {
      majority = &ranks;
    }
  }
  for (const auto& [value, ranks] : classes) {
    if (!verdict.description.empty()) verdict.description += "; ";
    verdict.description += (ranks.size() == 1 ? "rank " + std::to_string(ranks[0]) + " has "
                                              : "ranks " + rank_list(ranks) + " have ") +
                           digest_hex(value);
    if (&ranks != majority) verdict.culprits.insert(verdict.culprits.end(), ranks.begin(), ranks.end());
  }
  return verdict;
}

std::vector<std::uint64_t> encode_ledger(const LedgerSnapshot& snap) {
  std::vector<std::uint64_t> block(kLedgerBlockWords, 0);
  block[0] = snap.next_seq;
  block[1] = snap.digest;
  block[2] = snap.recent.size();
  for (std::size_t i = 0; i < snap.recent.size() && i < kLedgerRecentEntriesMax; ++i) {
    const LedgerEntry& e = snap.recent[i];
    std::uint64_t* w = &block[kLedgerHeaderWords + i * kLedgerEntryWords];
    w[0] = e.seq;
    w[1] = static_cast<std::uint64_t>(e.op);
    w[2] = static_cast<std::uint64_t>(e.dtype);
    w[3] = e.count;
    w[4] = static_cast<std::uint64_t>(static_cast<std::int64_t>(e.root_or_peer));
  }
  return block;
}

LedgerSnapshot decode_ledger(const std::vector<std::uint64_t>& block, std::string_view group,
                             int group_rank) {
  LedgerSnapshot snap;
  snap.group = std::string(group);
  snap.group_rank = group_rank;
  snap.next_seq = block[0];
  snap.digest = block[1];
  const std::size_t n = std::min<std::uint64_t>(block[2], kLedgerRecentEntriesMax);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t* w = &block[kLedgerHeaderWords + i * kLedgerEntryWords];
    LedgerEntry e;
    e.seq = w[0];
    e.op = static_cast<CollectiveOp>(w[1]);
    e.dtype = static_cast<DType>(w[2]);
    e.count = w[3];
    e.root_or_peer = static_cast<int>(static_cast<std::int64_t>(w[4]));
    snap.recent.push_back(e);
  }
  return snap;
}

[[noreturn]] void throw_ledger_divergence(const LedgerSnapshot& mine, const Verdict& verdict,
                                          const std::vector<int>& members, const GatherWords& gather) {
  const std::string_view group = mine.group;
  const auto blocks = gather(encode_ledger(mine));
  check_gathered(blocks, members.size(), kLedgerBlockWords);
  std::vector<LedgerSnapshot> snaps;
  for (std::size_t r = 0; r < blocks.size(); ++r) {
    snaps.push_back(decode_ledger(blocks[r], group, static_cast<int>(r)));
  }
  // The reference is a majority rank; each culprit is compared against it.
  std::size_t reference = 0;
  while (reference < members.size() &&
         std::find(verdict.culprits.begin(), verdict.culprits.end(), members[reference]) !=
             verdict.culprits.end()) {
    ++reference;
  }
  std::string message = "ledger digests of group '" + std::string(group) + "' differ: " +
                        verdict.description;
  for (std::size_t r = 0; r < members.size(); ++r) {
    if (r == reference) continue;
    if (const auto d = first_divergence(snaps[reference], snaps[r])) {
      message += "\n  rank " + std::to_string(members[r]) + " vs rank " +
                 std::to_string(members[reference]) + ": " + d->description;
    }
  }
  throw Error(ErrorCode::kLedger, message);
}

}  // namespace

void check_weight_fingerprints(Communicator& comm, std::string_view group, std::uint64_t loaded,
                               std::span<const std::uint64_t> expected,
                               std::chrono::milliseconds timeout) {
  const std::vector<int>& members = members_of(comm, group);
  if (expected.size() != members.size()) {
    throw Error(ErrorCode::kInvalidArgument,
                "weight fingerprints on group '" + std::string(group) + "': " +
                    std::to_string(expected.size()) + " expectations for " +
                    std::to_string(members.size()) + " ranks");
  }
  std::uint64_t expected_digest = 0;
  for (const std::uint64_t e : expected) expected_digest = digest_combine(expected_digest, e);
  const auto gathered = communicator_gather(comm, group, members.size(), timeout)({loaded, expected_digest});
  check_gathered(gathered, members.size(), 2);

  std::vector<std::uint64_t> expectations;
  for (const auto& words : gathered) expectations.push_back(words[1]);
  if (const Verdict v = judge(expectations, members); !v.agree) {
    throw Error(ErrorCode::kDigest, "ranks disagree on the expected weight-shard fingerprints of "
                                    "group '" + std::string(group) + "' (seed or model config?): " +
                                        v.description);
  }
  std::string mismatches;
  for (std::size_t r = 0; r < members.size(); ++r) {
    if (gathered[r][0] == expected[r]) continue;
    mismatches += "\n  rank " + std::to_string(members[r]) + " loaded " + digest_hex(gathered[r][0]) +
                  ", expected " + digest_hex(expected[r]);
  }
  if (!mismatches.empty()) {
    throw Error(ErrorCode::kDigest, "weight-shard fingerprint mismatch on group '" +
                                        std::string(group) + "':" + mismatches);
  }
}

void check_chunk_digests(Communicator& comm, std::string_view group, std::uint64_t input_digest,
                         std::uint64_t kv_state_digest, std::chrono::milliseconds timeout) {
  const std::vector<int>& members = members_of(comm, group);
  check_group_digests(comm.ledger_snapshot(group), members,
                      {{"input digest", input_digest}, {"kv-state digest", kv_state_digest}},
                      communicator_gather(comm, group, members.size(), timeout));
}

void check_group_digests(const LedgerSnapshot& mine, const std::vector<int>& members,
                         const std::vector<std::pair<std::string, std::uint64_t>>& digests,
                         const GatherWords& gather) {
  std::vector<std::uint64_t> words = {mine.digest};
  for (const auto& [name, value] : digests) words.push_back(value);
  const auto gathered = gather(words);
  check_gathered(gathered, members.size(), words.size());
  const auto column = [&](std::size_t word) {
    std::vector<std::uint64_t> values;
    for (const auto& row : gathered) values.push_back(row[word]);
    return values;
  };
  if (const Verdict v = judge(column(0), members); !v.agree) throw_ledger_divergence(mine, v, members, gather);
  for (std::size_t i = 0; i < digests.size(); ++i) {
    if (const Verdict v = judge(column(i + 1), members); !v.agree) {
      throw Error(ErrorCode::kDigest, digests[i].first + " differs across group '" + mine.group +
                                          "' (culprit ranks " + rank_list(v.culprits) + "): " + v.description);
    }
  }
}

std::vector<LedgerSummary> ledger_summaries(const CollectiveGate& gate) {
  std::vector<LedgerSummary> out;
  for (const std::string_view group : gate.member_groups()) {
    const LedgerSnapshot snap = gate.ledger_snapshot(group);
    out.push_back(LedgerSummary{snap.group, snap.next_seq, digest_hex(snap.digest)});
  }
  return out;
}

}  // namespace lockstep
