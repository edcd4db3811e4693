// How the reference model reaches its mesh collectives. The runtime adapts
// the guarded Communicator (group "mesh") to it; tests use an in-process
// implementation. The model issues the same sequence of calls for every TP
// size (for P = 1 an implementation may return at once), so the collective
// ledger does not depend on the mesh width.
#pragma once

#include <cstddef>

namespace lockstep {

class TensorParallelOps {
 public:
  virtual ~TensorParallelOps() = default;
  // Blocking: replaces data[0, count) with its elementwise sum over the mesh
  // ranks. Every rank calls it in the same order with the same count. Called
  // only from the thread running the model. Throws whatever the transport
  // throws (e.g. Error{kTimeout}); the model then holds no partial cache
  // update (the cache changes only after a call completes).
  virtual void all_reduce_sum(float* data, std::size_t count) = 0;
};

}  // namespace lockstep
