// The one CollectiveObserver the runtime hands to the Communicator: every
// guarded call is recorded in the flight recorder and, while it is in the
// backend, held under a watchdog deadline — without comm knowing guard.
#pragma once

#include "lockstep/collective_observer.h"
#include "lockstep/flight_recorder.h"
#include "lockstep/watchdog.h"

namespace lockstep {

class GuardObserver final : public CollectiveObserver {
 public:
  // `watchdog` may be null (recording only). Both must outlive the observer.
  GuardObserver(FlightRecorder& recorder, Watchdog* watchdog) noexcept
      : recorder_(recorder), watchdog_(watchdog) {}

  // Records first, then arms/disarms, so a dump triggered by this call's
  // deadline already shows the call as started. Comm thread; non-blocking.
  void on_collective(const CollectiveEvent& event) noexcept override {
    recorder_.on_collective(event);
    if (watchdog_ != nullptr) watchdog_->on_collective(event);
  }

 private:
  FlightRecorder& recorder_;
  Watchdog* const watchdog_;
};

}  // namespace lockstep
