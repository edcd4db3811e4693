// The safety oracle: ground truth the simulator keeps beside the protocol
// (what was sent with which epoch, what each mesh rank's state really was)
// and the checks of SPEC §7 against it. It never feeds anything back into
// the protocol, so a protocol bug cannot hide from it.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace lockstep::sim {

class Oracle {
 public:
  explicit Oracle(int mesh_size) : mesh_size_(mesh_size) {}

  // Stage 0 of `generation` sent INFER call_id for `chunk` in `epoch`; a
  // correct mesh answers with output bytes whose digest is expected_output_digest.
  void on_sent(std::uint32_t generation, std::uint64_t call_id, std::uint64_t chunk, std::uint64_t epoch,
               std::uint64_t expected_output_digest);
  // Stage 0's acceptance released a result (of result_epoch) in current_epoch.
  void on_accepted(std::uint32_t generation, std::uint64_t call_id, std::uint64_t result_epoch,
                   std::uint64_t current_epoch);
  // Stage 0 emitted a decoded chunk.
  void on_emitted(std::uint32_t generation, std::uint64_t call_id, std::uint64_t chunk, std::uint64_t epoch,
                  std::uint64_t current_epoch, std::uint64_t output_digest);
  // A mesh rank finished call_id's chunk with this real KV-state and mesh
  // ledger digest (read from its cache and communicator, not from the wire).
  void on_chunk_state(std::uint32_t generation, int rank, std::uint64_t call_id, std::uint64_t kv_digest,
                      std::uint64_t ledger_digest);
  // A rank decoded a frame without an error; sender_generation is the
  // ground truth the network kept (the protocol never sees it).
  void on_frame_accepted(int rank, std::uint32_t generation, std::uint32_t sender_generation, std::uint64_t call_id);
  // A frame the network corrupted decoded without an error.
  void on_corrupt_accepted(int rank, std::uint64_t call_id);
  // A simulated backend was called after its abort (the Communicator must refuse first).
  void on_backend_after_abort(const std::string& first_call);
  // Stage 0 of `generation` completed cleanly in final_epoch; the job streams `chunks`.
  void on_completed(std::uint32_t generation, std::uint64_t chunks, std::uint64_t final_epoch);

  bool violated() const noexcept { return !violation_.empty(); }
  const std::string& violation() const noexcept { return violation_; }
  // (chunk, output digest) in emit order.
  const std::vector<std::pair<std::uint64_t, std::uint64_t>>& emitted() const noexcept { return emitted_; }

 private:
  using CallKey = std::pair<std::uint32_t, std::uint64_t>;  // (generation, call_id): ids restart per generation
  struct Sent {
    std::uint64_t chunk;
    std::uint64_t epoch;
    std::uint64_t expected_output_digest;
  };
  struct RankState {
    std::uint64_t kv_digest;
    std::uint64_t ledger_digest;
  };
  void violate(const std::string& what);
  void check_mesh_agreement(const CallKey& key);

  const int mesh_size_;
  std::map<CallKey, Sent> sent_;
  std::map<CallKey, std::map<int, RankState>> states_;  // → rank → state
  std::set<std::uint64_t> emitted_chunks_;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> emitted_;
  std::string violation_;  // the first one
};

}  // namespace lockstep::sim
