// The parts of lockstep._core, one function per area (module.cc calls them).
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>

#include "lockstep/envelope.h"
#include "lockstep/prepared.h"
#include "lockstep/result.h"

namespace lockstep::python {

// Envelope/Result codec, job token digest (wire_bindings.cc).
void bind_wire(pybind11::module_& m);
// Preflight of a frame from the fields Codec._envelope_args/_result_args
// pass (the order is at the definitions): by the codec's encode and by the
// channel's encode-and-publish alike.
PreparedEnvelope prepare_envelope(const pybind11::tuple& args);
PreparedResult prepare_result(const pybind11::tuple& args);
// What a decoded frame must match; `version` checked to fit.
FrameExpectations frame_expectations(std::uint64_t token_digest, int version);
// A decoded frame's fields as the tuple wire.py unpacks (the order is in
// bind_wire): built once, by the codec's decode and by the channel's
// receive-and-decode alike.
pybind11::tuple envelope_fields(const DecodedEnvelope& decoded);
pybind11::tuple result_fields(const DecodedResult& decoded);
// Acceptance rule, envelope sequencer, overlap meter, shared-memory control
// channel (flow_bindings.cc).
void bind_flow(pybind11::module_& m);

}  // namespace lockstep::python
