// Loading a directory of dumps: find rank-<R>.json files (lockstep's) and
// <prefix><R> files (PyTorch's flight recorder, torch_fr.h), read and parse
// them on a few threads (each into its own string table, so threads share
// nothing but an atomic work index), then merge the string tables and check
// the set (duplicate ranks, file name vs "rank" field, world_size agreement).
// A rank with both kinds of dump is one dump: lockstep's, with the PyTorch
// flight recorder's calls added.
#include <algorithm>
#include <atomic>
#include <charconv>
#include <fstream>
#include <optional>
#include <thread>

#include "doctor/dump.h"
#include "doctor/torch_fr.h"
#include "lockstep/error.h"

namespace lockstep::doctor {
namespace {

struct DumpFile {
  std::filesystem::path path;
  int rank_from_name = -1;
  bool torch_fr = false;  // PyTorch's flight recorder, not lockstep's dump
};

struct Loaded {
  std::optional<Dump> dump;
  StringTable strings;
  std::string error;
};

std::optional<int> rank_from_file_name(std::string_view name) {
  constexpr std::string_view kPrefix = "rank-";
  constexpr std::string_view kSuffix = ".json";
  if (name.size() <= kPrefix.size() + kSuffix.size() || !name.starts_with(kPrefix) || !name.ends_with(kSuffix)) {
    return std::nullopt;
  }
  return rank_of_digits(name.substr(kPrefix.size(), name.size() - kPrefix.size() - kSuffix.size()));
}

std::vector<DumpFile> list_dump_files(const std::filesystem::path& dumps_dir, std::string_view torch_fr_prefix,
                                      std::vector<DumpProblem>& problems) {
  std::vector<DumpFile> files;
  std::error_code ec;
  std::filesystem::directory_iterator it(dumps_dir, ec);
  if (ec) {
    problems.push_back({dumps_dir.string(), dumps_dir.string() + ": cannot list directory: " + ec.message()});
    return files;
  }
  for (const auto& entry : it) {
    const std::string name = entry.path().filename().string();
    if (const std::optional<int> rank = rank_from_file_name(name)) {
      files.push_back({entry.path(), *rank, false});
    } else if (const std::optional<int> fr_rank = torch_fr_rank(name, torch_fr_prefix)) {
      files.push_back({entry.path(), *fr_rank, true});
    }
  }
  // By rank; lockstep's dump of a rank before its flight-recorder dump.
  std::sort(files.begin(), files.end(), [](const DumpFile& a, const DumpFile& b) {
    return a.rank_from_name != b.rank_from_name ? a.rank_from_name < b.rank_from_name : a.torch_fr < b.torch_fr;
  });
  return files;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::kResource, path.string() + ": cannot open");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) throw Error(ErrorCode::kResource, path.string() + ": cannot read size");
  if (static_cast<std::size_t>(size) > kDumpBytesMax) {
    throw Error(ErrorCode::kLimit, path.string() + ": " + std::to_string(size) + " bytes exceeds kDumpBytesMax");
  }
  if (size == 0) throw Error(ErrorCode::kDecode, path.string() + ": empty file");
  std::string text(static_cast<std::size_t>(size), '\0');
  in.seekg(0);
  if (!in.read(text.data(), size)) throw Error(ErrorCode::kResource, path.string() + ": short read");
  return text;
}

void load_one(const DumpFile& file, Loaded& out) {
  try {
    const std::string text = read_file(file.path);
    out.dump = file.torch_fr
                   ? parse_torch_fr_dump({reinterpret_cast<const std::uint8_t*>(text.data()), text.size()},
                                         file.path.string(), file.rank_from_name, out.strings)
                   : parse_dump(text, file.path.string(), out.strings);
  } catch (const Error& e) {
    out.error = e.what();
  } catch (const std::exception& e) {  // bad_alloc or filesystem errors: still a problem, not a crash
    out.error = file.path.string() + ": " + e.what();
  }
}

void load_parallel(const std::vector<DumpFile>& files, std::vector<Loaded>& loaded) {
  std::atomic<std::size_t> next{0};
  auto worker = [&] {
    for (std::size_t i = next.fetch_add(1); i < files.size(); i = next.fetch_add(1)) load_one(files[i], loaded[i]);
  };
  // Each reader holds one file and what it parses to at once: as many as
  // kReadBytesInFlightMax of file allows, one per core, at most kReadThreadsMax.
  std::uintmax_t largest = 1;
  for (const DumpFile& file : files) {
    std::error_code error;
    const std::uintmax_t size = std::filesystem::file_size(file.path, error);
    if (!error) largest = std::max(largest, size);
  }
  const auto by_bytes = static_cast<unsigned>(std::clamp<std::uintmax_t>(kReadBytesInFlightMax / largest, 1, kReadThreadsMax));
  const unsigned threads = std::clamp<unsigned>(std::thread::hardware_concurrency(), 1, by_bytes);
  std::vector<std::jthread> pool;
  for (unsigned t = 1; t < std::min<std::size_t>(threads, files.size()); ++t) pool.emplace_back(worker);
  worker();
}

// Rewrites every id of `d` from its file's table into the set's table.
void remap_strings(Dump& d, const StringTable& local, StringTable& global) {
  std::vector<StrId> map(local.size());
  for (StrId id = 0; id < local.size(); ++id) map[id] = global.intern(local.str(id));
  for (Event& e : d.events) {
    e.thread = map[e.thread];
    e.group = map[e.group];
    e.op = map[e.op];
    e.dtype = map[e.dtype];
    e.phase = map[e.phase];
    e.detail = map[e.detail];
  }
  for (Armed& a : d.armed) {
    a.thread = map[a.thread];
    a.what = map[a.what];
    a.group = map[a.group];
  }
  for (Ledger& l : d.ledgers) l.group = map[l.group];
  for (StrId& group : d.p2p_order_groups) group = map[group];
}

// PyTorch p2p calls paired by their order in a direction (torch_fr.cc) can be
// paired only while every rank kept all its entries: once one rank's ring
// buffer dropped some, the n-th call means different calls on the two sides.
// Then every rank's calls of those groups become notes, and no verdict rests
// on them.
void unpair_p2p_order_after_drops(DumpSet& set) {
  const auto dropping = std::find_if(set.dumps.begin(), set.dumps.end(), [](const Dump& d) {
    return d.entries_dropped && !d.p2p_order_groups.empty();
  });
  if (dropping == set.dumps.end()) return;
  set.problems.push_back({dropping->file, dropping->file + ": p2p calls of process groups of more than two ranks "
                                                           "are not paired: this rank's flight recorder dropped "
                                                           "older entries (raise TORCH_FR_BUFFER_SIZE)"});
  std::vector<StrId> groups;
  for (const Dump& d : set.dumps) groups.insert(groups.end(), d.p2p_order_groups.begin(), d.p2p_order_groups.end());
  const StrId why = set.strings.intern("p2p call not paired: a rank's flight recorder dropped older entries");
  for (Dump& d : set.dumps) {
    for (Event& e : d.events) {
      if (e.kind != EventKind::kP2p || std::find(groups.begin(), groups.end(), e.group) == groups.end()) continue;
      e.kind = EventKind::kNote;
      e.detail = why;
    }
  }
}

void settle_world_size(DumpSet& set, int world_size_override) {
  int from_dumps = 0;
  for (const Dump& d : set.dumps) {
    if (from_dumps != 0 && d.world_size != from_dumps) {
      set.problems.push_back({d.file, d.file + ": world_size: " + std::to_string(d.world_size) + " differs from " +
                                          std::to_string(from_dumps) + " in other dumps; using the largest"});
    }
    from_dumps = std::max(from_dumps, d.world_size);
  }
  set.world_size = world_size_override > 0 ? world_size_override : from_dumps;
  std::size_t next = 0;
  for (int rank = 0; rank < set.world_size; ++rank) {
    while (next < set.dumps.size() && set.dumps[next].rank < rank) ++next;
    if (next == set.dumps.size() || set.dumps[next].rank != rank) set.ranks_missing.push_back(rank);
  }
}

}  // namespace

std::optional<int> rank_of_digits(std::string_view digits) {
  int rank = -1;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), rank);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || rank < 0 ||
      rank >= kWorldSizeMax) {
    return std::nullopt;
  }
  return rank;
}

std::filesystem::path dumps_dir_for(const std::filesystem::path& dir) {
  std::error_code ec;
  if (std::filesystem::is_directory(dir / "dumps", ec)) return dir / "dumps";
  return dir;
}

DumpSet load_dumps(const std::filesystem::path& dir, int world_size_override, std::string_view torch_fr_prefix) {
  DumpSet set;
  const std::vector<DumpFile> files =
      list_dump_files(dumps_dir_for(dir), torch_fr_prefix.empty() ? kTorchFrPrefixDefault : torch_fr_prefix,
                      set.problems);
  std::vector<Loaded> loaded(files.size());
  load_parallel(files, loaded);
  for (std::size_t i = 0; i < files.size(); ++i) {
    Loaded& l = loaded[i];
    if (!l.dump) {
      set.problems.push_back({files[i].path.string(), l.error});
      continue;
    }
    if (l.dump->rank != files[i].rank_from_name) {
      set.problems.push_back({l.dump->file, l.dump->file + ": rank: " + std::to_string(l.dump->rank) +
                                                " does not match the file name; dump ignored"});
      continue;
    }
    if (!set.dumps.empty() && set.dumps.back().rank == l.dump->rank && files[i].torch_fr &&
        set.dumps.back().role != "torch") {
      // The same rank's PyTorch flight recorder: its calls join lockstep's dump.
      remap_strings(*l.dump, l.strings, set.strings);
      Dump& merged = set.dumps.back();
      merged.events.insert(merged.events.end(), l.dump->events.begin(), l.dump->events.end());
      merged.p2p_order_groups.insert(merged.p2p_order_groups.end(), l.dump->p2p_order_groups.begin(),
                                     l.dump->p2p_order_groups.end());
      merged.entries_dropped = merged.entries_dropped || l.dump->entries_dropped;
      merged.world_size = std::max(merged.world_size, l.dump->world_size);
      continue;
    }
    if (!set.dumps.empty() && set.dumps.back().rank == l.dump->rank) {
      set.problems.push_back({l.dump->file, l.dump->file + ": rank: a second dump for rank " + std::to_string(l.dump->rank) +
                                                " (" + set.dumps.back().file + " is used)"});
      continue;
    }
    remap_strings(*l.dump, l.strings, set.strings);
    set.dumps.push_back(std::move(*l.dump));
  }
  unpair_p2p_order_after_drops(set);
  settle_world_size(set, world_size_override);
  return set;
}

StringTable::StringTable() { intern(""); }

StrId StringTable::intern(std::string_view s) {
  if (s.empty() && !strings_.empty()) return 0;  // most details are empty; skip the hash
  if (const auto it = ids_.find(s); it != ids_.end()) return it->second;
  const auto id = static_cast<StrId>(strings_.size());
  strings_.emplace_back(s);
  ids_.emplace(strings_.back(), id);
  return id;
}

std::string_view reason_kind_name(ReasonKind kind) {
  switch (kind) {
    case ReasonKind::kNone: return "none";
    case ReasonKind::kFatal: return "fatal";
    case ReasonKind::kTimeout: return "timeout";
    case ReasonKind::kSignal: return "signal";
    case ReasonKind::kRequest: return "request";
    case ReasonKind::kExit: return "exit";
  }
  return "unknown";
}

}  // namespace lockstep::doctor
