// PyTorch flight-recorder dumps (issue 15) read into the doctor's own model,
// so the same verdicts — hang, mismatch, missing participant — name ranks of a
// plain PyTorch job. A job writes them with TORCH_NCCL_TRACE_BUFFER_SIZE (or
// TORCH_FR_BUFFER_SIZE) and TORCH_NCCL_DUMP_ON_TIMEOUT=1 to files
// <prefix><rank> (TORCH_NCCL_DEBUG_INFO_TEMP_FILE / TORCH_FR_DUMP_TEMP_FILE;
// default prefix /tmp/nccl_trace_rank_): one dict per rank, pickled (read by
// the restricted reader, pickle_reader.h) or JSON, versions "2.2" to "2.10".
//
// The mapping:
//   process group (entry "process_group"[0], its ranks from "pg_config")
//                         -> group; p2p entries go to "<group> p2p"
//   collective_seq_id / p2p_seq_id -> group_seq
//   profiling_name "nccl:all_reduce" -> op "all_reduce"
//   input_sizes / input_dtypes -> count (elements of all inputs), dtype
//   state scheduled / started / completed -> enqueued / started / completed,
//     raised to completed / started from "pg_status" (last completed /
//     started per group), since entries stay "scheduled" unless torch's
//     timing is on
//   frames -> detail: the first frame outside torch (the user's file:line)
//   time_created_ns -> event time; the dump time is the latest of them.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "doctor/dump.h"

namespace lockstep::doctor {

// File names torch gives flight-recorder dumps when the job sets no prefix.
inline constexpr std::string_view kTorchFrPrefixDefault = "nccl_trace_rank_";

// The rank of `file_name` when it is `<prefix><rank>`, optionally followed
// by ".pkl", ".pickle" or ".json"; nullopt otherwise. Pure.
std::optional<int> torch_fr_rank(std::string_view file_name, std::string_view prefix);

// Parses one flight-recorder dump of `rank` (pickle or JSON, told apart by
// the first byte). Throws Error{kDecode|kSchema|kVersion|kLimit} naming `file`
// and the field. Strings are interned into `strings`.
Dump parse_torch_fr_dump(std::span<const std::uint8_t> bytes, const std::string& file, int rank,
                         StringTable& strings);

// The other way: one lockstep dump as a flight-recorder dump (version
// "2.10"; write it with write_pickle, as torch does, or as JSON), for
// PyTorch's own analyzer. Groups become process groups whose
// ranks are every rank of `set` with calls in them; collectives and p2p calls
// become entries with their seq, op (named as torch names them, see
// profiling_name in torch_fr.cc), count, dtype and
// state; "pg_status" gives each group's last enqueued / started / completed
// seq. Pure.
nlohmann::json torch_fr_value(const DumpSet& set, const Dump& dump);

}  // namespace lockstep::doctor
