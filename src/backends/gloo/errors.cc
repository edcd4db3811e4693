#include "backends/gloo/errors.h"

#include <gloo/common/error.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <string_view>

namespace lockstep::gloo_detail {
namespace {

// Gloo 2022 reports timeouts and lost peers only through the text of an
// IoException ("Read timeout", "Timed out waiting 1000ms for recv",
// "Connection closed by peer", "Socket closed", ...); these fragments are
// matched case-insensitively.
constexpr std::array<std::string_view, 2> kTimeoutFragments = {"timeout", "timed out"};
constexpr std::array<std::string_view, 7> kPeerFragments = {
    "closed", "reset", "refused", "broken pipe", "eof", "connection", "unreachable"};

bool contains_any(const std::string& text, auto fragments) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return std::any_of(fragments.begin(), fragments.end(),
                     [&](std::string_view fragment) { return lower.find(fragment) != std::string::npos; });
}

ErrorCode classify_io(const std::string& text) {
  if (contains_any(text, kTimeoutFragments)) return ErrorCode::kTimeout;
  if (contains_any(text, kPeerFragments)) return ErrorCode::kPeerFailure;
  return ErrorCode::kBackend;
}

// Error::what() starts with "<code>: "; a wrapped Error keeps only its text.
std::string message_of(const Error& error) {
  const std::string text = error.what();
  const std::string prefix = std::string(error_code_name(error.code())) + ": ";
  return text.rfind(prefix, 0) == 0 ? text.substr(prefix.size()) : text;
}

}  // namespace

Error map_gloo_failure(std::exception_ptr failure, const std::string& where) {
  try {
    std::rethrow_exception(failure);
  } catch (const Error& error) {
    return Error(error.code(), where + ": " + message_of(error));
  } catch (const gloo::IoException& error) {
    return Error(classify_io(error.what()), where + ": " + error.what());
  } catch (const std::exception& error) {
    return Error(ErrorCode::kBackend, where + ": " + error.what());
  } catch (...) {
    return Error(ErrorCode::kBackend, where + ": unknown exception");
  }
}

}  // namespace lockstep::gloo_detail
