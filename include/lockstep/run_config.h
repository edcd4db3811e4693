// What one `lockstep run` job executes (SPEC §5, §6). The same struct is
// parsed by the `run` command (the supervisor) and by every rank process, so a
// rank sees exactly the configuration the operator typed.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "lockstep/backend_selection.h"
#include "lockstep/bounded_queue.h"
#include "lockstep/fault_injection.h"
#include "lockstep/group_table.h"
#include "lockstep/recovery.h"

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
  // CUDA-graph capture of each denoise call, its mesh all-reduces inside
  // the graph (--backend nccl); part of the parity record.
  bool graph_capture = false;
  std::uint64_t seed = 1234;
  double decode_ms = 8.0;             // Stage 0 decode cost per chunk (balanced with generate_ms)
  double generate_ms = 8.0;           // the mesh minimum time per chunk
  int deadline_ms = 2000;             // steady-state deadline of every blocking op
  int startup_deadline_ms = 30000;    // rendezvous, connect, parity
  int heartbeat_ms = 250;             // Stage 0 sends NOOP after this idle time
  int drain_deadline_ms = 2000;       // hard cut / shutdown drain
  std::vector<Injection> injections;
  bool dump_on_exit = false;          // every rank writes its dump at a clean end too
  // kRestart: warm recovery (recovery.h) — a curable fault ends a generation,
  // not the job; the launcher restarts only the ranks that died.
  OnFault on_fault = OnFault::kExit;
  bool json = false;
  std::string job_dir;                // empty: a fresh temporary directory

  int mesh_size() const;              // ranks in the mesh
  int first_mesh_rank() const;        // 0 for tp, 1 for pp*
  // Stage 0's decode cost of one chunk at its slowest (E1 multiplies it).
  double slowest_decode_ms() const;
  // How long after one rank ended cleanly every other rank must have ended
  // (the launcher's end bound): the mesh leaves at SHUTDOWN while Stage 0
  // may still decode what is in flight (depth_out + 1 chunks at the slowest
  // cost) and drain; then every rank tears down within a deadline and the
  // hard-exit bound.
  std::chrono::milliseconds end_bound() const;
  // Throws Error{kInvalidArgument} naming the option that is out of range or
  // inconsistent with the topology.
  void validate() const;
};

// The GPUs this process can use: whether this binary has the NCCL backend
// (nvcc was found when it was configured) and how many CUDA devices are
// visible (CUDA_VISIBLE_DEVICES applies). Never throws.
struct MachineGpus {
  bool cuda_built = false;
  int visible = 0;
};
MachineGpus probe_machine_gpus();

// Where each group of the job runs and on which GPU each rank works.
struct GroupBackendPlan {
  std::map<std::string, std::string> backend_of_group;  // "gloo" or "nccl"
  std::vector<RankDevice> device_of_rank;               // gpu_index -1: CPU only
  std::string mesh_reason;                              // why the mesh got its backend
  bool stage0_on_gpu = false;                           // the boundary runs on NCCL
};

// With --backend gloo every group runs over Gloo. With --backend nccl the
// mesh group runs over NCCL with one GPU per mesh rank, and the world group
// (control traffic) stays on Gloo, as a PyTorch job pairs a CPU process group
// with its GPU one. In pp topologies Stage 0 gets a GPU of its own whenever
// the machine shows one per rank (rank r on GPU r): then the boundary runs on
// NCCL too and payloads go device to device (stage0_on_gpu). With fewer
// GPUs, Stage 0 stays on the CPU (rank r on GPU r - 1) and the boundary on
// Gloo. Pure. Throws
// Error{kInvalidArgument} saying why the machine cannot hold the mesh
// (binary built without CUDA, or how many GPUs the topology needs against
// how many are visible) rather than silently running the mesh on Gloo.
GroupBackendPlan plan_group_backends(const RunConfig& config, const MachineGpus& machine);
// The same on this machine; probes the GPUs only for --backend nccl, so a
// Gloo job never initialises CUDA.
GroupBackendPlan plan_group_backends_here(const RunConfig& config);

}  // namespace lockstep
