#include "lockstep/fault_injection.h"

#include <array>
#include <charconv>

#include "lockstep/error.h"

namespace lockstep {
namespace {

struct FaultInfo {
  FaultId id;
  std::string_view name;
  std::string_view description;
};

constexpr std::array<FaultInfo, kFaultIdCount> kFaults{{
    {FaultId::kA1, "A1", "meta value that cannot be encoded: sender fails before the header"},
    {FaultId::kA2, "A2", "tensor of unsupported dtype: fails before the header"},
    {FaultId::kA3, "A3", "tensor nested in meta: rejected at preflight"},
    {FaultId::kA4, "A4", "one rank supports only another protocol version: refused at handshake"},
    {FaultId::kA5, "A5", "corrupted byte in a frame: receiver rejects on checksum"},
    {FaultId::kA6, "A6", "second thread uses an owned channel: immediate error naming both"},
    {FaultId::kB1, "B1", "rank 0 calls a mesh collective (pp1): error before the backend call"},
    {FaultId::kB2, "B2", "world collective inside the generator phase: error before the backend"},
    {FaultId::kB3, "B3", "groups created in a different order on one rank: start-up fails"},
    {FaultId::kB4, "B4", "a per-rank flag adds a collective on one rank: ledger check stops the job"},
    {FaultId::kB5, "B5", "one mesh rank runs one generator call too many: plan check stops the job"},
    {FaultId::kB6, "B6", "leader receives an invalid envelope: broadcasts ERROR, mesh exits cleanly"},
    {FaultId::kC1, "C1", "rank 0 killed while the mesh waits: mesh exits within the heartbeat window"},
    {FaultId::kC2, "C2", "sender fails after the header: all ranks stop within bound"},
    {FaultId::kC3, "C3", "SIGTERM to the launcher: every rank gone, no orphan"},
    {FaultId::kC4, "C4", "a rank stops responding but stays alive: watchdog stops the job"},
    {FaultId::kC5, "C5", "backend abort itself hangs: hard-exit deadline still ends the process"},
    {FaultId::kD1, "D1", "duplicate envelope: dropped, output emitted once"},
    {FaultId::kD2, "D2", "result delayed past a hard cut: dropped by epoch, never emitted"},
    {FaultId::kD3, "D3", "call_id goes backwards: fatal at once"},
    {FaultId::kD4, "D4", "results out of order: in window emitted in order, beyond fatal"},
    {FaultId::kE1, "E1", "decode slowed down (x10 from the chunk on): Stage 0 blocks, queues stay at their bound"},
    {FaultId::kE2, "E2", "depth sweep: D=1 period ~ sum, D>=2 period ~ max"},
    {FaultId::kF1, "F1", "recompute without context override: preflight fails, no fallback"},
    {FaultId::kF2, "F2", "out-of-band KV reset on one rank: KV digest trips within one chunk"},
    {FaultId::kF3, "F3", "illegal KV lifecycle transition: error before any collective"},
    {FaultId::kG1, "G1", "graph capture enabled on one rank only: parity handshake fails"},
    {FaultId::kG2, "G2", "shape skew on one rank: validation fails before forward"},
    {FaultId::kH1, "H1", "one rank's input perturbed: input digest mismatch"},
    {FaultId::kH2, "H2", "one weight shard mutated: fingerprint mismatch at start-up"},
}};

const FaultInfo& info(FaultId id) {
  const auto index = static_cast<std::size_t>(id);
  if (index >= kFaults.size()) throw Error(ErrorCode::kInternal, "invalid FaultId");
  return kFaults[index];
}

std::string valid_ids() {
  std::string out;
  for (const auto& fault : kFaults) {
    if (!out.empty()) out += ' ';
    out += fault.name;
  }
  return out;
}

std::int64_t parse_number(std::string_view text, std::string_view whole, const char* what) {
  std::int64_t value = -1;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0) {
    throw Error(ErrorCode::kInvalidArgument, "--inject '" + std::string(whole) + "': " + what +
                                                 " '" + std::string(text) +
                                                 "' is not a non-negative integer");
  }
  return value;
}

}  // namespace

std::string_view fault_id_name(FaultId id) { return info(id).name; }
std::string_view fault_description(FaultId id) { return info(id).description; }

Injection parse_injection(std::string_view text) {
  const std::size_t colon = text.find(':');
  const std::string_view head = text.substr(0, colon);
  const std::size_t at = head.find('@');
  const std::string_view name = head.substr(0, at);
  const FaultInfo* found = nullptr;
  for (const auto& fault : kFaults) {
    if (fault.name == name) found = &fault;
  }
  if (found == nullptr) {
    throw Error(ErrorCode::kInvalidArgument, "--inject '" + std::string(text) +
                                                 "': unknown fault id '" + std::string(name) +
                                                 "'; valid ids: " + valid_ids());
  }
  if (found->id == FaultId::kC3 || found->id == FaultId::kE2) {
    throw Error(ErrorCode::kInvalidArgument,
                "--inject " + std::string(found->name) + " is not a fault inside one run: " +
                    (found->id == FaultId::kC3 ? "send SIGTERM to `lockstep run` while it runs (ctest -R breakit_C3)"
                                               : "run scripts/depth_sweep.sh (ctest -R breakit_E2)"));
  }
  Injection injection{found->id, std::nullopt, std::nullopt};
  if (at != std::string_view::npos) {
    injection.rank = static_cast<int>(parse_number(head.substr(at + 1), text, "rank"));
  }
  if (colon != std::string_view::npos) {
    injection.chunk = parse_number(text.substr(colon + 1), text, "chunk");
  }
  return injection;
}

FaultPlan::FaultPlan(std::vector<Injection> injections) : injections_(std::move(injections)) {
  if (injections_.size() > kInjectionsMax) {
    throw Error(ErrorCode::kLimit, "at most " + std::to_string(kInjectionsMax) +
                                       " --inject values are accepted, got " +
                                       std::to_string(injections_.size()));
  }
}

bool FaultPlan::fires(FaultId id, int rank, std::int64_t chunk, int default_rank,
                      std::int64_t default_chunk) const {
  for (const auto& injection : injections_) {
    if (injection.id != id) continue;
    if (injection.rank.value_or(default_rank) != rank) continue;
    if (injection.chunk.value_or(default_chunk) != chunk) continue;
    return true;
  }
  return false;
}

bool FaultPlan::active_since(FaultId id, int rank, std::int64_t chunk, int default_rank,
                             std::int64_t default_chunk) const {
  for (const auto& injection : injections_) {
    if (injection.id != id || injection.rank.value_or(default_rank) != rank) continue;
    if (chunk >= injection.chunk.value_or(default_chunk)) return true;
  }
  return false;
}

bool FaultPlan::active(FaultId id, int rank, int default_rank) const {
  for (const auto& injection : injections_) {
    if (injection.id == id && injection.rank.value_or(default_rank) == rank) return true;
  }
  return false;
}

std::string FaultPlan::describe() const {
  std::string out;
  for (const auto& injection : injections_) {
    if (!out.empty()) out += ',';
    out += fault_id_name(injection.id);
    if (injection.rank) out += '@' + std::to_string(*injection.rank);
    if (injection.chunk) out += ':' + std::to_string(*injection.chunk);
  }
  return out;
}

}  // namespace lockstep
