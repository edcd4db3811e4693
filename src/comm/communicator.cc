#include "lockstep/communicator.h"

#include <exception>
#include <string>

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

void Communicator::run_call(const CollectiveCall& call, auto&& backend_op) {
  owner_.check();
  const GateAdmission admission = gate_.admit(call);
  Backend& backend = *backends_[admission.group_index];
  gate_.report(call, admission.seq, CollectiveState::kStarted);
  try {
    backend_op(backend);
  } catch (const Error& error) {
    // Crash-only: a failed backend is never used again, nor is any other.
    gate_.mark_aborted();
    gate_.report(call, admission.seq, CollectiveState::kFailed, error.code(), error.what());
    throw;
  } catch (const std::exception& error) {
    gate_.mark_aborted();
    gate_.report(call, admission.seq, CollectiveState::kFailed, ErrorCode::kBackend, error.what());
    throw;
  }
  gate_.report(call, admission.seq, CollectiveState::kCompleted);
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

std::optional<int> Communicator::group_rank_of(std::string_view group, int global_rank) const {
  return groups_.group_rank(group, global_rank);
}

std::vector<std::string_view> Communicator::member_groups() const { return gate_.member_groups(); }

LedgerSnapshot Communicator::ledger_snapshot(std::string_view group) const {
  return gate_.ledger_snapshot(group);
}

}  // namespace lockstep
