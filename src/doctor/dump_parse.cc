// Parsing of one flight-recorder dump (version 1). Unknown keys are skipped so
// a producer may add fields within version 1; required fields and every enum
// value are checked, and each error names the file and the field path.
#include <algorithm>
#include <array>
#include <cstdint>
#include <string>

#include "doctor/dump.h"
#include "doctor/json_cursor.h"
#include "lockstep/error.h"

namespace lockstep::doctor {
namespace {

// Consecutive events mostly repeat the same thread/group/op/dtype/phase, so a
// one-entry cache per field skips most hash lookups on the hot path.
class FieldCache {
 public:
  StrId intern(StringTable& strings, std::string_view s) {
    if (valid_ && s == last_) return id_;
    last_.assign(s);
    id_ = strings.intern(s);
    valid_ = true;
    return id_;
  }

 private:
  std::string last_;
  StrId id_ = 0;
  bool valid_ = false;
};

// No event encodes in fewer bytes: the four required fields alone take more.
constexpr std::size_t kEventBytesMin = 48;

enum CacheSlot { kThread, kGroup, kOp, kDtype, kPhase, kSlotCount };

struct Parser {
  JsonCursor& cur;
  StringTable& strings;
  std::size_t text_bytes;
  std::array<FieldCache, kSlotCount> caches{};

  StrId str(CacheSlot slot, std::string_view field) {
    return caches[slot].intern(strings, cur.read_string(field));
  }
};

template <typename Enum, std::size_t N>
Enum enum_from(JsonCursor& cur, std::string_view field,
               const std::array<std::pair<std::string_view, Enum>, N>& names,
               std::string_view expected) {
  const std::string_view value = cur.read_string(field);
  for (const auto& [name, e] : names) {
    if (name == value) return e;
  }
  cur.fail(field, "unknown value \"" + std::string(value) + "\" (expected " + std::string(expected) + ")");
}

constexpr std::array<std::pair<std::string_view, ReasonKind>, 5> kReasonNames{{
    {"fatal", ReasonKind::kFatal}, {"timeout", ReasonKind::kTimeout},
    {"signal", ReasonKind::kSignal}, {"request", ReasonKind::kRequest},
    {"exit", ReasonKind::kExit}}};

std::int32_t read_peer(JsonCursor& cur, std::string_view field) {
  const std::int64_t peer = cur.read_int(field);
  if (peer < -1 || peer >= kWorldSizeMax) cur.fail(field, "peer out of range");
  return static_cast<std::int32_t>(peer);
}

// Fields an event of each kind must carry, as a bit mask over kEventFields.
enum EventField : unsigned { kFT = 1, kFThread = 2, kFKind = 4, kFState = 8, kFGroup = 16, kFSeq = 32, kFOp = 64 };

// Dispatch on the first character: a chain of 15 key compares per field
// was the largest cost of parsing a gigabyte of events.
void read_event_field(Parser& p, std::string_view key, Event& e, unsigned& seen) {
  JsonCursor& cur = p.cur;
  switch (key.empty() ? '\0' : key.front()) {
    case 't':
      if (key == "t_ns") { e.t_ns = cur.read_int("t_ns"); seen |= kFT; return; }
      if (key == "thread") { e.thread = p.str(kThread, "thread"); seen |= kFThread; return; }
      break;
    case 'k':
      if (key == "kind") { e.kind = enum_from(cur, "kind", kEventKindNames, "collective|p2p|commit|wait|stage|note"); seen |= kFKind; return; }
      break;
    case 's':
      if (key == "state") { e.state = enum_from(cur, "state", kEventStateNames, "enqueued|started|completed|failed"); seen |= kFState; return; }
      break;
    case 'g':
      if (key == "group") { e.group = p.str(kGroup, "group"); seen |= kFGroup; return; }
      if (key == "group_seq") { e.group_seq = cur.read_int("group_seq"); seen |= kFSeq; return; }
      break;
    case 'o':
      if (key == "op") { e.op = p.str(kOp, "op"); seen |= kFOp; return; }
      break;
    case 'd':
      if (key == "dtype") { e.dtype = p.str(kDtype, "dtype"); return; }
      if (key == "detail") { e.detail = p.strings.intern(cur.read_string("detail")); return; }
      break;
    case 'c':
      if (key == "count") { e.count = cur.read_int("count"); return; }
      if (key == "call_id") { e.call_id = cur.read_int("call_id"); return; }
      if (key == "chunk_index") { e.chunk_index = cur.read_int("chunk_index"); return; }
      if (key == "cache_epoch") { e.cache_epoch = cur.read_int("cache_epoch"); return; }
      break;
    case 'p':
      if (key == "peer") { e.peer = read_peer(cur, "peer"); return; }
      if (key == "phase") { e.phase = p.str(kPhase, "phase"); return; }
      break;
    default: break;
  }
  cur.skip_value(key);  // unknown within version 1: a newer producer's extra field
}

Event read_event(Parser& p, std::size_t index) {
  JsonCursor& cur = p.cur;
  const std::string where = "events[" + std::to_string(index) + "]";
  Event e;
  unsigned seen = 0;
  JsonScope scope = cur.begin_object(where);
  std::string_view key;
  while (cur.next_key(scope, key)) read_event_field(p, key, e, seen);
  unsigned required = kFT | kFThread | kFKind | kFState;
  if (is_call(e)) required |= kFGroup | kFSeq | kFOp;
  const unsigned absent = required & ~seen;
  if (absent != 0) {
    static constexpr std::array<std::string_view, 7> kNames{"t_ns", "thread", "kind", "state", "group", "group_seq", "op"};
    for (std::size_t bit = 0; bit < kNames.size(); ++bit) {
      if (absent & (1u << bit)) cur.fail(where, "missing required field \"" + std::string(kNames[bit]) + "\"");
    }
  }
  if ((required & kFSeq) && e.group_seq < 0) cur.fail(where + ".group_seq", "must be >= 0");
  return e;
}

void read_events(Parser& p, Dump& d, std::size_t text_bytes) {
  // Reserving for the most events the text can hold avoids growing (and
  // copying) the vector; untouched capacity costs address space, not memory.
  d.events.reserve(std::min(kEventsPerDumpMax, text_bytes / kEventBytesMin));
  JsonScope scope = p.cur.begin_array("events");
  while (p.cur.next_element(scope)) {
    if (d.events.size() >= kEventsPerDumpMax) p.cur.fail("events", "more than kEventsPerDumpMax entries");
    d.events.push_back(read_event(p, d.events.size()));
  }
}

void read_reason(JsonCursor& cur, Reason& r) {
  JsonScope scope = cur.begin_object("reason");
  std::string_view key;
  bool has_kind = false;
  while (cur.next_key(scope, key)) {
    if (key == "kind") { r.kind = enum_from(cur, "reason.kind", kReasonNames, "fatal|timeout|signal|request|exit"); has_kind = true; }
    else if (key == "code") r.code = cur.read_string("reason.code");
    else if (key == "message") r.message = cur.read_string("reason.message");
    else if (key == "exit_code") r.exit_code = cur.read_int("reason.exit_code");
    else cur.skip_value(key);
  }
  if (!has_kind) cur.fail("reason", "missing required field \"kind\"");
  // A lockstep::Error's text starts with its code ("timeout: ..."), which the
  // dump also carries as `code`: keep each cause once in every verdict line.
  for (const std::string prefix = r.code + ": "; !r.code.empty() && r.message.starts_with(prefix);) {
    r.message.erase(0, prefix.size());
  }
}

Armed read_armed_entry(Parser& p, std::size_t index) {
  JsonCursor& cur = p.cur;
  const std::string where = "armed[" + std::to_string(index) + "]";
  Armed a;
  bool has_what = false;
  JsonScope scope = cur.begin_object(where);
  std::string_view key;
  while (cur.next_key(scope, key)) {
    if (key == "thread") a.thread = p.str(kThread, "armed.thread");
    else if (key == "what") { a.what = p.str(kOp, "armed.what"); has_what = true; }
    else if (key == "group") a.group = p.str(kGroup, "armed.group");
    else if (key == "group_seq") a.group_seq = cur.read_int("armed.group_seq");
    else if (key == "started_ns") a.started_ns = cur.read_int("armed.started_ns");
    else if (key == "deadline_ns") a.deadline_ns = cur.read_int("armed.deadline_ns");
    else cur.skip_value(key);
  }
  if (!has_what) cur.fail(where, "missing required field \"what\"");
  return a;
}

void read_armed(Parser& p, Dump& d) {
  JsonScope scope = p.cur.begin_array("armed");
  while (p.cur.next_element(scope)) {
    if (d.armed.size() >= kEventsPerDumpMax) p.cur.fail("armed", "too many entries");
    d.armed.push_back(read_armed_entry(p, d.armed.size()));
  }
}

void read_ledgers(Parser& p, Dump& d) {
  JsonScope scope = p.cur.begin_object("ledgers");
  std::string_view group;
  while (p.cur.next_key(scope, group)) {
    Ledger l;
    l.group = p.strings.intern(group);
    const std::string where = "ledgers." + p.strings.str(l.group);
    JsonScope inner = p.cur.begin_object(where);
    std::string_view key;
    while (p.cur.next_key(inner, key)) {
      if (key == "next_seq") l.next_seq = p.cur.read_int(where + ".next_seq");
      else if (key == "digest") l.digest = p.cur.read_string(where + ".digest");
      else p.cur.skip_value(key);
    }
    d.ledgers.push_back(std::move(l));
  }
}

void read_counters(JsonCursor& cur, Dump& d) {
  JsonScope scope = cur.begin_object("counters");
  std::string_view key;
  while (cur.next_key(scope, key)) {
    if (key == "stale_drops") d.stale_drops = cur.read_int("counters.stale_drops");
    else if (key == "duplicate_drops") d.duplicate_drops = cur.read_int("counters.duplicate_drops");
    else cur.skip_value(key);
  }
}

// Top-level fields a dump must carry, as bits.
enum TopField : unsigned { kTFormat = 1, kTVersion = 2, kTRank = 4, kTWorld = 8, kTEvents = 16 };

void read_top_field(Parser& p, std::string_view key, Dump& d, unsigned& seen) {
  JsonCursor& cur = p.cur;
  if (key == "format") {
    const std::string_view format = cur.read_string("format");
    if (format != kDumpFormat) cur.fail("format", "\"" + std::string(format) + "\" is not " + std::string(kDumpFormat));
    seen |= kTFormat;
  } else if (key == "version") {
    const std::int64_t version = cur.read_int("version");
    if (version != kDumpVersion) {
      throw Error(ErrorCode::kVersion, d.file + ": version: " + std::to_string(version) +
                                           " is not supported (this doctor reads version 1)");
    }
    seen |= kTVersion;
  } else if (key == "rank") {
    const std::int64_t rank = cur.read_int("rank");
    if (rank < 0 || rank >= kWorldSizeMax) cur.fail("rank", "out of range");
    d.rank = static_cast<int>(rank);
    seen |= kTRank;
  } else if (key == "world_size") {
    const std::int64_t world = cur.read_int("world_size");
    if (world < 1 || world > kWorldSizeMax) cur.fail("world_size", "out of range");
    d.world_size = static_cast<int>(world);
    seen |= kTWorld;
  } else if (key == "pid") d.pid = cur.read_int("pid");
  else if (key == "role") d.role = cur.read_string("role");
  else if (key == "reason") read_reason(cur, d.reason);
  else if (key == "dumped_at_ns") d.dumped_at_ns = cur.read_int("dumped_at_ns");
  else if (key == "armed") read_armed(p, d);
  else if (key == "ledgers") read_ledgers(p, d);
  else if (key == "counters") read_counters(cur, d);
  else if (key == "events") { read_events(p, d, p.text_bytes); seen |= kTEvents; }
  else cur.skip_value(key);
}

}  // namespace

Dump parse_dump(std::string_view text, const std::string& file, StringTable& strings) {
  JsonCursor cur(text, file);
  Parser p{cur, strings, text.size()};
  Dump d;
  d.file = file;
  unsigned seen = 0;
  JsonScope scope = cur.begin_object("dump");
  std::string_view key;
  while (cur.next_key(scope, key)) read_top_field(p, key, d, seen);
  cur.expect_end();
  static constexpr std::array<std::string_view, 5> kNames{"format", "version", "rank", "world_size", "events"};
  for (std::size_t bit = 0; bit < kNames.size(); ++bit) {
    if (!(seen & (1u << bit))) {
      throw Error(ErrorCode::kSchema, file + ": missing required field \"" + std::string(kNames[bit]) + "\"");
    }
  }
  if (d.rank >= d.world_size) {
    throw Error(ErrorCode::kSchema, file + ": rank " + std::to_string(d.rank) + " is not below world_size " +
                                        std::to_string(d.world_size));
  }
  return d;
}

}  // namespace lockstep::doctor
