// The rendezvous store seam: a small key/value store every rank of a job can
// reach (a file-store directory on one host, Redis across hosts, memory in the
// simulator). Used for rendezvous, the job token, and the out-of-band poison
// mark that lets a failing rank stop its peers without the backend.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lockstep {

using Bytes = std::vector<std::uint8_t>;

// Keys are printable ASCII without '/' at either end, at most this long.
inline constexpr std::size_t kStoreKeyBytesMax = 256;
// A value larger than this is refused (kLimit): the store is a control plane.
inline constexpr std::size_t kStoreValueBytesMax = 1 << 20;

class Store {
 public:
  virtual ~Store() = default;

  // Publishes key=value, replacing any earlier value. Non-blocking apart from
  // the I/O itself. Thread-safe. Throws Error{kStore} on I/O failure,
  // Error{kLimit} past the size limits.
  virtual void set(const std::string& key, const Bytes& value) = 0;

  // Waits until key exists, then returns its value. Blocks at most timeout;
  // throws Error{kTimeout} naming the key when it expires. Thread-safe.
  virtual Bytes get(const std::string& key, std::chrono::milliseconds timeout) = 0;

  // True when every key exists. Non-blocking; safe to call from the watchdog
  // thread (it never touches the collective backend). Thread-safe.
  virtual bool check(const std::vector<std::string>& keys) = 0;

  // A human-readable description ("file:/tmp/job", "redis:127.0.0.1:6379/job").
  virtual std::string describe() const = 0;
};

// A view of another store where every key is prefixed with `prefix` + "/".
// Owns nothing beyond the shared pointer to its base.
std::unique_ptr<Store> make_prefix_store(std::shared_ptr<Store> base, std::string prefix);

}  // namespace lockstep
