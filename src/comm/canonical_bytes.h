// Fixed-width little-endian appends for the canonical encodings that comm
// digests (group table, ledger entries): equal values ⇒ equal bytes on every
// rank and build, whatever the host's struct layout.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace lockstep::comm_detail {

class CanonicalBytes {
 public:
  void u8(std::uint8_t value) { bytes_.push_back(value); }
  void u32(std::uint32_t value) { put(value, 4); }
  void u64(std::uint64_t value) { put(value, 8); }
  void i32(std::int32_t value) { u32(static_cast<std::uint32_t>(value)); }
  // Length-prefixed so ("ab","c") and ("a","bc") differ.
  void str(std::string_view text) {
    u32(static_cast<std::uint32_t>(text.size()));
    bytes_.insert(bytes_.end(), text.begin(), text.end());
  }
  const std::vector<std::uint8_t>& bytes() const { return bytes_; }

 private:
  void put(std::uint64_t value, int width) {
    for (int i = 0; i < width; ++i) bytes_.push_back(static_cast<std::uint8_t>(value >> (8 * i)));
  }
  std::vector<std::uint8_t> bytes_;
};

}  // namespace lockstep::comm_detail
