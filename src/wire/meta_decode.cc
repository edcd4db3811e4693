// Reading the canonical meta section from untrusted bytes.
#include <string>

#include "lockstep/error.h"
#include "lockstep/wire_limits.h"
#include "wire/meta_codec.h"
#include "wire/text.h"

namespace lockstep::wire_detail {

namespace {

std::string key_field(std::string_view key, std::string_view part) {
  return "meta '" + std::string(key) + "' " + std::string(part);
}

std::string read_string(Reader& in, std::string_view key) {
  const std::uint32_t bytes = in.u32("string length");
  if (bytes > kStringBytesMax) {
    throw Error(ErrorCode::kLimit, key_field(key, "string") + " is " + std::to_string(bytes) +
                                       " bytes, more than kStringBytesMax " + std::to_string(kStringBytesMax));
  }
  return std::string(in.bytes("string", bytes));
}

bool read_bool(Reader& in, std::string_view key) {
  const std::uint8_t raw = in.u8("bool");
  if (raw > 1) throw Error(ErrorCode::kDecode, key_field(key, "bool") + " byte is " + std::to_string(raw) + ", not 0/1");
  return raw == 1;
}

// Reads the item count and checks it before anything is reserved: each item
// takes at least one byte, so a count larger than what is left is a lie.
std::size_t read_list_items(Reader& in, std::string_view key) {
  const std::uint32_t items = in.u32("list length");
  if (items > kMetaListItemsMax) {
    throw Error(ErrorCode::kLimit, key_field(key, "list") + " has " + std::to_string(items) +
                                       " items, more than kMetaListItemsMax " + std::to_string(kMetaListItemsMax));
  }
  if (items > in.remaining()) {
    throw Error(ErrorCode::kDecode, key_field(key, "list") + " claims " + std::to_string(items) +
                                        " items but only " + std::to_string(in.remaining()) + " bytes remain");
  }
  return items;
}

template <typename Item, typename ReadItem>
std::vector<Item> read_list(Reader& in, std::string_view key, ReadItem read_item) {
  const std::size_t items = read_list_items(in, key);
  std::vector<Item> list;
  list.reserve(items);
  for (std::size_t i = 0; i < items; ++i) list.push_back(read_item());
  return list;
}

MetaValue read_value(Reader& in, std::uint8_t type, std::string_view key) {
  switch (static_cast<MetaType>(type)) {
    case MetaType::kInt64: return in.i64("item");
    case MetaType::kFloat64: return in.f64("item");
    case MetaType::kBool: return read_bool(in, key);
    case MetaType::kString: return read_string(in, key);
    case MetaType::kInt64List: return read_list<std::int64_t>(in, key, [&] { return in.i64("item"); });
    case MetaType::kFloat64List: return read_list<double>(in, key, [&] { return in.f64("item"); });
    case MetaType::kBoolList: return read_list<bool>(in, key, [&] { return read_bool(in, key); });
    case MetaType::kStringList: return read_list<std::string>(in, key, [&] { return read_string(in, key); });
  }
  throw Error(ErrorCode::kDecode, key_field(key, "type tag") + " " + std::to_string(type) + " is not a meta type");
}

}  // namespace

Meta read_meta(std::span<const std::uint8_t> section, std::size_t count) {
  Reader in(section);
  Meta meta;
  meta.reserve(count);
  std::string_view previous_key;
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint8_t key_bytes = in.u8("meta key length");
    const std::string_view key = in.bytes("meta key", key_bytes);
    check_key(key, "meta key", kMetaKeyBytesMax);
    if (i > 0 && !(previous_key < key)) {
      throw Error(ErrorCode::kDecode, "meta key '" + std::string(key) + "' is not after '" + std::string(previous_key) +
                                          "' (meta keys must be unique and sorted)");
    }
    in.set_context("meta", key);
    const std::uint8_t type = in.u8("type tag");
    meta.entries_.emplace_back(std::string(key), read_value(in, type, key));
    in.set_context({}, {});
    previous_key = key;
  }
  if (in.remaining() != 0) {
    throw Error(ErrorCode::kDecode, "meta section has " + std::to_string(in.remaining()) + " trailing bytes");
  }
  // The same rules as the sender's preflight (key alphabet, UTF-8, finite
  // floats, limits): both sides of the boundary check the same thing.
  meta_section_bytes(meta);
  return meta;
}

}  // namespace lockstep::wire_detail
