#include "sim/sim_oracle.h"

#include "lockstep/digest.h"

namespace lockstep::sim {
namespace {

std::string ids_text(std::uint64_t call_id, std::uint64_t chunk, std::uint64_t epoch) {
  return "call_id " + std::to_string(call_id) + " (chunk " + std::to_string(chunk) + ", epoch " +
         std::to_string(epoch) + ")";
}

}  // namespace

void Oracle::violate(const std::string& what) {
  if (violation_.empty()) violation_ = what;
}

void Oracle::on_sent(std::uint64_t call_id, std::uint64_t chunk, std::uint64_t epoch,
                     std::uint64_t expected_output_digest) {
  if (!sent_.emplace(call_id, Sent{chunk, epoch, expected_output_digest}).second) {
    violate("Stage 0 sent call_id " + std::to_string(call_id) + " twice as INFER");
  }
}

void Oracle::on_accepted(std::uint64_t call_id, std::uint64_t result_epoch, std::uint64_t current_epoch) {
  if (result_epoch != current_epoch) {
    violate("stale accept: Stage 0 accepted the result of call_id " + std::to_string(call_id) + " from epoch " +
            std::to_string(result_epoch) + " while in epoch " + std::to_string(current_epoch));
  }
  const auto it = sent_.find(call_id);
  if (it == sent_.end() || it->second.epoch != result_epoch) {
    violate("Stage 0 accepted call_id " + std::to_string(call_id) + " of epoch " + std::to_string(result_epoch) +
            ", which it never sent in that epoch");
  }
}

void Oracle::on_emitted(std::uint64_t call_id, std::uint64_t chunk, std::uint64_t epoch, std::uint64_t current_epoch,
                        std::uint64_t output_digest) {
  emitted_.emplace_back(chunk, output_digest);
  const auto it = sent_.find(call_id);
  if (it == sent_.end() || it->second.chunk != chunk || it->second.epoch != epoch) {
    violate("emitted " + ids_text(call_id, chunk, epoch) + " does not match what Stage 0 sent under that call_id");
    return;
  }
  if (epoch != current_epoch) {
    violate("stale emit: " + ids_text(call_id, chunk, epoch) + " emitted in epoch " + std::to_string(current_epoch));
  }
  if (!emitted_chunks_.empty() && chunk <= *emitted_chunks_.rbegin()) {
    violate("duplicate or out-of-order emit: " + ids_text(call_id, chunk, epoch) + " after chunk " +
            std::to_string(*emitted_chunks_.rbegin()));
  }
  emitted_chunks_.insert(chunk);
  if (output_digest != it->second.expected_output_digest) {
    violate("emitted " + ids_text(call_id, chunk, epoch) + " carries output " + digest_hex(output_digest) +
            ", not the output of its own envelope " + digest_hex(it->second.expected_output_digest));
  }
  check_mesh_agreement(call_id);
}

void Oracle::check_mesh_agreement(std::uint64_t call_id) {
  const auto it = states_.find(call_id);
  if (it == states_.end() || static_cast<int>(it->second.size()) != mesh_size_) {
    violate("emitted call_id " + std::to_string(call_id) + " although not every mesh rank finished its chunk");
    return;
  }
  const RankState& first = it->second.begin()->second;
  for (const auto& [rank, state] : it->second) {
    if (state.kv_digest != first.kv_digest || state.ledger_digest != first.ledger_digest) {
      violate("emitted call_id " + std::to_string(call_id) + " while mesh rank " + std::to_string(rank) +
              " diverged: kv " + digest_hex(state.kv_digest) + " vs " + digest_hex(first.kv_digest) + ", ledger " +
              digest_hex(state.ledger_digest) + " vs " + digest_hex(first.ledger_digest));
    }
  }
}

void Oracle::on_chunk_state(int rank, std::uint64_t call_id, std::uint64_t kv_digest, std::uint64_t ledger_digest) {
  if (!states_[call_id].emplace(rank, RankState{kv_digest, ledger_digest}).second) {
    violate("mesh rank " + std::to_string(rank) + " applied call_id " + std::to_string(call_id) + " twice");
  }
}

void Oracle::on_corrupt_accepted(int rank, std::uint64_t call_id) {
  violate("rank " + std::to_string(rank) + " accepted a corrupted frame (call_id " + std::to_string(call_id) + ")");
}

void Oracle::on_backend_after_abort(const std::string& first_call) {
  violate("backend call after abort: " + first_call);
}

void Oracle::on_completed(std::uint64_t chunks, std::uint64_t final_epoch) {
  std::uint64_t streamed = 0;
  for (const auto& [call_id, sent] : sent_) {
    ++streamed;
    if (sent.epoch == final_epoch && !emitted_chunks_.contains(sent.chunk)) {
      violate("completed run lost " + ids_text(call_id, sent.chunk, sent.epoch) + " of the final epoch");
    }
  }
  if (streamed != chunks) {
    violate("completed run streamed " + std::to_string(streamed) + " of " + std::to_string(chunks) + " chunks");
  }
}

}  // namespace lockstep::sim
