// What one `lockstep run` job executes (SPEC §5, §6). The same struct is
// parsed by the `run` command (the supervisor) and by every rank process, so a
// rank sees exactly the configuration the operator typed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lockstep/bounded_queue.h"
#include "lockstep/fault_injection.h"
#include "lockstep/group_table.h"

namespace lockstep {

// Throws Error{kInvalidArgument} listing the valid names.
Topology parse_topology(std::string_view name);

inline constexpr int kRunWorldSizeMax = 8;       // one host's worth of ranks
inline constexpr std::int64_t kChunksMax = 1'000'000;

struct RunConfig {
  Topology topology = Topology::kPp1;
  int nproc = 3;                      // world size
  std::int64_t chunks = 24;
  std::int64_t hard_cut_every = 8;    // 0: never
  std::int64_t recompute_every = 4;   // 0: never; first chunk of an epoch never recomputes
  int num_denoise_steps = 3;
  int depth_in = 2;                   // D_in
  int depth_out = 2;                  // D_out
  std::string model = "tiny";
  std::string backend = "gloo";
  std::uint64_t seed = 1234;
  double decode_ms = 8.0;             // Stage 0 decode cost per chunk (balanced with generate_ms)
  double generate_ms = 8.0;           // the mesh minimum time per chunk
  int deadline_ms = 2000;             // steady-state deadline of every blocking op
  int startup_deadline_ms = 30000;    // rendezvous, connect, parity
  int heartbeat_ms = 250;             // Stage 0 sends NOOP after this idle time
  int drain_deadline_ms = 2000;       // hard cut / shutdown drain
  std::vector<Injection> injections;
  bool dump_on_exit = false;          // every rank writes its dump at a clean end too
  bool json = false;
  std::string job_dir;                // empty: a fresh temporary directory

  int mesh_size() const;              // ranks in the mesh
  int first_mesh_rank() const;        // 0 for tp, 1 for pp*
  // Throws Error{kInvalidArgument} naming the option that is out of range or
  // inconsistent with the topology.
  void validate() const;
};

}  // namespace lockstep
