// The simulator's implementations of lockstep's seams (clock.h, store.h,
// backend.h). All of them live in one thread and never block: simulated time
// only moves when the event loop says so, and a collective "posts" its
// contribution to a shared board that the event loop resolves.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>
#include <deque>

#include "lockstep/backend.h"
#include "lockstep/clock.h"
#include "lockstep/store.h"

namespace lockstep::sim {

// Simulated monotonic time, advanced only by the event loop.
class SimClock final : public Clock {
 public:
  std::int64_t now_ns() const override { return now_ns_; }
  // REQUIRES t_ns >= now_ns() (time never goes back).
  void advance_to(std::int64_t t_ns);

 private:
  std::int64_t now_ns_ = 0;
};

// In-memory store shared by every simulated rank (poison marks live here).
class SimStore final : public Store {
 public:
  void set(const std::string& key, const Bytes& value) override;
  // Nothing can arrive while a simulated rank waits, so a missing key is an
  // immediate Error{kTimeout} naming it.
  Bytes get(const std::string& key, std::chrono::milliseconds timeout) override;
  bool check(const std::vector<std::string>& keys) override;
  std::string describe() const override { return "sim"; }

 private:
  std::map<std::string, Bytes> values_;
};

// What every simulated backend did, for the "no backend call after abort" check.
struct BackendStats {
  std::uint64_t calls = 0;
  std::uint64_t calls_after_abort = 0;
  std::string first_after_abort;  // "rank 2 group mesh all_reduce"
};

// Contributions to collectives, by (group, per-group call sequence): the
// simulated wire between backends. Calls `on_complete(group, seq)` once every
// member posted to a gathering collective (all_gather, barrier).
class CollectiveBoard {
 public:
  using Slot = std::vector<std::optional<Bytes>>;  // by group rank
  using CompletionHook = std::function<void(const std::string& group, std::uint64_t seq)>;

  void set_completion_hook(CompletionHook hook) { on_complete_ = std::move(hook); }
  // Records rank's contribution; fires the hook when `notify` and the slot is full.
  void post(const std::string& group, std::uint64_t seq, int group_rank, int group_size, Bytes bytes,
            bool notify);
  // nullptr when nobody posted at (group, seq).
  const Slot* find(const std::string& group, std::uint64_t seq) const;
  void push_p2p(const std::string& group, int src, int dst, std::uint32_t tag, Bytes bytes);
  std::optional<Bytes> pop_p2p(const std::string& group, int src, int dst, std::uint32_t tag);

 private:
  std::map<std::pair<std::string, std::uint64_t>, Slot> slots_;
  std::map<std::tuple<std::string, int, int, std::uint32_t>, std::deque<Bytes>> p2p_;
  CompletionHook on_complete_;
};

// One rank's backend of one group. Non-blocking: every call posts to the
// board and returns; data a rank needs from a peer (broadcast, all_gather,
// recv) is read from what the peer posted earlier in simulated time.
class SimBackend final : public Backend {
 public:
  SimBackend(CollectiveBoard& board, BackendStats& stats, std::string group, int global_rank, int rank, int size);

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "sim"; }
  MemoryKind memory_kind() const override { return MemoryKind::kHost; }
  void broadcast(void* data, std::size_t count, DType dtype, int root, std::chrono::milliseconds timeout) override;
  void all_reduce(void* data, std::size_t count, DType dtype, ReduceOp op,
                  std::chrono::milliseconds timeout) override;
  void all_gather(const void* in, void* out, std::size_t count, DType dtype,
                  std::chrono::milliseconds timeout) override;
  void barrier(std::chrono::milliseconds timeout) override;
  void send(const void* data, std::size_t size_bytes, int peer, std::uint32_t tag,
            std::chrono::milliseconds timeout) override;
  void recv(void* data, std::size_t size_bytes, int peer, std::uint32_t tag,
            std::chrono::milliseconds timeout) override;
  void abort() override { aborted_ = true; }

 private:
  // Counts the call; a call after abort is recorded as a violation and
  // refused with Error{kAborted}, as the contract demands. Returns its seq.
  std::uint64_t enter(const char* op);

  CollectiveBoard& board_;
  BackendStats& stats_;
  const std::string group_;
  const int global_rank_;
  const int rank_;
  const int size_;
  std::uint64_t next_seq_ = 0;
  bool aborted_ = false;
};

// A name scoped to one generation ("g1/mesh", "g1/poison/2"): each
// generation connects its own groups and keeps its own store keys, as the
// runtime's store prefix and rings are per generation.
std::string generation_key(std::uint32_t generation, std::string_view name);
// The generation of a generation_key() name.
std::uint32_t key_generation(const std::string& key);

class SimBackendFactory final : public BackendFactory {
 public:
  SimBackendFactory(CollectiveBoard& board, BackendStats& stats, std::uint32_t generation)
      : board_(board), stats_(stats), generation_(generation) {}
  std::unique_ptr<Backend> connect(Store& store, const BackendGroupSpec& spec) override;

 private:
  CollectiveBoard& board_;
  BackendStats& stats_;
  const std::uint32_t generation_;
};

}  // namespace lockstep::sim
