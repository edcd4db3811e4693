// Little-endian byte writers/readers for the wire codec. Every field is
// written on its own at its own width (never a memcpy of a struct), so the
// bytes do not depend on the host's byte order, padding or struct layout.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include "lockstep/assert.h"
#include "lockstep/error.h"

namespace lockstep::wire_detail {

// On a little-endian host the low `width` bytes of the value already are the
// wire bytes; a big-endian host takes the portable shift loop.
inline void store_le(std::uint8_t* out, std::uint64_t value, int width) noexcept {
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(out, &value, static_cast<std::size_t>(width));
  } else {
    for (int i = 0; i < width; ++i) out[i] = static_cast<std::uint8_t>(value >> (8 * i));
  }
}

inline std::uint64_t load_le(const std::uint8_t* in, int width) noexcept {
  std::uint64_t value = 0;
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(&value, in, static_cast<std::size_t>(width));
  } else {
    for (int i = 0; i < width; ++i) value |= std::uint64_t{in[i]} << (8 * i);
  }
  return value;
}

// Writes into a buffer whose exact size was computed beforehand by the same
// rules; running past it is a bug in lockstep (asserted), not an input error.
class Writer {
 public:
  explicit Writer(std::span<std::uint8_t> out) : pos_(out.data()), end_(out.data() + out.size()) {}

  void u8(std::uint8_t v) { put(v, 1); }
  void u16(std::uint16_t v) { put(v, 2); }
  void u32(std::uint32_t v) { put(v, 4); }
  void u64(std::uint64_t v) { put(v, 8); }
  void i64(std::int64_t v) { put(static_cast<std::uint64_t>(v), 8); }
  void f64(double v) { put(std::bit_cast<std::uint64_t>(v), 8); }
  void bytes(std::string_view text) {
    LOCKSTEP_ASSERT(static_cast<std::size_t>(end_ - pos_) >= text.size());
    if (!text.empty()) std::memcpy(pos_, text.data(), text.size());
    pos_ += text.size();
  }
  bool done() const noexcept { return pos_ == end_; }

 private:
  void put(std::uint64_t v, int width) {
    LOCKSTEP_ASSERT(end_ - pos_ >= width);
    store_le(pos_, v, width);
    pos_ += width;
  }
  std::uint8_t* pos_;
  std::uint8_t* end_;
};

// Bounds-checked reads over untrusted bytes: running past the end throws
// Error{kDecode} naming the field being read.
class Reader {
 public:
  explicit Reader(std::span<const std::uint8_t> in) : pos_(in.data()), end_(in.data() + in.size()) {}

  std::uint8_t u8(std::string_view field) { return static_cast<std::uint8_t>(get(field, 1)); }
  std::uint16_t u16(std::string_view field) { return static_cast<std::uint16_t>(get(field, 2)); }
  std::uint32_t u32(std::string_view field) { return static_cast<std::uint32_t>(get(field, 4)); }
  std::uint64_t u64(std::string_view field) { return get(field, 8); }
  std::int64_t i64(std::string_view field) { return static_cast<std::int64_t>(get(field, 8)); }
  double f64(std::string_view field) { return std::bit_cast<double>(get(field, 8)); }
  std::string_view bytes(std::string_view field, std::size_t count) {
    need(field, count);
    std::string_view out(reinterpret_cast<const char*>(pos_), count);
    pos_ += count;
    return out;
  }
  std::size_t remaining() const noexcept { return static_cast<std::size_t>(end_ - pos_); }
  // Names what later reads belong to (kind "meta", name "seed" → "meta 'seed'
  // list length"), so call sites pass literals and no text is built unless a
  // read fails. Empty kind: no prefix.
  void set_context(std::string_view kind, std::string_view name) noexcept {
    context_kind_ = kind;
    context_name_ = name;
  }

 private:
  void need(std::string_view field, std::size_t count) const {
    if (remaining() < count) {
      const std::string where =
          context_kind_.empty()
              ? std::string(field)
              : std::string(context_kind_) + " '" + std::string(context_name_) + "' " + std::string(field);
      throw Error(ErrorCode::kDecode, "frame body truncated reading " + where + " (needs " +
                                          std::to_string(count) + " bytes, " +
                                          std::to_string(remaining()) + " left)");
    }
  }
  std::uint64_t get(std::string_view field, int width) {
    need(field, static_cast<std::size_t>(width));
    const std::uint64_t v = load_le(pos_, width);
    pos_ += width;
    return v;
  }
  const std::uint8_t* pos_;
  const std::uint8_t* end_;
  std::string_view context_kind_;
  std::string_view context_name_;
};

}  // namespace lockstep::wire_detail
