// The Gloo Backend behind GlooBackendFactory (gloo_backend.h): one connected
// gloo::Context per group, single-use after any error.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <gloo/context.h>
#include <gloo/transport/unbound_buffer.h>

#include "lockstep/backend.h"

namespace lockstep::gloo_detail {

class GlooBackend final : public Backend {
 public:
  // REQUIRES: context is fully connected (connectFullMesh returned).
  GlooBackend(std::string group_name, std::shared_ptr<gloo::Context> context);

  GlooBackend(const GlooBackend&) = delete;
  GlooBackend& operator=(const GlooBackend&) = delete;

  int rank() const override { return context_->rank; }
  int size() const override { return context_->size; }
  std::string name() const override { return "gloo"; }
  MemoryKind memory_kind() const override { return MemoryKind::kHost; }

  void broadcast(void* data, std::size_t count, DType dtype, int root,
                 std::chrono::milliseconds timeout) override;
  void all_reduce(void* data, std::size_t count, DType dtype, ReduceOp op,
                  std::chrono::milliseconds timeout) override;
  void all_gather(const void* in, void* out, std::size_t count, DType dtype,
                  std::chrono::milliseconds timeout) override;
  void barrier(std::chrono::milliseconds timeout) override;
  void send(const void* data, std::size_t size_bytes, int peer, std::uint32_t tag,
            std::chrono::milliseconds timeout) override;
  void recv(void* data, std::size_t size_bytes, int peer, std::uint32_t tag,
            std::chrono::milliseconds timeout) override;
  void abort() override;

 private:
  // Runs one operation: refuses it when broken, maps any failure (and marks
  // the backend broken for good).
  template <typename Body>
  void run(std::string_view op, Body&& body);

  std::string where(std::string_view op) const;
  // Throws Error{kInvalidArgument} for a timeout <= 0, a null buffer with a
  // non-zero size, or a byte count that overflows; returns the byte count.
  std::size_t checked_bytes(std::string_view op, const void* data, std::size_t count, DType dtype,
                            std::chrono::milliseconds timeout) const;
  // Throws Error{kInvalidArgument} for a root/peer outside the group or a
  // peer that is this rank.
  void check_rank(std::string_view op, std::string_view what, int group_rank) const;
  // Waits for one send or recv while abort() can end the wait at once.
  // Throws Error{kAborted} when it was (or had already been) aborted.
  void wait_p2p(bool sending, gloo::transport::UnboundBuffer& buffer,
                std::chrono::milliseconds timeout);

  const std::string group_name_;
  const std::shared_ptr<gloo::Context> context_;
  // Distinct tag per collective so a late message of one call can never be
  // matched by the next. Comm thread only.
  std::uint32_t next_collective_tag_ = 0;
  std::atomic<bool> aborted_{false};
  // The first failure, quoted by every later refusal. Comm thread only.
  std::string first_failure_;
  // The buffer a send/recv is waiting on: Gloo can abort an unbound buffer's
  // wait from another thread (not a collective's), so abort() does.
  std::mutex p2p_mutex_;
  gloo::transport::UnboundBuffer* p2p_waiting_ = nullptr;  // guarded by p2p_mutex_
};

}  // namespace lockstep::gloo_detail
