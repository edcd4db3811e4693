// Mapping of lockstep's element types and reductions onto NCCL's. Private.
#pragma once

#include <nccl.h>

#include "lockstep/backend.h"
#include "lockstep/dtype.h"

namespace lockstep::cuda_detail {

// Every DType has an NCCL counterpart; REQUIRES: a valid enumerator.
ncclDataType_t nccl_dtype(DType dtype);
ncclRedOp_t nccl_reduce_op(ReduceOp op);

}  // namespace lockstep::cuda_detail
