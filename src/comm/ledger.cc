#include "lockstep/ledger.h"

#include <array>
#include <string>

#include "lockstep/assert.h"
#include "lockstep/digest.h"
#include "lockstep/error.h"

namespace lockstep {
namespace {

// Bumped whenever the canonical entry encoding changes.
constexpr std::uint64_t kLedgerDigestFormat = 1;
// Folded in place of send/recv so both endpoints of a transfer agree.
constexpr std::uint8_t kCanonicalP2p = 0xF0;

// The rank-independent form of an entry: p2p as (src, dst), collectives as
// issued. Fixed width, little-endian.
struct CanonicalEntry {
  std::uint8_t op;
  int src_or_root;
  int dst;
};

CanonicalEntry canonical(const LedgerEntry& entry, int issuer_group_rank) {
  switch (entry.op) {
    case CollectiveOp::kSend: return {kCanonicalP2p, issuer_group_rank, entry.root_or_peer};
    case CollectiveOp::kRecv: return {kCanonicalP2p, entry.root_or_peer, issuer_group_rank};
    default: return {static_cast<std::uint8_t>(entry.op), entry.root_or_peer, kNoRootOrPeer};
  }
}

bool same_canonical(const LedgerEntry& a, int rank_a, const LedgerEntry& b, int rank_b) {
  const CanonicalEntry ca = canonical(a, rank_a);
  const CanonicalEntry cb = canonical(b, rank_b);
  return a.seq == b.seq && ca.op == cb.op && ca.src_or_root == cb.src_or_root && ca.dst == cb.dst &&
         a.dtype == b.dtype && a.count == b.count;
}

template <typename T>
void put_le(std::uint8_t* out, T value) {
  for (std::size_t i = 0; i < sizeof(T); ++i) out[i] = static_cast<std::uint8_t>(value >> (8 * i));
}

const LedgerEntry* entry_at(const LedgerSnapshot& snapshot, std::uint64_t seq) {
  if (snapshot.recent.empty() || seq < snapshot.recent.front().seq || seq >= snapshot.next_seq) {
    return nullptr;
  }
  return &snapshot.recent[seq - snapshot.recent.front().seq];
}

std::string side_text(const LedgerSnapshot& snapshot, const LedgerEntry* entry) {
  std::string text = "group rank " + std::to_string(snapshot.group_rank) + " ";
  if (entry != nullptr) return text + describe_entry(*entry);
  return text + "has no entry (next_seq " + std::to_string(snapshot.next_seq) + ")";
}

LedgerDivergence make_divergence(const LedgerSnapshot& a, const LedgerSnapshot& b,
                                 std::uint64_t seq, bool named) {
  const LedgerEntry* ea = entry_at(a, seq);
  const LedgerEntry* eb = entry_at(b, seq);
  LedgerDivergence divergence;
  divergence.seq = seq;
  if (ea != nullptr) divergence.a = *ea;
  if (eb != nullptr) divergence.b = *eb;
  divergence.named = named;
  divergence.description =
      "ledger of group '" + a.group + "' diverged " + (named ? "at" : "at or before") + " seq " +
      std::to_string(seq) + ": " + side_text(a, ea) + " vs " + side_text(b, eb);
  if (!named) {
    divergence.description += " (earlier than the last " +
                              std::to_string(kLedgerRecentEntriesMax) + " entries kept)";
  }
  return divergence;
}

}  // namespace

std::string_view collective_op_name(CollectiveOp op) {
  switch (op) {
    case CollectiveOp::kBroadcast: return "broadcast";
    case CollectiveOp::kAllReduce: return "all_reduce";
    case CollectiveOp::kAllGather: return "all_gather";
    case CollectiveOp::kBarrier: return "barrier";
    case CollectiveOp::kSend: return "send";
    case CollectiveOp::kRecv: return "recv";
    case CollectiveOp::kReduceScatter: return "reduce_scatter";
    case CollectiveOp::kAllToAll: return "all_to_all";
  }
  return "invalid";
}

std::string describe_entry(const LedgerEntry& entry) {
  std::string text = "seq " + std::to_string(entry.seq) + " " +
                     std::string(collective_op_name(entry.op)) + " " +
                     std::string(dtype_name(entry.dtype)) + " x" + std::to_string(entry.count);
  if (entry.op == CollectiveOp::kBroadcast) text += " root " + std::to_string(entry.root_or_peer);
  if (entry.op == CollectiveOp::kSend || entry.op == CollectiveOp::kRecv) {
    text += " peer " + std::to_string(entry.root_or_peer);
  }
  return text;
}

std::uint64_t ledger_initial_digest() {
  std::array<std::uint8_t, 8> format{};
  put_le(format.data(), kLedgerDigestFormat);
  return digest_bytes(format);
}

std::uint64_t ledger_fold(std::uint64_t digest, const LedgerEntry& entry, int issuer_group_rank) {
  const CanonicalEntry c = canonical(entry, issuer_group_rank);
  // seq(8) op(1) dtype(1) count(8) src_or_root(4) dst(4)
  std::array<std::uint8_t, 26> record{};
  put_le(record.data(), entry.seq);
  record[8] = c.op;
  record[9] = static_cast<std::uint8_t>(entry.dtype);
  put_le(record.data() + 10, entry.count);
  put_le(record.data() + 18, static_cast<std::uint32_t>(c.src_or_root));
  put_le(record.data() + 22, static_cast<std::uint32_t>(c.dst));
  return digest_combine(digest, digest_bytes(record));
}

Ledger::Ledger(std::string group, int group_rank)
    : group_(std::move(group)), group_rank_(group_rank), digest_(ledger_initial_digest()) {
  LOCKSTEP_ASSERT(group_rank >= 0);
}

std::uint64_t Ledger::append(CollectiveOp op, DType dtype, std::uint64_t count, int root_or_peer) {
  std::lock_guard lock(mutex_);
  const LedgerEntry entry{next_seq_, op, dtype, count, root_or_peer};
  digest_ = ledger_fold(digest_, entry, group_rank_);
  if (recent_.size() == kLedgerRecentEntriesMax) recent_.pop_front();
  recent_.push_back(entry);
  return next_seq_++;
}

std::uint64_t Ledger::next_seq() const {
  std::lock_guard lock(mutex_);
  return next_seq_;
}

std::uint64_t Ledger::digest() const {
  std::lock_guard lock(mutex_);
  return digest_;
}

LedgerSnapshot Ledger::snapshot() const {
  std::lock_guard lock(mutex_);
  return LedgerSnapshot{group_, group_rank_, next_seq_, digest_,
                        std::vector<LedgerEntry>(recent_.begin(), recent_.end())};
}

std::optional<LedgerDivergence> first_divergence(const LedgerSnapshot& a, const LedgerSnapshot& b) {
  if (a.group != b.group) {
    throw Error(ErrorCode::kInvalidArgument,
                "first_divergence: ledgers of different groups '" + a.group + "' and '" + b.group + "'");
  }
  if (a.next_seq == b.next_seq && a.digest == b.digest) return std::nullopt;
  const std::uint64_t front_a = a.recent.empty() ? a.next_seq : a.recent.front().seq;
  const std::uint64_t front_b = b.recent.empty() ? b.next_seq : b.recent.front().seq;
  const std::uint64_t window_begin = std::max(front_a, front_b);
  const std::uint64_t common_end = std::min(a.next_seq, b.next_seq);
  for (std::uint64_t seq = window_begin; seq < common_end; ++seq) {
    if (!same_canonical(*entry_at(a, seq), a.group_rank, *entry_at(b, seq), b.group_rank)) {
      return make_divergence(a, b, seq, true);
    }
  }
  // Everything both windows hold agrees. Differing lengths: the first extra
  // entry is the divergence. Same length: it lies before the windows.
  if (a.next_seq != b.next_seq && common_end >= window_begin) {
    return make_divergence(a, b, common_end, true);
  }
  return make_divergence(a, b, std::min(window_begin, common_end), false);
}

}  // namespace lockstep
