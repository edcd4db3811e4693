// A real redis-server on 127.0.0.1 for tests of multi-machine rendezvous
// (several "machines" on this host share it). Tests fail, not skip, when
// redis-server is missing: CI installs it.
#pragma once

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "lockstep/error.h"
#include "lockstep/redis_store.h"

extern char** environ;

namespace lockstep::test {

inline constexpr const char* kRedisServer = "/usr/bin/redis-server";

// A redis-server child on 127.0.0.1:<port>, without persistence; stopped
// (SIGTERM, then SIGKILL past kStop) when this goes out of scope.
class RedisServer {
 public:
  static constexpr std::chrono::milliseconds kStart{10000};
  static constexpr std::chrono::milliseconds kStop{5000};
  static constexpr std::chrono::milliseconds kPoll{10};

  explicit RedisServer(int port) : port_(port) {
    const std::string port_text = std::to_string(port);
    const char* argv[] = {kRedisServer, "--port", port_text.c_str(), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no", "--daemonize", "no", nullptr};
    const int rc = posix_spawn(&pid_, kRedisServer, nullptr, nullptr, const_cast<char**>(argv), environ);
    if (rc != 0) pid_ = -1;
  }
  ~RedisServer() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + kStop;
    int status = 0;
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() >= deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        return;
      }
      std::this_thread::sleep_for(kPoll);
    }
  }
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  bool started() const { return pid_ > 0; }
  int port() const { return port_; }
  std::string url() const { return "redis:127.0.0.1:" + std::to_string(port_); }

  // True once a client can connect, within kStart.
  bool wait_ready() const {
    const auto deadline = std::chrono::steady_clock::now() + kStart;
    while (std::chrono::steady_clock::now() < deadline) {
      try {
        RedisStore probe({"127.0.0.1", port_, "probe", std::chrono::milliseconds(500)});
        probe.set("ready", {});
        return true;
      } catch (const Error&) {
        std::this_thread::sleep_for(kPoll);
      }
    }
    return false;
  }

 private:
  int port_;
  pid_t pid_ = -1;
};

}  // namespace lockstep::test
