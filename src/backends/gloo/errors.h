// How a Gloo failure becomes a lockstep::Error.
#pragma once

#include <exception>
#include <string>

#include "lockstep/error.h"

namespace lockstep::gloo_detail {

// Classifies the exception `failure` holds: a lockstep::Error keeps its code;
// a Gloo I/O timeout becomes kTimeout, a closed or reset connection
// kPeerFailure, anything else kBackend. The message is `where` + ": " + the
// original text. Pure; thread-safe.
Error map_gloo_failure(std::exception_ptr failure, const std::string& where);

}  // namespace lockstep::gloo_detail
