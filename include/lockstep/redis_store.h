// The multi-host rendezvous store: keys live in a Redis server every rank can
// reach, under a namespace so several jobs can share one server.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "lockstep/store.h"

namespace lockstep {

// Bound on connecting to the server and on each single command's socket I/O;
// a server that does not answer within it makes the call throw Error{kStore}.
inline constexpr std::chrono::milliseconds kRedisIoTimeoutDefault{5000};
// get() polls no less often than this once its backoff has grown.
inline constexpr std::chrono::milliseconds kRedisPollMax{20};

struct RedisStoreOptions {
  std::string host = "127.0.0.1";
  int port = 6379;  // 1..65535
  // Every key is stored as "<key_namespace>/<key>"; empty: no namespace.
  std::string key_namespace;
  std::chrono::milliseconds io_timeout = kRedisIoTimeoutDefault;  // > 0
};

class RedisStore final : public Store {
 public:
  // Connects (blocking, at most options.io_timeout). Throws
  // Error{kInvalidArgument} for a bad port or timeout, Error{kStore} naming
  // host:port when the server cannot be reached.
  explicit RedisStore(RedisStoreOptions options);
  ~RedisStore() override;

  RedisStore(const RedisStore&) = delete;
  RedisStore& operator=(const RedisStore&) = delete;

  // Store contract (store.h). Thread-safe: one connection guarded by a mutex,
  // each command bounded by io_timeout. A get() never holds the mutex while it
  // sleeps between polls. Any I/O or protocol failure throws Error{kStore}
  // naming host:port and the key.
  void set(const std::string& key, const Bytes& value) override;
  Bytes get(const std::string& key, std::chrono::milliseconds timeout) override;
  bool check(const std::vector<std::string>& keys) override;
  std::string describe() const override;  // "redis:<host>:<port>/<namespace>"

 private:
  struct Connection;
  // The open connection, reopened first when there is none or the last
  // command broke it. REQUIRES: mutex_ held.
  Connection& connection_locked();
  std::string full_key(const std::string& key) const;

  RedisStoreOptions options_;
  std::mutex mutex_;
  std::unique_ptr<Connection> connection_;  // guarded by mutex_
};

}  // namespace lockstep
