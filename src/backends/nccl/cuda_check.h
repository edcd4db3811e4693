// Turns CUDA, cuBLAS and NCCL status codes into lockstep::Error{kBackend} that
// name the failed call. Private to the nccl backend library.
#pragma once

#include <cuda_runtime.h>
#include <nccl.h>

#include <string>

namespace lockstep::cuda_detail {

// Throws Error{kBackend} "<what>: <cudaGetErrorString>" unless status is success.
void check_cuda(cudaError_t status, const char* what);
// Throws Error{kBackend} "<what>: <ncclGetErrorString>" unless status is success
// or ncclInProgress (non-blocking communicators report work still under way).
void check_nccl(ncclResult_t status, const char* what);
// Throws Error{kBackend} naming what and the cuBLAS status unless it is 0.
void check_cublas(int status, const char* what);
// True for device (or managed) memory; false for host memory, also memory
// CUDA has never seen (the failed query leaves no sticky error behind).
bool is_device_pointer(const void* data);

}  // namespace lockstep::cuda_detail
