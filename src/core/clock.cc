#include "lockstep/clock.h"

#include <chrono>

namespace lockstep {

std::int64_t SteadyClock::now_ns() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

const Clock& steady_clock() {
  static const SteadyClock clock;
  return clock;
}

}  // namespace lockstep
