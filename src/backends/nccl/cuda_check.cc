#include "backends/nccl/cuda_check.h"

#include <string>

#include "lockstep/error.h"

namespace lockstep::cuda_detail {

void check_cuda(cudaError_t status, const char* what) {
  if (status == cudaSuccess) return;
  throw Error(ErrorCode::kBackend, std::string(what) + ": " + cudaGetErrorString(status));
}

void check_nccl(ncclResult_t status, const char* what) {
  if (status == ncclSuccess || status == ncclInProgress) return;
  throw Error(ErrorCode::kBackend, std::string(what) + ": " + ncclGetErrorString(status));
}

void check_cublas(int status, const char* what) {
  if (status == 0) return;
  throw Error(ErrorCode::kBackend, std::string(what) + ": cublas status " + std::to_string(status));
}

bool is_device_pointer(const void* data) {
  cudaPointerAttributes attributes{};
  const cudaError_t status = cudaPointerGetAttributes(&attributes, data);
  if (status == cudaSuccess) {
    return attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged;
  }
  cudaGetLastError();
  return false;
}

}  // namespace lockstep::cuda_detail
