// Chrome trace-event writer (the JSON Perfetto and chrome://tracing load).
// pid = rank, tid = the recorder thread's index within that rank (1-based, in
// order of first appearance). Timestamps are microseconds from the earliest
// event of any rank: dumps of one host share the steady clock.
#include "lockstep/trace.h"

#include <algorithm>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <tuple>
#include <unordered_map>

#include "doctor/dump.h"
#include "lockstep/error.h"

namespace lockstep {
namespace {

using nlohmann::json;
using doctor::Dump;
using doctor::Event;
using doctor::StrId;

class TraceWriter {
 public:
  TraceWriter(std::ostream& out, std::int64_t base_ns) : out_(out), base_ns_(base_ns) {}
  void emit(const json& event) {
    out_ << (count_ == 0 ? "\n" : ",\n") << event.dump(-1, ' ', false, json::error_handler_t::replace);
    ++count_;
  }
  double ts_us(std::int64_t t_ns) const { return static_cast<double>(t_ns - base_ns_) / 1e3; }
  std::size_t count() const { return count_; }

 private:
  std::ostream& out_;
  std::int64_t base_ns_;
  std::size_t count_ = 0;
};

// One rank's events, with a start waiting for its completion per span key.
class RankTrace {
 public:
  RankTrace(const doctor::DumpSet& set, const Dump& d, TraceWriter& w) : set_(set), d_(d), w_(w) {}

  void write() {
    write_metadata();
    for (const Event& e : d_.events) write_event(e);
    for (const auto& [key, start] : open_) write_span(*start, nullptr, "unfinished");
    write_dump_marks();
  }

 private:
  using SpanKey = std::tuple<StrId, EventKind, StrId, std::int64_t, StrId>;

  const std::string& str(StrId id) const { return set_.strings.str(id); }

  int tid(StrId thread) {
    const auto [it, inserted] = tids_.try_emplace(thread, static_cast<int>(tids_.size()) + 1);
    if (inserted) {
      w_.emit({{"ph", "M"}, {"name", "thread_name"}, {"pid", d_.rank}, {"tid", it->second},
               {"args", {{"name", str(thread).empty() ? "(unnamed)" : str(thread)}}}});
    }
    return it->second;
  }

  void write_metadata() {
    const std::string name = "rank " + std::to_string(d_.rank) + (d_.role.empty() ? "" : " (" + d_.role + ")");
    w_.emit({{"ph", "M"}, {"name", "process_name"}, {"pid", d_.rank}, {"args", {{"name", name}}}});
    w_.emit({{"ph", "M"}, {"name", "process_sort_index"}, {"pid", d_.rank}, {"args", {{"sort_index", d_.rank}}}});
  }

  std::string name_of(const Event& e) const {
    std::string name = str(e.op).empty() ? str(e.detail) : str(e.op);
    if (name.empty()) name = std::string(event_kind_name(e.kind));
    if (e.group_seq >= 0) name += " #" + std::to_string(e.group_seq);
    return name;
  }

  json args_of(const Event& e, std::string_view state) const {
    json args = {{"state", state}, {"kind", event_kind_name(e.kind)}};
    if (e.group != 0) args["group"] = str(e.group);
    if (e.group_seq >= 0) args["group_seq"] = e.group_seq;
    if (e.dtype != 0) args["dtype"] = str(e.dtype);
    if (e.count != 0) args["count"] = e.count;
    if (e.peer >= 0) args["peer"] = e.peer;
    if (e.call_id >= 0) args["call_id"] = e.call_id;
    if (e.chunk_index >= 0) args["chunk_index"] = e.chunk_index;
    if (e.cache_epoch >= 0) args["cache_epoch"] = e.cache_epoch;
    if (e.phase != 0) args["phase"] = str(e.phase);
    if (e.detail != 0) args[state == "failed" ? "error" : "detail"] = str(e.detail);
    return args;
  }

  // A span from `start` to `end` (or to the dump time when it never ended).
  void write_span(const Event& start, const Event* end, std::string_view state) {
    const std::int64_t end_ns = end != nullptr ? end->t_ns : std::max(d_.dumped_at_ns, start.t_ns);
    json ev = {{"ph", "X"}, {"name", name_of(start)}, {"cat", event_kind_name(start.kind)},
               {"pid", d_.rank}, {"tid", tid(start.thread)}, {"ts", w_.ts_us(start.t_ns)},
               {"dur", static_cast<double>(end_ns - start.t_ns) / 1e3},
               {"args", args_of(end != nullptr && end->state == EventState::kFailed ? *end : start, state)}};
    if (state != "completed") ev["cname"] = "terrible";  // Chrome's reserved red
    w_.emit(ev);
  }

  void write_instant(const Event& e, std::string_view state) {
    json ev = {{"ph", "i"}, {"s", "t"}, {"name", name_of(e)}, {"cat", event_kind_name(e.kind)},
               {"pid", d_.rank}, {"tid", tid(e.thread)}, {"ts", w_.ts_us(e.t_ns)}, {"args", args_of(e, state)}};
    if (e.state == EventState::kFailed) ev["cname"] = "terrible";
    w_.emit(ev);
  }

  void write_event(const Event& e) {
    if (e.kind == EventKind::kCommit || e.kind == EventKind::kNote) {
      write_instant(e, event_state_name(e.state));
      return;
    }
    const SpanKey key{e.thread, e.kind, e.group, e.group_seq, e.op};
    if (e.state == EventState::kEnqueued || e.state == EventState::kStarted) {
      open_.try_emplace(key, &e);  // the span starts at the first of enqueued/started
      return;
    }
    const auto it = open_.find(key);
    if (it == open_.end()) {  // its start fell out of the ring
      write_instant(e, event_state_name(e.state));
      return;
    }
    write_span(*it->second, &e, event_state_name(e.state));
    open_.erase(it);
  }

  void write_dump_marks() {
    for (const doctor::Armed& a : d_.armed) {
      w_.emit({{"ph", "i"}, {"s", "t"}, {"name", "deadline: " + str(a.what)}, {"cat", "armed"}, {"pid", d_.rank},
               {"tid", tid(a.thread)}, {"ts", w_.ts_us(a.deadline_ns)}, {"cname", "terrible"},
               {"args", {{"group", str(a.group)}, {"group_seq", a.group_seq}, {"started_us", w_.ts_us(a.started_ns)}}}});
    }
    w_.emit({{"ph", "C"}, {"name", "drops"}, {"pid", d_.rank}, {"ts", w_.ts_us(d_.dumped_at_ns)},
             {"args", {{"stale", d_.stale_drops}, {"duplicate", d_.duplicate_drops}}}});
    w_.emit({{"ph", "i"}, {"s", "p"}, {"name", "dump: " + std::string(doctor::reason_kind_name(d_.reason.kind)) +
                                                     (d_.reason.code.empty() ? "" : " " + d_.reason.code)},
             {"cat", "dump"}, {"pid", d_.rank}, {"tid", 0}, {"ts", w_.ts_us(d_.dumped_at_ns)},
             {"args", {{"message", d_.reason.message}, {"exit_code", d_.reason.exit_code}}}});
  }

  const doctor::DumpSet& set_;
  const Dump& d_;
  TraceWriter& w_;
  std::unordered_map<StrId, int> tids_;
  std::map<SpanKey, const Event*> open_;
};

std::int64_t earliest_ns(const doctor::DumpSet& set) {
  std::int64_t t = std::numeric_limits<std::int64_t>::max();
  for (const Dump& d : set.dumps) {
    t = std::min(t, d.dumped_at_ns);
    for (const Event& e : d.events) t = std::min(t, e.t_ns);
    for (const doctor::Armed& a : d.armed) t = std::min(t, a.started_ns);
  }
  return set.dumps.empty() ? 0 : t;
}

}  // namespace

TraceSummary write_trace(const std::filesystem::path& dir, std::ostream& out) {
  const doctor::DumpSet set = doctor::load_dumps(dir, 0);
  TraceSummary summary;
  for (const DumpProblem& p : set.problems) summary.problems.push_back(p.message);
  TraceWriter w(out, earliest_ns(set));
  out << "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [";
  for (const Dump& d : set.dumps) {
    RankTrace(set, d, w).write();
    summary.ranks.push_back(d.rank);
  }
  out << "\n]}\n";
  out.flush();
  if (!out) throw Error(ErrorCode::kResource, "trace: writing the output failed");
  summary.events_written = w.count();
  return summary;
}

}  // namespace lockstep
