// Franken-model tripwires (SPEC §4B, §4F, §4H): cheap cross-rank checks that
// turn silent divergence — a mutated weight shard, a perturbed input, a KV
// cache reset on one rank, a collective issued on one rank only — into a
// crash that names the differing ranks and values.
//
// Every check is one small all_gather through the guarded Communicator, so it
// is itself recorded, ledgered and watched; every rank of the group reaches
// the same verdict from the same gathered bytes (no rank is assumed innocent:
// a culprit is a rank outside the majority, and a tie names every value).
// Ranks in messages are global ranks.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lockstep/communicator.h"
#include "lockstep/flight_recorder.h"

namespace lockstep {

// The exchange a tripwire runs over: every member of the group contributes
// `mine` (the same number of words on every rank) and gets back every
// member's, indexed by group rank — an all_gather of u64 words, through the
// Communicator or, in the Python package, through a guarded torch group.
using GatherWords =
    std::function<std::vector<std::vector<std::uint64_t>>(const std::vector<std::uint64_t>& mine)>;

// Per-chunk check over any transport: gathers every member's digest of the
// group's ledger (`mine` as of this call; `members` the group's global ranks
// by group rank) and of each named digest (input, KV state, ...; the same
// names in the same order on every rank). On a ledger mismatch gathers every
// rank's recent entries and throws Error{kLedger} naming the first divergent
// entry of each rank outside the majority (group, seq, op, dtype, count,
// both sides); else throws Error{kDigest} naming the first differing digest,
// the culprit ranks and every value. Two gathers at most; blocking as
// `gather` is.
void check_group_digests(const LedgerSnapshot& mine, const std::vector<int>& members,
                         const std::vector<std::pair<std::string, std::uint64_t>>& digests,
                         const GatherWords& gather);

// Start-up weight check. `loaded` is the digest of the shard this rank
// loaded; `expected` holds, for every group rank g, the digest rank g's shard
// must have — derived deterministically by every rank (e.g. from the seed),
// so a shard mutated on one rank is caught by the others too. Blocking (two
// u64 per rank gathered over `group`, bounded by `timeout`); comm's owner
// thread. Throws Error{kDigest} naming the rank whose shard differs (or the
// ranks whose expectations differ), Error{kInvalidArgument} when expected's
// size is not the group size, and what the Communicator throws.
void check_weight_fingerprints(Communicator& comm, std::string_view group, std::uint64_t loaded,
                               std::span<const std::uint64_t> expected,
                               std::chrono::milliseconds timeout);

// Per-chunk check over `group` (the mesh): gathers {ledger digest of `group`
// as of this call, input digest, KV-state digest} from every rank.
// Blocking (bounded by `timeout`, twice when ledgers differ); comm's owner
// thread. Throws Error{kLedger} naming the first divergent ledger entry
// (ranks exchange their recent entries to find it), else Error{kDigest}
// naming the field, the differing ranks and every value.
void check_chunk_digests(Communicator& comm, std::string_view group, std::uint64_t input_digest,
                         std::uint64_t kv_state_digest, std::chrono::milliseconds timeout);

// Every member group's ledger (next_seq, digest) for the flight-recorder
// dump. Non-blocking (a short lock per ledger); any thread.
std::vector<LedgerSummary> ledger_summaries(const CollectiveGate& gate);

}  // namespace lockstep
