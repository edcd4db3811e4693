// Test doubles for comm's unit tests: a Backend that records what reached it
// (so a test can assert a rejected call never did), a factory that hands them
// out, and a Store that is never used by them.
#pragma once

#include <algorithm>
#include <atomic>
#include <deque>
#include <tuple>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lockstep/backend.h"
#include "lockstep/error.h"

namespace lockstep::test {

struct RecordedCall {
  std::string group;
  std::string op;
  int root_or_peer = -1;
  std::size_t size = 0;  // elements for collectives, bytes for p2p
};

// Byte messages per (group, src group rank, dst group rank), so a writer's
// backend and a reader's backend of one group can talk in one thread.
using Mailboxes = std::map<std::tuple<std::string, int, int>, std::deque<std::vector<std::uint8_t>>>;

// A stream-ordered call's completion, set by the test.
struct ManualCompletion {
  std::atomic<CompletionProbe::State> state{CompletionProbe::State::kPending};
  int polls = 0;
};

class ManualProbe final : public CompletionProbe {
 public:
  explicit ManualProbe(std::shared_ptr<ManualCompletion> completion) : completion_(std::move(completion)) {}
  State poll(std::string& error) override {
    ++completion_->polls;
    const State state = completion_->state.load();
    if (state == State::kFailed) error = "manual failure";
    return state;
  }

 private:
  std::shared_ptr<ManualCompletion> completion_;
};

class RecordingBackend final : public Backend {
 public:
  RecordingBackend(std::string group, int rank, int size, std::vector<RecordedCall>& log,
                   Mailboxes& mailboxes)
      : group_(std::move(group)), rank_(rank), size_(size), log_(log), mailboxes_(mailboxes) {}

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "recording"; }
  MemoryKind memory_kind() const override { return MemoryKind::kHost; }

  void broadcast(void*, std::size_t count, DType, int root, std::chrono::milliseconds) override {
    enter("broadcast", root, count);
  }
  void all_reduce(void*, std::size_t count, DType, ReduceOp, std::chrono::milliseconds) override {
    enter("all_reduce", -1, count);
  }
  void all_gather(const void*, void*, std::size_t count, DType, std::chrono::milliseconds) override {
    enter("all_gather", -1, count);
  }
  void barrier(std::chrono::milliseconds) override { enter("barrier", -1, 0); }
  void send(const void* data, std::size_t size_bytes, int peer, std::uint32_t,
            std::chrono::milliseconds) override {
    enter("send", peer, size_bytes);
    const auto* bytes = static_cast<const std::uint8_t*>(data);
    mailboxes_[{group_, rank_, peer}].emplace_back(bytes, bytes + size_bytes);
  }
  void recv(void* data, std::size_t size_bytes, int peer, std::uint32_t,
            std::chrono::milliseconds) override {
    enter("recv", peer, size_bytes);
    auto& box = mailboxes_[{group_, peer, rank_}];
    if (box.empty()) throw Error(ErrorCode::kTimeout, "recording backend: nothing to recv");
    if (box.front().size() != size_bytes) throw Error(ErrorCode::kBackend, "recording backend: size mismatch");
    std::copy(box.front().begin(), box.front().end(), static_cast<std::uint8_t*>(data));
    box.pop_front();
  }
  void abort() override { ++abort_calls; broken_ = true; }

  // Stream-ordered when `streamed`: each enqueue or marker hands out a probe
  // over a fresh completion (kept in `completions`), or none while
  // `capturing` (as a backend whose stream is being captured).
  bool stream_ordered() const override { return streamed; }
  std::unique_ptr<CompletionProbe> enqueue_all_reduce(void*, std::size_t count, DType, ReduceOp,
                                                      std::chrono::milliseconds) override {
    enter(capturing ? "all_reduce(captured)" : "all_reduce(enqueued)", -1, count);
    return probe();
  }
  std::unique_ptr<CompletionProbe> enqueue_marker() override {
    enter("marker", -1, 0);
    return probe();
  }

  bool streamed = false;
  bool capturing = false;
  std::vector<std::shared_ptr<ManualCompletion>> completions;

  // The next call throws this code (then the backend is broken, as in Gloo).
  std::optional<ErrorCode> fail_next;
  int abort_calls = 0;

 private:
  void enter(const char* op, int root_or_peer, std::size_t size) {
    log_.push_back({group_, op, root_or_peer, size});
    if (broken_) throw Error(ErrorCode::kAborted, "recording backend: broken");
    if (fail_next) {
      broken_ = true;
      throw Error(*fail_next, std::string("recording backend: injected failure in ") + op);
    }
  }

  std::unique_ptr<CompletionProbe> probe() {
    if (capturing) return nullptr;
    completions.push_back(std::make_shared<ManualCompletion>());
    return std::make_unique<ManualProbe>(completions.back());
  }

  std::string group_;
  int rank_;
  int size_;
  std::vector<RecordedCall>& log_;
  Mailboxes& mailboxes_;
  bool broken_ = false;
};

class RecordingFactory final : public BackendFactory {
 public:
  std::unique_ptr<Backend> connect(Store&, const BackendGroupSpec& spec) override {
    connected.push_back(spec.group_name);
    int rank = 0;
    while (spec.member_ranks[rank] != spec.global_rank) ++rank;
    auto backend = std::make_unique<RecordingBackend>(spec.group_name, rank,
                                                      static_cast<int>(spec.member_ranks.size()), log,
                                                      mailboxes);
    backends[spec.group_name] = backend.get();
    return backend;
  }

  std::vector<std::string> connected;  // group names in connect order
  std::vector<RecordedCall> log;       // every call that reached any backend
  std::map<std::string, RecordingBackend*> backends;
  Mailboxes mailboxes;
};

// The recording factory never touches the store.
class UnusedStore final : public Store {
 public:
  void set(const std::string&, const Bytes&) override { throw Error(ErrorCode::kInternal, "unused"); }
  Bytes get(const std::string&, std::chrono::milliseconds) override {
    throw Error(ErrorCode::kInternal, "unused");
  }
  bool check(const std::vector<std::string>&) override { return false; }
  std::string describe() const override { return "unused"; }
};

}  // namespace lockstep::test
