#include "engine/cpu_backend.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <type_traits>

#include "checkpoint/safetensors.h"
#include "kernels/bias/bias.h"
#include "kernels/embedding/embedding.h"
#include "kernels/gemm/gemm.h"
#include "kernels/qk_norm/qk_norm.h"
#include "kernels/rmsnorm/rmsnorm.h"
#include "kernels/rope/rope.h"
#include "kernels/silu_mul/silu_mul.h"

namespace loraserve {

namespace {
#ifdef MADV_POPULATE_WRITE
constexpr int kMadvPopulateWrite = MADV_POPULATE_WRITE;
#else
constexpr int kMadvPopulateWrite = 23;  // <linux/mman.h>; glibc < 2.35 does not name it
#endif
}  // namespace

Status CpuBackend::init(const BackendModelInfo& info, const PoolGeometry& pool) {
  LS_RETURN_IF_ERROR(validate_backend_geometry(info, pool, dtype_size(kv_dtype()), "cpu backend"));
  // Adapter images may be f32 across the pages (adapter_dtype), whatever the KV cache holds.
  if (pool.page_bytes % static_cast<int64_t>(sizeof(float)) != 0) {
    return invalid_argument("cpu backend: pool pages must hold whole f32 values");
  }
  info_ = info;
  geom_ = pool;
  std::free(pool_);
  const size_t bytes = static_cast<size_t>(pool.num_pages) * pool.page_bytes;
  pool_ = static_cast<float*>(alloc_host(bytes));
  if (pool_ == nullptr) return resource_exhausted("cpu backend: cannot allocate page pool");
  // Faulted in now, not by the first write to each KV page: on an untouched
  // pool every decode step faulted fresh pages in inside kv_append (2% of
  // a B=16 step on the 1.1B model; 0.2% faulted in first, docs/benchmarks.md),
  // and a pool larger than the machine can hold fails at start, not
  // mid-stream. MADV_POPULATE_WRITE (Linux 5.14) does it in the kernel
  // (2.3 GB in 0.11 s here, a memset 0.56 s); older kernels (EINVAL, as for
  // a pool under 2 MiB, not page-aligned) get the memset.
  if (madvise(pool_, round_up(bytes, 64), kMadvPopulateWrite) != 0) {
    const int err = errno;
    if (err != EINVAL) {
      std::free(pool_);
      pool_ = nullptr;
      return resource_exhausted("cpu backend: cannot hold a " + std::to_string(bytes >> 20) +
                                " MiB page pool (" + std::strerror(err) +
                                "); lower --pool-mb or --pool-fraction");
    }
    std::memset(pool_, 0, bytes);
  }
  return ok_status();
}

void* CpuBackend::alloc_host(size_t bytes) {
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t align = bytes >= kHuge ? kHuge : 64;
  void* p = std::aligned_alloc(align, round_up(bytes, align));
  if (p != nullptr && align == kHuge) madvise(p, round_up(bytes, align), MADV_HUGEPAGE);  // a hint; may fail
  return p;
}

StatusOr<Tensor> CpuBackend::upload_weight(const TensorInfo& t) {
  if (t.shape.empty() || t.shape.size() > 2) {
    return invalid_argument("cpu backend: tensor " + t.name + " is not 1-D or 2-D");
  }
  const int64_t rows = t.shape.size() == 2 ? t.shape[0] : 1;
  const int64_t cols = t.shape.back();
  LS_ASSIGN_OR_RETURN(Tensor out, allocate_activation(rows, cols));
  convert_to_f32(t.dtype, t.data, f32(out), static_cast<size_t>(rows * cols));
  return out;
}

StatusOr<Tensor> CpuBackend::upload_f32(const float* data, int64_t rows, int64_t cols) {
  LS_ASSIGN_OR_RETURN(Tensor out, allocate_activation(rows, cols));
  std::memcpy(out.data, data, out.nbytes());
  return out;
}

void CpuBackend::release(const Tensor& t) {
  auto it = owned_.find(t.data);
  if (it == owned_.end()) return;
  std::free(it->first);
  owned_.erase(it);
}

StatusOr<Tensor> CpuBackend::allocate_activation(int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return invalid_argument("cpu backend: empty allocation");
  const size_t bytes = round_up(static_cast<size_t>(rows * cols) * sizeof(float), 64);
  void* p = std::aligned_alloc(64, bytes);
  if (p == nullptr) return resource_exhausted("cpu backend: out of host memory");
  owned_.emplace(p, bytes);
  return Tensor{p, DType::kF32, rows, cols};
}

Status CpuBackend::begin_step(const StepPlan& plan) {
  LS_RETURN_IF_ERROR(validate_step_plan(plan, info_.num_layers, geom_));
  plan_ = &plan;
  return ok_status();
}

Status CpuBackend::embedding(const Tensor& table, Tensor out) {
  LS_RETURN_IF_ERROR(check_f32(table, "embedding table"));
  kernels::EmbeddingParams p;
  p.table = f32(table);
  p.ids = plan_->token_ids.data();
  p.out = f32(out);
  p.num_tokens = out.rows;
  p.hidden = table.cols;
  p.vocab = table.rows;
  return kernels::embedding_ref(p);
}

kernels::RmsNormParams CpuBackend::rmsnorm_params(const Tensor& x, const Tensor& weight,
                                                  float eps, Tensor out) {
  kernels::RmsNormParams p;
  p.x = f32(x);
  p.weight = f32(weight);
  p.out = f32(out);
  p.num_tokens = x.rows;
  p.hidden = x.cols;
  p.eps = eps;
  return p;
}

kernels::AddRmsNormParams CpuBackend::add_rmsnorm_params(Tensor residual, const Tensor& delta,
                                                         const Tensor& weight, float eps,
                                                         Tensor out) {
  kernels::AddRmsNormParams p;
  p.residual = f32(residual);
  p.delta = f32(delta);
  p.weight = f32(weight);
  p.out = f32(out);
  p.num_tokens = residual.rows;
  p.hidden = residual.cols;
  p.eps = eps;
  return p;
}

Status CpuBackend::rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor out) {
  return kernels::rmsnorm_ref(rmsnorm_params(x, weight, eps, out));
}

Status CpuBackend::add_rmsnorm(Tensor residual, const Tensor& delta, const Tensor& weight,
                               float eps, Tensor out) {
  return kernels::add_rmsnorm_ref(add_rmsnorm_params(residual, delta, weight, eps, out));
}

Status CpuBackend::linear(const Tensor& x, const Tensor& w, Tensor y) {
  if (x.cols != w.cols || y.cols != w.rows || x.rows != y.rows) {
    return invalid_argument("cpu backend: linear shape mismatch");
  }
  kernels::GemmParams p;
  p.x = f32(x);
  p.w = f32(w);
  p.y = f32(y);
  p.m = x.rows;
  p.n = w.rows;
  p.k = w.cols;
  return kernels::gemm_blas(p);
}

Status CpuBackend::linear_bias(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor y) {
  LS_RETURN_IF_ERROR(validate_linear_bias(w, bias, "cpu backend"));
  LS_RETURN_IF_ERROR(check_f32(bias, "bias"));
  LS_RETURN_IF_ERROR(linear(x, w, y));
  return kernels::bias_add_ref(kernels::BiasAddParams{f32(y), f32(bias), y.rows, y.cols});
}

Status CpuBackend::lora(const Tensor& x, Tensor y, const std::vector<LoraSegmentRef>& segments,
                        Tensor scratch) {
  if (segments.empty()) return ok_status();
  kernels::PagedLoraShrinkParams sp;
  kernels::PagedLoraExpandParams ep;
  lora_params(x, y, segments, scratch, &sp, &ep);
  if (static_cast<size_t>(sp.num_segments) != segments.size()) {
    return internal_error("cpu backend: an adapter image is not f32");
  }
  LS_RETURN_IF_ERROR(kernels::lora_shrink_paged_ref(sp));
  return kernels::lora_expand_paged_ref(ep);
}

int64_t CpuBackend::available_memory_bytes() const {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  int64_t kb = 0;
  std::string unit;
  while (meminfo >> key >> kb >> unit) {
    if (key == "MemAvailable:") return kb * 1024;
  }
  return 0;
}

Status CpuBackend::write_pages(const std::vector<int32_t>& pages, const void* src, size_t bytes) {
  if (pool_ == nullptr) return failed_precondition("cpu backend: pool not initialised");
  LS_RETURN_IF_ERROR(validate_page_write(geom_, pages, bytes));
  const size_t page = static_cast<size_t>(geom_.page_bytes);
  const char* from = static_cast<const char*>(src);
  for (size_t i = 0; i * page < bytes; ++i) {
    std::memcpy(reinterpret_cast<char*>(pool_) + static_cast<size_t>(pages[i]) * page,
                from + i * page, std::min(page, bytes - i * page));
  }
  return ok_status();
}

Status CpuBackend::qk_norm(Tensor q, Tensor k, const Tensor& q_weight, const Tensor& k_weight,
                           float eps) {
  LS_RETURN_IF_ERROR(validate_qk_norm(info_, q, k, q_weight, k_weight, "cpu backend"));
  kernels::QkNormParams p;
  p.q = f32(q);
  p.k = f32(k);
  p.q_weight = f32(q_weight);
  p.k_weight = f32(k_weight);
  p.num_tokens = q.rows;
  p.num_q_heads = info_.num_q_heads;
  p.num_kv_heads = info_.num_kv_heads;
  p.head_dim = info_.head_dim;
  p.eps = eps;
  return kernels::qk_norm_ref(p);
}

Status CpuBackend::rope(Tensor q, Tensor k) {
  kernels::RopeParams p;
  p.q = f32(q);
  p.k = f32(k);
  p.positions = plan_->positions.data();
  p.inv_freq = info_.rope_inv_freq.data();
  p.num_tokens = q.rows;
  p.num_q_heads = info_.num_q_heads;
  p.num_kv_heads = info_.num_kv_heads;
  p.head_dim = info_.head_dim;
  return kernels::rope_ref(p);
}

Status CpuBackend::kv_append(int32_t layer, const Tensor& k, const Tensor& v) {
  return kernels::kv_append_ref(kv_append_params(k, v, kv_view(layer)));
}

Status CpuBackend::attention(int32_t layer, const Tensor& q, Tensor out) {
  return kernels::attention_ref(attention_params(layer, q, out));
}

Status CpuBackend::silu_mul(const Tensor& gate, const Tensor& up, Tensor out) {
  kernels::SiluMulParams p;
  p.gate = f32(gate);
  p.up = f32(up);
  p.out = f32(out);
  p.num_tokens = gate.rows;
  p.inter = gate.cols;
  return kernels::silu_mul_ref(p);
}

Status CpuBackend::gather_sample_rows(const Tensor& x, Tensor out) {
  const auto& rows = plan_->sample_rows;
  if (out.rows != static_cast<int64_t>(rows.size()) || out.cols != x.cols) {
    return invalid_argument("cpu backend: gather shape mismatch");
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0 || rows[i] >= x.rows) return invalid_argument("sample row out of range");
    std::memcpy(f32(out) + i * x.cols, f32(x) + rows[i] * x.cols, x.cols * sizeof(float));
  }
  return ok_status();
}

Status CpuBackend::sample(const Tensor& logits, bool want_logits, SampleResult* out) {
  LS_ASSIGN_OR_RETURN(const kernels::SampleParams p, sample_params(logits, out));
  LS_RETURN_IF_ERROR(kernels::sample_ref(p));
  keep_logits(logits, want_logits, out);
  return ok_status();
}

StatusOr<kernels::SampleParams> CpuBackend::sample_params(const Tensor& logits,
                                                          SampleResult* out) const {
  const int64_t n = logits.rows;
  if (n > 0 && (plan_->sampling.size() < static_cast<size_t>(n) ||
                plan_->sample_steps.size() < static_cast<size_t>(n))) {
    return invalid_argument(name() + " backend: fewer sampling configs than logit rows");
  }
  out->tokens.assign(n, 0);
  out->logprobs.assign(n, 0.0f);
  kernels::SampleParams p;
  p.logits = f32(logits);
  p.num_rows = n;
  p.vocab = logits.cols;
  p.configs = plan_->sampling.data();
  p.steps = plan_->sample_steps.data();
  p.out_tokens = out->tokens.data();
  p.out_logprobs = out->logprobs.data();
  return p;
}

void CpuBackend::keep_logits(const Tensor& logits, bool want_logits, SampleResult* out) {
  if (want_logits) {
    out->logits.assign(f32(logits), f32(logits) + logits.rows * logits.cols);
  } else {
    out->logits.clear();
  }
}

template <typename W>
void CpuBackend::lora_params(const Tensor& x, Tensor y, const std::vector<LoraSegmentRef>& segments,
                             Tensor scratch, kernels::PagedLoraShrinkParamsOver<W>* sp,
                             kernels::PagedLoraExpandParamsOver<W>* ep) {
  constexpr DType kImage = std::is_same_v<W, uint16_t> ? DType::kBF16 : DType::kF32;
  segs_.clear();
  for (const LoraSegmentRef& s : segments) {
    if (s.dtype != kImage) continue;
    kernels::PagedLoraSegment k;
    k.begin = s.begin;
    k.end = s.end;
    k.rank = s.rank;
    k.scale = s.scale;
    k.page_ids = s.page_ids;
    k.a_offset = s.a_offset;
    k.bt_offset = s.bt_offset;
    segs_.push_back(k);
  }
  const int64_t page_elems = geom_.page_bytes / static_cast<int64_t>(sizeof(W));
  const W* pool = reinterpret_cast<const W*>(pool_);
  sp->x = f32(x);
  sp->x_stride = x.cols;
  sp->v = f32(scratch);
  sp->v_stride = scratch.cols;
  sp->in_dim = x.cols;
  sp->num_tokens = x.rows;
  sp->pool = pool;
  sp->page_elems = page_elems;
  sp->segments = segs_.data();
  sp->num_segments = static_cast<int32_t>(segs_.size());
  ep->v = f32(scratch);
  ep->v_stride = scratch.cols;
  ep->y = f32(y);
  ep->y_stride = y.cols;
  ep->out_dim = y.cols;
  ep->num_tokens = y.rows;
  ep->pool = pool;
  ep->page_elems = page_elems;
  ep->segments = segs_.data();
  ep->num_segments = sp->num_segments;
}

template void CpuBackend::lora_params(const Tensor&, Tensor, const std::vector<LoraSegmentRef>&,
                                      Tensor, kernels::PagedLoraShrinkParamsOver<float>*,
                                      kernels::PagedLoraExpandParamsOver<float>*);
template void CpuBackend::lora_params(const Tensor&, Tensor, const std::vector<LoraSegmentRef>&,
                                      Tensor, kernels::PagedLoraShrinkParamsOver<uint16_t>*,
                                      kernels::PagedLoraExpandParamsOver<uint16_t>*);

std::unique_ptr<Backend> create_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace loraserve
