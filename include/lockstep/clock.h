// The clock seam: protocol code reads time only through a Clock so the
// deterministic simulator can drive it with simulated time.
#pragma once

#include <cstdint>

namespace lockstep {

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic nanoseconds since an arbitrary origin. Thread-safe, non-blocking.
  virtual std::int64_t now_ns() const = 0;
};

// std::chrono::steady_clock. Thread-safe; one shared instance is enough.
class SteadyClock final : public Clock {
 public:
  std::int64_t now_ns() const override;
};

// The process-wide steady clock (stateless, so sharing it is not hidden state).
const Clock& steady_clock();

}  // namespace lockstep
