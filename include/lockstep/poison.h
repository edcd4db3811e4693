// The out-of-band poison mark (SPEC §4C): a failing rank publishes the store
// key `poison/<rank>` with the JSON value {"rank": R, "code": "...",
// "message": "..."}, and every peer's watchdog polls for it, so that the job
// stops even when the backend is wedged. Format fixed in docs/ARCHITECTURE.md.
#pragma once

#include <optional>
#include <string>

#include "lockstep/store.h"

namespace lockstep {

// Messages longer than this are truncated in the mark (the dump has the rest).
inline constexpr std::size_t kPoisonMessageBytesMax = 4096;

struct PoisonMark {
  int rank = -1;
  std::string code;     // error_code_name(...) or "sigterm"
  std::string message;
};

// "poison/<rank>".
std::string poison_key(int rank);

// Publishes `mark` under poison_key(mark.rank). Blocking on store I/O only;
// any thread; throws what Store::set throws.
void raise_poison(Store& store, const PoisonMark& mark);

// The first peer (ascending rank, skipping `self_rank`) whose poison mark
// exists, with its decoded value. Non-blocking apart from store I/O (one
// Store::check per peer, one read of an existing key); safe on the watchdog
// thread. A value that cannot be decoded still counts: the mark's existence
// is the signal, so code/message then say so. Throws what the store throws.
std::optional<PoisonMark> find_poisoned_peer(Store& store, int self_rank, int world_size);

}  // namespace lockstep
