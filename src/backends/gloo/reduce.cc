#include "backends/gloo/reduce.h"

#include <gloo/math.h>
#include <gloo/types.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

#include "lockstep/assert.h"

namespace lockstep::gloo_detail {
namespace {

// Gloo only needs sizeof(T) of a bf16 element; the arithmetic is ours.
struct BF16 {
  std::uint16_t bits;
};
static_assert(sizeof(BF16) == 2);

using Func = gloo::AllreduceOptions::Func;
using RawFn = void (*)(void*, const void*, const void*, std::size_t);

template <typename T>
Func native_function(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return static_cast<RawFn>(&gloo::sum<T>);
    case ReduceOp::kMax: return static_cast<RawFn>(&gloo::max<T>);
    case ReduceOp::kMin: return static_cast<RawFn>(&gloo::min<T>);
  }
  LOCKSTEP_ASSERT(false);
}

template <typename Combine>
void bf16_apply(void* c, const void* a, const void* b, std::size_t n, Combine combine) {
  auto* out = static_cast<std::uint16_t*>(c);
  const auto* left = static_cast<const std::uint16_t*>(a);
  const auto* right = static_cast<const std::uint16_t*>(b);
  for (std::size_t i = 0; i < n; ++i) {
    out[i] = float_to_bf16(combine(bf16_to_float(left[i]), bf16_to_float(right[i])));
  }
}

Func bf16_function(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return [](void* c, const void* a, const void* b, std::size_t n) {
        bf16_apply(c, a, b, n, [](float x, float y) { return x + y; });
      };
    case ReduceOp::kMax:
      return [](void* c, const void* a, const void* b, std::size_t n) {
        bf16_apply(c, a, b, n, [](float x, float y) { return std::max(x, y); });
      };
    case ReduceOp::kMin:
      return [](void* c, const void* a, const void* b, std::size_t n) {
        bf16_apply(c, a, b, n, [](float x, float y) { return std::min(x, y); });
      };
  }
  LOCKSTEP_ASSERT(false);
}

template <typename T>
void configure_as(gloo::AllreduceOptions& options,
                  std::unique_ptr<gloo::transport::UnboundBuffer> buffer, Func function) {
  options.setOutput<T>(std::move(buffer));
  options.setReduceFunction(std::move(function));
}

}  // namespace

float bf16_to_float(std::uint16_t bits) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
}

std::uint16_t float_to_bf16(float value) {
  constexpr std::uint16_t kQuietNaN = 0x7FC0;
  if (std::isnan(value)) return kQuietNaN;
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
  const std::uint32_t rounding = 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>((bits + rounding) >> 16);
}

void configure_all_reduce(gloo::AllreduceOptions& options,
                          std::unique_ptr<gloo::transport::UnboundBuffer> buffer, DType dtype,
                          ReduceOp op) {
  switch (dtype) {
    case DType::kF32: return configure_as<float>(options, std::move(buffer), native_function<float>(op));
    case DType::kF64: return configure_as<double>(options, std::move(buffer), native_function<double>(op));
    case DType::kI32:
      return configure_as<std::int32_t>(options, std::move(buffer), native_function<std::int32_t>(op));
    case DType::kI64:
      return configure_as<std::int64_t>(options, std::move(buffer), native_function<std::int64_t>(op));
    case DType::kU8:
      return configure_as<std::uint8_t>(options, std::move(buffer), native_function<std::uint8_t>(op));
    case DType::kF16:
      return configure_as<gloo::float16>(options, std::move(buffer), native_function<gloo::float16>(op));
    case DType::kBF16: return configure_as<BF16>(options, std::move(buffer), bf16_function(op));
  }
  LOCKSTEP_ASSERT(false);
}

}  // namespace lockstep::gloo_detail
