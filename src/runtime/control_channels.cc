#include "control_channels.h"

#include "lockstep/error.h"

namespace lockstep {
namespace {

// Envelopes in flight plus a heartbeat and a resend: the ring itself never
// becomes the backpressure point before D_in does.
std::uint32_t ring_slots(const RunConfig& config) {
  return static_cast<std::uint32_t>(config.depth_in + 2);
}

ShmRingOptions ring_options(const RankContext& context, const char* name, int readers) {
  ShmRingOptions options;
  options.job_id = context.job_id;
  options.generation = context.generation;
  options.channel_name = name;
  options.readers = readers;
  options.slots = ring_slots(context.config);
  return options;
}

// The writer creates the ring; every reader attaches to it.
ShmRing create_or_open(const RankContext& context, const ShmRingOptions& options, bool writer) {
  if (writer) return ShmRing::create(options);
  return ShmRing::open(options, std::chrono::milliseconds(context.config.startup_deadline_ms));
}

void open_boundary_rings(const RankContext& context, ControlChannels& channels) {
  const int leader = context.config.first_mesh_rank();
  if (context.rank != 0 && context.rank != leader) return;
  const bool stage0 = context.rank == 0;
  channels.envelopes_ring = create_or_open(context, ring_options(context, "envelopes", 1), stage0);
  channels.results_ring = create_or_open(context, ring_options(context, "results", 1), !stage0);
  channels.envelopes = stage0 ? channels.envelopes_ring->writer() : channels.envelopes_ring->reader(0);
  channels.results = stage0 ? channels.results_ring->reader(0) : channels.results_ring->writer();
}

void open_mesh_ring(const RankContext& context, ControlChannels& channels) {
  const int leader = context.config.first_mesh_rank();
  const int workers = context.config.mesh_size() - 1;
  if (workers < 1 || !context.in_mesh()) return;
  const bool writer = context.rank == leader;
  channels.mesh_ring = create_or_open(context, ring_options(context, "mesh", workers), writer);
  channels.mesh = writer ? channels.mesh_ring->writer() : channels.mesh_ring->reader(context.rank - leader - 1);
}

}  // namespace

void ControlChannels::cancel() noexcept {
  for (Channel* channel : {envelopes.get(), results.get(), mesh.get()}) {
    if (channel != nullptr) channel->cancel();
  }
}

ControlChannels open_control_channels(const RankContext& context) {
  ControlChannels channels;
  if (context.config.topology != Topology::kTp) open_boundary_rings(context, channels);
  open_mesh_ring(context, channels);
  return channels;
}

std::size_t control_frame_bytes_max() { return kShmRingSlotPayloadBytesDefault; }

}  // namespace lockstep
