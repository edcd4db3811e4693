// One rank's guard stack inside a forked test child, wired the way the
// runtime wires it: file store, flight recorder, fatal handler, watchdog
// (firing into the fatal handler, polling peers' poison marks).
#pragma once

#include <chrono>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "lockstep/fatal.h"
#include "lockstep/file_store.h"
#include "lockstep/flight_recorder.h"
#include "lockstep/watchdog.h"

namespace lockstep::test {

inline std::string job_dir_from_env() {
  const char* dir = std::getenv("LOCKSTEP_JOB_DIR");
  return dir != nullptr ? dir : "";
}

inline WatchdogOptions quick_watchdog(std::chrono::milliseconds steady) {
  WatchdogOptions options;
  options.startup_deadline = std::chrono::milliseconds(20'000);
  options.steady_deadline = steady;
  options.check_period = std::chrono::milliseconds(2);
  options.poison_poll_period = std::chrono::milliseconds(20);
  return options;
}

struct GuardedRank {
  GuardedRank(int rank, int world_size, WatchdogOptions watchdog_options,
              std::chrono::milliseconds hard_exit_deadline = kHardExitDeadlineDefault,
              bool end_generation_on_curable = false)
      : store(job_dir_from_env() + "/store"),
        recorder(kFlightRecorderEventsMin * 4),
        fatal(FatalOptions{rank, world_size, "rank", job_dir_from_env(), hard_exit_deadline, true,
                           end_generation_on_curable},
              recorder, &store),
        watchdog(with_peers(watchdog_options, rank, world_size),
                 [this](const WatchdogFiring& firing) { fatal.fail(firing); }) {
    FatalSources sources;
    sources.armed = [this] { return watchdog.armed(); };
    fatal.set_sources(sources);
    watchdog.enter_steady_state();
    watchdog.start();
  }

  // Blocks "forever" (a peer's poison or the watchdog ends the process; the
  // test's wall bound ends a hang).
  [[noreturn]] void idle() {
    for (;;) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }

  WatchdogOptions with_peers(WatchdogOptions options, int rank, int world_size) {
    options.store = &store;
    options.rank = rank;
    options.world_size = world_size;
    return options;
  }

  FileStore store;
  FlightRecorder recorder;
  FatalHandler fatal;
  Watchdog watchdog;
};

}  // namespace lockstep::test
