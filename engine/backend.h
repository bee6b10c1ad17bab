// Backend: the contract between the engine's forward pass and the hardware.
//
// The forward pass (engine/llama_forward.cc) is written once against this
// interface; `cpu` (fp32, the reference and the no-GPU default) and `cuda`
// implement it. A step follows the plan/run split of FlashInfer: the engine
// builds a StepPlan on the host, begin_step() hands it to the backend once
// (the cuda backend uploads it), and every op of every layer reads it.
//
// Threading: a backend is driven by one thread (the engine's step loop).
// Errors: every method returns Status; nothing aborts or throws.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"
#include "engine/step_plan.h"
#include "kernels/sampling/sampling.h"
#include "memory/adapter_cache.h"
#include "memory/adapter_store.h"

namespace loraserve {

struct TensorInfo;

// A row-major 2-D view of backend memory; the backend decides the dtype of
// weights and activations (cpu: f32; cuda: bf16/f16).
struct Tensor {
  void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;

  // The first `n` rows (activation buffers are sized for the largest step).
  Tensor first_rows(int64_t n) const { return Tensor{data, dtype, n, cols}; }
  size_t nbytes() const { return static_cast<size_t>(rows * cols) * dtype_size(dtype); }
};

// What a backend needs to know about the model once, at start-up.
struct BackendModelInfo {
  int64_t hidden = 0;
  int64_t num_q_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t num_layers = 0;
  int64_t vocab = 0;
  std::vector<float> rope_inv_freq;  // [head_dim / 2]
};

// One segment of token rows that share an adapter, with where that
// adapter's weights for one (layer, module) sit in the pool: its image
// pages (host array, image order) and the element offsets of A [rank, in]
// and Bt [rank, out] in the image.
struct LoraSegmentRef {
  int32_t begin = 0;
  int32_t end = 0;
  int32_t rank = 0;
  float scale = 0.0f;
  const int32_t* page_ids = nullptr;
  int32_t num_pages = 0;
  int64_t a_offset = 0;
  int64_t bt_offset = 0;
  DType dtype = DType::kF32;  // the image's elements (Backend::adapter_dtype)
};

struct SampleResult {
  std::vector<int32_t> tokens;   // [rows]
  std::vector<float> logprobs;   // [rows]
  std::vector<float> logits;     // [rows, vocab] when requested, else empty
};

// A Backend is also the PoolWriter that copies adapter images into the pool
// (write_pages: cpu memcpy; cuda an asynchronous copy on its copy stream).
class Backend : public PoolWriter {
 public:
  ~Backend() override = default;
  virtual std::string name() const = 0;
  // The name plus what a log line should say about it (instruction set,
  // threads); defaults to name().
  virtual std::string describe() const { return name(); }
  // True when upload_weight() keeps pointers into the checkpoint's mapping
  // instead of copying (cpu-bf16): the engine must then own the weights for
  // its whole life (Engine::create with a shared_ptr).
  virtual bool maps_weights() const { return false; }
  // Activation dtype of this backend (f32 on cpu).
  virtual DType activation_dtype() const = 0;
  // Element type of the KV cache in the pool; the engine sizes pool pages
  // for it (a bf16 cache holds twice the tokens in the same bytes).
  virtual DType kv_dtype() const { return activation_dtype(); }
  // Element type of an adapter's image across those pages, given whether
  // every weight of the adapter is exact in bf16 (a bf16 file). cuda: bf16
  // (an f32 file is rounded once, at registration); cpu: f32; cpu-bf16: bf16
  // when that is exact (half the bytes a decode step reads), else f32, so
  // an f32 or f16 file keeps its precision.
  virtual DType adapter_dtype(bool exact_in_bf16) const {
    (void)exact_in_bf16;
    return activation_dtype();
  }

  // --- start-up (not on the serving path) ---
  virtual Status init(const BackendModelInfo& info, const PoolGeometry& pool) = 0;
  // Converts a checkpoint tensor into backend memory (cpu: f32 copy).
  virtual StatusOr<Tensor> upload_weight(const TensorInfo& t) = 0;
  // Called once after the last upload_weight of a model (cpu-bf16 starts
  // writing its packed-weights cache here, in the background). A failure
  // fails the load.
  virtual Status weights_uploaded() { return ok_status(); }
  // Waits for work weights_uploaded left running (the cache write), for a
  // benchmark that must not measure beside it. release() waits too.
  virtual void finish_background_work() {}
  // Copies host f32 data into backend memory in the backend's weight dtype.
  virtual StatusOr<Tensor> upload_f32(const float* data, int64_t rows, int64_t cols) = 0;
  // Frees memory from upload_*/allocate_activation; unknown pointers are ignored.
  virtual void release(const Tensor& t) = 0;
  // An uninitialised activation buffer of the backend's activation dtype.
  virtual StatusOr<Tensor> allocate_activation(int64_t rows, int64_t cols) = 0;
  // Host memory for adapter images (cuda: pinned, for asynchronous copies).
  virtual HostAllocator host_allocator() const = 0;
  // Memory the pool could take: free device memory (cuda) or available
  // host memory (cpu), before init().
  virtual int64_t available_memory_bytes() const = 0;

  // --- one step ---
  virtual Status begin_step(const StepPlan& plan) = 0;
  // out[t] = table[token_ids[t]]
  virtual Status embedding(const Tensor& table, Tensor out) = 0;
  virtual Status rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor out) = 0;
  // residual += delta; out = rmsnorm(residual)
  virtual Status add_rmsnorm(Tensor residual, const Tensor& delta, const Tensor& weight,
                             float eps, Tensor out) = 0;
  // y = x W^T (W is [out, in], nn.Linear layout)
  virtual Status linear(const Tensor& x, const Tensor& w, Tensor y) = 0;
  // y = x W^T + bias, `bias` [1, out] added to every row (Qwen2's q/k/v
  // projections). bf16 backends round once, after the bias, as torch's
  // addmm does; the LoRA delta is added afterwards by lora(), as PEFT adds it
  // to the biased base layer's output.
  virtual Status linear_bias(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor y) = 0;
  // y[rows of each segment] += scale * (x A^T) Bt with A and Bt read from
  // the segment's pool pages; `scratch` holds >= max rank columns.
  virtual Status lora(const Tensor& x, Tensor y, const std::vector<LoraSegmentRef>& segments,
                      Tensor scratch) = 0;
  // Per-head RMSNorm of q [T, nq*hd] and k [T, nkv*hd] in place, each
  // head_dim slice scaled by q_weight / k_weight [1, hd] (Qwen3's q_norm and
  // k_norm; after the projections and their LoRA, before rope).
  virtual Status qk_norm(Tensor q, Tensor k, const Tensor& q_weight, const Tensor& k_weight,
                         float eps) = 0;
  // Rotary embedding of q [T, nq*hd] and k [T, nkv*hd] at the plan's positions.
  virtual Status rope(Tensor q, Tensor k) = 0;
  // Writes this step's K/V rows of `layer` into the pool pages of the plan.
  virtual Status kv_append(int32_t layer, const Tensor& k, const Tensor& v) = 0;
  // Causal GQA attention of q over the cached K/V of `layer`.
  virtual Status attention(int32_t layer, const Tensor& q, Tensor out) = 0;
  virtual Status silu_mul(const Tensor& gate, const Tensor& up, Tensor out) = 0;
  // out[i] = x[plan.sample_rows[i]]
  virtual Status gather_sample_rows(const Tensor& x, Tensor out) = 0;
  // Samples one token per row of `logits` with the plan's configs; copies
  // the logits to the host too when `want_logits`.
  virtual Status sample(const Tensor& logits, bool want_logits, SampleResult* out) = 0;
};

// The checks every backend's init makes: head geometry, a pool of whole
// `elem_bytes` elements, and a KV page (K and V of kv_page_tokens tokens of
// one layer) that fits in a pool page. `who` names the backend in messages.
Status validate_backend_geometry(const BackendModelInfo& info, const PoolGeometry& pool,
                                 size_t elem_bytes, const std::string& who);

// A write of `bytes` into `pages` (PoolWriter::write_pages), checked before
// anything is copied: enough pages, and each one inside the pool.
Status validate_page_write(const PoolGeometry& pool, const std::vector<int32_t>& pages,
                           size_t bytes);

// linear_bias: one bias value per output row of W.
Status validate_linear_bias(const Tensor& w, const Tensor& bias, const std::string& who);

// qk_norm: q [T, nq*hd] and k [T, nkv*hd] of the model's heads, weights of
// head_dim values each.
Status validate_qk_norm(const BackendModelInfo& info, const Tensor& q, const Tensor& k,
                        const Tensor& q_weight, const Tensor& k_weight, const std::string& who);

// Pool size for a command's --pool-mb / --pool-fraction: `pool_mb` MiB
// when positive, else `fraction` of the backend's available memory.
StatusOr<int64_t> choose_pool_bytes(const Backend& backend, int64_t pool_mb, double fraction);

// What the command line says about the backend beyond its name.
struct BackendOptions {
  int threads = 0;              // cpu-bf16: threads of its pool (0: one per CPU)
  std::string cpu_isa = "auto";  // cpu-bf16: avx512bf16 | avx512 | avx2 | scalar | auto
  // The KV cache's element type: "auto" (the backend's own: bf16 on
  // cpu-bf16 and cuda, f32 on cpu), "bf16", or "f32" (cpu and cpu-bf16).
  std::string kv_cache_dtype = "auto";
  // cpu-bf16: "mapped" reads the checkpoint's bf16 weights in place (no
  // load pass); "packed" repacks them at load into 16-column panels for the
  // VDPBF16PS kernel (faster batched steps and prefill; needs avx512bf16);
  // "auto" packs where that kernel runs and maps elsewhere.
  std::string cpu_weights = "auto";
  // cpu-bf16, packed weights: a directory where they are kept after packing
  // and mapped from on the next start (engine/packed_weights_cache.h);
  // empty: pack in memory at every start.
  std::string cpu_weights_cache;
};

// "cpu" (f32 reference) always; "cpu-bf16" (bf16 weights in place, SIMD,
// threads) always; "cuda" when built with CUDA and a device is present;
// "auto" picks cpu-bf16 (see create_backend's comment).
StatusOr<std::unique_ptr<Backend>> create_backend(const std::string& name,
                                                  const BackendOptions& options = {});
std::unique_ptr<Backend> create_cpu_backend();
StatusOr<std::unique_ptr<Backend>> create_cpu_bf16_backend(const BackendOptions& options);

}  // namespace loraserve
