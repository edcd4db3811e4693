// SPEC §8: flight-recorder append <= 50 ns. Measures record() as the
// Communicator's observer calls it (a collective with group, op, phase), from
// one thread and from several threads sharing the ring.
#include <benchmark/benchmark.h>

#include "lockstep/flight_recorder.h"
#include "lockstep/watchdog.h"

namespace lockstep {
namespace {

CollectiveEvent sample_event(std::uint64_t seq) {
  CollectiveEvent event;
  event.group = "mesh";
  event.group_seq = seq;
  event.op = CollectiveOp::kAllReduce;
  event.dtype = DType::kBF16;
  event.count = 5120 * 2160;
  event.phase = Phase::kGenerator;
  event.state = CollectiveState::kStarted;
  return event;
}

FlightRecorder& shared_recorder() {
  static FlightRecorder recorder(kFlightRecorderEventsDefault);
  return recorder;
}

void BM_FlightRecorderRecord(benchmark::State& state) {
  FlightRecorder& recorder = shared_recorder();
  FlightRecorder::name_this_thread("comm");
  EventSpec spec;
  spec.kind = EventKind::kCollective;
  spec.state = EventState::kStarted;
  spec.group = "mesh";
  spec.op = "all_reduce";
  spec.count = 1024;
  std::uint64_t seq = 0;
  for (auto _ : state) {
    spec.group_seq = seq++;
    recorder.record(spec);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_FlightRecorderRecord)->ThreadRange(1, 4)->UseRealTime();

void BM_FlightRecorderObserveCollective(benchmark::State& state) {
  FlightRecorder recorder(kFlightRecorderEventsDefault);
  std::uint64_t seq = 0;
  for (auto _ : state) recorder.on_collective(sample_event(seq++));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_FlightRecorderObserveCollective);

// The steady-clock read every append includes: the floor of the append cost
// on this host (a KVM guest reads kvm-clock through the vDSO).
void BM_SteadyClockRead(benchmark::State& state) {
  const Clock& clock = steady_clock();
  for (auto _ : state) {
    std::int64_t now_ns = clock.now_ns();
    benchmark::DoNotOptimize(now_ns);
  }
}
BENCHMARK(BM_SteadyClockRead);

// Arm + disarm as a channel or queue wait pays it.
void BM_WatchdogArmDisarm(benchmark::State& state) {
  Watchdog watchdog(WatchdogOptions{}, [](const WatchdogFiring&) {});
  for (auto _ : state) watchdog.disarm(watchdog.arm("queue_wait", "mesh", 1));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_WatchdogArmDisarm);

}  // namespace
}  // namespace lockstep

BENCHMARK_MAIN();
