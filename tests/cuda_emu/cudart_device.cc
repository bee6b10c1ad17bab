// Emulated CUDA runtime: the one device (an H100-like sm_90 with the
// emulator's name), versions, device-wide sync and function attributes.
#include <cuda_runtime.h>

#include <cstring>
#include <mutex>
#include <unordered_map>

#include "lsemu_internal.h"

namespace lsemu::detail {
namespace {

struct FuncAttrs {
  std::mutex mu;
  std::unordered_map<const void*, size_t> max_dyn_smem;  // set by cudaFuncSetAttribute
};

FuncAttrs& func_attrs() {
  static FuncAttrs* f = new FuncAttrs;
  return *f;
}

thread_local int t_device = 0;

}  // namespace

size_t dyn_smem_limit(const void* func) {
  FuncAttrs& f = func_attrs();
  std::lock_guard<std::mutex> lock(f.mu);
  auto it = f.max_dyn_smem.find(func);
  return it == f.max_dyn_smem.end() ? kDefaultDynSmem : it->second;
}

}  // namespace lsemu::detail

using lsemu::detail::record_error;

cudaError_t cudaGetDeviceCount(int* count) {
  if (!count) return record_error(cudaErrorInvalidValue);
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  if (device != 0) return record_error(cudaErrorInvalidDevice);
  lsemu::detail::t_device = device;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  if (!device) return record_error(cudaErrorInvalidValue);
  *device = lsemu::detail::t_device;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  using namespace lsemu::detail;
  if (!prop) return record_error(cudaErrorInvalidValue);
  if (device != 0) return record_error(cudaErrorInvalidDevice);
  std::memset(prop, 0, sizeof(*prop));
  std::strncpy(prop->name, "loraserve CPU emulator", sizeof(prop->name) - 1);
  size_t free_b = 0, total_b = 0;
  cudaMemGetInfo(&free_b, &total_b);
  prop->totalGlobalMem = total_b;
  prop->sharedMemPerBlock = kDefaultDynSmem;
  prop->sharedMemPerBlockOptin = kMaxDynSmemOptin;
  prop->sharedMemPerMultiprocessor = 228 * 1024;
  prop->reservedSharedMemPerBlock = 1024;
  prop->regsPerBlock = 65536;
  prop->regsPerMultiprocessor = 65536;
  prop->warpSize = 32;
  prop->memPitch = 0x7fffffff;
  prop->maxThreadsPerBlock = kMaxThreadsPerBlock;
  for (int i = 0; i < 3; ++i) {
    prop->maxThreadsDim[i] = static_cast<int>(kMaxBlockDim[i]);
    prop->maxGridSize[i] = static_cast<int>(kMaxGridDim[i]);
  }
  prop->totalConstMem = 64 * 1024;
  prop->major = 9;
  prop->minor = 0;
  prop->textureAlignment = 512;
  prop->texturePitchAlignment = 32;
  prop->multiProcessorCount = 132;
  prop->maxThreadsPerMultiProcessor = 2048;
  prop->maxBlocksPerMultiProcessor = 32;
  prop->canMapHostMemory = 1;
  prop->concurrentKernels = 1;
  prop->asyncEngineCount = 2;
  prop->unifiedAddressing = 1;
  prop->memoryBusWidth = 5120;
  prop->l2CacheSize = 50 * 1024 * 1024;
  prop->globalL1CacheSupported = 1;
  prop->localL1CacheSupported = 1;
  prop->computePreemptionSupported = 1;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (!value) return record_error(cudaErrorInvalidValue);
  cudaDeviceProp p;
  const cudaError_t err = cudaGetDeviceProperties(&p, device);
  if (err != cudaSuccess) return err;
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxBlockDimX: *value = p.maxThreadsDim[0]; break;
    case cudaDevAttrMaxBlockDimY: *value = p.maxThreadsDim[1]; break;
    case cudaDevAttrMaxBlockDimZ: *value = p.maxThreadsDim[2]; break;
    case cudaDevAttrMaxGridDimX: *value = p.maxGridSize[0]; break;
    case cudaDevAttrMaxGridDimY: *value = p.maxGridSize[1]; break;
    case cudaDevAttrMaxGridDimZ: *value = p.maxGridSize[2]; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = static_cast<int>(p.sharedMemPerBlock); break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = static_cast<int>(p.sharedMemPerBlockOptin); break;
    case cudaDevAttrWarpSize: *value = p.warpSize; break;
    case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; break;
    case cudaDevAttrComputeCapabilityMajor: *value = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = p.minor; break;
    case cudaDevAttrL2CacheSize: *value = p.l2CacheSize; break;
    case cudaDevAttrGlobalMemoryBusWidth: *value = p.memoryBusWidth; break;
    case cudaDevAttrMaxThreadsPerMultiProcessor: *value = p.maxThreadsPerMultiProcessor; break;
    case cudaDevAttrUnifiedAddressing: *value = p.unifiedAddressing; break;
    default: return record_error(cudaErrorInvalidValue);  // not emulated
  }
  return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int* runtimeVersion) {
  if (!runtimeVersion) return record_error(cudaErrorInvalidValue);
  *runtimeVersion = CUDART_VERSION;
  return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int* driverVersion) {
  if (!driverVersion) return record_error(cudaErrorInvalidValue);
  *driverVersion = CUDART_VERSION;
  return cudaSuccess;
}

// Every launch has finished when it returns.
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }

// Per kernel, like the real attribute: a launch of `func` may then use up to
// `value` bytes of dynamic shared memory (at most the device's opt-in limit).
cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  using namespace lsemu::detail;
  if (!func) return record_error(cudaErrorInvalidDeviceFunction);
  switch (attr) {
    case cudaFuncAttributeMaxDynamicSharedMemorySize: {
      if (value < 0 || static_cast<size_t>(value) > kMaxDynSmemOptin) {
        return record_error(cudaErrorInvalidValue);
      }
      FuncAttrs& f = func_attrs();
      std::lock_guard<std::mutex> lock(f.mu);
      f.max_dyn_smem[func] = static_cast<size_t>(value);
      return cudaSuccess;
    }
    case cudaFuncAttributePreferredSharedMemoryCarveout:
      if (value < -1 || value > 100) return record_error(cudaErrorInvalidValue);
      return cudaSuccess;  // a performance hint: nothing to emulate
    default: return record_error(cudaErrorInvalidValue);
  }
}
