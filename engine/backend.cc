#include "engine/backend.h"

namespace loraserve {

#ifdef LORASERVE_WITH_CUDA
// engine/cuda_backend.cc: UNAVAILABLE when no CUDA device is present.
StatusOr<std::unique_ptr<Backend>> create_cuda_backend();
#endif

Status validate_backend_geometry(const BackendModelInfo& info, const PoolGeometry& pool,
                                 size_t elem_bytes, const std::string& who) {
  if (info.head_dim <= 0 || info.num_kv_heads <= 0 || info.num_q_heads % info.num_kv_heads != 0) {
    return invalid_argument(who + ": bad head geometry");
  }
  if (pool.page_bytes % static_cast<int64_t>(elem_bytes) != 0 || pool.num_pages <= 0 ||
      pool.kv_page_tokens <= 0) {
    return invalid_argument(who + ": bad pool geometry");
  }
  const int64_t kv_dim = info.num_kv_heads * info.head_dim;
  if (2 * pool.kv_page_tokens * kv_dim * static_cast<int64_t>(elem_bytes) > pool.page_bytes) {
    return invalid_argument(who + ": a KV page does not fit in a pool page");
  }
  return ok_status();
}

Status validate_page_write(const PoolGeometry& pool, const std::vector<int32_t>& pages,
                           size_t bytes) {
  const size_t page = static_cast<size_t>(pool.page_bytes);
  if (bytes > pages.size() * page) return invalid_argument("write_pages: too few pages");
  for (size_t i = 0; i * page < bytes; ++i) {
    if (pages[i] < 0 || pages[i] >= pool.num_pages) return invalid_argument("write_pages: bad page id");
  }
  return ok_status();
}

Status validate_linear_bias(const Tensor& w, const Tensor& bias, const std::string& who) {
  if (bias.rows * bias.cols != w.rows) {
    return invalid_argument(who + ": bias has " + std::to_string(bias.rows * bias.cols) +
                            " values for " + std::to_string(w.rows) + " outputs");
  }
  return ok_status();
}

Status validate_qk_norm(const BackendModelInfo& info, const Tensor& q, const Tensor& k,
                        const Tensor& q_weight, const Tensor& k_weight, const std::string& who) {
  const int64_t hd = info.head_dim;
  if (q.cols != info.num_q_heads * hd || k.cols != info.num_kv_heads * hd || q.rows != k.rows ||
      q_weight.rows * q_weight.cols != hd || k_weight.rows * k_weight.cols != hd) {
    return invalid_argument(who + ": qk_norm shape mismatch");
  }
  return ok_status();
}

StatusOr<int64_t> choose_pool_bytes(const Backend& backend, int64_t pool_mb, double fraction) {
  if (pool_mb < 0) return invalid_argument("--pool-mb must not be negative");
  if (pool_mb > 0) return pool_mb << 20;
  if (!(fraction > 0.0 && fraction <= 0.95)) {
    return invalid_argument("--pool-fraction must be in (0, 0.95]");
  }
  const int64_t avail = backend.available_memory_bytes();
  if (avail <= 0) return internal_error("cannot tell how much memory the " + backend.name() + " backend has");
  return static_cast<int64_t>(static_cast<double>(avail) * fraction);
}

StatusOr<std::unique_ptr<Backend>> create_backend(const std::string& name,
                                                  const BackendOptions& options) {
  // The cuda backend compiles everywhere but has not yet passed its GPU
  // tests on a device (tests/gpu/run_on_device.sh); until it has, "auto"
  // stays on the CPU and cuda is opt-in. On the CPU, "auto" is the fast
  // backend; `cpu` (f32 everywhere) stays the oracle the tests compare with.
  const std::string& kv = options.kv_cache_dtype;
  if (kv != "auto" && kv != "bf16" && kv != "f32") {
    return invalid_argument("--kv-cache-dtype '" + kv + "': expected auto, bf16 or f32");
  }
  const std::string& weights = options.cpu_weights;
  if (weights != "auto" && weights != "mapped" && weights != "packed") {
    return invalid_argument("--cpu-weights '" + weights + "': expected auto, mapped or packed");
  }
  if (weights == "packed" && name != "cpu-bf16" && name != "auto") {
    return invalid_argument("--cpu-weights packed: only the cpu-bf16 backend packs its weights");
  }
  if (name == "cpu") {
    if (kv == "bf16") {
      return invalid_argument("--kv-cache-dtype bf16: the cpu backend is the f32 reference; "
                              "use --backend cpu-bf16 for a bf16 cache");
    }
    return create_cpu_backend();
  }
  if (name == "cpu-bf16" || name == "auto") return create_cpu_bf16_backend(options);
#ifdef LORASERVE_WITH_CUDA
  if (name == "cuda") {
    if (kv == "f32") return invalid_argument("--kv-cache-dtype f32: the cuda backend's cache is bf16");
    return create_cuda_backend();
  }
#else
  if (name == "cuda") {
    return unimplemented("backend 'cuda': this build has no CUDA (LORASERVE_ENABLE_CUDA=OFF or no nvcc); use --backend cpu");
  }
#endif
  return invalid_argument("unknown backend '" + name + "' (expected auto, cpu, cpu-bf16 or cuda)");
}

}  // namespace loraserve
