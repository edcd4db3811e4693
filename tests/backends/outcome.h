// What a child saw when it ran one call expected to fail: the error class,
// how long the call took and its message, written as a one-line report.
#pragma once

#include <chrono>
#include <optional>
#include <sstream>
#include <string>

#include "lockstep/error.h"

namespace lockstep::test {

struct Outcome {
  std::string code = "none";  // error_code_name, or "none" when nothing threw
  std::int64_t elapsed_ms = 0;
  std::string message;

  std::string line() const {
    return code + " " + std::to_string(elapsed_ms) + " " + message;
  }
  static Outcome parse(const std::string& line) {
    Outcome outcome;
    std::istringstream in(line);
    in >> outcome.code >> outcome.elapsed_ms;
    std::getline(in >> std::ws, outcome.message);
    return outcome;
  }
};

template <typename Call>
Outcome attempt(Call&& call) {
  Outcome outcome;
  const auto start = std::chrono::steady_clock::now();
  try {
    call();
  } catch (const Error& error) {
    outcome.code = std::string(error_code_name(error.code()));
    outcome.message = error.what();
  }
  outcome.elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::steady_clock::now() - start)
                           .count();
  return outcome;
}

}  // namespace lockstep::test
