#include "lockstep/dtype.h"

#include "lockstep/assert.h"

namespace lockstep {

std::size_t dtype_size_bytes(DType dtype) {
  switch (dtype) {
    case DType::kBF16:
    case DType::kF16: return 2;
    case DType::kF32:
    case DType::kI32: return 4;
    case DType::kF64:
    case DType::kI64: return 8;
    case DType::kU8: return 1;
  }
  LOCKSTEP_ASSERT(false && "invalid DType");
  return 0;
}

std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kBF16: return "bf16";
    case DType::kF16: return "f16";
    case DType::kF32: return "f32";
    case DType::kF64: return "f64";
    case DType::kI64: return "i64";
    case DType::kI32: return "i32";
    case DType::kU8: return "u8";
  }
  LOCKSTEP_ASSERT(false && "invalid DType");
  return "";
}

std::optional<DType> dtype_from_wire(std::uint8_t raw) {
  if (raw < 1 || raw > kDTypeMaxValue) return std::nullopt;
  return static_cast<DType>(raw);
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (std::uint8_t raw = 1; raw <= kDTypeMaxValue; ++raw) {
    const auto dtype = static_cast<DType>(raw);
    if (dtype_name(dtype) == name) return dtype;
  }
  return std::nullopt;
}

}  // namespace lockstep
