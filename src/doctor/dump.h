// In-memory model of flight-recorder dumps (docs/ARCHITECTURE.md, version 1)
// and the loader shared by the doctor and the trace writer.
//
// Strings (thread, group, op, dtype, phase, detail) are interned into one
// table per DumpSet so a million events cost a few ids each, and so two
// ranks' "mesh" compare as one integer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "lockstep/dump_format.h"
#include <unordered_map>
#include <vector>

#include "lockstep/doctor.h"

namespace lockstep::doctor {

inline constexpr std::string_view kDumpFormat = "lockstep.flight_recorder";
inline constexpr std::int64_t kDumpVersion = 1;
// A dump holds at most events_max entries (a few thousand by default); these
// bounds reject garbage long before it costs memory.
inline constexpr std::size_t kDumpBytesMax = std::size_t{256} << 20;
inline constexpr std::size_t kEventsPerDumpMax = std::size_t{1} << 20;
inline constexpr int kWorldSizeMax = 1 << 16;
// Dumps are read by one thread per core up to this many (a PyTorch
// flight-recorder pickle costs far more to read than lockstep's JSON); the
// analysis itself is single-threaded.
inline constexpr unsigned kReadThreadsMax = 32;
// File bytes the readers hold at once (a parsed pickle takes several times
// its size): fewer threads for larger files.
inline constexpr std::uintmax_t kReadBytesInFlightMax = std::uintmax_t{1} << 30;

using StrId = std::uint32_t;  // 0 is always the empty string

class StringTable {
 public:
  StringTable();
  StrId intern(std::string_view s);
  const std::string& str(StrId id) const { return strings_[id]; }
  std::size_t size() const { return strings_.size(); }

 private:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::vector<std::string> strings_;
  std::unordered_map<std::string, StrId, Hash, std::equal_to<>> ids_;
};

enum class ReasonKind : std::uint8_t { kNone, kFatal, kTimeout, kSignal, kRequest, kExit };

std::string_view reason_kind_name(ReasonKind kind);

struct Event {
  std::int64_t t_ns = 0;
  std::int64_t group_seq = -1;
  std::int64_t count = 0;
  std::int64_t call_id = -1;
  std::int64_t chunk_index = -1;
  std::int64_t cache_epoch = -1;
  std::int32_t peer = -1;
  StrId thread = 0;
  StrId group = 0;
  StrId op = 0;
  StrId dtype = 0;
  StrId phase = 0;
  StrId detail = 0;
  EventKind kind = EventKind::kNote;
  EventState state = EventState::kCompleted;
};

// A collective or point-to-point call (the events the doctor aligns by group and seq).
inline bool is_call(const Event& e) { return e.kind == EventKind::kCollective || e.kind == EventKind::kP2p; }

struct Armed {
  StrId thread = 0;
  StrId what = 0;
  StrId group = 0;
  std::int64_t group_seq = -1;
  std::int64_t started_ns = 0;
  std::int64_t deadline_ns = 0;
};

struct Ledger {
  StrId group = 0;
  std::int64_t next_seq = 0;
  std::string digest;
};

struct Reason {
  ReasonKind kind = ReasonKind::kNone;
  std::string code;
  std::string message;
  std::int64_t exit_code = 0;
};

struct Dump {
  std::string file;  // as named in problems and findings
  int rank = -1;
  int world_size = 0;
  std::int64_t pid = 0;
  std::string role;
  Reason reason;
  std::int64_t dumped_at_ns = 0;
  std::vector<Armed> armed;
  std::vector<Ledger> ledgers;
  std::int64_t stale_drops = 0;
  std::int64_t duplicate_drops = 0;
  std::vector<Event> events;
  // PyTorch dumps: p2p groups whose seq is the call's order in its direction
  // (a process group of more than two), and whether this rank's ring buffer
  // dropped entries, which makes that order differ between the two sides.
  std::vector<StrId> p2p_order_groups;
  bool entries_dropped = false;
};

struct DumpSet {
  std::vector<Dump> dumps;  // sorted by rank, one per rank
  StringTable strings;
  int world_size = 0;       // from the dumps or the caller; 0 if unknown
  std::vector<int> ranks_missing;
  std::vector<DumpProblem> problems;
};

// The rank a file name spells in `digits` (a whole number in
// [0, kWorldSizeMax), nothing else); nullopt otherwise. Pure.
std::optional<int> rank_of_digits(std::string_view digits);

// The dumps directory for `dir`: dir/dumps when it exists, else dir.
std::filesystem::path dumps_dir_for(const std::filesystem::path& dir);

// Reads and validates every rank-<R>.json and every PyTorch flight-recorder
// dump <torch_fr_prefix><R> (empty: kTorchFrPrefixDefault) in
// dumps_dir_for(dir). Blocking; never throws for bad input: unreadable,
// malformed, duplicate or inconsistent dumps become problems.
// world_size_override > 0 wins over the dumps' value.
DumpSet load_dumps(const std::filesystem::path& dir, int world_size_override, std::string_view torch_fr_prefix = {});

// Parses one dump's text; throws Error(kDecode/kSchema/kVersion/kLimit)
// naming `file` and the field. Strings are interned into `strings`.
Dump parse_dump(std::string_view text, const std::string& file, StringTable& strings);

}  // namespace lockstep::doctor
