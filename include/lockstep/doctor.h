// `lockstep doctor`: reads every rank's flight-recorder dump (format in
// docs/ARCHITECTURE.md, "Flight-recorder dump format (version 1)"), aligns
// each group's collectives by group_seq across ranks and states one primary
// verdict (the most specific cause it can prove) plus supporting findings.
//
// The doctor runs after a failure, often on a partial set of dumps: a missing,
// truncated or malformed dump is reported (file and field named) and the
// analysis goes on with the others; it never crashes on its input.
//
// Depends on lockstep_core only, so the launcher can run it in-process.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace lockstep {

// Verdict classes. The value is the exit status of `lockstep doctor`
// (docs/manual: "doctor says X -> do Y"); 2 stays the CLI usage error.
enum class Verdict : int {
  kHealthy = 0,              // every dump is a clean exit or a requested snapshot
  kNoDumps = 3,              // no readable dump at all
  kHang = 10,                // a rank never entered the collective its peers wait in
  kMismatch = 11,            // ranks disagree on (op, dtype, count, root) at one group_seq
  kMissingParticipant = 12,  // some ranks ran a collective that others never reached
  kWrongGroup = 13,          // membership or phase rule broken (reason/event code)
  kPlanMismatch = 14,        // generator call count differs from the plan
  kParity = 15,              // start-up parity record differs across ranks
  kDigest = 16,              // input/weight/KV/output digest or ledger digest differs
  kStrandedCommit = 17,      // a sender passed a commitment point and sent no payload
  kCrash = 18,               // a rank failed or vanished; the others stopped on its poison
  kProtocol = 19,            // wire/protocol rule broken (decode, schema, version, stale work, ...)
};

// Stable lower-case name ("hang", "mismatch", ...), used in text and JSON.
std::string_view verdict_name(Verdict verdict);

// One statement of the diagnosis. `ranks` are the culprits (or, for a
// supporting finding, the ranks it is about); `others` the ranks affected.
struct Finding {
  std::string kind;  // verdict_name() of its class, or "stale_drops", "missing_dump", ...
  std::string summary;
  std::vector<int> ranks;
  std::vector<int> others;
  std::string group;             // empty when not about one group
  std::string op;                // empty when not about one operation
  std::int64_t group_seq = -1;   // -1 when not about one collective
  std::vector<std::string> details;
};

// A dump that could not be used, with the file and field named.
struct DumpProblem {
  std::string file;
  std::string message;
};

// Warm recovery (recovery.h): how one generation of the job ended before the
// next began.
struct GenerationVerdict {
  std::uint32_t generation = 0;
  Verdict verdict = Verdict::kNoDumps;
  std::string summary;  // its primary finding
};

struct Diagnosis {
  Verdict verdict = Verdict::kNoDumps;
  Finding primary;
  std::vector<Finding> supporting;
  int world_size = 0;  // 0 when no dump and no --world-size gave one
  std::vector<int> ranks_present;
  std::vector<int> ranks_missing;
  std::vector<DumpProblem> problems;
  // A job that recovered: every earlier generation's verdict, oldest first
  // (the fields above are the last generation's).
  std::vector<GenerationVerdict> earlier_generations;
};

// Generations of one recovered job the doctor reads, at most (the restart
// budget keeps real jobs far below).
inline constexpr std::uint32_t kDoctorGenerationsMax = 1000;

struct DoctorOptions {
  int world_size = 0;  // 0: take it from the dumps
  // File-name prefix of PyTorch flight-recorder dumps (TORCH_NCCL_DEBUG_INFO_TEMP_FILE's
  // base name); empty: "nccl_trace_rank_", torch's default.
  std::string torch_fr_prefix;
};

// Diagnoses the dumps in `dir`: a job directory (reads dir/dumps/rank-*.json;
// after warm recovery, the last generation's dumps under
// dir/generations/g<G>/dumps — the generation launch.json names, else the
// highest — with every earlier generation diagnosed too) or a dumps
// directory (reads dir/rank-*.json), and the PyTorch
// flight-recorder dumps there (<prefix><rank>, pickle or JSON, versions 2.2
// to 2.10), merged by rank with lockstep's. Blocking (file reads, a few
// worker threads); no deadline beyond the file system's. Any thread may call
// it. Never throws for bad dumps (they become DumpProblems); throws
// Error(kInvalidArgument) only for a negative options.world_size.
Diagnosis diagnose(const std::filesystem::path& dir, const DoctorOptions& options);

// Writes each lockstep dump in `dir` as a PyTorch flight-recorder dump
// (version 2.10) so PyTorch's own analyzer can read a lockstep job too:
// kPickle writes <out>/nccl_trace_rank_<R>, the pickle torch writes and
// `python -m torch.distributed.flight_recorder.fr_trace <out>` reads; kJson
// writes <out>/nccl_trace_rank_<R>.json. Creates `out`; returns the files
// written. Throws Error{kResource} naming a file that cannot be written.
enum class TorchFrFormat : std::uint8_t { kPickle, kJson };
std::vector<std::filesystem::path> export_torch_flight_recorder(const std::filesystem::path& dir,
                                                                const std::filesystem::path& out,
                                                                TorchFrFormat format = TorchFrFormat::kPickle);

// Human report: a "VERDICT: ..." line first, then the details. Pure.
std::string format_text(const Diagnosis& diagnosis);
// The same content as one JSON object (trailing newline). Pure.
std::string format_json(const Diagnosis& diagnosis);

}  // namespace lockstep
