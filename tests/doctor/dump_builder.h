// Builds flight-recorder dumps (docs/ARCHITECTURE.md, version 1) for doctor
// and trace tests, and a temporary job directory to write them into.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <unistd.h>

namespace lockstep::testing {

using nlohmann::json;

// A fresh job directory with a dumps/ folder; removed on destruction.
class JobDir {
 public:
  JobDir() {
    static std::atomic<int> counter{0};
    root_ = std::filesystem::path(::testing::TempDir()) /
            ("lockstep-doctor-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_ / "dumps");
  }
  ~JobDir() {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }
  JobDir(const JobDir&) = delete;
  JobDir& operator=(const JobDir&) = delete;

  const std::filesystem::path& root() const { return root_; }
  std::filesystem::path dumps() const { return root_ / "dumps"; }
  std::filesystem::path file_for(int rank) const { return dumps() / ("rank-" + std::to_string(rank) + ".json"); }

  void write(int rank, const json& dump) const { write_raw(file_for(rank), dump.dump(1)); }
  void write_raw(const std::filesystem::path& path, const std::string& text) const {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    ASSERT_TRUE(out.good()) << path;
  }

 private:
  std::filesystem::path root_;
};

inline json dump(int rank, int world_size, const std::string& reason_kind = "exit",
                 const std::string& code = "", const std::string& message = "",
                 std::int64_t dumped_at_ns = 10'000'000'000) {
  return {{"format", "lockstep.flight_recorder"}, {"version", 1}, {"rank", rank}, {"world_size", world_size},
          {"pid", 1000 + rank}, {"role", rank == 0 ? "leader" : "worker"},
          {"reason", {{"kind", reason_kind}, {"code", code}, {"message", message}, {"exit_code", 0}}},
          {"dumped_at_ns", dumped_at_ns}, {"armed", json::array()}, {"ledgers", json::object()},
          {"counters", {{"stale_drops", 0}, {"duplicate_drops", 0}}}, {"events", json::array()}};
}

struct Call {
  std::string op = "all_reduce";
  std::string group = "mesh";
  std::int64_t seq = 0;
  std::string state = "completed";
  std::string dtype = "f32";
  std::int64_t count = 1024;
  int peer = -1;
  std::int64_t call_id = 1;
  std::string kind = "collective";
  std::string thread = "comm";
  std::string detail;
  std::int64_t t_ns = 0;  // 0: derived from seq
};

inline json event(const Call& c) {
  const std::int64_t t = c.t_ns != 0 ? c.t_ns : 1'000'000'000 + c.seq * 1'000'000;
  return {{"t_ns", t}, {"thread", c.thread}, {"kind", c.kind}, {"group", c.group}, {"group_seq", c.seq},
          {"op", c.op}, {"dtype", c.dtype}, {"count", c.count}, {"peer", c.peer}, {"call_id", c.call_id},
          {"chunk_index", 0}, {"cache_epoch", 1}, {"phase", "generator"}, {"state", c.state},
          {"detail", c.detail}};
}

// started + completed events for seqs [first, last] of one op on a group.
inline void add_completed(json& d, std::int64_t first, std::int64_t last, Call base = {}) {
  for (std::int64_t s = first; s <= last; ++s) {
    base.seq = s;
    base.t_ns = 0;
    base.state = "started";
    d["events"].push_back(event(base));
    base.state = "completed";
    base.t_ns = 1'000'000'000 + s * 1'000'000 + 500'000;
    d["events"].push_back(event(base));
  }
}

inline void add_armed(json& d, const std::string& what, const std::string& group, std::int64_t seq,
                      std::int64_t started_ns, std::int64_t deadline_ns) {
  d["armed"].push_back({{"thread", "comm"}, {"what", what}, {"group", group}, {"group_seq", seq},
                        {"started_ns", started_ns}, {"deadline_ns", deadline_ns}});
}

}  // namespace lockstep::testing
