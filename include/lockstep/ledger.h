// The collective ledger of one group (SPEC §2, §4B): every call this rank
// issued on the group, in order, folded into a rolling XXH3 digest. Ranks of
// a group compare digests at each chunk boundary (a few bytes); on a mismatch
// they exchange their recent entries and first_divergence() names the first
// collective that differs (B4).
//
// P2P calls are folded in a canonical, rank-independent form (src, dst group
// ranks), so a send on one end and the matching recv on the other fold to the
// same bytes: the two ranks of a 2-rank group (`boundary`) keep equal digests
// across point-to-point traffic. In a larger group only the two endpoints
// see a p2p entry, so groups whose digests are compared across all members
// (`mesh`) should carry collectives only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lockstep/dtype.h"

namespace lockstep {

enum class CollectiveOp : std::uint8_t {
  kBroadcast = 1,
  kAllReduce = 2,
  kAllGather = 3,
  kBarrier = 4,
  kSend = 5,
  kRecv = 6,
  kReduceScatter = 7,  // count: elements each rank receives
  kAllToAll = 8,       // count: elements each rank sends to each peer
};
// "broadcast", "all_reduce", "all_gather", "barrier", "send", "recv",
// "reduce_scatter", "all_to_all".
std::string_view collective_op_name(CollectiveOp op);

// Recent entries kept per group: enough to name a divergence that the
// per-chunk digest comparison catches (a chunk issues well under this many
// collectives per group in the reference model), bounded so memory is fixed.
inline constexpr std::size_t kLedgerRecentEntriesMax = 256;

// Marks "no root/peer" (all_reduce, all_gather, barrier).
inline constexpr int kNoRootOrPeer = -1;

struct LedgerEntry {
  std::uint64_t seq = 0;  // 0-based position in this group's ledger
  CollectiveOp op = CollectiveOp::kBarrier;
  DType dtype = DType::kU8;  // kU8 with count 0 for barrier
  std::uint64_t count = 0;   // elements
  int root_or_peer = kNoRootOrPeer;  // group rank
  friend bool operator==(const LedgerEntry&, const LedgerEntry&) = default;
};

// "seq 41 all_reduce f32 x1024" / "seq 7 send u8 x4096 peer 1".
std::string describe_entry(const LedgerEntry& entry);

// A copy of a ledger's state, detached from the ledger (safe to keep, send,
// compare).
struct LedgerSnapshot {
  std::string group;
  int group_rank = -1;           // rank that issued these entries
  std::uint64_t next_seq = 0;    // entries appended so far
  std::uint64_t digest = 0;      // rolling digest after next_seq entries
  std::vector<LedgerEntry> recent;  // the last <= kLedgerRecentEntriesMax, oldest first
};

class Ledger {
 public:
  // REQUIRES group_rank >= 0 (the rank of this process in `group`).
  Ledger(std::string group, int group_rank);
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  // Appends one call and folds it into the digest; returns its seq.
  // Non-blocking (an uncontended lock). Called by the Communicator only.
  std::uint64_t append(CollectiveOp op, DType dtype, std::uint64_t count, int root_or_peer);

  // The seq the next append() will get. Thread-safe, non-blocking.
  std::uint64_t next_seq() const;
  // Rolling digest after every append so far (seed value before the first).
  // Thread-safe, non-blocking: the watchdog reads it while dumping.
  std::uint64_t digest() const;
  // Thread-safe copy of the whole state (next_seq and digest consistent).
  LedgerSnapshot snapshot() const;

  const std::string& group() const { return group_; }
  int group_rank() const { return group_rank_; }

 private:
  const std::string group_;
  const int group_rank_;
  mutable std::mutex mutex_;  // guards the fields below
  std::uint64_t next_seq_ = 0;
  std::uint64_t digest_;
  std::deque<LedgerEntry> recent_;
};

// The digest every ledger starts from (depends on nothing but the format).
std::uint64_t ledger_initial_digest();
// Folds one entry into `digest` as issued by `issuer_group_rank`. Pure.
std::uint64_t ledger_fold(std::uint64_t digest, const LedgerEntry& entry, int issuer_group_rank);

struct LedgerDivergence {
  std::uint64_t seq = 0;            // first seq where the two disagree
  std::optional<LedgerEntry> a;     // a's entry at seq (nullopt: a has none there)
  std::optional<LedgerEntry> b;
  // False when the entries at seq fell outside both recent windows: the
  // divergence happened at or before seq but cannot be named exactly.
  bool named = true;
  std::string description;          // one line naming group, ranks and entries
};

// The first divergence between two ranks' ledgers of the same group, judged
// in the rank-independent (canonical) form; nullopt when they agree (same
// next_seq and digest). Pure; throws Error{kInvalidArgument} when the
// snapshots are of different groups.
std::optional<LedgerDivergence> first_divergence(const LedgerSnapshot& a, const LedgerSnapshot& b);

}  // namespace lockstep
