#include "sim/sim_seams.h"

#include <algorithm>
#include <cstring>

#include "lockstep/assert.h"
#include "lockstep/error.h"

namespace lockstep::sim {
namespace {

Bytes copy_bytes(const void* data, std::size_t size_bytes) {
  const auto* begin = static_cast<const std::uint8_t*>(data);
  return Bytes(begin, begin + size_bytes);
}

}  // namespace

void SimClock::advance_to(std::int64_t t_ns) {
  LOCKSTEP_ASSERT(t_ns >= now_ns_);
  now_ns_ = t_ns;
}

void SimStore::set(const std::string& key, const Bytes& value) {
  if (key.size() > kStoreKeyBytesMax || value.size() > kStoreValueBytesMax) {
    throw Error(ErrorCode::kLimit, "sim store: key '" + key + "' or its value exceeds the store limits");
  }
  values_[key] = value;
}

Bytes SimStore::get(const std::string& key, std::chrono::milliseconds) {
  const auto it = values_.find(key);
  if (it == values_.end()) throw Error(ErrorCode::kTimeout, "sim store: key '" + key + "' is not set");
  return it->second;
}

bool SimStore::check(const std::vector<std::string>& keys) {
  return std::all_of(keys.begin(), keys.end(), [this](const std::string& key) { return values_.contains(key); });
}

void CollectiveBoard::post(const std::string& group, std::uint64_t seq, int group_rank, int group_size,
                           Bytes bytes, bool notify) {
  Slot& slot = slots_[{group, seq}];
  slot.resize(static_cast<std::size_t>(group_size));
  slot[static_cast<std::size_t>(group_rank)] = std::move(bytes);
  const bool full = std::all_of(slot.begin(), slot.end(), [](const auto& entry) { return entry.has_value(); });
  if (notify && full && on_complete_) on_complete_(group, seq);
}

const CollectiveBoard::Slot* CollectiveBoard::find(const std::string& group, std::uint64_t seq) const {
  const auto it = slots_.find({group, seq});
  return it == slots_.end() ? nullptr : &it->second;
}

void CollectiveBoard::push_p2p(const std::string& group, int src, int dst, std::uint32_t tag, Bytes bytes) {
  p2p_[{group, src, dst, tag}].push_back(std::move(bytes));
}

std::optional<Bytes> CollectiveBoard::pop_p2p(const std::string& group, int src, int dst, std::uint32_t tag) {
  auto it = p2p_.find({group, src, dst, tag});
  if (it == p2p_.end() || it->second.empty()) return std::nullopt;
  Bytes bytes = std::move(it->second.front());
  it->second.pop_front();
  return bytes;
}

SimBackend::SimBackend(CollectiveBoard& board, BackendStats& stats, std::string group, int global_rank, int rank,
                       int size)
    : board_(board), stats_(stats), group_(std::move(group)), global_rank_(global_rank), rank_(rank), size_(size) {}

std::uint64_t SimBackend::enter(const char* op) {
  ++stats_.calls;
  if (aborted_) {
    if (stats_.calls_after_abort++ == 0) {
      stats_.first_after_abort = "rank " + std::to_string(global_rank_) + " group " + group_ + " " + op;
    }
    throw Error(ErrorCode::kAborted, "sim backend of group '" + group_ + "' on rank " +
                                         std::to_string(global_rank_) + ": " + op + " after abort");
  }
  return next_seq_++;
}

void SimBackend::broadcast(void* data, std::size_t count, DType dtype, int root, std::chrono::milliseconds) {
  const std::uint64_t seq = enter("broadcast");
  const std::size_t size_bytes = count * dtype_size_bytes(dtype);
  if (rank_ == root) {
    board_.post(group_, seq, rank_, size_, copy_bytes(data, size_bytes), false);
    return;
  }
  const CollectiveBoard::Slot* slot = board_.find(group_, seq);
  const bool posted = slot != nullptr && (*slot)[static_cast<std::size_t>(root)].has_value();
  if (!posted || (*slot)[static_cast<std::size_t>(root)]->size() != size_bytes) {
    throw Error(ErrorCode::kBackend, "sim broadcast seq " + std::to_string(seq) + " of group '" + group_ +
                                         "': root " + std::to_string(root) + " posted no matching buffer");
  }
  std::memcpy(data, (*slot)[static_cast<std::size_t>(root)]->data(), size_bytes);
}

// The simulated job never reads reduced values (its model only keeps the
// bookkeeping), so the reduction itself is not computed.
void SimBackend::all_reduce(void*, std::size_t, DType, ReduceOp, std::chrono::milliseconds) {
  enter("all_reduce");
}

void SimBackend::all_gather(const void* in, void* out, std::size_t count, DType dtype, std::chrono::milliseconds) {
  const std::uint64_t seq = enter("all_gather");
  const std::size_t size_bytes = count * dtype_size_bytes(dtype);
  std::memcpy(static_cast<std::uint8_t*>(out) + static_cast<std::size_t>(rank_) * size_bytes, in, size_bytes);
  board_.post(group_, seq, rank_, size_, copy_bytes(in, size_bytes), true);
}

void SimBackend::barrier(std::chrono::milliseconds) {
  const std::uint64_t seq = enter("barrier");
  board_.post(group_, seq, rank_, size_, Bytes{}, true);
}

void SimBackend::send(const void* data, std::size_t size_bytes, int peer, std::uint32_t tag,
                      std::chrono::milliseconds) {
  enter("send");
  board_.push_p2p(group_, rank_, peer, tag, copy_bytes(data, size_bytes));
}

void SimBackend::recv(void* data, std::size_t size_bytes, int peer, std::uint32_t tag, std::chrono::milliseconds) {
  enter("recv");
  const std::optional<Bytes> bytes = board_.pop_p2p(group_, peer, rank_, tag);
  if (!bytes || bytes->size() != size_bytes) {
    throw Error(ErrorCode::kBackend, "sim recv on group '" + group_ + "' from " + std::to_string(peer) +
                                         " tag " + std::to_string(tag) + ": no matching send was posted");
  }
  std::memcpy(data, bytes->data(), size_bytes);
}

std::string generation_key(std::uint32_t generation, std::string_view name) {
  return "g" + std::to_string(generation) + "/" + std::string(name);
}

std::uint32_t key_generation(const std::string& key) {
  return static_cast<std::uint32_t>(std::stoul(key.substr(1, key.find('/') - 1)));
}

std::unique_ptr<Backend> SimBackendFactory::connect(Store&, const BackendGroupSpec& spec) {
  const auto it = std::find(spec.member_ranks.begin(), spec.member_ranks.end(), spec.global_rank);
  if (it == spec.member_ranks.end()) {
    throw Error(ErrorCode::kMembership, "sim backend: rank " + std::to_string(spec.global_rank) +
                                            " is not a member of group '" + spec.group_name + "'");
  }
  const int rank = static_cast<int>(it - spec.member_ranks.begin());
  return std::make_unique<SimBackend>(board_, stats_, generation_key(generation_, spec.group_name), spec.global_rank, rank,
                                      static_cast<int>(spec.member_ranks.size()));
}

}  // namespace lockstep::sim
