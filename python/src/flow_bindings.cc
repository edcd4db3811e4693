// Idempotency and flow for Python: Stage 0's acceptance rule, the mesh's
// envelope sequencer, the overlap meter, and the shared-memory control
// channel between local ranks.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "bindings.h"
#include "lockstep/acceptance.h"
#include "lockstep/overlap_meter.h"
#include "lockstep/shm_ring.h"
#include "process_runtime.h"

namespace py = pybind11;

namespace lockstep::python {
namespace {

std::string verdict_name(ResultVerdict verdict) {
  switch (verdict) {
    case ResultVerdict::kAccepted: return "accepted";
    case ResultVerdict::kBuffered: return "buffered";
    case ResultVerdict::kStale: return "stale";
    case ResultVerdict::kDuplicate: return "duplicate";
  }
  return "invalid";
}

py::dict distribution(const Distribution& d) {
  py::dict out;
  out["count"] = d.count;
  out["median"] = d.median;
  out["p90"] = d.p90;
  out["mean"] = d.mean;
  return out;
}

// One endpoint of a ring plus the buffer its receives copy into.
struct ChannelEndpoint {
  std::shared_ptr<ShmRing> ring;  // keeps the mapping alive
  std::shared_ptr<Channel> channel;  // shared with the fatal path's cancel
  std::vector<std::uint8_t> buffer;
};

// Publishes `frame` (bytes or a preflighted frame's buffer), without the GIL.
void publish_frame(ChannelEndpoint& endpoint, std::span<const std::uint8_t> frame, std::int64_t timeout_ms) {
  py::gil_scoped_release release;
  endpoint.channel->publish(frame, std::chrono::milliseconds(timeout_ms));
}

// The next frame, copied into the endpoint's buffer. Call without the GIL.
std::span<const std::uint8_t> receive_frame(ChannelEndpoint& endpoint, std::int64_t timeout_ms) {
  const std::size_t size = endpoint.channel->receive(endpoint.buffer, std::chrono::milliseconds(timeout_ms));
  return {endpoint.buffer.data(), size};
}

// Receives the next frame and decodes it where it was copied, both without
// the GIL; only the Python fields are built with it.
template <typename Decode, typename Fields>
py::tuple receive_decoded(ChannelEndpoint& endpoint, std::int64_t timeout_ms, Decode decode, Fields fields) {
  const auto decoded = [&] {
    py::gil_scoped_release release;
    return decode(receive_frame(endpoint, timeout_ms));
  }();
  return fields(decoded);
}

ShmRingOptions ring_options(const std::string& job_id, std::uint32_t generation, const std::string& name,
                            int readers, std::uint32_t slots, std::size_t slot_bytes, std::int64_t spin_us) {
  ShmRingOptions options;
  options.spin = std::chrono::microseconds(spin_us);
  options.job_id = job_id;
  options.generation = generation;
  options.channel_name = name;
  options.readers = readers;
  options.slots = slots;
  options.slot_payload_bytes = slot_bytes;
  return options;
}

}  // namespace

void bind_flow(py::module_& m) {
  py::class_<AcceptanceRule>(m, "AcceptanceRule")
      .def(py::init<std::uint64_t, std::size_t>(), py::arg("cache_epoch"), py::arg("reorder_window"))
      .def("expect", &AcceptanceRule::expect)
      .def("offer",
           [](AcceptanceRule& rule, std::uint64_t call_id, std::uint64_t cache_epoch) {
             const AcceptanceRule::Decision decision = rule.offer(call_id, cache_epoch);
             return std::make_pair(verdict_name(decision.verdict), decision.released);
           })
      .def("begin_epoch", &AcceptanceRule::begin_epoch)
      .def_property_readonly("cache_epoch", &AcceptanceRule::cache_epoch)
      .def_property_readonly("awaited", &AcceptanceRule::awaited)
      .def_property_readonly("counters", [](const AcceptanceRule& rule) {
        const AcceptanceCounters& c = rule.counters();
        py::dict out;
        out["accepted"] = c.accepted;
        out["stale_drops"] = c.stale_drops;
        out["duplicate_drops"] = c.duplicate_drops;
        out["reordered"] = c.reordered;
        out["discarded_in_flight"] = c.discarded_in_flight;
        return out;
      });

  py::class_<EnvelopeSequencer>(m, "EnvelopeSequencer")
      .def(py::init<std::uint64_t, std::uint64_t, std::uint64_t>(), py::arg("first_call_id"),
           py::arg("first_chunk_index"), py::arg("first_cache_epoch"))
      .def("admit",
           [](EnvelopeSequencer& sequencer, std::uint64_t call_id, std::uint64_t cache_epoch,
              std::optional<std::uint64_t> chunk_index, std::uint64_t content_digest) {
             const auto admission = sequencer.admit({call_id, cache_epoch, chunk_index, content_digest});
             return std::make_pair(
                 std::string(admission.verdict == EnvelopeVerdict::kApply ? "apply" : "duplicate"),
                 admission.epoch_changed);
           })
      .def_property_readonly("applied", &EnvelopeSequencer::applied)
      .def_property_readonly("duplicate_drops", &EnvelopeSequencer::duplicate_drops);

  py::class_<OverlapMeter>(m, "OverlapMeter")
      .def(py::init<>())
      .def("record",
           [](OverlapMeter& meter, std::uint64_t chunk_index, double stage0_ms, double stage1_ms,
              std::int64_t emitted_ns) {
             const ChunkOverlap& o = meter.record({chunk_index, stage0_ms, stage1_ms, emitted_ns});
             py::dict out;
             out["chunk_index"] = o.timing.chunk_index;
             out["period_ms"] = o.has_period ? py::cast(o.period_ms) : py::none();
             out["hidden_ms"] = o.has_period ? py::cast(o.hidden_ms) : py::none();
             out["mesh_idle_ms"] = o.has_period ? py::cast(o.mesh_idle_ms) : py::none();
             out["score"] = o.has_score ? py::cast(o.score) : py::none();
             return out;
           })
      .def("break_segment", &OverlapMeter::break_segment)
      .def("summary", [](const OverlapMeter& meter) {
        const OverlapSummary s = meter.summary();
        py::dict out;
        out["chunks"] = s.chunks;
        out["stage0_ms"] = distribution(s.stage0_ms);
        out["stage1_ms"] = distribution(s.stage1_ms);
        out["period_ms"] = distribution(s.period_ms);
        out["hidden_ms"] = distribution(s.hidden_ms);
        out["mesh_idle_ms"] = distribution(s.mesh_idle_ms);
        out["overlap_score"] = s.overlap_score.median;
        out["mesh_idle_ms_total"] = s.mesh_idle_ms_total;
        return out;
      });

  py::class_<ShmRing, std::shared_ptr<ShmRing>>(m, "ShmRing")
      .def_static(
          "create",
          [](const std::string& job_id, std::uint32_t generation, const std::string& name, int readers,
             std::uint32_t slots, std::size_t slot_bytes, std::int64_t spin_us) {
            return std::make_shared<ShmRing>(
                ShmRing::create(ring_options(job_id, generation, name, readers, slots, slot_bytes, spin_us)));
          })
      .def_static("open",
                  [](const std::string& job_id, std::uint32_t generation, const std::string& name, int readers,
                     std::uint32_t slots, std::size_t slot_bytes, std::int64_t spin_us, std::int64_t timeout_ms) {
                    const ShmRingOptions options =
                        ring_options(job_id, generation, name, readers, slots, slot_bytes, spin_us);
                    py::gil_scoped_release release;
                    return std::make_shared<ShmRing>(ShmRing::open(options, std::chrono::milliseconds(timeout_ms)));
                  })
      .def_property_readonly("segment_name", &ShmRing::segment_name);
  m.attr("SHM_SPIN_US_DEFAULT") = kShmRingSpinDefault.count();
  m.attr("SHM_SPIN_US_MAX") = kShmRingSpinMax.count();
  m.def("sweep_dead_shm_rings", &sweep_dead_shm_rings,
        "Removes /dev/shm/lockstep-* rings whose creator and every endpoint are dead; returns how many.");

  py::class_<ChannelEndpoint>(m, "ChannelEndpoint")
      .def_static("writer",
                  [](const std::shared_ptr<ShmRing>& ring) {
                    auto endpoint = std::make_unique<ChannelEndpoint>();
                    endpoint->ring = ring;
                    endpoint->channel = ring->writer();
                    return endpoint;
                  })
      .def_static("reader",
                  [](const std::shared_ptr<ShmRing>& ring, int index) {
                    auto endpoint = std::make_unique<ChannelEndpoint>();
                    endpoint->ring = ring;
                    endpoint->channel = ring->reader(index);
                    endpoint->buffer.resize(endpoint->channel->frame_bytes_max());
                    return endpoint;
                  })
      .def("publish",
           [](ChannelEndpoint& endpoint, const py::bytes& frame, std::int64_t timeout_ms) {
             const std::string_view bytes = frame;
             publish_frame(endpoint, {reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()},
                           timeout_ms);
           })
      .def("publish_envelope",
           [](ChannelEndpoint& endpoint, const py::tuple& args, std::int64_t timeout_ms) {
             publish_frame(endpoint, prepare_envelope(args).frame(), timeout_ms);
           })
      .def("publish_result",
           [](ChannelEndpoint& endpoint, const py::tuple& args, std::int64_t timeout_ms) {
             publish_frame(endpoint, prepare_result(args).frame(), timeout_ms);
           })
      .def("receive",
           [](ChannelEndpoint& endpoint, std::int64_t timeout_ms) {
             std::span<const std::uint8_t> frame;
             {
               py::gil_scoped_release release;
               frame = receive_frame(endpoint, timeout_ms);
             }
             return py::bytes(reinterpret_cast<const char*>(frame.data()), frame.size());
           })
      .def("receive_envelope",
           [](ChannelEndpoint& endpoint, std::int64_t timeout_ms, std::uint64_t token_digest, int version) {
             const FrameExpectations expected = frame_expectations(token_digest, version);
             return receive_decoded(
                 endpoint, timeout_ms,
                 [&](std::span<const std::uint8_t> frame) { return decode_envelope(frame, expected); },
                 envelope_fields);
           })
      .def("receive_result",
           [](ChannelEndpoint& endpoint, std::int64_t timeout_ms, std::uint64_t token_digest, int version) {
             const FrameExpectations expected = frame_expectations(token_digest, version);
             return receive_decoded(
                 endpoint, timeout_ms,
                 [&](std::span<const std::uint8_t> frame) { return decode_result(frame, expected); },
                 result_fields);
           })
      .def("cancel", [](ChannelEndpoint& endpoint) { endpoint.channel->cancel(); })
      .def("cancel_on_fault",
           [](const ChannelEndpoint& endpoint, ProcessRuntime& runtime) { runtime.cancel_on_fault(endpoint.channel); })
      .def_property_readonly("frame_bytes_max",
                             [](const ChannelEndpoint& endpoint) { return endpoint.channel->frame_bytes_max(); })
      .def("describe", [](const ChannelEndpoint& endpoint) { return endpoint.channel->describe(); });
}

}  // namespace lockstep::python
