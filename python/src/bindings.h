// The parts of lockstep._core, one function per area (module.cc calls them).
#pragma once

#include <pybind11/pybind11.h>

namespace lockstep::python {

// Envelope/Result codec, job token digest (wire_bindings.cc).
void bind_wire(pybind11::module_& m);
// Acceptance rule, envelope sequencer, overlap meter, shared-memory control
// channel (flow_bindings.cc).
void bind_flow(pybind11::module_& m);

}  // namespace lockstep::python
