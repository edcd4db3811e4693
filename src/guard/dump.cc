// Version-1 flight-recorder dump (docs/ARCHITECTURE.md). The reader is
// src/doctor; any change here is a format version bump.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "lockstep/error.h"
#include "lockstep/flight_recorder.h"

namespace lockstep {

namespace {

using Json = nlohmann::ordered_json;

// A parity table can be long; the dump keeps its head.
constexpr std::size_t kDumpMessageBytesMax = 16 * 1024;
constexpr std::size_t kDumpArmedMax = 256;
constexpr std::size_t kDumpLedgersMax = 64;
constexpr std::size_t kDumpCountersMax = 64;

std::string dtype_text(std::uint8_t raw) {
  const auto dtype = dtype_from_wire(raw);
  return dtype ? std::string(dtype_name(*dtype)) : std::string();
}

Json event_json(const FlightEvent& e) {
  return Json{{"t_ns", e.t_ns},
              {"seq", e.seq},
              {"thread", e.thread.view()},
              {"kind", event_kind_name(e.kind)},
              {"group", e.group.view()},
              {"group_seq", e.group_seq},
              {"op", e.op.view()},
              {"dtype", dtype_text(e.dtype)},
              {"count", e.count},
              {"peer", e.peer},
              {"call_id", e.call_id},
              {"chunk_index", e.chunk_index},
              {"cache_epoch", e.cache_epoch},
              {"phase", e.phase.view()},
              {"state", event_state_name(e.state)},
              {"detail", e.detail.view()}};
}

Json armed_json(const std::vector<ArmedDeadline>& armed) {
  Json out = Json::array();
  for (std::size_t i = 0; i < armed.size() && i < kDumpArmedMax; ++i) {
    const ArmedDeadline& a = armed[i];
    out.push_back(Json{{"thread", a.thread.substr(0, kEventNameBytesMax)},
                       {"what", a.what.substr(0, kEventNameBytesMax)},
                       {"group", a.group.substr(0, kEventNameBytesMax)},
                       {"group_seq", a.group_seq},
                       {"started_ns", a.started_ns},
                       {"deadline_ns", a.deadline_ns}});
  }
  return out;
}

Json header_json(const DumpHeader& h, std::int64_t dumped_at_ns) {
  Json ledgers = Json::object();
  for (std::size_t i = 0; i < h.ledgers.size() && i < kDumpLedgersMax; ++i) {
    const LedgerSummary& l = h.ledgers[i];
    ledgers[l.group.substr(0, kEventNameBytesMax)] =
        Json{{"next_seq", l.next_seq}, {"digest", l.digest_hex.substr(0, kEventDetailBytesMax)}};
  }
  Json counters = Json::object();
  for (std::size_t i = 0; i < h.counters.size() && i < kDumpCountersMax; ++i) {
    counters[h.counters[i].first.substr(0, kEventNameBytesMax)] = h.counters[i].second;
  }
  return Json{{"format", "lockstep.flight_recorder"},
              {"version", kDumpFormatVersion},
              {"rank", h.rank},
              {"world_size", h.world_size},
              {"pid", static_cast<std::int64_t>(getpid())},
              {"role", h.role.substr(0, kEventNameBytesMax)},
              {"reason", Json{{"kind", dump_reason_kind_name(h.reason.kind)},
                              {"code", h.reason.code.substr(0, kEventNameBytesMax)},
                              {"message", h.reason.message.substr(0, kDumpMessageBytesMax)},
                              {"exit_code", h.reason.exit_code}}},
              {"dumped_at_ns", dumped_at_ns},
              {"armed", armed_json(h.armed)},
              {"ledgers", std::move(ledgers)},
              {"counters", std::move(counters)}};
}

void write_all(int fd, const std::string& text, const std::filesystem::path& path) {
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      throw Error(ErrorCode::kResource,
                  "cannot write dump " + path.string() + ": " + std::strerror(errno));
    }
    done += static_cast<std::size_t>(n);
  }
}

}  // namespace

std::string_view dump_reason_kind_name(DumpReasonKind kind) {
  switch (kind) {
    case DumpReasonKind::kFatal: return "fatal";
    case DumpReasonKind::kTimeout: return "timeout";
    case DumpReasonKind::kSignal: return "signal";
    case DumpReasonKind::kRequest: return "request";
    case DumpReasonKind::kExit: return "exit";
  }
  return "fatal";
}

std::filesystem::path dump_path(const std::filesystem::path& job_dir, int rank) {
  return job_dir / "dumps" / ("rank-" + std::to_string(rank) + ".json");
}

std::string format_dump(const DumpHeader& header, const std::vector<FlightEvent>& events,
                        std::int64_t dumped_at_ns) {
  Json dump = header_json(header, dumped_at_ns);
  Json list = Json::array();
  for (const FlightEvent& e : events) list.push_back(event_json(e));
  dump["events"] = std::move(list);
  // Truncation may split a UTF-8 sequence; replace rather than throw.
  return dump.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
}

std::filesystem::path write_dump(const std::filesystem::path& job_dir, const DumpHeader& header,
                                 const FlightRecorder& recorder) {
  // Copy the ring first: formatting allocates, copying does not block anyone.
  const std::vector<FlightEvent> events = recorder.snapshot();
  const std::int64_t now_ns = recorder.clock().now_ns();
  const std::string text = format_dump(header, events, now_ns);
  const std::filesystem::path path = dump_path(job_dir, header.rank);
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  if (ec) {
    throw Error(ErrorCode::kResource,
                "cannot create dump directory " + path.parent_path().string() + ": " + ec.message());
  }
  const std::filesystem::path tmp = path.string() + ".tmp." + std::to_string(getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    throw Error(ErrorCode::kResource, "cannot open dump " + tmp.string() + ": " + std::strerror(errno));
  }
  try {
    write_all(fd, text, tmp);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    throw Error(ErrorCode::kResource, "cannot rename dump to " + path.string() + ": " + std::strerror(errno));
  }
  return path;
}

}  // namespace lockstep
