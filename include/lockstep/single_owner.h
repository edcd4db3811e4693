// The single-owner rule (SPEC §4A, A6): an object such as a channel endpoint
// or the Communicator belongs to one thread; a call from any other thread
// fails at once, naming both threads, instead of racing silently.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

namespace lockstep {

// The calling thread, as "tid 1234 'comm'" (kernel thread id and pthread
// name). Non-blocking, any thread.
std::string describe_current_thread();

class SingleOwner {
 public:
  // `what` names the guarded object in errors ("shm ring 'ctl' writer").
  explicit SingleOwner(std::string what);
  SingleOwner(const SingleOwner&) = delete;
  SingleOwner& operator=(const SingleOwner&) = delete;

  // Binds the owner to the calling thread if unbound; otherwise throws
  // Error{kOwnership} unless the caller is the owner. The message names the
  // object, the owner and the caller ("tid 12 'comm'" vs "tid 15 'decode'").
  // Non-blocking; the owner's path is two loads. Any thread may call.
  void check() const;

  // Binds to the calling thread now (e.g. the comm thread at start-up, so a
  // stray first use from another thread is caught). Throws Error{kOwnership}
  // when already bound to another thread.
  void bind_to_current_thread();

  // True once bound. Any thread.
  bool bound() const;

 private:
  [[noreturn]] void throw_not_owner() const;  // REQUIRES mutex_ held

  const std::string what_;
  // Kernel tid of the owner, 0 while unbound. Set once, under mutex_.
  mutable std::atomic<std::uint64_t> owner_tid_{0};
  mutable std::mutex mutex_;        // serialises binding and reading owner_name_
  mutable std::string owner_name_;  // describe_current_thread() of the owner
};

}  // namespace lockstep
