#include "backends/gloo/store_adapter.h"

#include <algorithm>

namespace lockstep::gloo_detail {

StoreAdapter::StoreAdapter(lockstep::Store& store, Deadline deadline)
    : store_(store), deadline_(deadline) {}

std::chrono::milliseconds StoreAdapter::remaining(std::chrono::milliseconds cap) const {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline_ - std::chrono::steady_clock::now());
  return std::clamp(left, std::chrono::milliseconds::zero(), cap);
}

void StoreAdapter::set(const std::string& key, const std::vector<char>& data) {
  store_.set(key, Bytes(data.begin(), data.end()));
}

std::vector<char> StoreAdapter::get(const std::string& key) {
  const Bytes value = store_.get(key, remaining(std::chrono::milliseconds::max()));
  return std::vector<char>(value.begin(), value.end());
}

void StoreAdapter::wait(const std::vector<std::string>& keys) {
  wait(keys, std::chrono::milliseconds::max());
}

void StoreAdapter::wait(const std::vector<std::string>& keys,
                        const std::chrono::milliseconds& timeout) {
  // Gloo passes kNoTimeout (0) to mean "no timeout of its own": the connect
  // deadline still bounds the wait.
  const std::chrono::milliseconds cap =
      timeout.count() > 0 ? timeout : std::chrono::milliseconds::max();
  const auto wait_end = std::chrono::steady_clock::now() + remaining(cap);
  for (const std::string& key : keys) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        wait_end - std::chrono::steady_clock::now());
    store_.get(key, std::max(left, std::chrono::milliseconds::zero()));
  }
}

}  // namespace lockstep::gloo_detail
