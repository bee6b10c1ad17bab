// Emulated CUDA runtime: the per-host-thread "last error" and the error
// names and strings (the texts libcudart prints for the same codes).
#include <cuda_runtime.h>

#include "lsemu_internal.h"

namespace lsemu::detail {
namespace {
// As in libcudart: every failing runtime call (and launch) records its
// error for the calling host thread until cudaGetLastError reads it.
thread_local cudaError_t t_last_error = cudaSuccess;

struct ErrorText {
  cudaError_t code;
  const char* name;
  const char* text;
};

#define LSEMU_ERR(code, text) {code, #code, text}
constexpr ErrorText kErrors[] = {
    LSEMU_ERR(cudaSuccess, "no error"),
    LSEMU_ERR(cudaErrorInvalidValue, "invalid argument"),
    LSEMU_ERR(cudaErrorMemoryAllocation, "out of memory"),
    LSEMU_ERR(cudaErrorInitializationError, "initialization error"),
    LSEMU_ERR(cudaErrorCudartUnloading, "driver shutting down"),
    LSEMU_ERR(cudaErrorInvalidConfiguration, "invalid configuration argument"),
    LSEMU_ERR(cudaErrorInvalidPitchValue, "invalid pitch argument"),
    LSEMU_ERR(cudaErrorInvalidSymbol, "invalid device symbol"),
    LSEMU_ERR(cudaErrorInvalidHostPointer, "invalid host pointer"),
    LSEMU_ERR(cudaErrorInvalidDevicePointer, "invalid device pointer"),
    LSEMU_ERR(cudaErrorInvalidMemcpyDirection, "invalid copy direction for memcpy"),
    LSEMU_ERR(cudaErrorInsufficientDriver,
              "CUDA driver version is insufficient for CUDA runtime version"),
    LSEMU_ERR(cudaErrorMissingConfiguration, "__global__ function call is not configured"),
    LSEMU_ERR(cudaErrorInvalidDeviceFunction, "invalid device function"),
    LSEMU_ERR(cudaErrorNoDevice, "no CUDA-capable device is detected"),
    LSEMU_ERR(cudaErrorInvalidDevice, "invalid device ordinal"),
    LSEMU_ERR(cudaErrorInvalidKernelImage, "device kernel image is invalid"),
    LSEMU_ERR(cudaErrorNoKernelImageForDevice,
              "no kernel image is available for execution on the device"),
    LSEMU_ERR(cudaErrorInvalidResourceHandle, "invalid resource handle"),
    LSEMU_ERR(cudaErrorIllegalState, "the operation cannot be performed in the present state"),
    LSEMU_ERR(cudaErrorSymbolNotFound, "named symbol not found"),
    LSEMU_ERR(cudaErrorNotReady, "device not ready"),
    LSEMU_ERR(cudaErrorIllegalAddress, "an illegal memory access was encountered"),
    LSEMU_ERR(cudaErrorLaunchOutOfResources, "too many resources requested for launch"),
    LSEMU_ERR(cudaErrorLaunchTimeout, "the launch timed out and was terminated"),
    LSEMU_ERR(cudaErrorAssert, "device-side assert triggered"),
    LSEMU_ERR(cudaErrorHostMemoryAlreadyRegistered,
              "part or all of the requested memory range is already mapped"),
    LSEMU_ERR(cudaErrorHostMemoryNotRegistered, "pointer does not correspond to a registered memory region"),
    LSEMU_ERR(cudaErrorMisalignedAddress, "misaligned address"),
    LSEMU_ERR(cudaErrorLaunchFailure, "unspecified launch failure"),
    LSEMU_ERR(cudaErrorNotPermitted, "operation not permitted"),
    LSEMU_ERR(cudaErrorNotSupported, "operation not supported"),
    LSEMU_ERR(cudaErrorStreamCaptureUnsupported,
              "operation not permitted when stream is capturing"),
    LSEMU_ERR(cudaErrorStreamCaptureInvalidated,
              "operation failed due to a previous error during capture"),
    LSEMU_ERR(cudaErrorUnknown, "unknown error"),
};
#undef LSEMU_ERR

const ErrorText* find_error(cudaError_t e) {
  for (const ErrorText& t : kErrors) {
    if (t.code == e) return &t;
  }
  return nullptr;
}
}  // namespace

cudaError_t record_error(cudaError_t err) {
  if (err != cudaSuccess) t_last_error = err;
  return err;
}

}  // namespace lsemu::detail

cudaError_t cudaGetLastError(void) {
  const cudaError_t e = lsemu::detail::t_last_error;
  lsemu::detail::t_last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError(void) { return lsemu::detail::t_last_error; }

const char* cudaGetErrorName(cudaError_t error) {
  const lsemu::detail::ErrorText* t = lsemu::detail::find_error(error);
  return t ? t->name : "unrecognized error code";
}

const char* cudaGetErrorString(cudaError_t error) {
  const lsemu::detail::ErrorText* t = lsemu::detail::find_error(error);
  return t ? t->text : "unrecognized error code";
}
