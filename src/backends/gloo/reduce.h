// Element-typed configuration of a Gloo all-reduce: the element size Gloo
// segments by and the reduction function for (dtype, op).
#pragma once

#include <cstddef>
#include <memory>

#include <gloo/allreduce.h>

#include "lockstep/backend.h"
#include "lockstep/dtype.h"

namespace lockstep::gloo_detail {

// Sets `buffer` (count elements of dtype, reduced in place) as the output of
// `options` and picks the reduce function. Pure configuration, no I/O.
// Every DType is supported; bf16 is reduced in float and rounded to nearest
// even. LOCKSTEP_ASSERTs a valid dtype and op (callers checked them).
void configure_all_reduce(gloo::AllreduceOptions& options,
                          std::unique_ptr<gloo::transport::UnboundBuffer> buffer, DType dtype,
                          ReduceOp op);

// bf16 <-> float, exposed for tests. float_to_bf16 rounds to nearest even and
// keeps NaN a NaN.
float bf16_to_float(std::uint16_t bits);
std::uint16_t float_to_bf16(float value);

}  // namespace lockstep::gloo_detail
