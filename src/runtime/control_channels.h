// The control channels of one rank (SPEC §4A): shared-memory rings carrying
// encoded frames between Stage 0 and the mesh, separate from the tensor data
// path (tensors go over the guarded communicator).
//
//   ring      writer           readers            topologies
//   envelopes rank 0           leader             pp0, pp1
//   results   leader           rank 0             pp0, pp1
//   mesh      leader           other mesh ranks   tp (leader = rank 0), pp1
//
// The writer of a ring creates it; readers attach within the start-up
// deadline. Endpoints obey the single-owner rule: the thread that first uses
// one owns it.
#pragma once

#include <memory>
#include <optional>

#include "lockstep/channel.h"
#include "lockstep/shm_ring.h"
#include "rank_context.h"

namespace lockstep {

struct ControlChannels {
  std::optional<ShmRing> envelopes_ring;
  std::optional<ShmRing> results_ring;
  std::optional<ShmRing> mesh_ring;
  std::unique_ptr<Channel> envelopes;  // rank 0: writer; leader (pp): reader
  std::unique_ptr<Channel> results;    // leader (pp): writer; rank 0: reader
  std::unique_ptr<Channel> mesh;       // leader: writer; other mesh ranks: reader

  // Cancels every endpoint this rank holds (wakes blocked waits). Any thread.
  void cancel() noexcept;
};

// Creates or attaches this rank's rings. Blocking at most the start-up
// deadline per ring (Error{kTimeout} naming the ring); Error{kResource} when
// /dev/shm lacks space.
ControlChannels open_control_channels(const RankContext& context);

// Largest frame any ring carries (receive buffers are this size).
std::size_t control_frame_bytes_max();

}  // namespace lockstep
