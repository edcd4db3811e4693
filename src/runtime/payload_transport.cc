#include "payload_transport.h"

#include "lockstep/error.h"

namespace lockstep {
namespace {

// Gloo matches p2p messages by tag: one tag per (call, tensor), so a payload
// can never be matched with another call's receive, even when a resend or a
// reorder is in play. NCCL (device memory) has no tags and matches in FIFO
// order per peer: the pull protocol keeps at most one payload in flight each
// way across the boundary (control.h), so there the order is the match.
std::uint32_t payload_tag(const Communicator& comm, std::string_view group, std::uint64_t call_id,
                          std::size_t position) {
  if (comm.memory_kind(group) == MemoryKind::kDevice) return 0;
  return static_cast<std::uint32_t>(((call_id & 0x0fffffffu) << 4) | (position & 0xfu));
}

std::size_t element_count(const TensorSpec& spec) {
  return static_cast<std::size_t>(spec.size_bytes / dtype_size_bytes(spec.dtype));
}

}  // namespace

void send_payload(Communicator& comm, std::string_view group, int peer, const TensorManifest& manifest,
                  std::span<const std::span<const std::uint8_t>> payload, std::uint64_t call_id,
                  std::chrono::milliseconds timeout) {
  if (payload.size() != manifest.size()) {
    throw Error(ErrorCode::kInternal, "payload has " + std::to_string(payload.size()) +
                                          " tensors, manifest " + std::to_string(manifest.size()));
  }
  for (std::size_t i = 0; i < manifest.size(); ++i) {
    comm.send(group, payload[i].data(), element_count(manifest[i]), manifest[i].dtype, peer,
              payload_tag(comm, group, call_id, i), timeout);
  }
}

PayloadBuffers recv_payload(Communicator& comm, std::string_view group, int peer,
                            const TensorManifest& manifest, std::uint64_t call_id, PayloadMemory& memory,
                            std::chrono::milliseconds timeout) {
  PayloadBuffers buffers = allocate_payload(manifest, memory);
  for (std::size_t i = 0; i < manifest.size(); ++i) {
    comm.recv(group, buffers.tensor(i).data(), element_count(manifest[i]), manifest[i].dtype, peer,
              payload_tag(comm, group, call_id, i), timeout);
  }
  return buffers;
}

void broadcast_payload(Communicator& comm, std::string_view group, int root,
                       const TensorManifest& manifest, PayloadBuffers& buffers, PayloadMemory& memory,
                       std::chrono::milliseconds timeout) {
  if (comm.group_rank(group) != root) buffers = allocate_payload(manifest, memory);
  for (std::size_t i = 0; i < manifest.size(); ++i) {
    comm.broadcast(group, buffers.tensor(i).data(), element_count(manifest[i]), manifest[i].dtype,
                   root, timeout);
  }
}

PayloadBuffers copy_payload(const TensorManifest& manifest,
                            std::span<const std::span<const std::uint8_t>> payload, PayloadMemory& memory) {
  PayloadBuffers buffers = allocate_payload(manifest, memory);
  for (std::size_t i = 0; i < manifest.size(); ++i) {
    memory.copy(buffers.tensor(i).data(), payload[i].data(), payload[i].size());
  }
  return buffers;
}

}  // namespace lockstep

namespace lockstep {

std::span<const float> payload_floats(const TensorManifest& manifest, const PayloadBuffers& payload,
                                      std::string_view key) {
  for (std::size_t i = 0; i < manifest.size(); ++i) {
    if (manifest[i].key != key || manifest[i].index != 0) continue;
    if (manifest[i].dtype != DType::kF32) {
      throw Error(ErrorCode::kSchema, tensor_label(key, 0) + " must be f32, got " +
                                          std::string(dtype_name(manifest[i].dtype)));
    }
    const std::span<std::uint8_t> bytes = payload.tensor(i);
    return {reinterpret_cast<const float*>(bytes.data()), bytes.size() / sizeof(float)};
  }
  return {};
}

}  // namespace lockstep
