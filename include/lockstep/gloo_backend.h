// The CPU collective backend: Gloo over TCP (SPEC §3 backends). Every
// operation passes its timeout to Gloo; a rank that reaches connect() or an
// operation alone fails with Error{kTimeout} instead of blocking.
//
// Error mapping (every message names the group, the op and the group rank):
//   Gloo I/O timeout                        -> kTimeout
//   connection reset / closed by the peer   -> kPeerFailure
//   anything else Gloo throws               -> kBackend
// After any throw the backend is broken for good: later calls throw kAborted.
//
// abort(): marks the backend broken, so every later call fails at once with
// kAborted, and ends a send/recv in flight at once with kAborted (Gloo can
// abort an unbound buffer's wait). Gloo (2022) cannot cancel a collective in
// flight: one already running ends by its own timeout (or sooner when a peer
// goes away). abort() closes nothing and blocks only on a short internal
// lock. guard's fatal path _exits under its hard deadline either way, which
// is what actually ends a rank stuck in a Gloo collective.
//
// Reductions: f32, f64, i32, i64, u8 and f16 (Gloo's float16) natively; bf16
// by widening to float per element (the sum is rounded back to bf16 at each
// step of the ring, like NCCL's bf16 all-reduce).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "lockstep/backend.h"

namespace lockstep {

struct GlooOptions {
  // Address the TCP device binds to; used when iface is empty.
  std::string hostname = "127.0.0.1";
  // Network interface to bind (e.g. "eth0"); wins over hostname when set.
  std::string iface;
};

// GlooOptions from LOCKSTEP_GLOO_IFACE and LOCKSTEP_GLOO_HOSTNAME (defaults
// above when unset). Reads the environment; call before threads setenv.
GlooOptions gloo_options_from_environment();

class GlooBackendFactory final : public BackendFactory {
 public:
  explicit GlooBackendFactory(GlooOptions options = {});

  // BackendFactory contract (backend.h). Connects a full TCP mesh among
  // spec.member_ranks through `store` under the prefix spec.group_name:
  // every member first announces itself (bounded by spec.connect_timeout;
  // a rank that never arrives is named), then Gloo exchanges addresses and
  // connects pairs. Gloo 2022 takes no overall deadline for that second
  // step, only a per-pair one: each pair's wait is bounded by the budget left
  // when the step starts, so a peer that dies between arriving and
  // connecting can stretch the call to at most (size - 1) x that remainder.
  // One TCP device (one Gloo event-loop thread) per connected group.
  // Process-wide side effect: SIGPIPE is set to ignored when it is at its
  // default, because Gloo writes without MSG_NOSIGNAL and a dead peer must
  // surface as Error{kPeerFailure}, not kill this process. Throws
  // Error{kInvalidArgument} for a bad spec, Error{kTimeout} naming the group
  // and the global ranks that never arrived, Error{kPeerFailure} /
  // Error{kBackend} when the mesh cannot be built. Blocking; any thread, one
  // call per group.
  std::unique_ptr<Backend> connect(Store& store, const BackendGroupSpec& spec) override;

 private:
  GlooOptions options_;
};

}  // namespace lockstep
