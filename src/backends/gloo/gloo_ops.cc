#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/transport/unbound_buffer.h>

#include <limits>

#include "backends/gloo/errors.h"
#include "backends/gloo/gloo_backend_impl.h"
#include "backends/gloo/reduce.h"
#include "lockstep/error.h"

namespace lockstep::gloo_detail {

GlooBackend::GlooBackend(std::string group_name, std::shared_ptr<gloo::Context> context)
    : group_name_(std::move(group_name)), context_(std::move(context)) {}

std::string GlooBackend::where(std::string_view op) const {
  return "gloo group '" + group_name_ + "' rank " + std::to_string(rank()) + "/" +
         std::to_string(size()) + " " + std::string(op);
}

template <typename Body>
void GlooBackend::run(std::string_view op, Body&& body) {
  if (aborted_.load(std::memory_order_acquire)) {
    throw Error(ErrorCode::kAborted,
                where(op) + ": refused, the backend is no longer usable (" +
                    (first_failure_.empty() ? std::string("aborted") : "after: " + first_failure_) + ")");
  }
  try {
    body();
  } catch (...) {
    // Crash-only: whatever failed, the context's pairs may hold half a message.
    aborted_.store(true, std::memory_order_release);
    Error error = map_gloo_failure(std::current_exception(), where(op));
    first_failure_ = error.what();
    throw error;
  }
}

void GlooBackend::check_rank(std::string_view op, std::string_view what, int group_rank) const {
  const bool self_peer = what == "peer" && group_rank == rank();
  if (group_rank < 0 || group_rank >= size() || self_peer) {
    throw Error(ErrorCode::kInvalidArgument, where(op) + ": " + std::string(what) + " " +
                                                 std::to_string(group_rank) +
                                                 (self_peer ? " is this rank" : " is not a group rank"));
  }
}

std::size_t GlooBackend::checked_bytes(std::string_view op, const void* data, std::size_t count,
                                       DType dtype, std::chrono::milliseconds timeout) const {
  if (timeout.count() <= 0) {
    throw Error(ErrorCode::kInvalidArgument, where(op) + ": timeout must be > 0 ms");
  }
  const std::size_t element_bytes = dtype_size_bytes(dtype);
  if (count > std::numeric_limits<std::size_t>::max() / element_bytes / static_cast<std::size_t>(size())) {
    throw Error(ErrorCode::kInvalidArgument, where(op) + ": count " + std::to_string(count) + " overflows");
  }
  if (data == nullptr && count > 0) {
    throw Error(ErrorCode::kInvalidArgument, where(op) + ": null buffer for " + std::to_string(count) + " elements");
  }
  return count * element_bytes;
}

void GlooBackend::broadcast(void* data, std::size_t count, DType dtype, int root,
                            std::chrono::milliseconds timeout) {
  run("broadcast", [&] {
    const std::uint32_t tag = next_collective_tag_++;
    const std::size_t bytes = checked_bytes("broadcast", data, count, dtype, timeout);
    check_rank("broadcast", "root", root);
    gloo::BroadcastOptions options(context_);
    options.setOutput(static_cast<std::uint8_t*>(data), bytes);
    options.setRoot(root);
    options.setTag(tag);
    options.setTimeout(timeout);
    gloo::broadcast(options);
  });
}

void GlooBackend::all_reduce(void* data, std::size_t count, DType dtype, ReduceOp op,
                             std::chrono::milliseconds timeout) {
  run("all_reduce", [&] {
    const std::uint32_t tag = next_collective_tag_++;
    const std::size_t bytes = checked_bytes("all_reduce", data, count, dtype, timeout);
    gloo::AllreduceOptions options(context_);
    configure_all_reduce(options, context_->createUnboundBuffer(data, bytes), dtype, op);
    options.setTag(tag);
    options.setTimeout(timeout);
    gloo::allreduce(options);
  });
}

void GlooBackend::all_gather(const void* in, void* out, std::size_t count, DType dtype,
                             std::chrono::milliseconds timeout) {
  run("all_gather", [&] {
    const std::uint32_t tag = next_collective_tag_++;
    const std::size_t bytes = checked_bytes("all_gather", in, count, dtype, timeout);
    checked_bytes("all_gather", out, count, dtype, timeout);
    gloo::AllgatherOptions options(context_);
    // Gloo never writes through the input buffer; its API just lacks const.
    options.setInput(static_cast<std::uint8_t*>(const_cast<void*>(in)), bytes);
    options.setOutput(static_cast<std::uint8_t*>(out), bytes * static_cast<std::size_t>(size()));
    options.setTag(tag);
    options.setTimeout(timeout);
    gloo::allgather(options);
  });
}

void GlooBackend::barrier(std::chrono::milliseconds timeout) {
  run("barrier", [&] {
    const std::uint32_t tag = next_collective_tag_++;
    checked_bytes("barrier", nullptr, 0, DType::kU8, timeout);
    gloo::BarrierOptions options(context_);
    options.setTag(tag);
    options.setTimeout(timeout);
    gloo::barrier(options);
  });
}

// Point-to-point slots are the caller's tag as is: collectives' slots carry a
// non-zero Gloo prefix byte above bit 56, so the two never collide.
void GlooBackend::send(const void* data, std::size_t size_bytes, int peer, std::uint32_t tag,
                       std::chrono::milliseconds timeout) {
  run("send", [&] {
    checked_bytes("send", data, size_bytes, DType::kU8, timeout);
    check_rank("send", "peer", peer);
    auto buffer = context_->createUnboundBuffer(const_cast<void*>(data), size_bytes);
    buffer->send(peer, tag);
    wait_p2p(/*sending=*/true, *buffer, timeout);
  });
}

void GlooBackend::recv(void* data, std::size_t size_bytes, int peer, std::uint32_t tag,
                       std::chrono::milliseconds timeout) {
  run("recv", [&] {
    checked_bytes("recv", data, size_bytes, DType::kU8, timeout);
    check_rank("recv", "peer", peer);
    auto buffer = context_->createUnboundBuffer(data, size_bytes);
    buffer->recv(peer, tag);
    wait_p2p(/*sending=*/false, *buffer, timeout);
  });
}

void GlooBackend::wait_p2p(bool sending, gloo::transport::UnboundBuffer& buffer,
                           std::chrono::milliseconds timeout) {
  const std::string_view op = sending ? "send" : "recv";
  {
    // Registering under the lock, after re-reading the flag, closes the race
    // with an abort() that lands between run()'s check and this wait.
    std::lock_guard lock(p2p_mutex_);
    if (aborted_.load(std::memory_order_acquire)) {
      throw Error(ErrorCode::kAborted, where(op) + ": aborted before the wait");
    }
    p2p_waiting_ = &buffer;
  }
  struct Unregister {
    GlooBackend& self;
    ~Unregister() {
      std::lock_guard lock(self.p2p_mutex_);
      self.p2p_waiting_ = nullptr;
    }
  } unregister{*this};
  const bool completed = sending ? buffer.waitSend(timeout) : buffer.waitRecv(timeout);
  if (!completed) throw Error(ErrorCode::kAborted, where(op) + ": aborted while waiting");
}

void GlooBackend::abort() {
  aborted_.store(true, std::memory_order_release);
  std::lock_guard lock(p2p_mutex_);
  if (p2p_waiting_ == nullptr) return;
  p2p_waiting_->abortWaitSend();
  p2p_waiting_->abortWaitRecv();
}

}  // namespace lockstep::gloo_detail
