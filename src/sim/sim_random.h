// The simulator's only source of randomness: splitmix64 over a 64-bit state.
// Written out here (not <random> distributions) because the standard leaves
// distribution algorithms to the library, and a seed must replay the same
// run on every build.
#pragma once

#include <cstdint>

namespace lockstep::sim {

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}

  std::uint64_t next() noexcept {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1).
  double real() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  // Uniform in [lo, hi] (REQUIRES lo <= hi; the modulo bias is irrelevant at these sizes).
  std::int64_t between(std::int64_t lo, std::int64_t hi) noexcept {
    return lo + static_cast<std::int64_t>(next() % static_cast<std::uint64_t>(hi - lo + 1));
  }
  bool chance(double probability) noexcept { return real() < probability; }

 private:
  std::uint64_t state_;
};

}  // namespace lockstep::sim
