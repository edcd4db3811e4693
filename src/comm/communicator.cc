#include "lockstep/communicator.h"

#include <algorithm>
#include <exception>
#include <string>
#include <utility>

#include "lockstep/assert.h"
#include "lockstep/error.h"

namespace lockstep {

Communicator::Communicator(CommunicatorOptions options, BackendFactory& factory, Store& store,
                           CollectiveObserver* observer)
    : groups_(std::move(options.groups)),
      owner_("communicator of rank " + std::to_string(options.global_rank)),
      gate_(options.global_rank, groups_.world_size(), std::move(options.policy), options.initial_phase,
            observer) {
  const int global_rank = gate_.global_rank();
  for (const GroupSpec& spec : groups_.groups()) {
    gate_.add_group(spec.name, spec.member_ranks);
    const std::optional<int> group_rank = groups_.group_rank(spec.name, global_rank);
    if (!group_rank) {
      backends_.emplace_back();
      continue;
    }
    BackendGroupSpec backend_spec{spec.name, spec.member_ranks, global_rank, options.connect_timeout};
    std::unique_ptr<Backend> backend = factory.connect(store, backend_spec);
    LOCKSTEP_ASSERT(backend != nullptr);
    LOCKSTEP_ASSERT(backend->rank() == *group_rank);
    LOCKSTEP_ASSERT(backend->size() == static_cast<int>(spec.member_ranks.size()));
    backends_.push_back(std::move(backend));
  }
}

Communicator::~Communicator() = default;

namespace {

// The code and text of the exception in flight (inside a catch).
std::pair<ErrorCode, std::string> current_error() {
  try {
    throw;
  } catch (const Error& error) {
    return {error.code(), error.what()};
  } catch (const std::exception& error) {
    return {ErrorCode::kBackend, error.what()};
  } catch (...) {
    return {ErrorCode::kInternal, "unknown exception"};
  }
}

}  // namespace

void Communicator::fail_admitted(const CollectiveCall& call, std::uint64_t seq) {
  // Crash-only: a failed backend is never used again, nor is any other.
  gate_.mark_aborted();
  const auto [code, message] = current_error();
  gate_.report(call, seq, CollectiveState::kFailed, code, message);
  throw;
}

void Communicator::run_call(const CollectiveCall& call, auto&& backend_op) {
  owner_.check();
  const GateAdmission admission = gate_.admit(call);
  Backend& backend = *backends_[admission.group_index];
  gate_.report(call, admission.seq, CollectiveState::kStarted);
  try {
    backend_op(backend);
  } catch (...) {
    fail_admitted(call, admission.seq);
  }
  gate_.report(call, admission.seq, CollectiveState::kCompleted);
}

void Communicator::track(const CollectiveCall& call, const GateAdmission& admission,
                         std::unique_ptr<CompletionProbe> probe) {
  try {
    sink_->track(admission.group_index, gate_.event_of(call, admission.seq, CollectiveState::kEnqueued),
                 std::move(probe), call.timeout);
  } catch (...) {
    fail_admitted(call, admission.seq);
  }
}

void Communicator::set_completion_sink(CompletionSink* sink) {
  owner_.check();
  sink_ = sink;
}

Backend* Communicator::member_backend(std::string_view group) const {
  const GroupSpec* spec = groups_.find(group);
  if (spec == nullptr) return nullptr;
  return backends_[static_cast<std::size_t>(spec - groups_.groups().data())].get();
}

void Communicator::all_reduce_enqueue(std::string_view group, void* data, std::size_t count, DType dtype,
                                      ReduceOp reduce, std::chrono::milliseconds timeout) {
  owner_.check();
  CollectiveCall call{group, CollectiveOp::kAllReduce, dtype, count, kNoRootOrPeer, timeout, data, data};
  Backend* backend = member_backend(group);
  if (backend == nullptr) {
    gate_.admit(call);  // a non-member's call: the gate rejects it (B1) and reports it
    LOCKSTEP_ASSERT(false);
  }
  if (!backend->stream_ordered()) {
    throw Error(ErrorCode::kInvalidArgument, "all_reduce_enqueue on group '" + std::string(group) + "': its " +
                                                 backend->name() + " backend has no stream");
  }
  if (sink_ == nullptr) {
    throw Error(ErrorCode::kInvalidArgument, "all_reduce_enqueue on group '" + std::string(group) +
                                                 "' before set_completion_sink(): nothing would watch it");
  }
  if (capturing_) {
    // Nothing runs now: the checks and the ledger entry come with each replay.
    if (captured_.size() >= kCapturedCallsMax) {
      throw Error(ErrorCode::kLimit, "graph capture holds more than " + std::to_string(kCapturedCallsMax) +
                                         " collectives");
    }
    std::unique_ptr<CompletionProbe> probe;
    try {
      probe = backend->enqueue_all_reduce(data, count, dtype, reduce, timeout);
    } catch (...) {
      gate_.mark_aborted();  // crash-only, as after any backend failure
      throw;
    }
    if (probe != nullptr) {
      gate_.mark_aborted();  // it ran, unledgered: this rank's ledger no longer tells what it did
      throw Error(ErrorCode::kInvalidArgument, "all_reduce_enqueue on group '" + std::string(group) +
                                                   "' between begin_capture() and end_capture() ran eagerly: "
                                                   "the backend's stream is not being captured");
    }
    call.group = groups_.find(group)->name;  // outlives the caller's view
    captured_.push_back({call, reduce});
    return;
  }
  const GateAdmission admission = gate_.admit(call);
  std::unique_ptr<CompletionProbe> probe;
  try {
    probe = backend->enqueue_all_reduce(data, count, dtype, reduce, timeout);
    if (probe == nullptr) {
      throw Error(ErrorCode::kInvalidArgument, "all_reduce_enqueue on group '" + std::string(group) +
                                                   "' was captured into a CUDA graph outside begin_capture()");
    }
  } catch (...) {
    fail_admitted(call, admission.seq);
  }
  track(call, admission, std::move(probe));
}

void Communicator::begin_capture() {
  owner_.check();
  if (capturing_) throw Error(ErrorCode::kInvalidArgument, "begin_capture() while already capturing");
  capturing_ = true;
  captured_.clear();
}

std::vector<Communicator::CapturedCall> Communicator::end_capture() {
  owner_.check();
  if (!capturing_) throw Error(ErrorCode::kInvalidArgument, "end_capture() without begin_capture()");
  capturing_ = false;
  return std::exchange(captured_, {});
}

void Communicator::replay(const std::vector<CapturedCall>& calls, const std::function<void()>& launch) {
  owner_.check();
  if (capturing_) throw Error(ErrorCode::kInvalidArgument, "replay() while capturing");
  if (!calls.empty() && sink_ == nullptr) {
    throw Error(ErrorCode::kInvalidArgument, "replay() before set_completion_sink(): nothing would watch it");
  }
  std::vector<GateAdmission> admissions;
  admissions.reserve(calls.size());
  std::size_t tracked = 0;
  try {
    // Every check before anything runs; a refused call leaves the graph unlaunched.
    for (const CapturedCall& captured : calls) admissions.push_back(gate_.admit(captured.call));
    // The graph uses the communicators of its groups: launch it while none
    // of them can be aborted under it (each backend's enqueue_with nests).
    std::vector<Backend*> used;
    for (const GateAdmission& admission : admissions) {
      Backend* backend = backends_[admission.group_index].get();
      if (std::find(used.begin(), used.end(), backend) == used.end()) used.push_back(backend);
    }
    std::function<void()> guarded_launch = launch;
    for (Backend* backend : used) {
      guarded_launch = [backend, inner = std::move(guarded_launch)] { backend->enqueue_with(inner); };
    }
    guarded_launch();
    std::vector<std::shared_ptr<CompletionProbe>> markers(backends_.size());
    for (const GateAdmission& admission : admissions) {
      std::shared_ptr<CompletionProbe>& marker = markers[admission.group_index];
      if (marker == nullptr) marker = backends_[admission.group_index]->enqueue_marker();
    }
    for (; tracked < calls.size(); ++tracked) {
      sink_->track(admissions[tracked].group_index,
                   gate_.event_of(calls[tracked].call, admissions[tracked].seq, CollectiveState::kEnqueued),
                   std::make_unique<SharedProbe>(markers[admissions[tracked].group_index]), calls[tracked].call.timeout);
    }
  } catch (...) {
    // Crash-only; every admitted call that nothing will watch is reported failed.
    gate_.mark_aborted();
    const auto [code, message] = current_error();
    for (std::size_t i = tracked; i < admissions.size(); ++i) {
      gate_.report(calls[i].call, admissions[i].seq, CollectiveState::kFailed, code, message);
    }
    throw;
  }
}

void Communicator::broadcast(std::string_view group, void* data, std::size_t count, DType dtype,
                             int root, std::chrono::milliseconds timeout) {
  const CollectiveCall call{group, CollectiveOp::kBroadcast, dtype, count, root, timeout, data, data};
  run_call(call, [&](Backend& backend) { backend.broadcast(data, count, dtype, root, timeout); });
}

void Communicator::all_reduce(std::string_view group, void* data, std::size_t count, DType dtype,
                              ReduceOp reduce, std::chrono::milliseconds timeout) {
  const CollectiveCall call{group, CollectiveOp::kAllReduce, dtype, count, kNoRootOrPeer, timeout, data, data};
  run_call(call, [&](Backend& backend) { backend.all_reduce(data, count, dtype, reduce, timeout); });
}

void Communicator::all_gather(std::string_view group, const void* in, void* out, std::size_t count,
                              DType dtype, std::chrono::milliseconds timeout) {
  const CollectiveCall call{group, CollectiveOp::kAllGather, dtype, count, kNoRootOrPeer, timeout, in, out};
  run_call(call, [&](Backend& backend) { backend.all_gather(in, out, count, dtype, timeout); });
}

void Communicator::barrier(std::string_view group, std::chrono::milliseconds timeout) {
  const CollectiveCall call{group, CollectiveOp::kBarrier, DType::kU8, 0, kNoRootOrPeer, timeout, nullptr, nullptr};
  run_call(call, [&](Backend& backend) { backend.barrier(timeout); });
}

void Communicator::send(std::string_view group, const void* data, std::size_t count, DType dtype,
                        int peer, std::uint32_t tag, std::chrono::milliseconds timeout) {
  const CollectiveCall call{group, CollectiveOp::kSend, dtype, count, peer, timeout, data, data};
  run_call(call, [&](Backend& backend) {
    backend.send(data, count * dtype_size_bytes(dtype), peer, tag, timeout);
  });
}

void Communicator::recv(std::string_view group, void* data, std::size_t count, DType dtype,
                        int peer, std::uint32_t tag, std::chrono::milliseconds timeout) {
  const CollectiveCall call{group, CollectiveOp::kRecv, dtype, count, peer, timeout, data, data};
  run_call(call, [&](Backend& backend) {
    backend.recv(data, count * dtype_size_bytes(dtype), peer, tag, timeout);
  });
}

void Communicator::set_phase(Phase phase) {
  owner_.check();
  gate_.set_phase(phase);
}

Phase Communicator::phase() const { return gate_.phase(); }

void Communicator::abort() noexcept {
  if (abort_requested_.exchange(true)) return;
  gate_.mark_aborted();
  for (const auto& backend : backends_) {
    if (backend == nullptr) continue;
    // Best effort on the fatal path: one backend failing to abort must not
    // stop the others; guard's hard-exit deadline covers a hang here.
    try {
      backend->abort();
    } catch (...) {
    }
  }
}

bool Communicator::aborted() const noexcept { return gate_.aborted(); }

std::optional<int> Communicator::group_rank(std::string_view group) const {
  return groups_.group_rank(group, gate_.global_rank());
}

std::optional<MemoryKind> Communicator::memory_kind(std::string_view group) const {
  const Backend* backend = member_backend(group);
  if (backend == nullptr) return std::nullopt;
  return backend->memory_kind();
}

std::optional<int> Communicator::group_rank_of(std::string_view group, int global_rank) const {
  return groups_.group_rank(group, global_rank);
}

std::vector<std::string_view> Communicator::member_groups() const { return gate_.member_groups(); }

LedgerSnapshot Communicator::ledger_snapshot(std::string_view group) const {
  return gate_.ledger_snapshot(group);
}

}  // namespace lockstep
