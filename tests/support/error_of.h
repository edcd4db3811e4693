// The lockstep::Error a callable throws, for tests that assert its code and
// message. A callable that throws nothing fails the test and yields kInternal.
#pragma once

#include <gtest/gtest.h>

#include <utility>

#include "lockstep/error.h"

namespace lockstep::test {

template <typename F>
Error error_of(F&& f) {
  try {
    f();
  } catch (const Error& error) {
    return error;
  }
  ADD_FAILURE() << "no lockstep::Error thrown";
  return Error(ErrorCode::kInternal, "none");
}

template <typename F>
ErrorCode code_of(F&& f) {
  return error_of(std::forward<F>(f)).code();
}

}  // namespace lockstep::test
