// Meta: the small typed key → value map an envelope carries besides its plan
// (SPEC §4A). Values are int64, float64, bool, string, or a list of one of
// those; there is deliberately no map, nested-list or tensor alternative, so
// a tensor cannot hide inside meta (break-it A3): tensors go in the manifest.
//
// Canonical encoding (equal meta ⇒ equal bytes on every rank and build):
// entries in strictly ascending bytewise key order, each as
//   u8 key_bytes, key, u8 type (MetaType), value
// with int64/float64 as 8 little-endian bytes (float64 by IEEE-754 bit
// pattern, so -0.0 and 0.0 differ), bool as one byte 0/1, string as
// u32 byte count + UTF-8 bytes, list as u32 item count + items.
//
// Keys are checked when set (a Meta never holds a key it could not encode):
//   key empty, longer than kMetaKeyBytesMax or outside [A-Za-z0-9_.:/-] → kEncode
// Values are checked where a frame is made (preflight) and where one is read
// (decode), each failing with an Error naming the key:
//   float64 NaN or ±Inf                                                  → kEncode
//   string not valid UTF-8 or longer than kStringBytesMax                → kEncode
//   list longer than kMetaListItemsMax                                    → kLimit
//   more than kMetaKeysMax keys, encoded bytes > kMetaBytesMax            → kLimit
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace lockstep {

class Meta;
namespace wire_detail {
Meta read_meta(std::span<const std::uint8_t> section, std::size_t count);
}  // namespace wire_detail

// Variant index + 1 is the wire type tag (MetaType).
using MetaValue = std::variant<std::int64_t, double, bool, std::string, std::vector<std::int64_t>,
                               std::vector<double>, std::vector<bool>, std::vector<std::string>>;

enum class MetaType : std::uint8_t {
  kInt64 = 1,
  kFloat64 = 2,
  kBool = 3,
  kString = 4,
  kInt64List = 5,
  kFloat64List = 6,
  kBoolList = 7,
  kStringList = 8,
};
inline constexpr std::uint8_t kMetaTypeMaxValue = 8;

MetaType meta_type_of(const MetaValue& value) noexcept;
std::string_view meta_type_name(MetaType type);  // "int64", "float64_list", ...

// A sorted flat map (few keys, read far more often than written). Not
// thread-safe; plain value type.
class Meta {
 public:
  using Entry = std::pair<std::string, MetaValue>;

  Meta() = default;

  // Inserts or replaces; O(size) worst case. Throws Error{kEncode} naming the
  // key for a key outside the rules above; values are checked at preflight.
  void set(std::string key, MetaValue value);
  // nullptr when absent.
  const MetaValue* find(std::string_view key) const noexcept;
  bool erase(std::string_view key) noexcept;
  void reserve(std::size_t entries) { entries_.reserve(entries); }

  std::size_t size() const noexcept { return entries_.size(); }
  bool empty() const noexcept { return entries_.empty(); }
  // Ascending bytewise key order, whatever the insertion order was.
  std::span<const Entry> entries() const noexcept { return entries_; }

  bool operator==(const Meta&) const = default;

 private:
  // The decoder appends keys it has already checked to be strictly ascending
  // and valid, skipping set()'s search.
  friend Meta wire_detail::read_meta(std::span<const std::uint8_t> section, std::size_t count);
  std::vector<Entry> entries_;
};

// The canonical bytes of `meta` (the frame's meta section). Throws as listed
// in the header comment. Pure; any thread.
std::vector<std::uint8_t> encode_meta(const Meta& meta);
// XXH3-64 of encode_meta(meta). Throws like encode_meta.
std::uint64_t meta_digest(const Meta& meta);

// The generic input path (CLI, tests, config files): a JSON object whose
// values are integers, finite numbers, booleans, strings, or non-empty
// homogeneous arrays of one of those. Throws Error{kSchema} naming the key
// for a nested object or nested array (tensor-shaped data, A3: tensors belong
// in the manifest), Error{kEncode} naming the key for null, an empty or
// mixed-type array, or an integer outside int64, and Error{kDecode} for text
// that is not a JSON object. The result passes the same checks as any Meta
// at preflight.
Meta meta_from_json(std::string_view json_text);

}  // namespace lockstep
