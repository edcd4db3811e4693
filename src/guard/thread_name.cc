#include "guard/thread_name.h"

#include <pthread.h>

namespace lockstep::guard_detail {

namespace {

// Linux limits thread names to 15 bytes plus the terminator.
constexpr std::size_t kOsThreadNameBytes = 16;

struct ThreadName {
  FixedText<kEventNameBytesMax> text;
  bool known = false;
};
thread_local ThreadName t_thread_name;

}  // namespace

const FixedText<kEventNameBytesMax>& current_thread_name() noexcept {
  if (!t_thread_name.known) {
    char os_name[kOsThreadNameBytes] = {};
    if (pthread_getname_np(pthread_self(), os_name, sizeof(os_name)) != 0) os_name[0] = '\0';
    t_thread_name.text.assign(os_name);
    t_thread_name.known = true;
  }
  return t_thread_name.text;
}

void set_current_thread_name(std::string_view name) noexcept {
  t_thread_name.text.assign(name);
  t_thread_name.known = true;
  char os_name[kOsThreadNameBytes] = {};
  for (std::size_t i = 0; i < name.size() && i + 1 < kOsThreadNameBytes; ++i) os_name[i] = name[i];
  pthread_setname_np(pthread_self(), os_name);
}

}  // namespace lockstep::guard_detail
