// SPEC §8: `lockstep doctor` on 1024 ranks x 4096 events in <= 2 s.
//
// The dump set is generated once per size into a temporary job directory (a
// hang: every rank but one waits in the last all_reduce, so the whole
// analysis runs, not just the parse); each iteration then times what the
// command does: read + parse every file, align, judge.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <unistd.h>

#include "lockstep/doctor.h"

namespace {

constexpr int kStuckRank = 7;
constexpr std::int64_t kEventNs = 1'000;  // synthetic spacing between events

void append_event(std::string& out, std::int64_t t_ns, std::int64_t seq, const char* state) {
  char buf[384];
  const int n = std::snprintf(
      buf, sizeof buf,
      "%s{\"t_ns\":%lld,\"thread\":\"comm\",\"kind\":\"collective\",\"group\":\"mesh\",\"group_seq\":%lld,"
      "\"op\":\"all_reduce\",\"dtype\":\"bf16\",\"count\":5242880,\"peer\":-1,\"call_id\":%lld,"
      "\"chunk_index\":%lld,\"cache_epoch\":1,\"phase\":\"generator\",\"state\":\"%s\",\"detail\":\"\"}",
      seq == 0 && state[0] == 's' ? "" : ",", static_cast<long long>(t_ns), static_cast<long long>(seq),
      static_cast<long long>(seq / 64), static_cast<long long>(seq / 256), state);
  out.append(buf, static_cast<std::size_t>(n));
}

// One rank's dump: events/2 all_reduces (started + completed); the last one
// is only started (armed) on every rank but kStuckRank, which never got there.
std::string rank_dump(int rank, int ranks, int events) {
  const std::int64_t calls = events / 2;
  const std::int64_t last = rank == kStuckRank ? calls - 2 : calls - 1;
  std::string out;
  out.reserve(static_cast<std::size_t>(events) * 330 + 1024);
  char head[512];
  const bool waiting = rank != kStuckRank;
  const std::int64_t end_ns = calls * 2 * kEventNs;
  std::snprintf(head, sizeof head,
                "{\"format\":\"lockstep.flight_recorder\",\"version\":1,\"rank\":%d,\"world_size\":%d,\"pid\":%d,"
                "\"role\":\"worker\",\"reason\":{\"kind\":\"%s\",\"code\":\"%s\",\"message\":\"\",\"exit_code\":20},"
                "\"dumped_at_ns\":%lld,\"armed\":[",
                rank, ranks, 1000 + rank, waiting ? "timeout" : "fatal", waiting ? "timeout" : "peer_failure",
                static_cast<long long>(end_ns + 2'000'000'000));
  out += head;
  if (waiting) {
    out += "{\"thread\":\"comm\",\"what\":\"all_reduce\",\"group\":\"mesh\",\"group_seq\":" + std::to_string(last) +
           ",\"started_ns\":" + std::to_string(last * 2 * kEventNs) + ",\"deadline_ns\":" +
           std::to_string(end_ns + 2'000'000'000) + "}";
  }
  out += "],\"ledgers\":{\"mesh\":{\"next_seq\":" + std::to_string(last + 1) +
         ",\"digest\":\"0123abcd\"}},\"counters\":{\"stale_drops\":0,\"duplicate_drops\":0},\"events\":[";
  for (std::int64_t seq = 0; seq <= last; ++seq) {
    append_event(out, seq * 2 * kEventNs, seq, "started");
    if (seq != last || !waiting) append_event(out, seq * 2 * kEventNs + kEventNs, seq, "completed");
  }
  out += "]}\n";
  return out;
}

class SyntheticJob {
 public:
  SyntheticJob(int ranks, int events)
      : dir_(std::filesystem::temp_directory_path() /
             ("lockstep-doctor-bench-" + std::to_string(::getpid()) + "-" + std::to_string(ranks))) {
    std::filesystem::create_directories(dir_ / "dumps");
    for (int r = 0; r < ranks; ++r) {
      const std::string text = rank_dump(r, ranks, events);
      bytes_ += text.size();
      std::ofstream(dir_ / "dumps" / ("rank-" + std::to_string(r) + ".json"), std::ios::binary) << text;
    }
  }
  ~SyntheticJob() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  const std::filesystem::path& dir() const { return dir_; }
  std::size_t bytes() const { return bytes_; }

 private:
  std::filesystem::path dir_;
  std::size_t bytes_ = 0;
};

const SyntheticJob& job(int ranks, int events) {
  static std::map<std::pair<int, int>, std::unique_ptr<SyntheticJob>> jobs;
  auto& j = jobs[{ranks, events}];
  if (!j) j = std::make_unique<SyntheticJob>(ranks, events);
  return *j;
}

void BM_DoctorDiagnose(benchmark::State& state) {
  const int ranks = static_cast<int>(state.range(0));
  const int events = static_cast<int>(state.range(1));
  const SyntheticJob& j = job(ranks, events);
  for (auto _ : state) {
    lockstep::Diagnosis d = lockstep::diagnose(j.dir(), {});
    if (d.verdict != lockstep::Verdict::kHang || d.primary.ranks != std::vector<int>{kStuckRank}) {
      state.SkipWithError(("wrong verdict: " + d.primary.summary).c_str());
      break;
    }
    benchmark::DoNotOptimize(d);
  }
  state.counters["dump_MB"] = static_cast<double>(j.bytes()) / 1e6;
  state.counters["events"] = static_cast<double>(ranks) * events;
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * j.bytes()));
}

// Target (SPEC §8): the {1024, 4096} row at <= 2000 ms.
BENCHMARK(BM_DoctorDiagnose)->Args({64, 4096})->Args({1024, 4096})->Unit(benchmark::kMillisecond)
    ->Iterations(3)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
