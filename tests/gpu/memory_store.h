// An in-process Store for GPU tests, so they need no store library or job
// directory: a map guarded by a mutex, with bounded waits on a condition.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "lockstep/error.h"
#include "lockstep/store.h"

namespace lockstep::testing {

class MemoryStore final : public Store {
 public:
  void set(const std::string& key, const Bytes& value) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      values_[key] = value;
    }
    changed_.notify_all();
  }

  Bytes get(const std::string& key, std::chrono::milliseconds timeout) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (!changed_.wait_for(lock, timeout, [&] { return values_.count(key) > 0; })) {
      throw Error(ErrorCode::kTimeout, "memory store: key " + key + " not set within " +
                                           std::to_string(timeout.count()) + " ms");
    }
    return values_.at(key);
  }

  bool check(const std::vector<std::string>& keys) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const std::string& key : keys) {
      if (values_.count(key) == 0) return false;
    }
    return true;
  }

  std::string describe() const override { return "memory"; }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::map<std::string, Bytes> values_;
};

}  // namespace lockstep::testing
