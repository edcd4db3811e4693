// The idempotency rules of SPEC §4D, as pure (sans-IO) state machines so the
// real runtime and the deterministic simulator drive the same code:
//
//  * ResultAcceptance<T> — Stage 0's rule for results coming back from the
//    mesh: epoch fence, next expected call_id or a bounded reorder window,
//    duplicates and stale results dropped and counted, regressions fatal;
//    every accepted result is released exactly once, in call_id order.
//  * EnvelopeSequencer — the mesh's rule for envelopes: call_id strictly +1
//    over the whole stream, a duplicate (same call_id and epoch, same content)
//    is dropped without re-applying cache mutations, anything else fatal.
//
// The precise rule for a result (call_id c, cache_epoch e), current epoch E:
//   e <  E                         stale: dropped, counted (stale_drops)
//   e >  E                         fatal Error{kStaleWork} (a result from the future)
//   c is buffered, or among the last kDuplicateHistoryMax results released
//   in epoch E                     duplicate: dropped, counted (duplicate_drops)
//   c <= the highest call_id ever released (and not a duplicate)
//                                  fatal Error{kStaleWork} (call_id regression)
//   c is the oldest awaited id     accepted; released with every buffered id
//                                  that follows it in the awaited order
//   c is awaited at position p, 0 < p < reorder_window
//                                  buffered (reordered)
//   c is awaited at p >= reorder_window
//                                  fatal Error{kStaleWork} (window exceeded)
//   c was never awaited (a NOOP's id, or not sent yet)
//                                  fatal Error{kStaleWork}
// "Awaited" ids are the ones Stage 0 registered with expect() when it sent the
// envelope; only those produce results, so NOOP gaps in call_id are fine.
//
// Threads: neither class is thread-safe; one owner (Stage 0's comm thread,
// resp. the mesh loop) calls everything. Nothing here blocks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "lockstep/assert.h"

namespace lockstep {

// Results that may arrive ahead of the oldest awaited one and be held.
inline constexpr std::size_t kReorderWindowMax = 16;
inline constexpr std::size_t kReorderWindowDefault = 4;
// Envelopes sent whose results are still awaited (D_in + D_out + in-flight,
// with room); more means the producer ignored backpressure.
inline constexpr std::size_t kAwaitedResultsMax = 64;
// How far back a late duplicate is still recognised as one; older ones are
// regressions. Retries stay inside a bounded window (SPEC §4D).
inline constexpr std::size_t kDuplicateHistoryMax = 64;

enum class ResultVerdict : std::uint8_t { kAccepted, kBuffered, kStale, kDuplicate };

struct AcceptanceCounters {
  std::uint64_t accepted = 0;         // released to decode (exactly once each)
  std::uint64_t stale_drops = 0;      // results of an old epoch
  std::uint64_t duplicate_drops = 0;  // results seen before in this epoch
  std::uint64_t reordered = 0;        // arrived early and were buffered
  std::uint64_t discarded_in_flight = 0;  // awaited results abandoned by hard cuts
};

// The id-only rule (no payloads). ResultAcceptance<T> wraps it with storage.
class AcceptanceRule {
 public:
  struct Decision {
    ResultVerdict verdict;
    // For kAccepted: the offered call_id first, then the buffered ones it
    // unblocked, in order. Empty otherwise.
    std::vector<std::uint64_t> released;
  };

  // Throws Error{kInvalidArgument} unless 1 <= reorder_window <= kReorderWindowMax.
  AcceptanceRule(std::uint64_t cache_epoch, std::size_t reorder_window);

  // Registers that an envelope with this call_id was sent in the current
  // epoch and its result is awaited. call_id must exceed every id registered
  // or released before (Error{kInvalidArgument}); at most kAwaitedResultsMax
  // awaited at once (Error{kLimit}).
  void expect(std::uint64_t call_id);

  // Classifies one result; see the rule at the top of this file. Throws
  // Error{kStaleWork} naming call_id, epoch and what was expected. A throw
  // leaves the state unchanged.
  Decision offer(std::uint64_t call_id, std::uint64_t cache_epoch);

  // Hard cut: the epoch becomes new_epoch (must be greater than the current,
  // else Error{kInvalidArgument}); every awaited or buffered result of the old
  // epoch is abandoned (counted in discarded_in_flight) and will be dropped
  // as stale when it arrives. Returns the ids abandoned (buffered ones
  // included) so the caller can discard their payloads.
  std::vector<std::uint64_t> begin_epoch(std::uint64_t new_epoch);

  // True when every result abandoned by a hard cut and not yet seen has
  // arrived (as stale): the drain of SPEC §4E is complete.
  bool drained() const noexcept { return abandoned_.empty(); }
  std::size_t abandoned_pending() const noexcept { return abandoned_.size(); }

  std::uint64_t cache_epoch() const noexcept { return epoch_; }
  std::size_t reorder_window() const noexcept { return window_; }
  // The oldest awaited call_id, if any.
  std::optional<std::uint64_t> next_expected() const;
  std::size_t awaited() const noexcept { return awaited_.size(); }
  std::size_t buffered() const noexcept { return buffered_.size(); }
  const AcceptanceCounters& counters() const noexcept { return counters_; }

 private:
  bool is_duplicate(std::uint64_t call_id) const;
  Decision release_from_head();

  std::uint64_t epoch_;
  std::size_t window_;
  std::deque<std::uint64_t> awaited_;  // ascending; sent, not released
  std::set<std::uint64_t> buffered_;   // subset of awaited_ whose result is held
  std::deque<std::uint64_t> history_;  // last released in this epoch, ascending
  std::set<std::uint64_t> abandoned_;  // old-epoch ids still to arrive as stale
  std::optional<std::uint64_t> highest_registered_;
  std::optional<std::uint64_t> highest_released_;
  AcceptanceCounters counters_;
};

// Stage 0's acceptance with payload storage. T is the decoded result.
template <typename T>
class ResultAcceptance {
 public:
  struct Released {
    std::uint64_t call_id;
    T result;
  };

  // Same contract as AcceptanceRule's constructor.
  ResultAcceptance(std::uint64_t cache_epoch, std::size_t reorder_window) : rule_(cache_epoch, reorder_window) {}

  // Same contract as AcceptanceRule::expect.
  void expect(std::uint64_t call_id) { rule_.expect(call_id); }

  // Offers one result; returns what is released to decode now, in order
  // (empty when the result was buffered or dropped). Throws as
  // AcceptanceRule::offer; a throw leaves the state unchanged.
  std::vector<Released> offer(std::uint64_t call_id, std::uint64_t cache_epoch, T result) {
    AcceptanceRule::Decision decision = rule_.offer(call_id, cache_epoch);
    std::vector<Released> released;
    if (decision.verdict == ResultVerdict::kBuffered) held_.emplace(call_id, std::move(result));
    if (decision.verdict != ResultVerdict::kAccepted) return released;
    released.reserve(decision.released.size());
    released.push_back(Released{call_id, std::move(result)});
    for (std::size_t i = 1; i < decision.released.size(); ++i) {
      auto it = held_.find(decision.released[i]);
      LOCKSTEP_ASSERT(it != held_.end());  // the rule released only ids it saw buffered
      released.push_back(Released{it->first, std::move(it->second)});
      held_.erase(it);
    }
    return released;
  }

  // Hard cut; same contract as AcceptanceRule::begin_epoch. Buffered payloads
  // of the old epoch are destroyed, never released.
  void begin_epoch(std::uint64_t new_epoch) {
    rule_.begin_epoch(new_epoch);
    held_.clear();
  }

  const AcceptanceRule& rule() const noexcept { return rule_; }

 private:
  AcceptanceRule rule_;
  std::map<std::uint64_t, T> held_;  // buffered results by call_id
};

// What the mesh does with one envelope.
enum class EnvelopeVerdict : std::uint8_t {
  kApply,      // the next envelope of the stream: run it
  kDuplicate,  // a resend of the last envelope: drop, mutate nothing
};

struct EnvelopeIds {
  std::uint64_t call_id = 0;
  std::uint64_t cache_epoch = 0;
  std::optional<std::uint64_t> chunk_index;  // INFER only
  // Digest of the envelope's content (e.g. its body checksum): a "duplicate"
  // whose content differs is a protocol violation, not a resend.
  std::uint64_t content_digest = 0;
};

class EnvelopeSequencer {
 public:
  struct Admission {
    EnvelopeVerdict verdict;
    bool epoch_changed;  // kApply only: the first envelope of a new epoch
  };

  // The stream's first envelope must carry first_call_id and, if INFER,
  // first_chunk_index; epochs start at first_cache_epoch.
  EnvelopeSequencer(std::uint64_t first_call_id, std::uint64_t first_chunk_index, std::uint64_t first_cache_epoch);

  // Rules: call_id == last + 1 → kApply, provided cache_epoch did not
  // decrease and, for INFER, chunk_index == last INFER's + 1. call_id == last
  // with identical epoch, chunk_index and content_digest → kDuplicate
  // (counted). Anything else — a lower call_id, a gap, a conflicting resend,
  // an epoch that goes backwards, a chunk_index out of sequence — throws
  // Error{kStaleWork} naming the ids; a throw changes nothing.
  Admission admit(const EnvelopeIds& ids);
  // True when admit(ids) would apply it (kApply). Changes nothing.
  bool would_apply(const EnvelopeIds& ids) const { return refusal(ids).empty(); }

  std::optional<std::uint64_t> last_call_id() const noexcept;
  std::uint64_t cache_epoch() const noexcept { return epoch_; }
  std::uint64_t applied() const noexcept { return applied_; }
  std::uint64_t duplicate_drops() const noexcept { return duplicate_drops_; }

 private:
  // Why `ids` is not the next envelope to apply; empty when it is.
  std::string refusal(const EnvelopeIds& ids) const;

  std::uint64_t next_call_id_;
  std::uint64_t next_chunk_index_;
  std::uint64_t epoch_;
  std::optional<EnvelopeIds> last_;
  std::uint64_t applied_ = 0;
  std::uint64_t duplicate_drops_ = 0;
};

}  // namespace lockstep
