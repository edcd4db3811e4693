// Shared helpers for the shm ring tests: unique segment names (tests of
// several builds run at once on one host) and frame patterns that reveal a
// slot overwritten too early.
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "lockstep/error.h"
#include "lockstep/shm_ring.h"

namespace lockstep::test {

inline ShmRingOptions unique_ring_options(int readers, std::uint32_t slots, std::size_t payload_bytes) {
  static std::atomic<int> counter{0};
  ShmRingOptions options;
  options.job_id = "t" + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1));
  options.channel_name = "ctl";
  options.readers = readers;
  options.slots = slots;
  options.slot_payload_bytes = payload_bytes;
  return options;
}

// Frame n: length 1 + n % max_bytes, every byte derived from n and its index.
inline std::vector<std::uint8_t> pattern_frame(std::uint64_t n, std::size_t max_bytes) {
  std::vector<std::uint8_t> frame(1 + n % max_bytes);
  for (std::size_t i = 0; i < frame.size(); ++i) frame[i] = static_cast<std::uint8_t>(n * 31 + i);
  return frame;
}

inline ErrorCode code_of(auto&& fn) {
  try {
    fn();
  } catch (const Error& error) {
    return error.code();
  }
  return ErrorCode::kInternal;  // "nothing thrown" never equals an expected code here
}

}  // namespace lockstep::test
