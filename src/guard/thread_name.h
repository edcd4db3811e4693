// The calling thread's short name, as stamped on flight-recorder events and
// watchdog slots. Cached per thread so the hot path never makes a syscall.
#pragma once

#include <string_view>

#include "lockstep/flight_recorder.h"

namespace lockstep::guard_detail {

// Non-blocking; reads the OS thread name on a thread's first call.
const FixedText<kEventNameBytesMax>& current_thread_name() noexcept;
// Sets the cached name and the OS name (truncated to the OS limit).
void set_current_thread_name(std::string_view name) noexcept;

}  // namespace lockstep::guard_detail
