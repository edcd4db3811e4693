// One rank process of `lockstep run` (the hidden `lockstep _rank` command):
// joins the job, arms the guard layer, runs the start-up handshake, connects
// the groups, then runs Stage 0 or a mesh loop until the stream ends.
#pragma once

#include "lockstep/run_config.h"

namespace lockstep {

// Returns 0 after a clean end. Every failure ends the process through the
// fatal path (dump, poison, abort, _exit with the error's exit code); an
// error before the fatal path exists is thrown (the CLI maps it to its code).
int run_rank(const RunConfig& config);

}  // namespace lockstep
