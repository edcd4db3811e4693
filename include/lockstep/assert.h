// Invariant assertions that stay on in release builds: a broken invariant is a
// crash, never a silent continue (TigerBeetle's posture, SPEC "crash > hang").
#pragma once

namespace lockstep::detail {
[[noreturn]] void assert_failed(const char* expr, const char* file, int line);
}  // namespace lockstep::detail

#define LOCKSTEP_ASSERT(expr)                                              \
  ((expr) ? static_cast<void>(0)                                           \
          : ::lockstep::detail::assert_failed(#expr, __FILE__, __LINE__))
