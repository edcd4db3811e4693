// Fault injection for demos and the break-it suite (SPEC §6, §7):
// `--inject ID[@rank][:chunk]`, e.g. `C4@2:10` = rank 2 stops responding at
// chunk 10. IDs are the case ids of SPEC §7; each is implemented at the one
// place in the runtime where that fault belongs, and nowhere else.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lockstep {

enum class FaultId : std::uint8_t {
  kA1, kA2, kA3, kA4, kA5, kA6,
  kB1, kB2, kB3, kB4, kB5, kB6,
  kC1, kC2, kC3, kC4, kC5,
  kD1, kD2, kD3, kD4,
  kE1, kE2,
  kF1, kF2, kF3,
  kG1, kG2,
  kH1, kH2,
};
inline constexpr std::size_t kFaultIdCount = 30;

struct Injection {
  FaultId id;
  std::optional<int> rank;            // nullopt: the case's default rank
  std::optional<std::int64_t> chunk;  // nullopt: the case's default chunk
};

// E1: from its chunk on, Stage 0's decode costs this many times as much.
inline constexpr double kE1DecodeFactor = 10.0;

// Injections at or above this count are refused: a run is a demo, not a storm.
inline constexpr std::size_t kInjectionsMax = 8;

std::string_view fault_id_name(FaultId id);
// One line: what the fault does and the outcome lockstep guarantees.
std::string_view fault_description(FaultId id);

// Parses "ID[@rank][:chunk]". Throws Error{kInvalidArgument} naming the text
// and listing every valid id when the id is unknown or the numbers are bad.
Injection parse_injection(std::string_view text);

// The set of injections active in one process, queried by the runtime at the
// point each fault belongs. Immutable after construction; thread-safe reads.
class FaultPlan {
 public:
  FaultPlan() = default;
  explicit FaultPlan(std::vector<Injection> injections);

  // True when `id` is injected for `rank` (an injection with no rank applies to
  // `default_rank`) at `chunk` (one with no chunk applies to `default_chunk`).
  bool fires(FaultId id, int rank, std::int64_t chunk, int default_rank,
             std::int64_t default_chunk) const;
  // True when `id` is injected for `rank` and `chunk` is at or past its chunk
  // (faults that persist once they start, such as a slowed decode).
  bool active_since(FaultId id, int rank, std::int64_t chunk, int default_rank,
                    std::int64_t default_chunk) const;
  // True when `id` is injected at all for `rank` (any chunk).
  bool active(FaultId id, int rank, int default_rank) const;
  const std::vector<Injection>& injections() const { return injections_; }
  std::string describe() const;  // "C4@2:10,D1" — for parity records and logs

 private:
  std::vector<Injection> injections_;
};

}  // namespace lockstep
