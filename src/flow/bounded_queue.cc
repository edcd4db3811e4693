#include "lockstep/bounded_queue.h"

#include <string>

namespace lockstep::detail {

void throw_queue_timeout(std::string_view queue, std::string_view op, std::chrono::milliseconds timeout,
                         std::size_t depth, std::size_t capacity) {
  throw Error(ErrorCode::kTimeout, "queue '" + std::string(queue) + "': " + std::string(op) + " timed out after " +
                                       std::to_string(timeout.count()) + " ms at depth " + std::to_string(depth) +
                                       "/" + std::to_string(capacity));
}

void throw_queue_cancelled(std::string_view queue, std::string_view op) {
  throw Error(ErrorCode::kAborted, "queue '" + std::string(queue) + "': " + std::string(op) + " on a cancelled queue");
}

void check_queue_timeout(std::string_view queue, std::string_view op, std::chrono::milliseconds timeout) {
  if (timeout.count() <= 0 || timeout > kQueueTimeoutMax) {
    throw Error(ErrorCode::kInvalidArgument, "queue '" + std::string(queue) + "': " + std::string(op) + " timeout " +
                                                 std::to_string(timeout.count()) + " ms outside (0, " +
                                                 std::to_string(kQueueTimeoutMax.count()) + "]");
  }
}

void check_queue_capacity(std::string_view queue, std::size_t capacity) {
  if (capacity == 0 || capacity > kQueueCapacityMax) {
    throw Error(ErrorCode::kInvalidArgument, "queue '" + std::string(queue) + "': capacity " +
                                                 std::to_string(capacity) + " outside [1, " +
                                                 std::to_string(kQueueCapacityMax) + "]");
  }
}

}  // namespace lockstep::detail
