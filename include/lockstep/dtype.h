// Element types understood by the wire manifest and by every backend.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace lockstep {

enum class DType : std::uint8_t {
  kBF16 = 1,
  kF16 = 2,
  kF32 = 3,
  kF64 = 4,
  kI64 = 5,
  kI32 = 6,
  kU8 = 7,
};

inline constexpr std::uint8_t kDTypeMaxValue = 7;

// Bytes of one element. REQUIRES: a valid enumerator.
std::size_t dtype_size_bytes(DType dtype);
std::string_view dtype_name(DType dtype);
// Parses a name produced by dtype_name; nullopt for anything else.
std::optional<DType> dtype_from_name(std::string_view name);
// nullopt unless raw is the value of an enumerator (for decoders).
std::optional<DType> dtype_from_wire(std::uint8_t raw);

}  // namespace lockstep
