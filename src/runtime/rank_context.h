// Everything one rank process of `lockstep run` shares across its loops: the
// configuration, the guarded communicator, the guard objects, the wire
// context and, with --backend nccl, the rank's GPU. Built by rank_main.cc
// once per generation (warm recovery builds the next one in the same
// process); the loops borrow it.
#pragma once

#include <chrono>
#include <cstdint>

#include "lockstep/communicator.h"
#include "lockstep/fatal.h"
#include "lockstep/fault_injection.h"
#include "lockstep/flight_recorder.h"
#include "lockstep/frame.h"
#include "lockstep/envelope.h"
#include "lockstep/run_config.h"
#include "lockstep/store.h"
#include "lockstep/watchdog.h"

namespace lockstep {

class GpuRank;

struct RankContext {
  const RunConfig& config;
  int rank = -1;
  int world_size = 0;
  std::string job_id;
  std::uint32_t generation = 0;  // part of every ring name (job_token.h)
  std::string job_dir;
  Store& store;      // this generation's key space (after join_job)
  Store& job_store;  // the job-level keys every generation shares (recovery.h)
  Communicator& comm;
  FlightRecorder& recorder;
  Watchdog& watchdog;
  FatalHandler& fatal;
  const FaultPlan& faults;
  FrameContext frame_context;  // negotiated version, sender rank, token digest
  FrameExpectations expect;    // what every received frame must carry
  GpuRank* gpu = nullptr;      // set when this rank drives a GPU (mesh or boundary)
  // Every payload stays on the GPUs: the boundary runs on NCCL (Stage 0 has
  // a GPU of its own), so Stage 0 makes, sends, receives and decodes device
  // tensors and the mesh receives, broadcasts and returns them on the device.
  bool payloads_on_device = false;

  std::chrono::milliseconds deadline() const { return std::chrono::milliseconds(config.deadline_ms); }
  // The call the recorder's next events belong to.
  void set_call_context(const CallIds& ids) const {
    recorder.set_context(static_cast<std::int64_t>(ids.call_id), static_cast<std::int64_t>(ids.chunk_index),
                         static_cast<std::int64_t>(ids.cache_epoch));
  }
  bool is_stage0() const { return rank == 0; }
  bool in_mesh() const { return rank >= config.first_mesh_rank(); }
  int mesh_rank() const { return rank - config.first_mesh_rank(); }  // TP rank, for in_mesh() ranks
  bool is_leader() const { return rank == config.first_mesh_rank(); }
  // True when fault `id` fires on this rank at `chunk` (defaults: the case's
  // natural rank, see fault_injection.cc callers).
  bool fires(FaultId id, std::int64_t chunk, int default_rank, std::int64_t default_chunk) const {
    return faults.fires(id, rank, chunk, default_rank, default_chunk);
  }
};

}  // namespace lockstep
