// The cpu backend: fp32 everywhere, each op the CPU reference in kernels/.
// It is the oracle for the cuda and cpu-bf16 backends and the default where
// no GPU is. Declared here (not only in cpu_backend.cc) because cpu-bf16
// derives from it: same pool, KV layout and adapter images, faster ops.
// The definitions are in cpu_backend.cc.
#pragma once

#include <cmath>
#include <cstdlib>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/backend.h"
#include "engine/step_plan.h"
#include "kernels/attention/attention.h"
#include "kernels/lora/lora_paged.h"
#include "kernels/rmsnorm/rmsnorm.h"
#include "kernels/sampling/sampling.h"

namespace loraserve {
namespace cpu_detail {

inline float* f32(const Tensor& t) { return static_cast<float*>(t.data); }

inline Status check_f32(const Tensor& t, const char* what) {
  if (t.dtype != DType::kF32 || t.data == nullptr) {
    return invalid_argument(std::string("cpu backend: ") + what + " must be a non-null f32 tensor");
  }
  return ok_status();
}

}  // namespace cpu_detail

using cpu_detail::f32;
using cpu_detail::check_f32;

class CpuBackend : public Backend {
 public:
  ~CpuBackend() override {
    for (auto& kv : owned_) std::free(kv.first);
    std::free(pool_);
  }

  std::string name() const override { return "cpu"; }
  DType activation_dtype() const override { return DType::kF32; }

  Status init(const BackendModelInfo& info, const PoolGeometry& pool) override;
  StatusOr<Tensor> upload_weight(const TensorInfo& t) override;
  StatusOr<Tensor> upload_f32(const float* data, int64_t rows, int64_t cols) override;

  void release(const Tensor& t) override;
  StatusOr<Tensor> allocate_activation(int64_t rows, int64_t cols) override;
  Status begin_step(const StepPlan& plan) override;
  Status embedding(const Tensor& table, Tensor out) override;
  Status rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor out) override;
  Status add_rmsnorm(Tensor residual, const Tensor& delta, const Tensor& weight, float eps,
                     Tensor out) override;
  Status linear(const Tensor& x, const Tensor& w, Tensor y) override;
  Status linear_bias(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor y) override;
  Status lora(const Tensor& x, Tensor y, const std::vector<LoraSegmentRef>& segments,
              Tensor scratch) override;
  HostAllocator host_allocator() const override { return HostAllocator::malloc_allocator(); }

  int64_t available_memory_bytes() const override;
  Status write_pages(const std::vector<int32_t>& pages, const void* src, size_t bytes) override;
  Status qk_norm(Tensor q, Tensor k, const Tensor& q_weight, const Tensor& k_weight,
                 float eps) override;
  Status rope(Tensor q, Tensor k) override;
  Status kv_append(int32_t layer, const Tensor& k, const Tensor& v) override;
  Status attention(int32_t layer, const Tensor& q, Tensor out) override;
  Status silu_mul(const Tensor& gate, const Tensor& up, Tensor out) override;
  Status gather_sample_rows(const Tensor& x, Tensor out) override;
  Status sample(const Tensor& logits, bool want_logits, SampleResult* out) override;

 protected:
  // This step's K/V rows into `view` (f32, or bf16 in cpu-bf16).
  template <typename KvT>
  kernels::KvAppendParamsOver<KvT> kv_append_params(const Tensor& k, const Tensor& v,
                                                    const kernels::PagedKv<KvT>& view) const {
    kernels::KvAppendParamsOver<KvT> p;
    p.k = f32(k);
    p.v = f32(v);
    p.token_seq = plan_->token_seq.data();
    p.positions = plan_->positions.data();
    p.num_tokens = k.rows;
    p.kv = view;
    return p;
  }

  // Sampling of every row of `logits` with the plan's configs into `out`
  // (sized here); a backend runs it whole or in row slices.
  StatusOr<kernels::SampleParams> sample_params(const Tensor& logits, SampleResult* out) const;
  static void keep_logits(const Tensor& logits, bool want_logits, SampleResult* out);

  // Attention of q over `layer`'s cache, whose elements are KvT (f32 here,
  // bf16 in cpu-bf16).
  template <typename KvT = float>
  kernels::AttentionParamsOver<KvT> attention_params(int32_t layer, const Tensor& q,
                                                     Tensor out) const {
    kernels::AttentionParamsOver<KvT> p;
    p.q = f32(q);
    p.out = f32(out);
    p.token_seq = plan_->token_seq.data();
    p.positions = plan_->positions.data();
    p.num_tokens = q.rows;
    p.num_q_heads = info_.num_q_heads;
    p.num_kv_heads = info_.num_kv_heads;
    p.head_dim = info_.head_dim;
    p.scale = 1.0f / std::sqrt(static_cast<float>(info_.head_dim));
    p.kv = kv_view<KvT>(layer);
    return p;
  }

  // The shrink and expand parameters of lora() over this backend's pool
  // (the segments are kept in segs_ until the next call).
  // Over the segments whose image elements are W (float: f32, uint16_t:
  // bf16); the others are left out.
  template <typename W>
  void lora_params(const Tensor& x, Tensor y, const std::vector<LoraSegmentRef>& segments,
                   Tensor scratch, kernels::PagedLoraShrinkParamsOver<W>* sp,
                   kernels::PagedLoraExpandParamsOver<W>* ep);

  static kernels::RmsNormParams rmsnorm_params(const Tensor& x, const Tensor& weight, float eps,
                                               Tensor out);
  static kernels::AddRmsNormParams add_rmsnorm_params(Tensor residual, const Tensor& delta,
                                                      const Tensor& weight, float eps, Tensor out);

  static size_t round_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

  // `bytes` of host memory (free with std::free), on 2 MiB boundaries with
  // transparent huge pages asked for when it is that large: the weights
  // and the page pool then fault in 2 MiB at a time instead of 4 KiB, and
  // their streams miss the TLB less. nullptr when out of memory.
  static void* alloc_host(size_t bytes);

  // `layer`'s KV pages in this step's plan, read as KvT elements.
  template <typename KvT = float>
  kernels::PagedKv<KvT> kv_view(int32_t layer) const {
    kernels::PagedKv<KvT> v;
    v.pool = reinterpret_cast<KvT*>(pool_);
    v.page_stride = geom_.page_bytes / static_cast<int64_t>(sizeof(KvT));
    v.page_tokens = geom_.kv_page_tokens;
    v.kv_dim = static_cast<int32_t>(info_.num_kv_heads * info_.head_dim);
    v.num_layers = static_cast<int32_t>(info_.num_layers);
    v.layer = layer;
    v.block_indptr = plan_->kv_block_indptr.data();
    v.page_ids = plan_->kv_page_ids.data();
    v.num_seqs = plan_->num_seqs;
    return v;
  }

  BackendModelInfo info_;
  PoolGeometry geom_;
  float* pool_ = nullptr;
  const StepPlan* plan_ = nullptr;
  std::unordered_map<void*, size_t> owned_;
  std::vector<kernels::PagedLoraSegment> segs_;
};


}  // namespace loraserve
