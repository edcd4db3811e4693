#include "lockstep/acceptance.h"

#include <algorithm>
#include <string>

#include "lockstep/assert.h"
#include "lockstep/error.h"

namespace lockstep {
namespace {

std::string ids_text(std::uint64_t call_id, std::uint64_t cache_epoch) {
  return "call_id " + std::to_string(call_id) + " (cache_epoch " + std::to_string(cache_epoch) + ")";
}

std::string optional_text(const std::optional<std::uint64_t>& value) {
  return value ? std::to_string(*value) : std::string("none");
}

}  // namespace

AcceptanceRule::AcceptanceRule(std::uint64_t cache_epoch, std::size_t reorder_window)
    : epoch_(cache_epoch), window_(reorder_window) {
  if (reorder_window == 0 || reorder_window > kReorderWindowMax) {
    throw Error(ErrorCode::kInvalidArgument, "acceptance: reorder_window " + std::to_string(reorder_window) +
                                                 " outside [1, " + std::to_string(kReorderWindowMax) + "]");
  }
}

void AcceptanceRule::expect(std::uint64_t call_id) {
  const auto floor = std::max(highest_registered_, highest_released_);
  if (floor && call_id <= *floor) {
    throw Error(ErrorCode::kInvalidArgument, "acceptance: expect(" + std::to_string(call_id) +
                                                 ") is not above the last registered call_id " +
                                                 std::to_string(*floor));
  }
  if (awaited_.size() >= kAwaitedResultsMax) {
    throw Error(ErrorCode::kLimit, "acceptance: " + std::to_string(awaited_.size()) +
                                       " results already awaited (kAwaitedResultsMax); call_id " +
                                       std::to_string(call_id) + " not registered");
  }
  awaited_.push_back(call_id);
  highest_registered_ = call_id;
}

bool AcceptanceRule::is_duplicate(std::uint64_t call_id) const {
  return buffered_.contains(call_id) || std::binary_search(history_.begin(), history_.end(), call_id);
}

AcceptanceRule::Decision AcceptanceRule::offer(std::uint64_t call_id, std::uint64_t cache_epoch) {
  if (cache_epoch < epoch_) {
    abandoned_.erase(call_id);
    ++counters_.stale_drops;
    return Decision{ResultVerdict::kStale, {}};
  }
  if (cache_epoch > epoch_) {
    throw Error(ErrorCode::kStaleWork, "acceptance: result " + ids_text(call_id, cache_epoch) +
                                           " is from a future epoch; current cache_epoch " + std::to_string(epoch_));
  }
  if (is_duplicate(call_id)) {
    ++counters_.duplicate_drops;
    return Decision{ResultVerdict::kDuplicate, {}};
  }
  if (highest_released_ && call_id <= *highest_released_) {
    throw Error(ErrorCode::kStaleWork, "acceptance: result " + ids_text(call_id, cache_epoch) +
                                           " regresses: call_id " + std::to_string(*highest_released_) +
                                           " was already released and this is no recent duplicate");
  }
  const auto it = std::find(awaited_.begin(), awaited_.end(), call_id);
  if (it == awaited_.end()) {
    throw Error(ErrorCode::kStaleWork, "acceptance: result " + ids_text(call_id, cache_epoch) +
                                           " answers no envelope awaiting a result; next expected call_id " +
                                           optional_text(next_expected()));
  }
  const auto position = static_cast<std::size_t>(it - awaited_.begin());
  if (position >= window_) {
    throw Error(ErrorCode::kStaleWork, "acceptance: result " + ids_text(call_id, cache_epoch) + " is " +
                                           std::to_string(position) + " places past next expected call_id " +
                                           std::to_string(awaited_.front()) + "; reorder window is " +
                                           std::to_string(window_));
  }
  if (position > 0) {
    buffered_.insert(call_id);
    ++counters_.reordered;
    return Decision{ResultVerdict::kBuffered, {}};
  }
  return release_from_head();
}

// The head's result just arrived: release it and every buffered successor.
AcceptanceRule::Decision AcceptanceRule::release_from_head() {
  Decision decision{ResultVerdict::kAccepted, {}};
  do {
    const std::uint64_t id = awaited_.front();
    awaited_.pop_front();
    buffered_.erase(id);
    decision.released.push_back(id);
    history_.push_back(id);
    if (history_.size() > kDuplicateHistoryMax) history_.pop_front();
    highest_released_ = id;
    ++counters_.accepted;
  } while (!awaited_.empty() && buffered_.contains(awaited_.front()));
  LOCKSTEP_ASSERT(buffered_.size() < window_);
  return decision;
}

std::vector<std::uint64_t> AcceptanceRule::begin_epoch(std::uint64_t new_epoch) {
  if (new_epoch <= epoch_) {
    throw Error(ErrorCode::kInvalidArgument, "acceptance: begin_epoch(" + std::to_string(new_epoch) +
                                                 ") does not advance cache_epoch " + std::to_string(epoch_));
  }
  std::vector<std::uint64_t> abandoned(awaited_.begin(), awaited_.end());
  for (const std::uint64_t id : awaited_) {
    if (!buffered_.contains(id)) abandoned_.insert(id);
  }
  counters_.discarded_in_flight += awaited_.size();
  awaited_.clear();
  buffered_.clear();
  history_.clear();
  epoch_ = new_epoch;
  return abandoned;
}

std::optional<std::uint64_t> AcceptanceRule::next_expected() const {
  if (awaited_.empty()) return std::nullopt;
  return awaited_.front();
}

EnvelopeSequencer::EnvelopeSequencer(std::uint64_t first_call_id, std::uint64_t first_chunk_index,
                                     std::uint64_t first_cache_epoch)
    : next_call_id_(first_call_id), next_chunk_index_(first_chunk_index), epoch_(first_cache_epoch) {}

std::string EnvelopeSequencer::refusal(const EnvelopeIds& ids) const {
  if (ids.call_id != next_call_id_) {
    const char* what = ids.call_id < next_call_id_ ? " goes backwards" : " skips ahead";
    return "envelope " + ids_text(ids.call_id, ids.cache_epoch) + what + "; expected call_id " +
           std::to_string(next_call_id_);
  }
  if (ids.cache_epoch < epoch_) {
    return "envelope " + ids_text(ids.call_id, ids.cache_epoch) + ": cache_epoch went backwards from " +
           std::to_string(epoch_);
  }
  if (ids.chunk_index && *ids.chunk_index != next_chunk_index_) {
    return "envelope " + ids_text(ids.call_id, ids.cache_epoch) + ": chunk_index " +
           std::to_string(*ids.chunk_index) + ", expected " + std::to_string(next_chunk_index_);
  }
  return {};
}

EnvelopeSequencer::Admission EnvelopeSequencer::admit(const EnvelopeIds& ids) {
  if (last_ && ids.call_id == last_->call_id) {
    const bool same = ids.cache_epoch == last_->cache_epoch && ids.chunk_index == last_->chunk_index &&
                      ids.content_digest == last_->content_digest;
    if (!same) {
      throw Error(ErrorCode::kStaleWork, "envelope " + ids_text(ids.call_id, ids.cache_epoch) +
                                             " reuses the last call_id with different content or ids");
    }
    ++duplicate_drops_;
    return Admission{EnvelopeVerdict::kDuplicate, false};
  }
  if (const std::string why = refusal(ids); !why.empty()) throw Error(ErrorCode::kStaleWork, why);
  const bool epoch_changed = ids.cache_epoch != epoch_;
  epoch_ = ids.cache_epoch;
  next_call_id_ = ids.call_id + 1;
  if (ids.chunk_index) next_chunk_index_ = *ids.chunk_index + 1;
  last_ = ids;
  ++applied_;
  return Admission{EnvelopeVerdict::kApply, epoch_changed};
}

std::optional<std::uint64_t> EnvelopeSequencer::last_call_id() const noexcept {
  if (!last_) return std::nullopt;
  return last_->call_id;
}

}  // namespace lockstep
