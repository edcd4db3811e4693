// Lets Gloo's rendezvous (connectFullMesh) run over a lockstep::Store while
// keeping lockstep's rule that every wait is timed: each wait and get ends at
// the earlier of Gloo's own timeout and the connect deadline.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <gloo/rendezvous/store.h>

#include "lockstep/store.h"

namespace lockstep::gloo_detail {

class StoreAdapter final : public gloo::rendezvous::Store {
 public:
  using Deadline = std::chrono::steady_clock::time_point;

  // REQUIRES: `store` outlives the adapter. Not thread-safe (Gloo calls it
  // from the connecting thread only).
  StoreAdapter(lockstep::Store& store, Deadline deadline);

  void set(const std::string& key, const std::vector<char>& data) override;
  // Waits until the connect deadline. Throws Error{kTimeout} naming the key.
  std::vector<char> get(const std::string& key) override;
  void wait(const std::vector<std::string>& keys) override;
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override;

 private:
  std::chrono::milliseconds remaining(std::chrono::milliseconds cap) const;

  lockstep::Store& store_;
  Deadline deadline_;
};

}  // namespace lockstep::gloo_detail
