// The machines of one job: where torch's MASTER_ADDR/PORT come from, and how
// a failure on one machine reaches the others' launchers. Private to
// src/launch.
//
// One machine: 127.0.0.1 (or the given address) and a free port; no store.
// Several: every launcher joins the job's store (job token, generation);
// node 0 publishes "<addr>:<port>" under "launch/master" and the others wait
// for it, at most rendezvous_ms. A launcher whose job failed publishes
// "launch/failed"; every launcher checks that key once per supervision tick.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "launch/job.h"
#include "lockstep/launcher.h"
#include "lockstep/store.h"

namespace lockstep::launch_detail {

class NodeGroup {
 public:
  // Fills job.master_addr / job.master_port. Blocking on the store (nodes >
  // 0 wait for node 0). Throws Error{kStore}, Error{kJobToken},
  // Error{kTimeout} naming the key, Error{kResource} when no port is free.
  NodeGroup(const LaunchOptions& options, JobSetup& job);

  // What another machine published about its failure; nullopt while none
  // did (or on one machine). One store check; never throws (a store that
  // fails is reported as the failure itself).
  std::optional<std::string> peer_failure();
  // Publishes this machine's failure for the others. Never throws.
  void publish_failure(const std::string& summary) noexcept;

 private:
  const int node_rank_;
  std::unique_ptr<Store> store_;  // the job's key space; null on one machine
  bool published_ = false;
};

// A TCP port free on this machine right now (bind to port 0, then close).
int free_tcp_port();

}  // namespace lockstep::launch_detail
