// In-process fakes for guard's unit tests: a manual clock and a map store.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "lockstep/clock.h"
#include "lockstep/error.h"
#include "lockstep/store.h"

namespace lockstep::test {

class FakeClock final : public Clock {
 public:
  std::int64_t now_ns() const override { return now_ns_.load(); }
  void advance(std::chrono::milliseconds ms) {
    now_ns_ += std::chrono::duration_cast<std::chrono::nanoseconds>(ms).count();
  }

 private:
  std::atomic<std::int64_t> now_ns_{1'000'000'000};
};

class MemoryStore final : public Store {
 public:
  void set(const std::string& key, const Bytes& value) override {
    std::lock_guard<std::mutex> lock(mutex_);
    values_[key] = value;
    cv_.notify_all();
  }
  Bytes get(const std::string& key, std::chrono::milliseconds timeout) override {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!cv_.wait_for(lock, timeout, [&] { return values_.count(key) != 0; })) {
      throw Error(ErrorCode::kTimeout, "memory store: key " + key);
    }
    return values_[key];
  }
  bool check(const std::vector<std::string>& keys) override {
    std::lock_guard<std::mutex> lock(mutex_);
    ++checks_;
    for (const auto& key : keys) {
      if (values_.count(key) == 0) return false;
    }
    return true;
  }
  std::string describe() const override { return "memory"; }
  int checks() {
    std::lock_guard<std::mutex> lock(mutex_);
    return checks_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::map<std::string, Bytes> values_;
  int checks_ = 0;
};

}  // namespace lockstep::test
