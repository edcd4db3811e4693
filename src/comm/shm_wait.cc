#include "comm/shm_wait.h"

#include <linux/futex.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <climits>

namespace lockstep::comm_detail {

static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

namespace {
std::uint32_t* futex_address(std::atomic<std::uint32_t>& word) {
  // A lock-free std::atomic<uint32_t> has the layout of its value (asserted
  // above), which is what the kernel's futex word is.
  return reinterpret_cast<std::uint32_t*>(&word);
}
}  // namespace

void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected, std::int64_t timeout_ns) {
  constexpr std::int64_t kNsPerSecond = 1'000'000'000;
  timespec relative{};
  relative.tv_sec = static_cast<time_t>(timeout_ns / kNsPerSecond);
  relative.tv_nsec = static_cast<long>(timeout_ns % kNsPerSecond);
  // EAGAIN (value changed), ETIMEDOUT and EINTR all mean "go recheck".
  ::syscall(SYS_futex, futex_address(word), FUTEX_WAIT, expected, &relative, nullptr, 0);
}

void futex_wake_all(std::atomic<std::uint32_t>& word) {
  ::syscall(SYS_futex, futex_address(word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

bool process_alive(int pid) { return ::kill(pid, 0) == 0 || errno != ESRCH; }

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace lockstep::comm_detail
