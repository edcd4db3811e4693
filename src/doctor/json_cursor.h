// A strict JSON pull reader for flight-recorder dumps.
//
// Why not a DOM parser: the doctor must read 1024 ranks x 4096 events (about
// a gigabyte of JSON) in under two seconds (SPEC §8); building a DOM costs an
// order of magnitude more than scanning the text once. The cursor validates
// full JSON syntax for what it reads and skips, and every failure throws
// Error(kDecode) naming the file, the field and the byte offset.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace lockstep::doctor {

// Nesting deeper than this is not a dump; bounding it bounds skip_value's stack.
inline constexpr int kJsonNestingMax = 64;

enum class JsonType { kObject, kArray, kString, kNumber, kBool, kNull };

// The caller keeps one Scope per open object/array so commas are checked
// exactly (no leading or trailing comma is accepted).
struct JsonScope {
  bool first = true;
};

class JsonCursor {
 public:
  // `where` names the input (the dump file) in error messages.
  JsonCursor(std::string_view text, std::string where);

  JsonType peek(std::string_view field);
  JsonScope begin_object(std::string_view field);
  // Reads the next key of the object, or returns false after its '}'.
  bool next_key(JsonScope& scope, std::string_view& key);
  JsonScope begin_array(std::string_view field);
  // Positions at the next element, or returns false after the ']'.
  bool next_element(JsonScope& scope);

  // The returned view stays valid until the next read_string/next_key call
  // when the string had escapes (it then points into a scratch buffer).
  std::string_view read_string(std::string_view field);
  std::int64_t read_int(std::string_view field);
  void skip_value(std::string_view field);
  // Only whitespace may follow the top-level value.
  void expect_end();

  [[noreturn]] void fail(std::string_view field, std::string_view what) const;

 private:
  void skip_ws();
  char next_char(std::string_view field);
  std::string_view read_string_at(std::string_view field, std::string& scratch);
  void decode_escape(std::string_view field, std::string& out);
  void check_no_leading_zero(std::string_view field) const;
  void skip_number(std::string_view field);
  void skip_literal(std::string_view field, std::string_view literal);
  void skip_nested(std::string_view field, int depth);

  std::string_view text_;
  std::size_t pos_ = 0;
  std::string where_;
  std::string scratch_;
  std::string key_scratch_;
};

}  // namespace lockstep::doctor
