#include "sim/sim_oracle.h"

#include "lockstep/digest.h"

namespace lockstep::sim {
namespace {

std::string ids_text(std::uint32_t generation, std::uint64_t call_id, std::uint64_t chunk, std::uint64_t epoch) {
  return "call_id " + std::to_string(call_id) + " (generation " + std::to_string(generation) + ", chunk " +
         std::to_string(chunk) + ", epoch " + std::to_string(epoch) + ")";
}

}  // namespace

void Oracle::violate(const std::string& what) {
  if (violation_.empty()) violation_ = what;
}

void Oracle::on_sent(std::uint32_t generation, std::uint64_t call_id, std::uint64_t chunk, std::uint64_t epoch,
                     std::uint64_t expected_output_digest) {
  if (!sent_.emplace(CallKey{generation, call_id}, Sent{chunk, epoch, expected_output_digest}).second) {
    violate("Stage 0 of generation " + std::to_string(generation) + " sent call_id " + std::to_string(call_id) +
            " twice as INFER");
  }
}

void Oracle::on_accepted(std::uint32_t generation, std::uint64_t call_id, std::uint64_t result_epoch,
                         std::uint64_t current_epoch) {
  if (result_epoch != current_epoch) {
    violate("stale accept: Stage 0 accepted the result of call_id " + std::to_string(call_id) + " from epoch " +
            std::to_string(result_epoch) + " while in epoch " + std::to_string(current_epoch));
  }
  const auto it = sent_.find({generation, call_id});
  if (it == sent_.end() || it->second.epoch != result_epoch) {
    violate("Stage 0 of generation " + std::to_string(generation) + " accepted call_id " + std::to_string(call_id) +
            " of epoch " + std::to_string(result_epoch) + ", which it never sent in that epoch");
  }
}

void Oracle::on_emitted(std::uint32_t generation, std::uint64_t call_id, std::uint64_t chunk, std::uint64_t epoch,
                        std::uint64_t current_epoch, std::uint64_t output_digest) {
  emitted_.emplace_back(chunk, output_digest);
  const auto it = sent_.find({generation, call_id});
  if (it == sent_.end() || it->second.chunk != chunk || it->second.epoch != epoch) {
    violate("emitted " + ids_text(generation, call_id, chunk, epoch) +
            " does not match what Stage 0 sent under that call_id");
    return;
  }
  if (epoch != current_epoch) {
    violate("stale emit: " + ids_text(generation, call_id, chunk, epoch) + " emitted in epoch " +
            std::to_string(current_epoch));
  }
  if (!emitted_chunks_.empty() && chunk <= *emitted_chunks_.rbegin()) {
    violate("duplicate or out-of-order emit: " + ids_text(generation, call_id, chunk, epoch) + " after chunk " +
            std::to_string(*emitted_chunks_.rbegin()));
  }
  emitted_chunks_.insert(chunk);
  if (output_digest != it->second.expected_output_digest) {
    violate("emitted " + ids_text(generation, call_id, chunk, epoch) + " carries output " + digest_hex(output_digest) +
            ", not the output of its own envelope " + digest_hex(it->second.expected_output_digest));
  }
  check_mesh_agreement({generation, call_id});
}

void Oracle::check_mesh_agreement(const CallKey& key) {
  const std::string call = "call_id " + std::to_string(key.second) + " of generation " + std::to_string(key.first);
  const auto it = states_.find(key);
  if (it == states_.end() || static_cast<int>(it->second.size()) != mesh_size_) {
    violate("emitted " + call + " although not every mesh rank finished its chunk");
    return;
  }
  const RankState& first = it->second.begin()->second;
  for (const auto& [rank, state] : it->second) {
    if (state.kv_digest != first.kv_digest || state.ledger_digest != first.ledger_digest) {
      violate("emitted " + call + " while mesh rank " + std::to_string(rank) +
              " diverged: kv " + digest_hex(state.kv_digest) + " vs " + digest_hex(first.kv_digest) + ", ledger " +
              digest_hex(state.ledger_digest) + " vs " + digest_hex(first.ledger_digest));
    }
  }
}

void Oracle::on_chunk_state(std::uint32_t generation, int rank, std::uint64_t call_id, std::uint64_t kv_digest,
                            std::uint64_t ledger_digest) {
  if (!states_[{generation, call_id}].emplace(rank, RankState{kv_digest, ledger_digest}).second) {
    violate("mesh rank " + std::to_string(rank) + " of generation " + std::to_string(generation) + " applied call_id " +
            std::to_string(call_id) + " twice");
  }
}

void Oracle::on_frame_accepted(int rank, std::uint32_t generation, std::uint32_t sender_generation,
                               std::uint64_t call_id) {
  if (generation != sender_generation) {
    violate("rank " + std::to_string(rank) + " of generation " + std::to_string(generation) +
            " accepted a frame (call_id " + std::to_string(call_id) + ") sent by a process of generation " +
            std::to_string(sender_generation));
  }
}

void Oracle::on_corrupt_accepted(int rank, std::uint64_t call_id) {
  violate("rank " + std::to_string(rank) + " accepted a corrupted frame (call_id " + std::to_string(call_id) + ")");
}

void Oracle::on_backend_after_abort(const std::string& first_call) {
  violate("backend call after abort: " + first_call);
}

// Every chunk of the job was sent at least once (a recovery sends again the
// chunks it discarded), and every chunk of the final epoch was emitted.
void Oracle::on_completed(std::uint32_t generation, std::uint64_t chunks, std::uint64_t final_epoch) {
  std::set<std::uint64_t> streamed;
  for (const auto& [key, sent] : sent_) {
    streamed.insert(sent.chunk);
    if (key.first == generation && sent.epoch == final_epoch && !emitted_chunks_.contains(sent.chunk)) {
      violate("completed run lost " + ids_text(key.first, key.second, sent.chunk, sent.epoch) + " of the final epoch");
    }
  }
  if (streamed.size() != chunks) {
    violate("completed run streamed " + std::to_string(streamed.size()) + " of " + std::to_string(chunks) + " chunks");
  }
}

}  // namespace lockstep::sim
