#include "doctor/json_cursor.h"

#include <cstring>
#include <limits>

#include "lockstep/error.h"

namespace lockstep::doctor {
namespace {

bool is_ws(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void append_utf8(std::uint32_t code_point, std::string& out) {
  if (code_point < 0x80) {
    out.push_back(static_cast<char>(code_point));
  } else if (code_point < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (code_point >> 6)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else if (code_point < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (code_point >> 12)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (code_point >> 18)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((code_point >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (code_point & 0x3F)));
  }
}

}  // namespace

JsonCursor::JsonCursor(std::string_view text, std::string where)
    : text_(text), where_(std::move(where)) {}

void JsonCursor::fail(std::string_view field, std::string_view what) const {
  std::string message = where_ + ": ";
  if (!field.empty()) message += std::string(field) + ": ";
  message += std::string(what) + " (at byte " + std::to_string(pos_) + ")";
  throw Error(ErrorCode::kDecode, message);
}

void JsonCursor::skip_ws() {
  while (pos_ < text_.size() && is_ws(text_[pos_])) ++pos_;
}

char JsonCursor::next_char(std::string_view field) {
  skip_ws();
  if (pos_ >= text_.size()) fail(field, "unexpected end of file (truncated dump?)");
  return text_[pos_];
}

JsonType JsonCursor::peek(std::string_view field) {
  switch (next_char(field)) {
    case '{': return JsonType::kObject;
    case '[': return JsonType::kArray;
    case '"': return JsonType::kString;
    case 't':
    case 'f': return JsonType::kBool;
    case 'n': return JsonType::kNull;
    default: break;
  }
  if (text_[pos_] == '-' || is_digit(text_[pos_])) return JsonType::kNumber;
  fail(field, std::string("unexpected character '") + text_[pos_] + "'");
}

JsonScope JsonCursor::begin_object(std::string_view field) {
  if (next_char(field) != '{') fail(field, "expected an object");
  ++pos_;
  return JsonScope{};
}

bool JsonCursor::next_key(JsonScope& scope, std::string_view& key) {
  char c = next_char("object");
  if (c == '}') {
    ++pos_;
    return false;
  }
  if (!scope.first) {
    if (c != ',') fail("object", "expected ',' or '}'");
    ++pos_;
    c = next_char("object");
  }
  scope.first = false;
  if (c != '"') fail("object", "expected a quoted key");
  key = read_string_at("key", key_scratch_);
  if (next_char(key) != ':') fail(key, "expected ':' after the key");
  ++pos_;
  return true;
}

JsonScope JsonCursor::begin_array(std::string_view field) {
  if (next_char(field) != '[') fail(field, "expected an array");
  ++pos_;
  return JsonScope{};
}

bool JsonCursor::next_element(JsonScope& scope) {
  const char c = next_char("array");
  if (c == ']') {
    ++pos_;
    return false;
  }
  if (!scope.first) {
    if (c != ',') fail("array", "expected ',' or ']'");
    ++pos_;
    if (next_char("array") == ']') fail("array", "trailing ','");
  }
  scope.first = false;
  return true;
}

std::string_view JsonCursor::read_string(std::string_view field) {
  if (next_char(field) != '"') fail(field, "expected a string");
  return read_string_at(field, scratch_);
}

// Fast path: a string without escapes is returned as a view into the text.
std::string_view JsonCursor::read_string_at(std::string_view field, std::string& scratch) {
  ++pos_;  // opening quote
  const std::size_t start = pos_;
  while (pos_ < text_.size()) {
    const char c = text_[pos_];
    if (c == '"') return text_.substr(start, pos_++ - start);
    if (c == '\\') break;
    if (static_cast<unsigned char>(c) < 0x20) fail(field, "control character in a string");
    ++pos_;
  }
  scratch.assign(text_.data() + start, pos_ - start);
  while (pos_ < text_.size()) {
    const char c = text_[pos_];
    if (c == '"') {
      ++pos_;
      return scratch;
    }
    if (static_cast<unsigned char>(c) < 0x20) fail(field, "control character in a string");
    if (c == '\\') {
      decode_escape(field, scratch);
    } else {
      scratch.push_back(c);
      ++pos_;
    }
  }
  fail(field, "unterminated string (truncated dump?)");
}

void JsonCursor::decode_escape(std::string_view field, std::string& out) {
  if (pos_ + 1 >= text_.size()) fail(field, "unterminated escape");
  const char e = text_[pos_ + 1];
  pos_ += 2;
  switch (e) {
    case '"': out.push_back('"'); return;
    case '\\': out.push_back('\\'); return;
    case '/': out.push_back('/'); return;
    case 'b': out.push_back('\b'); return;
    case 'f': out.push_back('\f'); return;
    case 'n': out.push_back('\n'); return;
    case 'r': out.push_back('\r'); return;
    case 't': out.push_back('\t'); return;
    case 'u': break;
    default: fail(field, "invalid escape");
  }
  auto read_hex4 = [&]() -> std::uint32_t {
    if (pos_ + 4 > text_.size()) fail(field, "truncated \\u escape");
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const int h = hex_value(text_[pos_ + i]);
      if (h < 0) fail(field, "invalid \\u escape");
      v = v * 16 + static_cast<std::uint32_t>(h);
    }
    pos_ += 4;
    return v;
  };
  std::uint32_t cp = read_hex4();
  if (cp >= 0xD800 && cp <= 0xDBFF) {
    if (text_.substr(pos_, 2) != "\\u") fail(field, "unpaired surrogate");
    pos_ += 2;
    const std::uint32_t low = read_hex4();
    if (low < 0xDC00 || low > 0xDFFF) fail(field, "unpaired surrogate");
    cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
  } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
    fail(field, "unpaired surrogate");
  }
  append_utf8(cp, out);
}

std::int64_t JsonCursor::read_int(std::string_view field) {
  if (peek(field) != JsonType::kNumber) fail(field, "expected an integer");
  const bool negative = text_[pos_] == '-';
  if (negative) ++pos_;
  if (pos_ >= text_.size() || !is_digit(text_[pos_])) fail(field, "expected an integer");
  check_no_leading_zero(field);
  // Accumulate negatively so INT64_MIN parses without overflow.
  std::int64_t value = 0;
  constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
  while (pos_ < text_.size() && is_digit(text_[pos_])) {
    const int digit = text_[pos_] - '0';
    if (value < (kMin + digit) / 10) fail(field, "integer out of range");
    value = value * 10 - digit;
    ++pos_;
  }
  if (pos_ < text_.size() && (text_[pos_] == '.' || text_[pos_] == 'e' || text_[pos_] == 'E')) {
    fail(field, "expected an integer, got a fraction or exponent");
  }
  if (negative) return value;
  if (value == kMin) fail(field, "integer out of range");
  return -value;
}

void JsonCursor::check_no_leading_zero(std::string_view field) const {
  if (pos_ + 1 < text_.size() && text_[pos_] == '0' && is_digit(text_[pos_ + 1])) {
    fail(field, "leading zero in a number");
  }
}

void JsonCursor::skip_number(std::string_view field) {
  if (text_[pos_] == '-') ++pos_;
  check_no_leading_zero(field);
  auto digits = [&] {
    const std::size_t start = pos_;
    while (pos_ < text_.size() && is_digit(text_[pos_])) ++pos_;
    if (pos_ == start) fail(field, "malformed number");
  };
  digits();
  if (pos_ < text_.size() && text_[pos_] == '.') {
    ++pos_;
    digits();
  }
  if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
    ++pos_;
    if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
    digits();
  }
}

void JsonCursor::skip_literal(std::string_view field, std::string_view literal) {
  if (text_.substr(pos_, literal.size()) != literal) fail(field, "invalid literal");
  pos_ += literal.size();
}

void JsonCursor::skip_value(std::string_view field) { skip_nested(field, 0); }

void JsonCursor::skip_nested(std::string_view field, int depth) {
  if (depth >= kJsonNestingMax) fail(field, "nesting too deep");
  switch (peek(field)) {
    case JsonType::kObject: {
      JsonScope scope = begin_object(field);
      std::string_view key;
      while (next_key(scope, key)) skip_nested(field, depth + 1);
      return;
    }
    case JsonType::kArray: {
      JsonScope scope = begin_array(field);
      while (next_element(scope)) skip_nested(field, depth + 1);
      return;
    }
    case JsonType::kString: read_string(field); return;
    case JsonType::kNumber: skip_number(field); return;
    case JsonType::kBool: skip_literal(field, text_[pos_] == 't' ? "true" : "false"); return;
    case JsonType::kNull: skip_literal(field, "null"); return;
  }
}

void JsonCursor::expect_end() {
  skip_ws();
  if (pos_ != text_.size()) fail("", "trailing data after the dump object");
}

}  // namespace lockstep::doctor
