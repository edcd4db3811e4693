// The restricted pickle reader's counterpart: plain JSON-shaped values
// (null, bool, number, string, array, object) written as a protocol-2
// pickle, the form PyTorch's flight recorder writes and its analyzer
// (torch.distributed.flight_recorder.fr_trace, which reads with pickle.load)
// expects. Arrays become lists, objects dicts in their order; each distinct
// string is written once and referenced after that (memo), as torch's own
// pickler does. Private to the doctor (export) and its benchmark.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace lockstep::doctor {

// Pure. Throws Error{kInvalidArgument} for a binary value (no such thing in
// a flight-recorder dump).
std::string write_pickle(const nlohmann::json& value);

}  // namespace lockstep::doctor
