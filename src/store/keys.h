// Private helpers shared by the store implementations: key and value checks
// against the limits of store.h, and the bounded polling wait behind get().
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <thread>

#include "lockstep/error.h"
#include "lockstep/store.h"

namespace lockstep::store_detail {

// First sleep between two polls of a key that is not there yet; each later
// sleep doubles up to the store's poll maximum.
inline constexpr std::chrono::milliseconds kPollFirst{1};

// Throws Error{kInvalidArgument} for an empty key, a '/' at either end, a
// non-printable byte, or Error{kLimit} past kStoreKeyBytesMax. `where` names
// the store in the message.
void check_key(const std::string& key, const std::string& where);
// Throws Error{kLimit} past kStoreValueBytesMax, naming the key.
void check_value(const std::string& key, const Bytes& value, const std::string& where);

// Calls try_get until it returns a value or `timeout` expires, sleeping with a
// doubling backoff capped at poll_max (never past the deadline). Throws
// Error{kTimeout} naming the key and the store on expiry.
template <typename TryGet>
Bytes poll_for_key(const std::string& key, std::chrono::milliseconds timeout,
                   std::chrono::milliseconds poll_max, const std::string& where,
                   TryGet&& try_get) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point deadline = Clock::now() + timeout;
  std::chrono::milliseconds pause = kPollFirst;
  for (;;) {
    std::optional<Bytes> value = try_get();
    if (value) return std::move(*value);
    const Clock::time_point now = Clock::now();
    if (now >= deadline) {
      throw Error(ErrorCode::kTimeout, "store " + where + ": key '" + key + "' did not appear within " +
                                           std::to_string(timeout.count()) + " ms");
    }
    std::this_thread::sleep_for(std::min<Clock::duration>(pause, deadline - now));
    pause = std::min(pause * 2, poll_max);
  }
}

}  // namespace lockstep::store_detail
