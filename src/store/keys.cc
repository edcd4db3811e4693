#include "store/keys.h"

namespace lockstep::store_detail {

void check_key(const std::string& key, const std::string& where) {
  if (key.size() > kStoreKeyBytesMax) {
    throw Error(ErrorCode::kLimit, "store " + where + ": key of " + std::to_string(key.size()) +
                                       " bytes exceeds " + std::to_string(kStoreKeyBytesMax));
  }
  if (key.empty() || key.front() == '/' || key.back() == '/') {
    throw Error(ErrorCode::kInvalidArgument,
                "store " + where + ": key '" + key + "' is empty or starts/ends with '/'");
  }
  for (const char c : key) {
    if (c < 0x21 || c > 0x7e) {
      throw Error(ErrorCode::kInvalidArgument,
                  "store " + where + ": key '" + key + "' holds a non-printable or space byte");
    }
  }
}

void check_value(const std::string& key, const Bytes& value, const std::string& where) {
  if (value.size() > kStoreValueBytesMax) {
    throw Error(ErrorCode::kLimit, "store " + where + ": value of key '" + key + "' has " +
                                       std::to_string(value.size()) + " bytes, more than " +
                                       std::to_string(kStoreValueBytesMax));
  }
}

}  // namespace lockstep::store_detail
