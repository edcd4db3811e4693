// SPEC §8 comm targets, as ratios from one run:
//  - envelope fan-out, 1 writer → 2/4/8 local reader processes, 4 KiB,
//    delivered and validated (every reader checked the frame's XXH3): the
//    writer publishes, then waits until every reader reported the frame
//    validated; median of that interval (target ≤ 5 µs). Beside it the same
//    4 KiB by Gloo broadcast over loopback TCP among the same process count
//    (root's per-op time, back-to-back).
//  - guarded vs raw collectives: one fixed sequence (all_reduce, broadcast,
//    all_gather, barrier) on 4 processes through the Communicator (with an
//    observer) and straight on a Gloo backend, rounds interleaved; ratio of
//    median round times (target ≤ 1.02).
// Every rank is a forked process; the benchmark process itself never creates
// Gloo threads, so forking stays safe. Each benchmark runs its job once
// (Iterations(1)) and reports its numbers as counters.
#include <benchmark/benchmark.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <functional>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "lockstep/clock.h"
#include "lockstep/communicator.h"
#include "lockstep/file_store.h"
#include "lockstep/gloo_backend.h"
#include "lockstep/shm_ring.h"

namespace lockstep {
namespace {

using std::chrono::milliseconds;
constexpr std::size_t kEnvelopeBytes = 4096;
constexpr int kFanOutFrames = 20000;
constexpr int kBroadcastOps = 2000;
constexpr int kSamplesMax = kFanOutFrames;
constexpr milliseconds kOpTimeout{20000};
// A job that has not finished by then is reported as an error, not waited on.
constexpr int kJobWallSeconds = 120;

// Shared between the benchmark process and its forked ranks.
struct Shared {
  std::atomic<std::uint64_t> validated[kShmRingReadersMax];  // frames each reader validated
  std::atomic<int> failures;
  double samples_us[kSamplesMax];
  int samples;
  double ratio;
};

Shared* map_shared() {
  void* memory = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) return nullptr;
  return new (memory) Shared{};
}

double now_us() { return static_cast<double>(steady_clock().now_ns()) / 1000.0; }

double percentile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  return values[static_cast<std::size_t>(q * static_cast<double>(values.size() - 1))];
}

// Forks `world` ranks running body(rank) and waits for them, bounded. True
// when every rank exited 0.
bool run_job(int world, const std::function<int(int)>& body) {
  std::vector<pid_t> pids;
  for (int rank = 0; rank < world; ++rank) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      int code = 1;
      try {
        code = body(rank);
      } catch (const std::exception& error) {
        std::fprintf(stderr, "rank %d: %s\n", rank, error.what());
      }
      ::_exit(code);
    }
    pids.push_back(pid);
  }
  bool ok = true;
  const std::int64_t deadline_ns = steady_clock().now_ns() + std::int64_t{kJobWallSeconds} * 1'000'000'000;
  for (pid_t pid : pids) {
    int status = 0;
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      if (steady_clock().now_ns() > deadline_ns) {
        for (pid_t victim : pids) ::kill(victim, SIGKILL);
        ::waitpid(pid, &status, 0);
        ok = false;
        break;
      }
      ::usleep(1000);
    }
    ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  return ok;
}

void report(benchmark::State& state, const Shared& shared, bool ok) {
  if (!ok || shared.failures.load() != 0 || shared.samples == 0) {
    state.SkipWithError("a rank failed; see stderr");
    return;
  }
  const std::vector<double> samples(shared.samples_us, shared.samples_us + shared.samples);
  state.counters["p50_us"] = percentile(samples, 0.5);
  state.counters["p99_us"] = percentile(samples, 0.99);
  state.counters["samples"] = shared.samples;
  state.SetIterationTime(percentile(samples, 0.5) / 1e6);
}

std::string unique_id(const char* what) {
  static int counter = 0;
  return std::string("bench-") + what + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

// Frame i: 8-byte XXH3 of the rest, then bytes derived from i.
void fill_envelope(std::vector<std::uint8_t>& frame, std::uint64_t i) {
  for (std::size_t b = 8; b < frame.size(); ++b) frame[b] = static_cast<std::uint8_t>(i + b);
  const std::uint64_t digest = XXH3_64bits(frame.data() + 8, frame.size() - 8);
  std::memcpy(frame.data(), &digest, 8);
}

bool envelope_valid(const std::uint8_t* frame, std::size_t size) {
  std::uint64_t digest = 0;
  std::memcpy(&digest, frame, 8);
  return size == kEnvelopeBytes && digest == XXH3_64bits(frame + 8, size - 8);
}

int shm_reader(const ShmRingOptions& options, int index, Shared& shared) {
  ShmRing ring = ShmRing::open(options, kOpTimeout);
  auto reader = ring.reader(index);
  std::vector<std::uint8_t> buffer(reader->frame_bytes_max());
  while (true) {
    const std::size_t size = reader->receive(buffer, kOpTimeout);
    if (size == 0) return 0;  // the writer's stop frame
    if (!envelope_valid(buffer.data(), size)) shared.failures.fetch_add(1);
    shared.validated[index].fetch_add(1, std::memory_order_release);
  }
}

// Publishes frame `i` and returns when every reader validated it.
double publish_and_wait(Channel& writer, std::vector<std::uint8_t>& frame, std::uint64_t i, int readers,
                        Shared& shared) {
  fill_envelope(frame, i);
  const double start_us = now_us();
  writer.publish(frame, kOpTimeout);
  const double deadline_us = start_us + static_cast<double>(kOpTimeout.count()) * 1000.0;
  for (int r = 0; r < readers; ++r) {
    while (shared.validated[r].load(std::memory_order_acquire) <= i) {
      if (now_us() > deadline_us) throw std::runtime_error("reader " + std::to_string(r) + " never validated frame " + std::to_string(i));
    }
  }
  return now_us() - start_us;
}

int shm_writer(const ShmRingOptions& options, Shared& shared) {
  constexpr int kWarmupFrames = 200;
  ShmRing ring = ShmRing::create(options);
  auto writer = ring.writer();
  std::vector<std::uint8_t> frame(kEnvelopeBytes);
  std::uint64_t i = 0;
  for (; i < kWarmupFrames; ++i) publish_and_wait(*writer, frame, i, options.readers, shared);
  for (int sample = 0; sample < kFanOutFrames; ++sample, ++i) {
    shared.samples_us[sample] = publish_and_wait(*writer, frame, i, options.readers, shared);
  }
  shared.samples = kFanOutFrames;
  writer->publish({}, kOpTimeout);
  return 0;
}

void BM_ShmRingFanOut4KiB(benchmark::State& state) {
  const int readers = static_cast<int>(state.range(0));
  Shared* shared = map_shared();
  ShmRingOptions options;
  options.job_id = unique_id("fanout");
  options.channel_name = "ctl";
  options.readers = readers;
  options.slots = 4;
  options.slot_payload_bytes = kEnvelopeBytes;
  bool ok = false;
  for (auto _ : state) {
    ok = run_job(readers + 1, [&](int rank) {
      return rank == 0 ? shm_writer(options, *shared) : shm_reader(options, rank - 1, *shared);
    });
  }
  report(state, *shared, ok);
  ::munmap(shared, sizeof(Shared));
}
BENCHMARK(BM_ShmRingFanOut4KiB)->Arg(2)->Arg(4)->Arg(8)->Iterations(1)->UseManualTime()->Unit(benchmark::kMicrosecond);

std::string make_store_dir() {
  std::string dir = "/tmp/lockstep-comm-bench-XXXXXX";
  if (::mkdtemp(dir.data()) == nullptr) return {};
  return dir;
}

BackendGroupSpec all_ranks(const std::string& name, int world, int rank) {
  BackendGroupSpec spec;
  spec.group_name = name;
  spec.member_ranks.resize(static_cast<std::size_t>(world));
  std::iota(spec.member_ranks.begin(), spec.member_ranks.end(), 0);
  spec.global_rank = rank;
  spec.connect_timeout = kOpTimeout;
  return spec;
}

int gloo_broadcast_rank(const std::string& store_dir, int world, int rank, Shared& shared) {
  constexpr int kWarmupOps = 100;
  FileStore store(store_dir);
  auto backend = GlooBackendFactory().connect(store, all_ranks("bcast", world, rank));
  std::vector<std::uint8_t> frame(kEnvelopeBytes);
  for (int i = 0; i < kWarmupOps + kBroadcastOps; ++i) {
    if (rank == 0) fill_envelope(frame, static_cast<std::uint64_t>(i));
    const double start_us = now_us();
    backend->broadcast(frame.data(), frame.size(), DType::kU8, 0, kOpTimeout);
    if (rank != 0 && !envelope_valid(frame.data(), frame.size())) shared.failures.fetch_add(1);
    if (rank == 0 && i >= kWarmupOps) shared.samples_us[i - kWarmupOps] = now_us() - start_us;
  }
  backend->barrier(kOpTimeout);
  if (rank == 0) shared.samples = kBroadcastOps;
  return 0;
}

void BM_GlooBroadcast4KiB(benchmark::State& state) {
  const int world = static_cast<int>(state.range(0)) + 1;
  Shared* shared = map_shared();
  const std::string store_dir = make_store_dir();
  bool ok = false;
  for (auto _ : state) {
    ok = run_job(world, [&](int rank) { return gloo_broadcast_rank(store_dir, world, rank, *shared); });
  }
  report(state, *shared, ok);
  ::munmap(shared, sizeof(Shared));
}
BENCHMARK(BM_GlooBroadcast4KiB)->Arg(2)->Arg(4)->Arg(8)->Iterations(1)->UseManualTime()->Unit(benchmark::kMicrosecond);

// What the flight recorder would do per event, at least: look at it.
class CountingObserver final : public CollectiveObserver {
 public:
  void on_collective(const CollectiveEvent&) noexcept override {
    events.fetch_add(1, std::memory_order_relaxed);
  }
  std::atomic<std::uint64_t> events{0};
};

// One step of the sequence both variants run: the shapes of a small TP step.
struct StepBuffers {
  std::vector<float> reduce = std::vector<float>(4096, 1.0f);
  std::vector<std::uint8_t> bcast = std::vector<std::uint8_t>(1024, 7);
  std::vector<float> gather_in = std::vector<float>(256, 2.0f);
  std::vector<float> gather_out;
};

void raw_step(Backend& backend, StepBuffers& b) {
  backend.all_reduce(b.reduce.data(), b.reduce.size(), DType::kF32, ReduceOp::kMax, kOpTimeout);
  backend.broadcast(b.bcast.data(), b.bcast.size(), DType::kU8, 0, kOpTimeout);
  backend.all_gather(b.gather_in.data(), b.gather_out.data(), b.gather_in.size(), DType::kF32, kOpTimeout);
  backend.barrier(kOpTimeout);
}

void guarded_step(Communicator& comm, StepBuffers& b) {
  comm.all_reduce("mesh", b.reduce.data(), b.reduce.size(), DType::kF32, ReduceOp::kMax, kOpTimeout);
  comm.broadcast("mesh", b.bcast.data(), b.bcast.size(), DType::kU8, 0, kOpTimeout);
  comm.all_gather("mesh", b.gather_in.data(), b.gather_out.data(), b.gather_in.size(), DType::kF32, kOpTimeout);
  comm.barrier("mesh", kOpTimeout);
}

constexpr int kGuardWorld = 4;
constexpr int kRounds = 10;          // per variant, interleaved raw/guarded
constexpr int kStepsPerRound = 200;

int guarded_vs_raw_rank(const std::string& store_dir, int rank, Shared& shared) {
  FileStore store(store_dir);
  GlooBackendFactory factory;
  auto raw = factory.connect(store, all_ranks("raw", kGuardWorld, rank));
  CountingObserver observer;
  CommunicatorOptions options;
  options.global_rank = rank;
  options.groups = make_standard_group_table(Topology::kTp, kGuardWorld);
  options.initial_phase = Phase::kGenerator;
  options.connect_timeout = kOpTimeout;
  Communicator comm(std::move(options), factory, store, &observer);
  StepBuffers buffers;
  buffers.gather_out.resize(buffers.gather_in.size() * kGuardWorld);
  std::vector<double> raw_us;
  std::vector<double> guarded_us;
  for (int round = 0; round < 2 * kRounds + 2; ++round) {  // the first pair warms up
    const bool guarded = round % 2 == 1;
    raw->barrier(kOpTimeout);
    const double start_us = now_us();
    for (int step = 0; step < kStepsPerRound; ++step) {
      if (guarded) {
        guarded_step(comm, buffers);
      } else {
        raw_step(*raw, buffers);
      }
    }
    const double step_us = (now_us() - start_us) / kStepsPerRound;
    if (round >= 2) (guarded ? guarded_us : raw_us).push_back(step_us);
  }
  raw->barrier(kOpTimeout);
  if (rank == 0) {
    for (std::size_t i = 0; i < guarded_us.size(); ++i) shared.samples_us[i] = guarded_us[i];
    shared.samples = static_cast<int>(guarded_us.size());
    shared.ratio = percentile(guarded_us, 0.5) / percentile(raw_us, 0.5);
    shared.samples_us[kSamplesMax - 1] = percentile(raw_us, 0.5);
  }
  return 0;
}

void BM_GuardedVsRawCollectives(benchmark::State& state) {
  Shared* shared = map_shared();
  const std::string store_dir = make_store_dir();
  bool ok = false;
  for (auto _ : state) {
    ok = run_job(kGuardWorld, [&](int rank) { return guarded_vs_raw_rank(store_dir, rank, *shared); });
  }
  report(state, *shared, ok);
  state.counters["raw_step_p50_us"] = shared->samples_us[kSamplesMax - 1];
  state.counters["guarded_over_raw"] = shared->ratio;
  ::munmap(shared, sizeof(Shared));
}
BENCHMARK(BM_GuardedVsRawCollectives)->Iterations(1)->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace lockstep

BENCHMARK_MAIN();
