// NCCL's rendezvous through lockstep's store: the rank that creates a
// communicator's unique id publishes it, the others read it. One exchange for
// the backend's groups and for any tool that makes raw communicators beside
// them (tests/gpu/tp_probe.cc). Private.
#pragma once

#include <nccl.h>

#include <chrono>
#include <string>

#include "lockstep/store.h"

namespace lockstep::cuda_detail {

// With `publish`, makes a unique id and sets it under `key`; otherwise waits
// at most `timeout` for it. Errors name `who` (the communicator being made):
// Error{kTimeout} "<who>: <publisher> never published the unique id: …",
// Error{kBackend} for a value of another size or a failed ncclGetUniqueId.
ncclUniqueId exchange_unique_id(Store& store, const std::string& key, bool publish,
                                std::chrono::milliseconds timeout, const std::string& who,
                                const std::string& publisher);

}  // namespace lockstep::cuda_detail
