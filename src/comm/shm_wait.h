// Bounded waits on a process-shared futex word: spin briefly, then sleep in
// slices, rechecking after every wake. Used by the shm ring's writer (waiting
// for space) and readers (waiting for data).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "lockstep/clock.h"

namespace lockstep::comm_detail {

// A sleeper re-examines cancel flags and peer liveness at least this often,
// so a dead peer is noticed within one slice even if nobody wakes it.
inline constexpr std::chrono::milliseconds kShmWaitSliceMax{10};

// Sleeps while *word == expected, at most `timeout_ns`; returns on wake,
// value change, timeout or signal (the caller rechecks in every case).
// Process-shared (no FUTEX_PRIVATE_FLAG).
void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected, std::int64_t timeout_ns);
void futex_wake_all(std::atomic<std::uint32_t>& word);
// False only when `pid` certainly no longer exists (kill(pid, 0) → ESRCH).
bool process_alive(int pid);
void cpu_relax();

// A futex word plus a count of sleepers, so the side that makes progress pays
// for a wake syscall only when somebody sleeps.
struct FutexPair {
  std::atomic<std::uint32_t>& word;
  std::atomic<std::uint32_t>& sleepers;
};

// Makes progress visible to sleepers: call after the release/seq_cst store
// that makes ready() true. The seq_cst pair (store; load sleepers) against
// (sleepers++; recheck ready) guarantees a sleeper is either seen here or
// sees the progress itself.
inline void notify_progress(FutexPair pair) {
  if (pair.sleepers.load(std::memory_order_seq_cst) == 0) return;
  pair.word.fetch_add(1, std::memory_order_seq_cst);
  futex_wake_all(pair.word);
}

// Waits until ready() is true (returns true) or the deadline passes (returns
// false). recheck() runs after every sleep slice and may throw (cancelled,
// peer dead); ready() is always tested before it, so progress made just
// before a peer exits is still consumed.
template <typename Ready, typename Recheck>
bool wait_until(FutexPair pair, std::int64_t spin_ns, std::int64_t deadline_ns, const Clock& clock,
                Ready&& ready, Recheck&& recheck) {
  // Reading the clock costs more than a relaxed load; look at it every few spins.
  constexpr int kSpinsPerClockRead = 64;
  const std::int64_t spin_end_ns = clock.now_ns() + spin_ns;
  do {
    for (int i = 0; i < kSpinsPerClockRead; ++i) {
      if (ready()) return true;
      cpu_relax();
    }
  } while (clock.now_ns() < spin_end_ns);
  while (true) {
    const std::uint32_t observed = pair.word.load(std::memory_order_seq_cst);
    pair.sleepers.fetch_add(1, std::memory_order_seq_cst);
    struct Leave {
      std::atomic<std::uint32_t>& sleepers;
      ~Leave() { sleepers.fetch_sub(1, std::memory_order_seq_cst); }
    } leave{pair.sleepers};
    if (ready()) return true;
    recheck();
    const std::int64_t left_ns = deadline_ns - clock.now_ns();
    if (left_ns <= 0) return false;
    const std::int64_t slice_ns = std::chrono::nanoseconds(kShmWaitSliceMax).count();
    futex_wait(pair.word, observed, left_ns < slice_ns ? left_ns : slice_ns);
  }
}

}  // namespace lockstep::comm_detail
