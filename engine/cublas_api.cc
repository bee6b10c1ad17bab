#include "engine/cublas_api.h"

#include <string>

#ifndef LORASERVE_CUDA_EMU
#include <dlfcn.h>
#endif

namespace loraserve {
namespace {

#ifdef LORASERVE_CUDA_EMU
StatusOr<const CublasApi*> load() {
  static CublasApi api;
  api.create = &cublasCreate;
  api.destroy = &cublasDestroy;
  api.set_stream = &cublasSetStream;
  api.set_workspace = &cublasSetWorkspace;
  api.gemm_ex = &cublasGemmEx;  // the overload the member's type names
  api.status_string = &cublasGetStatusString;
  return &api;
}
#else
// cublas_v2.h maps some names to versioned symbols (cublasCreate is
// cublasCreate_v2): look up what the macro expands to.
#define LS_SYMBOL_NAME(x) LS_SYMBOL_NAME_2(x)
#define LS_SYMBOL_NAME_2(x) #x

template <typename Fn>
Status resolve(void* lib, const char* symbol, Fn* out) {
  dlerror();
  void* p = dlsym(lib, symbol);
  if (p == nullptr) {
    const char* err = dlerror();
    return failed_precondition(std::string("cuda backend: libcublas has no ") + symbol + ": " +
                               (err != nullptr ? err : "null symbol"));
  }
  *out = reinterpret_cast<Fn>(p);
  return ok_status();
}

StatusOr<const CublasApi*> load() {
  const std::string soname = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
  // The bare soname finds the library through the executable's run path (the
  // toolkit's library directory, which libcudart is linked from) or the
  // system's; the toolkit directory we built against is the fallback.
  void* lib = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
  std::string error = lib == nullptr ? dlerror() : "";
#ifdef LORASERVE_CUBLAS_DIR
  if (lib == nullptr) {
    lib = dlopen((std::string(LORASERVE_CUBLAS_DIR) + "/" + soname).c_str(), RTLD_NOW | RTLD_LOCAL);
  }
#endif
  if (lib == nullptr) {
    return failed_precondition("cuda backend: cannot load " + soname + " (cuBLAS " +
                               std::to_string(CUBLAS_VER_MAJOR) + "): " + error);
  }
  static CublasApi api;
  LS_RETURN_IF_ERROR(resolve(lib, LS_SYMBOL_NAME(cublasCreate), &api.create));
  LS_RETURN_IF_ERROR(resolve(lib, LS_SYMBOL_NAME(cublasDestroy), &api.destroy));
  LS_RETURN_IF_ERROR(resolve(lib, LS_SYMBOL_NAME(cublasSetStream), &api.set_stream));
  LS_RETURN_IF_ERROR(resolve(lib, LS_SYMBOL_NAME(cublasSetWorkspace), &api.set_workspace));
  LS_RETURN_IF_ERROR(resolve(lib, LS_SYMBOL_NAME(cublasGemmEx), &api.gemm_ex));
  LS_RETURN_IF_ERROR(resolve(lib, LS_SYMBOL_NAME(cublasGetStatusString), &api.status_string));
  return &api;  // the library stays loaded for the life of the process
}
#endif

}  // namespace

StatusOr<const CublasApi*> cublas_api() {
  static const StatusOr<const CublasApi*> result = load();  // once, thread-safe
  return result;
}

}  // namespace loraserve
