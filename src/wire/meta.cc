#include "lockstep/meta.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>

#include "lockstep/digest.h"
#include "lockstep/error.h"
#include "lockstep/wire_limits.h"
#include "wire/meta_codec.h"
#include "wire/text.h"

namespace lockstep {

MetaType meta_type_of(const MetaValue& value) noexcept { return static_cast<MetaType>(value.index() + 1); }

std::string_view meta_type_name(MetaType type) {
  switch (type) {
    case MetaType::kInt64: return "int64";
    case MetaType::kFloat64: return "float64";
    case MetaType::kBool: return "bool";
    case MetaType::kString: return "string";
    case MetaType::kInt64List: return "int64_list";
    case MetaType::kFloat64List: return "float64_list";
    case MetaType::kBoolList: return "bool_list";
    case MetaType::kStringList: return "string_list";
  }
  return "invalid";
}
static_assert(std::variant_size_v<MetaValue> == kMetaTypeMaxValue);

void Meta::set(std::string key, MetaValue value) {
  wire_detail::check_key(key, "meta key", kMetaKeyBytesMax);
  auto it = std::lower_bound(entries_.begin(), entries_.end(), key,
                             [](const Entry& e, const std::string& k) { return e.first < k; });
  if (it != entries_.end() && it->first == key) {
    it->second = std::move(value);
    return;
  }
  entries_.emplace(it, std::move(key), std::move(value));
}

const MetaValue* Meta::find(std::string_view key) const noexcept {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), key,
                             [](const Entry& e, std::string_view k) { return e.first < k; });
  return it != entries_.end() && it->first == key ? &it->second : nullptr;
}

bool Meta::erase(std::string_view key) noexcept {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), key,
                             [](const Entry& e, std::string_view k) { return e.first < k; });
  if (it == entries_.end() || it->first != key) return false;
  entries_.erase(it);
  return true;
}

namespace wire_detail {

namespace {

constexpr std::size_t kScalarBytes = 8;
constexpr std::size_t kCountBytes = 4;

std::string field_of(std::string_view key) { return "meta '" + std::string(key) + "'"; }

void check_finite(double v, std::string_view key) {
  if (!std::isfinite(v)) {
    throw Error(ErrorCode::kEncode, field_of(key) + " is a non-finite float64 (" + std::to_string(v) +
                                        "); NaN and Inf cannot be encoded");
  }
}

void check_list_items(std::size_t items, std::string_view key) {
  if (items > kMetaListItemsMax) {
    throw Error(ErrorCode::kLimit, field_of(key) + " has " + std::to_string(items) + " items, more than kMetaListItemsMax " +
                                       std::to_string(kMetaListItemsMax));
  }
}

std::size_t string_bytes(const std::string& s, std::string_view key) {
  check_text(s, "meta", key);
  return kCountBytes + s.size();
}

// Checks one value and returns its encoded size (type tag excluded).
std::size_t value_bytes(const MetaValue& value, std::string_view key) {
  return std::visit(
      [&](const auto& v) -> std::size_t {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::int64_t>) {
          return kScalarBytes;
        } else if constexpr (std::is_same_v<T, double>) {
          check_finite(v, key);
          return kScalarBytes;
        } else if constexpr (std::is_same_v<T, bool>) {
          return 1;
        } else if constexpr (std::is_same_v<T, std::string>) {
          return string_bytes(v, key);
        } else {
          check_list_items(v.size(), key);
          std::size_t bytes = kCountBytes;
          using Item = typename T::value_type;
          if constexpr (std::is_same_v<Item, std::int64_t>) bytes += kScalarBytes * v.size();
          if constexpr (std::is_same_v<Item, bool>) bytes += v.size();
          if constexpr (std::is_same_v<Item, double>) {
            for (const double d : v) check_finite(d, key);
            bytes += kScalarBytes * v.size();
          }
          if constexpr (std::is_same_v<Item, std::string>) {
            for (const std::string& s : v) bytes += string_bytes(s, key);
          }
          return bytes;
        }
      },
      value);
}

void write_item(Writer& out, std::int64_t v) { out.i64(v); }
void write_item(Writer& out, double v) { out.f64(v); }
void write_item(Writer& out, bool v) { out.u8(v ? 1 : 0); }
void write_item(Writer& out, const std::string& v) {
  out.u32(static_cast<std::uint32_t>(v.size()));
  out.bytes(v);
}

void write_value(Writer& out, const MetaValue& value) {
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::int64_t> || std::is_same_v<T, double> || std::is_same_v<T, bool> ||
                      std::is_same_v<T, std::string>) {
          write_item(out, v);
        } else {
          out.u32(static_cast<std::uint32_t>(v.size()));
          for (const auto& item : v) write_item(out, item);
        }
      },
      value);
}

}  // namespace

std::size_t meta_section_bytes(const Meta& meta) {
  if (meta.size() > kMetaKeysMax) {
    throw Error(ErrorCode::kLimit, "meta has " + std::to_string(meta.size()) + " keys, more than kMetaKeysMax " +
                                       std::to_string(kMetaKeysMax));
  }
  std::size_t total = 0;
  for (const auto& [key, value] : meta.entries()) {
    total += 1 + key.size() + 1 + value_bytes(value, key);
  }
  if (total > kMetaBytesMax) {
    throw Error(ErrorCode::kLimit, "meta encodes to " + std::to_string(total) + " bytes, more than kMetaBytesMax " +
                                       std::to_string(kMetaBytesMax));
  }
  return total;
}

void write_meta(Writer& out, const Meta& meta) {
  for (const auto& [key, value] : meta.entries()) {
    out.u8(static_cast<std::uint8_t>(key.size()));
    out.bytes(key);
    out.u8(static_cast<std::uint8_t>(meta_type_of(value)));
    write_value(out, value);
  }
}

}  // namespace wire_detail

std::vector<std::uint8_t> encode_meta(const Meta& meta) {
  std::vector<std::uint8_t> bytes(wire_detail::meta_section_bytes(meta));
  wire_detail::Writer out(bytes);
  wire_detail::write_meta(out, meta);
  LOCKSTEP_ASSERT(out.done());
  return bytes;
}

std::uint64_t meta_digest(const Meta& meta) { return digest_bytes(encode_meta(meta)); }

}  // namespace lockstep
