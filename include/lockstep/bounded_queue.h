// A fixed-capacity blocking queue: the D_in / D_out bounds of SPEC §4E. A full
// queue blocks its producer (backpressure); every blocking call carries a
// deadline; cancel() wakes every waiter so shutdown never hangs on a queue.
//
// Threads: every member may be called from any thread concurrently.
// Errors (one style): a blocking call that runs past its timeout throws
// Error{kTimeout} naming the queue, the operation, the depth and the timeout;
// any call but flush()/observers on a cancelled queue throws Error{kAborted}
// naming the queue. Non-blocking try_push/try_pop exist for drivers that own
// time themselves (the deterministic simulator, a poll loop).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lockstep/error.h"

namespace lockstep {

inline constexpr std::size_t kQueueCapacityDefault = 2;  // SPEC §4E: D_in = D_out = 2
// Larger depths only add latency once stage times are hidden; a bigger value
// is almost always a typo.
inline constexpr std::size_t kQueueCapacityMax = 8;
// A deadline is a deadline, not "forever".
inline constexpr std::chrono::milliseconds kQueueTimeoutMax{3'600'000};

namespace detail {
// Out-of-line so every instantiation shares one message format.
[[noreturn]] void throw_queue_timeout(std::string_view queue, std::string_view op,
                                      std::chrono::milliseconds timeout, std::size_t depth,
                                      std::size_t capacity);
[[noreturn]] void throw_queue_cancelled(std::string_view queue, std::string_view op);
void check_queue_timeout(std::string_view queue, std::string_view op,
                         std::chrono::milliseconds timeout);
void check_queue_capacity(std::string_view queue, std::size_t capacity);
}  // namespace detail

template <typename T>
class BoundedQueue {
 public:
  // Throws Error{kInvalidArgument} unless 1 <= capacity <= kQueueCapacityMax.
  // `name` ("d_in", "d_out") appears in every error and dump.
  BoundedQueue(std::string name, std::size_t capacity) : name_(std::move(name)), capacity_(capacity) {
    detail::check_queue_capacity(name_, capacity_);
  }
  BoundedQueue(const BoundedQueue&) = delete;
  BoundedQueue& operator=(const BoundedQueue&) = delete;

  // Blocks while the queue is full, at most `timeout` (0 < timeout <=
  // kQueueTimeoutMax, else Error{kInvalidArgument}). Throws Error{kTimeout}
  // when the deadline passes, Error{kAborted} when the queue is (or becomes)
  // cancelled. On a throw the value is not enqueued.
  void push(T value, std::chrono::milliseconds timeout) {
    detail::check_queue_timeout(name_, "push", timeout);
    std::unique_lock lock(mutex_);
    const bool ready = not_full_.wait_for(lock, timeout, [&] { return cancelled_ || items_.size() < capacity_; });
    if (cancelled_) detail::throw_queue_cancelled(name_, "push");
    if (!ready) detail::throw_queue_timeout(name_, "push", timeout, items_.size(), capacity_);
    enqueue_locked(std::move(value));
    lock.unlock();
    not_empty_.notify_one();
  }

  // Blocks while the queue is empty, at most `timeout`; same errors as push().
  T pop(std::chrono::milliseconds timeout) {
    detail::check_queue_timeout(name_, "pop", timeout);
    std::unique_lock lock(mutex_);
    const bool ready = not_empty_.wait_for(lock, timeout, [&] { return cancelled_ || !items_.empty(); });
    if (cancelled_) detail::throw_queue_cancelled(name_, "pop");
    if (!ready) detail::throw_queue_timeout(name_, "pop", timeout, items_.size(), capacity_);
    T value = dequeue_locked();
    lock.unlock();
    not_full_.notify_one();
    return value;
  }

  // Non-blocking. Returns false (value untouched) when full; throws
  // Error{kAborted} when cancelled.
  bool try_push(T& value) {
    std::unique_lock lock(mutex_);
    if (cancelled_) detail::throw_queue_cancelled(name_, "try_push");
    if (items_.size() >= capacity_) return false;
    enqueue_locked(std::move(value));
    lock.unlock();
    not_empty_.notify_one();
    return true;
  }

  // Non-blocking. Returns nullopt when empty; throws Error{kAborted} when cancelled.
  std::optional<T> try_pop() {
    std::unique_lock lock(mutex_);
    if (cancelled_) detail::throw_queue_cancelled(name_, "try_pop");
    if (items_.empty()) return std::nullopt;
    std::optional<T> value(dequeue_locked());
    lock.unlock();
    not_full_.notify_one();
    return value;
  }

  // Non-blocking. Removes and returns everything queued, oldest first (a hard
  // cut discards in-flight work). Wakes producers blocked on a full queue.
  // Allowed after cancel() so shutdown can account for what was left.
  std::vector<T> flush() {
    std::vector<T> drained;
    {
      std::lock_guard lock(mutex_);
      drained.reserve(items_.size());
      while (!items_.empty()) drained.push_back(dequeue_locked());
    }
    not_full_.notify_all();
    return drained;
  }

  // Non-blocking, idempotent, terminal: every current and future waiter throws
  // Error{kAborted}.
  void cancel() {
    {
      std::lock_guard lock(mutex_);
      cancelled_ = true;
    }
    not_full_.notify_all();
    not_empty_.notify_all();
  }

  // Observers: non-blocking, any thread; a snapshot that may be stale at once.
  std::size_t depth() const {
    std::lock_guard lock(mutex_);
    return items_.size();
  }
  // The largest depth ever reached ("queues stay at their bound" assertions).
  std::size_t high_water() const {
    std::lock_guard lock(mutex_);
    return high_water_;
  }
  bool cancelled() const {
    std::lock_guard lock(mutex_);
    return cancelled_;
  }
  std::size_t capacity() const noexcept { return capacity_; }
  const std::string& name() const noexcept { return name_; }

 private:
  void enqueue_locked(T value) {
    items_.push_back(std::move(value));
    if (items_.size() > high_water_) high_water_ = items_.size();
  }
  T dequeue_locked() {
    T value = std::move(items_.front());
    items_.pop_front();
    return value;
  }

  const std::string name_;
  const std::size_t capacity_;
  mutable std::mutex mutex_;
  std::condition_variable not_full_;
  std::condition_variable not_empty_;
  std::deque<T> items_;
  std::size_t high_water_ = 0;
  bool cancelled_ = false;
};

}  // namespace lockstep
