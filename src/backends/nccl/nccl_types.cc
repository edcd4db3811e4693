#include "backends/nccl/nccl_types.h"

#include "lockstep/assert.h"

namespace lockstep::cuda_detail {

ncclDataType_t nccl_dtype(DType dtype) {
  switch (dtype) {
    case DType::kBF16:
      return ncclBfloat16;
    case DType::kF16:
      return ncclFloat16;
    case DType::kF32:
      return ncclFloat32;
    case DType::kF64:
      return ncclFloat64;
    case DType::kI64:
      return ncclInt64;
    case DType::kI32:
      return ncclInt32;
    case DType::kU8:
      return ncclUint8;
  }
  detail::assert_failed("DType out of range", __FILE__, __LINE__);
}

ncclRedOp_t nccl_reduce_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return ncclSum;
    case ReduceOp::kMax:
      return ncclMax;
    case ReduceOp::kMin:
      return ncclMin;
  }
  detail::assert_failed("ReduceOp out of range", __FILE__, __LINE__);
}

}  // namespace lockstep::cuda_detail
