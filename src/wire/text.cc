#include "wire/text.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <string>

#include "lockstep/error.h"
#include "lockstep/wire_limits.h"

namespace lockstep::wire_detail {

namespace {


constexpr std::array<bool, 256> make_key_alphabet() {
  std::array<bool, 256> table{};
  for (int c = 'a'; c <= 'z'; ++c) table[static_cast<std::size_t>(c)] = true;
  for (int c = 'A'; c <= 'Z'; ++c) table[static_cast<std::size_t>(c)] = true;
  for (int c = '0'; c <= '9'; ++c) table[static_cast<std::size_t>(c)] = true;
  for (const char c : std::string_view("_.:/-")) table[static_cast<unsigned char>(c)] = true;
  return table;
}
// A lookup per byte: keys are short, where a vectorised predicate spends more
// in its prologue than it saves.
constexpr std::array<bool, 256> kKeyAlphabet = make_key_alphabet();

bool key_char(char c) { return kKeyAlphabet[static_cast<unsigned char>(c)]; }

std::string field_name(std::string_view field, std::string_view key) {
  return key.empty() ? std::string(field) : std::string(field) + " '" + std::string(key) + "'";
}

// Index of the first byte >= 0x80, or text.size(). Most text on the wire is
// ASCII; this skips it eight bytes at a time.
std::size_t ascii_prefix_bytes(std::string_view text) {
  constexpr std::uint64_t kHighBits = 0x8080808080808080ull;
  std::size_t i = 0;
  for (; i + 8 <= text.size(); i += 8) {
    std::uint64_t word;
    std::memcpy(&word, text.data() + i, 8);
    if (word & kHighBits) break;
  }
  while (i < text.size() && static_cast<unsigned char>(text[i]) < 0x80) ++i;
  return i;
}

// Length of the UTF-8 sequence starting at text[i], or 0 when it is invalid.
std::size_t utf8_sequence_bytes(std::string_view text, std::size_t i) {
  const auto b0 = static_cast<unsigned char>(text[i]);
  if (b0 < 0x80) return 1;
  std::size_t length = 0;
  std::uint32_t code_point = 0;
  if ((b0 & 0xE0) == 0xC0) {
    length = 2;
    code_point = b0 & 0x1F;
  } else if ((b0 & 0xF0) == 0xE0) {
    length = 3;
    code_point = b0 & 0x0F;
  } else if ((b0 & 0xF8) == 0xF0) {
    length = 4;
    code_point = b0 & 0x07;
  } else {
    return 0;
  }
  if (text.size() - i < length) return 0;
  for (std::size_t k = 1; k < length; ++k) {
    const auto b = static_cast<unsigned char>(text[i + k]);
    if ((b & 0xC0) != 0x80) return 0;
    code_point = (code_point << 6) | (b & 0x3F);
  }
  constexpr std::uint32_t kMinForLength[] = {0, 0, 0x80, 0x800, 0x10000};
  if (code_point < kMinForLength[length] || code_point > 0x10FFFF) return 0;
  if (code_point >= 0xD800 && code_point <= 0xDFFF) return 0;
  return length;
}

}  // namespace

void check_key(std::string_view key, std::string_view what, std::size_t bytes_max) {
  if (key.empty()) throw Error(ErrorCode::kEncode, std::string(what) + " is empty");
  if (key.size() > bytes_max) {
    throw Error(ErrorCode::kEncode, std::string(what) + " '" + std::string(key.substr(0, bytes_max)) + "...' is " +
                                        std::to_string(key.size()) + " bytes, more than " + std::to_string(bytes_max));
  }
  const auto bad = std::find_if_not(key.begin(), key.end(), key_char);
  if (bad == key.end()) return;
  throw Error(ErrorCode::kEncode, std::string(what) + " '" + std::string(key) +
                                      "' has a character outside [A-Za-z0-9_.:/-] (byte " +
                                      std::to_string(static_cast<unsigned char>(*bad)) + " at offset " +
                                      std::to_string(bad - key.begin()) + ")");
}

void check_text(std::string_view text, std::string_view field, std::string_view key) {
  if (text.size() > kStringBytesMax) {
    throw Error(ErrorCode::kEncode, field_name(field, key) + " is " + std::to_string(text.size()) +
                                        " bytes, more than kStringBytesMax " + std::to_string(kStringBytesMax));
  }
  for (std::size_t i = ascii_prefix_bytes(text); i < text.size();) {
    const std::size_t length = utf8_sequence_bytes(text, i);
    if (length == 0) {
      throw Error(ErrorCode::kEncode,
                  field_name(field, key) + " is not valid UTF-8 (at byte " + std::to_string(i) + ")");
    }
    i += length;
  }
}

void check_reason(std::string_view reason, std::string_view field) {
  if (reason.empty()) throw Error(ErrorCode::kSchema, std::string(field) + " is required for ERROR and is empty");
  check_text(reason, field);
}

}  // namespace lockstep::wire_detail
