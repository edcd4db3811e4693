#include "doctor/torch_fr.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <iterator>
#include <map>
#include <optional>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "doctor/pickle_reader.h"
#include "lockstep/error.h"

namespace lockstep::doctor {
namespace {

using Kind = PickleValue::Kind;

constexpr int kVersionMinor = 2;   // "2.2" ..
constexpr int kVersionMinorMax = 10;  // .. "2.10"
constexpr std::size_t kJsonDepthMax = 64;
constexpr std::size_t kFrEntriesMax = std::size_t{1} << 20;

[[noreturn]] void bad(const std::string& file, const std::string& field, const std::string& why,
                      ErrorCode code = ErrorCode::kSchema) {
  throw Error(code, file + ": flight-recorder field '" + field + "' " + why);
}

// JSON dumps become the same value tree as pickled ones.
PickleValue::Ref from_json(const nlohmann::json& j, std::size_t depth, const std::string& file) {
  if (depth > kJsonDepthMax) bad(file, "(root)", "nests deeper than 64", ErrorCode::kLimit);
  auto v = std::make_shared<PickleValue>();
  switch (j.type()) {
    case nlohmann::json::value_t::null: v->kind = Kind::kNone; break;
    case nlohmann::json::value_t::boolean: v->kind = Kind::kBool; v->boolean = j.get<bool>(); break;
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned: v->kind = Kind::kInt; v->integer = j.get<std::int64_t>(); break;
    case nlohmann::json::value_t::number_float: v->kind = Kind::kFloat; v->real = j.get<double>(); break;
    case nlohmann::json::value_t::string: v->kind = Kind::kStr; v->text = j.get<std::string>(); break;
    case nlohmann::json::value_t::array:
      v->kind = Kind::kList;
      for (const auto& item : j) v->items.push_back(from_json(item, depth + 1, file));
      break;
    case nlohmann::json::value_t::object:
      v->kind = Kind::kDict;
      for (const auto& [key, item] : j.items()) {
        auto k = std::make_shared<PickleValue>();
        k->kind = Kind::kStr;
        k->text = key;
        v->entries.emplace_back(std::move(k), from_json(item, depth + 1, file));
      }
      break;
    default: bad(file, "(root)", "holds a JSON value of an unexpected type");
  }
  return v;
}

const PickleValue& field(const PickleValue& dict, std::string_view name, const std::string& file, Kind kind) {
  const PickleValue* v = dict.get(name);
  if (v == nullptr) bad(file, std::string(name), "is missing");
  const bool ok = v->kind == kind || (kind == Kind::kStr && v->kind == Kind::kBytes) ||
                  (kind == Kind::kList && v->kind == Kind::kTuple);
  if (!ok) {
    bad(file, std::string(name), "is a " + std::string(pickle_kind_name(v->kind)) + ", not a " +
                                     std::string(pickle_kind_name(kind)));
  }
  return *v;
}

std::int64_t int_or(const PickleValue* v, std::int64_t fallback) {
  return v != nullptr && v->kind == Kind::kInt ? v->integer : fallback;
}

std::string key_text(const PickleValue& key) {
  if (key.is_string()) return key.text;
  if (key.kind == Kind::kInt) return std::to_string(key.integer);
  return {};
}

void check_version(const PickleValue& dump, const std::string& file) {
  const std::string& version = field(dump, "version", file, Kind::kStr).text;
  int minor = -1;
  const bool parsed = version.starts_with("2.") &&
                      std::from_chars(version.data() + 2, version.data() + version.size(), minor).ptr ==
                          version.data() + version.size();
  if (!parsed || minor < kVersionMinor || minor > kVersionMinorMax) {
    throw Error(ErrorCode::kVersion, file + ": flight-recorder version '" + version +
                                         "'; the doctor reads versions 2.2 to 2.10");
  }
}

// Group name -> its global ranks, from "pg_config" ("ranks" is a list, or a
// string like "[0, 1]" in torch 2.11).
std::map<std::string, std::vector<int>> group_ranks(const PickleValue& dump, const std::string& file) {
  std::map<std::string, std::vector<int>> out;
  const PickleValue* config = dump.get("pg_config");
  if (config == nullptr || config->kind != Kind::kDict) return out;
  for (const auto& [key, pg] : config->entries) {
    const PickleValue* ranks = pg->get("ranks");
    std::vector<int> members;
    if (ranks != nullptr && ranks->is_sequence()) {
      for (const auto& r : ranks->items) members.push_back(static_cast<int>(int_or(r.get(), -1)));
    } else if (ranks != nullptr && ranks->is_string()) {
      const std::string& s = ranks->text;
      for (std::size_t i = 0; i < s.size();) {
        if (s[i] < '0' || s[i] > '9') {
          ++i;
          continue;
        }
        int r = 0;
        const auto [end, ec] = std::from_chars(s.data() + i, s.data() + s.size(), r);
        if (ec != std::errc()) bad(file, "pg_config.ranks", "'" + s + "' is not a list of ranks");
        members.push_back(r);
        i = static_cast<std::size_t>(end - s.data());
      }
    }
    const PickleValue* name = pg->get("name");
    out[name != nullptr && name->is_string() ? name->text : key_text(*key)] = std::move(members);
  }
  return out;
}

struct Progress {
  std::int64_t started = -1;
  std::int64_t completed = -1;
};

// pg_status per group: collectives, and p2p where the version records it
// ("last_started_p2p" / "last_completed_p2p"; absent before 2.4).
struct GroupProgress {
  Progress collective;
  std::optional<Progress> p2p;
};

std::map<std::string, GroupProgress> group_progress(const PickleValue& dump) {
  std::map<std::string, GroupProgress> out;
  const PickleValue* status = dump.get("pg_status");
  if (status == nullptr || status->kind != Kind::kDict) return out;
  for (const auto& [key, s] : status->entries) {
    GroupProgress& g = out[key_text(*key)];
    g.collective = {int_or(s->get("last_started_collective"), -1), int_or(s->get("last_completed_collective"), -1)};
    if (s->get("last_completed_p2p") != nullptr) {
      g.p2p = Progress{int_or(s->get("last_started_p2p"), -1), int_or(s->get("last_completed_p2p"), -1)};
    }
  }
  return out;
}

// A p2p entry's direction and peer (a group rank): torch names them
// "nccl:send <rank>-><peer>" and "nccl:recv <rank><-<peer>".
struct P2pEnd {
  std::string op;  // "send" or "recv"
  int peer = -1;
};

std::optional<P2pEnd> p2p_end(std::string_view name) {
  if (const std::size_t colon = name.find(':'); colon != std::string_view::npos) name.remove_prefix(colon + 1);
  for (const auto& [op, arrow] : {std::pair{"send", "->"}, std::pair{"recv", "<-"}}) {
    if (!name.starts_with(op)) continue;
    const std::size_t at = name.find(arrow);
    if (at == std::string_view::npos) return std::nullopt;
    int peer = -1;
    const std::string_view digits = name.substr(at + 2);
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), peer);
    if (ec != std::errc() || end != digits.data() + digits.size() || peer < 0) return std::nullopt;
    return P2pEnd{op, peer};
  }
  return std::nullopt;
}

// PyTorch's dtype names in flight-recorder dumps and lockstep's, one table both ways.
constexpr std::array<std::pair<std::string_view, std::string_view>, 7> kDtypeNames{{
    {"Float", "f32"}, {"BFloat16", "bf16"}, {"Half", "f16"}, {"Double", "f64"},
    {"Long", "i64"},  {"Int", "i32"},       {"Byte", "u8"}}};

std::string dtype_of(const PickleValue* dtypes) {
  if (dtypes == nullptr || !dtypes->is_sequence() || dtypes->items.empty() || !dtypes->items[0]->is_string()) return {};
  const std::string& name = dtypes->items[0]->text;
  for (const auto& [torch_name, lockstep_name] : kDtypeNames) {
    if (torch_name == name) return std::string(lockstep_name);
  }
  return name;
}

std::int64_t elements_of(const PickleValue* sizes) {
  if (sizes == nullptr || !sizes->is_sequence()) return 0;
  std::int64_t total = 0;
  for (const auto& shape : sizes->items) {
    if (!shape->is_sequence()) continue;
    std::int64_t n = 1;
    for (const auto& dim : shape->items) n *= std::max<std::int64_t>(int_or(dim.get(), 0), 0);
    total += n;
  }
  return total;
}

// The user's frame: the first whose file is not PyTorch's own.
std::string user_frame(const PickleValue* frames) {
  if (frames == nullptr || !frames->is_sequence()) return {};
  for (const auto& frame : frames->items) {
    const PickleValue* file = frame->get("filename");
    if (file == nullptr || !file->is_string()) continue;
    if (file->text.find("/torch/") != std::string::npos || file->text.find("<frozen") != std::string::npos) continue;
    const PickleValue* name = frame->get("name");
    return file->text + ":" + std::to_string(int_or(frame->get("line"), 0)) +
           (name != nullptr && name->is_string() ? " in " + name->text : "");
  }
  return {};
}

EventState state_of(const PickleValue* state, std::int64_t seq, const Progress* progress) {
  EventState s = EventState::kEnqueued;
  if (state != nullptr && state->is_string()) {
    if (state->text == "completed") s = EventState::kCompleted;
    else if (state->text == "started") s = EventState::kStarted;
  }
  if (progress != nullptr && s != EventState::kCompleted) {
    if (seq <= progress->completed) s = EventState::kCompleted;
    else if (seq <= progress->started) s = EventState::kStarted;
  }
  return s;
}

}  // namespace

std::optional<int> torch_fr_rank(std::string_view file_name, std::string_view prefix) {
  if (prefix.empty() || !file_name.starts_with(prefix)) return std::nullopt;
  std::string_view rest = file_name.substr(prefix.size());
  for (const std::string_view suffix : {".pkl", ".pickle", ".json"}) {
    if (rest.ends_with(suffix)) {
      rest.remove_suffix(suffix.size());
      break;
    }
  }
  return rank_of_digits(rest);
}

Dump parse_torch_fr_dump(std::span<const std::uint8_t> bytes, const std::string& file, int rank,
                         StringTable& strings) {
  PickleValue::Ref root;
  if (!bytes.empty() && bytes[0] == '{') {
    const auto j = nlohmann::json::parse(bytes.begin(), bytes.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) throw Error(ErrorCode::kDecode, file + ": not valid JSON");
    root = from_json(j, 0, file);
  } else {
    try {
      root = read_pickle(bytes);
    } catch (const Error& error) {
      throw Error(error.code(), file + ": " + error.what());
    }
  }
  if (root->kind != Kind::kDict) bad(file, "(root)", "is a " + std::string(pickle_kind_name(root->kind)) + ", not a dict");
  check_version(*root, file);
  const auto ranks = group_ranks(*root, file);
  const auto progress = group_progress(*root);
  const PickleValue& entries = field(*root, "entries", file, Kind::kList);
  if (entries.items.size() > kFrEntriesMax) bad(file, "entries", "has more than 2^20 entries", ErrorCode::kLimit);

  Dump dump;
  dump.file = file;
  dump.rank = rank;
  dump.role = "torch";
  for (const auto& [name, members] : ranks) {
    for (const int r : members) dump.world_size = std::max(dump.world_size, r + 1);
  }
  std::map<std::string, std::int64_t> channel_calls;  // p2p calls seen so far per direction of a pair
  // torch numbers records from 0 and drops the oldest once its buffer is full.
  dump.entries_dropped = !entries.items.empty() && entries.items.front()->kind == Kind::kDict &&
                         int_or(entries.items.front()->get("record_id"), 0) > 0;
  for (const auto& entry : entries.items) {
    if (entry->kind != Kind::kDict) bad(file, "entries[]", "holds a " + std::string(pickle_kind_name(entry->kind)));
    const PickleValue* pg = entry->get("process_group");
    std::string group;
    if (pg != nullptr && pg->is_sequence() && !pg->items.empty() && pg->items[0]->is_string()) group = pg->items[0]->text;
    else if (pg != nullptr && pg->is_string()) group = pg->text;
    else group = std::to_string(int_or(entry->get("pg_id"), -1));
    const bool p2p = entry->get("is_p2p") != nullptr && entry->get("is_p2p")->boolean;
    Event e;
    e.kind = p2p ? EventKind::kP2p : EventKind::kCollective;
    e.group_seq = int_or(entry->get(p2p ? "p2p_seq_id" : "collective_seq_id"), -1);
    e.group = strings.intern(group);
    const PickleValue* name = entry->get("profiling_name");
    std::string op = name != nullptr && name->is_string() ? name->text : "unknown";
    if (const std::size_t colon = op.find(':'); colon != std::string::npos) op = op.substr(colon + 1);
    const auto members = ranks.find(group);
    const Progress* seen = nullptr;
    if (const auto it = progress.find(group); it != progress.end()) {
      seen = p2p ? (it->second.p2p ? &*it->second.p2p : nullptr) : &it->second.collective;
    }
    e.state = state_of(entry->get("state"), e.group_seq, seen);
    if (p2p) {
      // NCCL matches p2p messages in order per direction of a pair of ranks:
      // each direction is its own group, "<pg> p2p <src>-><dst>" (global
      // ranks), holding the sender's send and the receiver's recv, so a batch
      // that both sends and receives pairs each message with its match. In a
      // group of two, p2p_seq_id counts the pair's calls alike on both sides
      // and is the seq (a batch's ops share one); in a larger group it counts
      // every peer's calls, so the direction's own order (its n-th call here)
      // is the seq — only while no rank dropped entries (load_dumps turns
      // such calls into notes when one did).
      const std::optional<P2pEnd> end = p2p_end(op);
      const bool known = end && members != ranks.end() && end->peer < static_cast<int>(members->second.size());
      if (known) {
        op = end->op;
        e.peer = members->second[static_cast<std::size_t>(end->peer)];
        const bool send = end->op == "send";
        const std::string channel = group + " p2p " + std::to_string(send ? rank : e.peer) + "->" +
                                    std::to_string(send ? e.peer : rank);
        e.group = strings.intern(channel);
        const std::int64_t nth = ++channel_calls[channel];
        if (members->second.size() != 2) {
          e.group_seq = nth;
          if (std::find(dump.p2p_order_groups.begin(), dump.p2p_order_groups.end(), e.group) ==
              dump.p2p_order_groups.end()) {
            dump.p2p_order_groups.push_back(e.group);
          }
        }
      } else {
        e.group = strings.intern(group + " p2p");  // a peer pg_config does not name: not paired
      }
    }
    e.op = strings.intern(op);
    e.count = elements_of(entry->get("input_sizes"));
    e.dtype = strings.intern(dtype_of(entry->get("input_dtypes")));
    e.t_ns = int_or(entry->get("time_created_ns"), 0);
    e.detail = strings.intern(user_frame(entry->get("frames")));
    e.thread = strings.intern("torch");
    e.phase = strings.intern("");
    dump.dumped_at_ns = std::max(dump.dumped_at_ns, e.t_ns);
    dump.events.push_back(e);
  }
  // Entries of one group in seq order, as lockstep's own dumps are.
  std::stable_sort(dump.events.begin(), dump.events.end(),
                   [](const Event& a, const Event& b) { return a.t_ns < b.t_ns; });
  return dump;
}

namespace {

// Position of `rank` among the ranks with calls in `group` (its group rank
// when every member made calls).
int group_rank(const std::map<StrId, std::vector<int>>& members, StrId group, int rank) {
  const std::vector<int>& ranks = members.at(group);
  return static_cast<int>(std::find(ranks.begin(), ranks.end(), rank) - ranks.begin());
}

// torch's naming, which fr_trace insists on (the "nccl:" prefix, its op
// names): "nccl:all_reduce", "nccl:all_reduce_barrier" for a barrier, and for
// p2p "nccl:send 0->1" / "nccl:recv 1<-0" (group ranks), so a reader pairs them.
std::string profiling_name(const std::string& op, bool p2p, int me, int peer) {
  std::string name = "nccl:" + (op == "barrier" ? std::string("all_reduce_barrier") : op);
  if (!p2p || peer < 0) return name;
  return name + " " + std::to_string(me) + (op == "send" ? "->" : "<-") + std::to_string(peer);
}

std::string torch_dtype_name(std::string_view lockstep_name) {
  for (const auto& [torch_name, name] : kDtypeNames) {
    if (name == lockstep_name) return std::string(torch_name);
  }
  return std::string(lockstep_name);
}

}  // namespace

nlohmann::json torch_fr_value(const DumpSet& set, const Dump& dump) {
  std::map<StrId, std::vector<int>> members;  // group -> ranks with calls in it
  for (const Dump& d : set.dumps) {
    for (const Event& e : d.events) {
      if (!is_call(e)) continue;
      std::vector<int>& ranks = members[e.group];
      if (ranks.empty() || ranks.back() != d.rank) ranks.push_back(d.rank);
    }
  }
  nlohmann::json config = nlohmann::json::object();
  nlohmann::json status = nlohmann::json::object();
  for (const auto& [group, ranks] : members) {
    std::string text = "[";
    for (std::size_t i = 0; i < ranks.size(); ++i) text += (i ? ", " : "") + std::to_string(ranks[i]);
    const std::string& name = set.strings.str(group);
    config[name] = {{"name", name}, {"desc", "lockstep group " + name}, {"ranks", text + "]"}};
  }
  // One entry per call: the furthest state its events reached.
  std::map<std::pair<StrId, std::int64_t>, const Event*> furthest;
  std::vector<std::pair<StrId, std::int64_t>> order;
  for (const Event& e : dump.events) {
    if (!is_call(e)) continue;
    const auto key = std::make_pair(e.group, e.group_seq);
    auto [it, fresh] = furthest.try_emplace(key, &e);
    if (fresh) order.push_back(key);
    else if (e.state > it->second->state) it->second = &e;
  }
  nlohmann::json entries = nlohmann::json::array();
  std::map<StrId, std::array<std::int64_t, 3>> progress;  // enqueued, started, completed
  for (const auto& key : order) {
    const Event& e = *furthest[key];
    const std::string& group = set.strings.str(e.group);
    const bool p2p = e.kind == EventKind::kP2p;
    // A failed call never completed: it was under way.
    const bool completed_call = e.state == EventState::kCompleted;
    const bool started_call = e.state == EventState::kStarted || e.state == EventState::kFailed;
    const char* state = completed_call ? "completed" : started_call ? "started" : "scheduled";
    const std::string dtype = torch_dtype_name(set.strings.str(e.dtype));
    entries.push_back({{"record_id", entries.size()},
                       {"pg_id", std::distance(members.begin(), members.find(e.group))},
                       {"process_group", {group, "lockstep group " + group}},
                       {"collective_seq_id", p2p ? 0 : e.group_seq},
                       {"p2p_seq_id", p2p ? e.group_seq : 0},
                       {"op_id", e.group_seq},
                       {"profiling_name", profiling_name(set.strings.str(e.op), p2p, group_rank(members, e.group, dump.rank),
                                                         e.peer)},
                       {"time_created_ns", e.t_ns},
                       {"input_sizes", {{e.count}}},
                       {"input_dtypes", {dtype}},
                       {"output_sizes", {{e.count}}},
                       {"output_dtypes", {dtype}},
                       {"state", state},
                       {"time_discovered_started_ns", nullptr},
                       {"time_discovered_completed_ns", nullptr},
                       {"retired", false},
                       {"timeout_ms", 0},
                       {"is_p2p", p2p},
                       {"frames", nlohmann::json::array()}});
    if (p2p) continue;
    auto& [enqueued, started, completed] = progress.try_emplace(e.group, std::array<std::int64_t, 3>{-1, -1, -1})
                                               .first->second;
    enqueued = std::max(enqueued, e.group_seq);
    if (started_call || completed_call) started = std::max(started, e.group_seq);
    if (completed_call) completed = std::max(completed, e.group_seq);
  }
  for (const auto& [group, p] : progress) {
    status[set.strings.str(group)] = {{"last_enqueued_collective", p[0]},
                                      {"last_started_collective", p[1]},
                                      {"last_completed_collective", p[2]}};
  }
  return nlohmann::json{{"version", "2.10"}, {"rank", dump.rank}, {"pg_config", config}, {"pg_status", status},
                        {"entries", entries}};
}

}  // namespace lockstep::doctor
