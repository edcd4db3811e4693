#include "lockstep/single_owner.h"

#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>

#include "lockstep/error.h"

namespace lockstep {
namespace {

// pthread names are at most 15 characters plus the terminator.
constexpr std::size_t kThreadNameBytes = 16;

std::uint64_t current_tid() {
  // The kernel tid is stable for the thread's life and matches what ps, gdb
  // and /proc show, unlike pthread_t.
  thread_local const std::uint64_t tid = static_cast<std::uint64_t>(::syscall(SYS_gettid));
  return tid;
}

}  // namespace

std::string describe_current_thread() {
  std::array<char, kThreadNameBytes> name{};
  if (pthread_getname_np(pthread_self(), name.data(), name.size()) != 0) name[0] = '\0';
  return "tid " + std::to_string(current_tid()) + " '" + name.data() + "'";
}

SingleOwner::SingleOwner(std::string what) : what_(std::move(what)) {}

void SingleOwner::check() const {
  const std::uint64_t caller = current_tid();
  if (owner_tid_.load(std::memory_order_acquire) == caller) return;
  std::lock_guard lock(mutex_);
  const std::uint64_t owner = owner_tid_.load(std::memory_order_relaxed);
  if (owner == caller) return;
  if (owner != 0) throw_not_owner();
  owner_name_ = describe_current_thread();
  owner_tid_.store(caller, std::memory_order_release);
}

void SingleOwner::bind_to_current_thread() { check(); }

bool SingleOwner::bound() const { return owner_tid_.load(std::memory_order_acquire) != 0; }

void SingleOwner::throw_not_owner() const {
  throw Error(ErrorCode::kOwnership, what_ + " is owned by thread " + owner_name_ +
                                         " but was called from thread " +
                                         describe_current_thread());
}

}  // namespace lockstep
