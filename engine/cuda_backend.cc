// The cuda backend: bf16 weights and activations, fp32 accumulation.
//
// Memory: the unified page pool is one cudaMalloc made in init(); weights
// and activations are cudaMalloc'd by upload_*/allocate_activation at
// start-up. On the serving path nothing is allocated except when a step is
// larger than any before (plan buffers, LoRA metadata ring, host logits):
// those grow once, with a log line.
//
// Streams: all compute runs on `compute_`. write_pages copies adapter
// images on `copy_`; the copy first waits for the compute enqueued so far
// (the pages may have been freed by work still in flight) and the compute
// stream then waits for the copy (an event), so no host thread blocks.
//
// Plan: begin_step() checks the whole plan on the host (ids, sequences,
// positions against each sequence's pages, page ids), packs its int arrays
// into one pinned buffer and uploads them with one copy. The kernels
// themselves trust those arrays.
//
// LoRA: each lora() call packs its segments (and, once per step and
// adapter, the adapter's page ids) into a pinned ring mirrored on the
// device and copies the new bytes with one cudaMemcpyAsync. The ring is
// reset at begin_step (after the previous step has finished on the device)
// and, when full mid-step, after synchronizing the compute stream.
//
// Sampling: logits are copied back to the host and sampled there with
// kernels::sample_ref, so the draw is the CPU's, seeded identically.
#include <cublas_v2.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/cuda_check.h"
#include "engine/backend.h"
#include "engine/cublas_api.h"
#include "checkpoint/safetensors.h"
#include "engine/step_plan.h"
#include "kernels/attention/attention.h"
#include "kernels/bias/bias.h"
#include "kernels/embedding/embedding.h"
#include "kernels/lora/lora_paged.h"
#include "kernels/qk_norm/qk_norm.h"
#include "kernels/rmsnorm/rmsnorm.h"
#include "kernels/rope/rope.h"
#include "kernels/sampling/sampling.h"
#include "kernels/silu_mul/silu_mul.h"

#define LS_CUBLAS_CHECK(stmt)                                                                   \
  do {                                                                                          \
    const cublasStatus_t ls_cublas_st = (stmt);                                                 \
    if (ls_cublas_st != CUBLAS_STATUS_SUCCESS) {                                                \
      return ::loraserve::internal_error(std::string("cuBLAS error ") +                         \
                                         blas_api_->status_string(ls_cublas_st) + " in `" #stmt \
                                         "` at " __FILE__ ":" + std::to_string(__LINE__));      \
    }                                                                                           \
  } while (0)

namespace loraserve {
namespace {

uint16_t* bf(const Tensor& t) { return static_cast<uint16_t*>(t.data); }

Status check_bf16(const Tensor& t, const char* what) {
  if (t.dtype != DType::kBF16 || t.data == nullptr) {
    return invalid_argument(std::string("cuda backend: ") + what + " must be a non-null bf16 tensor");
  }
  return ok_status();
}

size_t round_up(size_t v, size_t a) { return (v + a - 1) / a * a; }

constexpr size_t kCublasWorkspaceBytes = 32u << 20;

class CudaBackend final : public Backend {
 public:
  CudaBackend() = default;
  ~CudaBackend() override {
    // Best effort: errors cannot be reported from a destructor.
    if (compute_) cudaStreamSynchronize(compute_);
    if (copy_) cudaStreamSynchronize(copy_);
    for (auto& kv : owned_) cudaFree(kv.first);
    cudaFree(pool_);
    cudaFree(inv_freq_d_);
    cudaFree(plan_d_);
    cudaFreeHost(plan_h_);
    cudaFree(lora_d_);
    cudaFreeHost(lora_h_);
    cudaFreeHost(logits_h_);
    cudaFree(blas_ws_);
    if (blas_) blas_api_->destroy(blas_);
    if (copy_done_) cudaEventDestroy(copy_done_);
    if (compute_mark_) cudaEventDestroy(compute_mark_);
    if (compute_) cudaStreamDestroy(compute_);
    if (copy_) cudaStreamDestroy(copy_);
  }

  std::string name() const override { return "cuda"; }
  DType activation_dtype() const override { return DType::kBF16; }

  Status init(const BackendModelInfo& info, const PoolGeometry& pool) override {
    if (pool_ != nullptr) return failed_precondition("cuda backend: init called twice");
    LS_RETURN_IF_ERROR(validate_backend_geometry(info, pool, 2, "cuda backend"));
    if (info.head_dim % 2 != 0 || info.head_dim > 256) {  // the rope and attention kernels
      return invalid_argument("cuda backend: bad head geometry (head_dim even and <= 256)");
    }
    if (static_cast<int64_t>(info.rope_inv_freq.size()) != info.head_dim / 2) {
      return invalid_argument("cuda backend: rope_inv_freq must have head_dim / 2 entries");
    }
    info_ = info;
    geom_ = pool;
    LS_CUDA_CHECK(cudaSetDevice(0));
    LS_CUDA_CHECK(cudaStreamCreate(&compute_));
    LS_CUDA_CHECK(cudaStreamCreate(&copy_));
    LS_CUDA_CHECK(cudaEventCreateWithFlags(&copy_done_, cudaEventDisableTiming));
    LS_CUDA_CHECK(cudaEventCreateWithFlags(&compute_mark_, cudaEventDisableTiming));
    LS_ASSIGN_OR_RETURN(blas_api_, cublas_api());
    LS_CUBLAS_CHECK(blas_api_->create(&blas_));
    LS_CUBLAS_CHECK(blas_api_->set_stream(blas_, compute_));
    LS_CUDA_CHECK(cudaMalloc(&blas_ws_, kCublasWorkspaceBytes));
    LS_CUBLAS_CHECK(blas_api_->set_workspace(blas_, blas_ws_, kCublasWorkspaceBytes));

    const size_t bytes = static_cast<size_t>(pool.num_pages) * static_cast<size_t>(pool.page_bytes);
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, bytes);
    if (err != cudaSuccess) {
      cudaGetLastError();  // clear the sticky-free allocation error
      return resource_exhausted("cuda backend: cannot allocate a page pool of " +
                                std::to_string(bytes) + " bytes: " + cudaGetErrorString(err));
    }
    pool_ = static_cast<uint16_t*>(p);
    LS_CUDA_CHECK(cudaMemset(pool_, 0, bytes));
    LS_CUDA_CHECK(cudaMalloc(&inv_freq_d_, info.rope_inv_freq.size() * sizeof(float)));
    LS_CUDA_CHECK(cudaMemcpy(inv_freq_d_, info.rope_inv_freq.data(),
                             info.rope_inv_freq.size() * sizeof(float), cudaMemcpyHostToDevice));
    LS_RETURN_IF_ERROR(grow_plan(64 * 1024));
    LS_RETURN_IF_ERROR(grow_lora_ring(4u << 20));
    return ok_status();
  }

  StatusOr<Tensor> upload_weight(const TensorInfo& t) override {
    if (t.shape.empty() || t.shape.size() > 2) {
      return invalid_argument("cuda backend: tensor " + t.name + " is not 1-D or 2-D");
    }
    const int64_t rows = t.shape.size() == 2 ? t.shape[0] : 1;
    const int64_t cols = t.shape.back();
    // bf16 checkpoints go straight from the mapped file to the device.
    if (t.dtype == DType::kBF16) return upload_bf16(static_cast<const uint16_t*>(t.data), rows, cols);
    const size_t n = static_cast<size_t>(rows * cols);
    std::vector<float> f(n);
    convert_to_f32(t.dtype, t.data, f.data(), n);
    return upload_f32(f.data(), rows, cols);
  }

  StatusOr<Tensor> upload_f32(const float* data, int64_t rows, int64_t cols) override {
    const size_t n = static_cast<size_t>(rows * cols);
    std::vector<uint16_t> host(n);
    convert_from_f32(DType::kBF16, data, host.data(), n);
    return upload_bf16(host.data(), rows, cols);
  }

  void release(const Tensor& t) override {
    auto it = owned_.find(t.data);
    if (it == owned_.end()) return;
    cudaFree(it->first);
    owned_.erase(it);
  }

  StatusOr<Tensor> allocate_activation(int64_t rows, int64_t cols) override {
    if (rows <= 0 || cols <= 0) return invalid_argument("cuda backend: empty allocation");
    const size_t bytes = round_up(static_cast<size_t>(rows * cols) * 2, 256);
    void* p = nullptr;
    const cudaError_t err = cudaMalloc(&p, bytes);
    if (err != cudaSuccess) {
      cudaGetLastError();
      return resource_exhausted("cuda backend: cannot allocate " + std::to_string(bytes) +
                                " bytes: " + cudaGetErrorString(err));
    }
    owned_.emplace(p, bytes);
    LS_CUDA_CHECK(cudaMemset(p, 0, bytes));
    return Tensor{p, DType::kBF16, rows, cols};
  }

  HostAllocator host_allocator() const override {
    HostAllocator a;
    a.allocate = [](size_t n) -> void* {
      void* p = nullptr;
      if (cudaHostAlloc(&p, std::max<size_t>(n, 1), cudaHostAllocDefault) != cudaSuccess) {
        cudaGetLastError();
        return nullptr;
      }
      return p;
    };
    a.free = [](void* p) {
      if (p != nullptr) cudaFreeHost(p);
    };
    return a;
  }

  int64_t available_memory_bytes() const override {
    if (cudaSetDevice(0) != cudaSuccess) return 0;
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return static_cast<int64_t>(free_b);
  }

  Status write_pages(const std::vector<int32_t>& pages, const void* src, size_t bytes) override {
    if (pool_ == nullptr) return failed_precondition("cuda backend: pool not initialised");
    LS_RETURN_IF_ERROR(validate_page_write(geom_, pages, bytes));
    const size_t page = static_cast<size_t>(geom_.page_bytes);
    const size_t used = (bytes + page - 1) / page;
    // The pages may have been freed by work still queued on the compute stream.
    LS_CUDA_CHECK(cudaEventRecord(compute_mark_, compute_));
    LS_CUDA_CHECK(cudaStreamWaitEvent(copy_, compute_mark_, 0));
    const char* from = static_cast<const char*>(src);
    char* base = reinterpret_cast<char*>(pool_);
    size_t i = 0;
    while (i < used) {
      size_t j = i;  // extend over consecutive page ids: one copy per run
      while (j + 1 < used && pages[j + 1] == pages[j] + 1) ++j;
      const size_t off = i * page;
      const size_t len = std::min((j - i + 1) * page, bytes - off);
      LS_CUDA_CHECK(cudaMemcpyAsync(base + static_cast<size_t>(pages[i]) * page, from + off, len,
                                    cudaMemcpyHostToDevice, copy_));
      i = j + 1;
    }
    LS_CUDA_CHECK(cudaEventRecord(copy_done_, copy_));
    LS_CUDA_CHECK(cudaStreamWaitEvent(compute_, copy_done_, 0));
    return ok_status();
  }

  Status begin_step(const StepPlan& plan) override {
    if (pool_ == nullptr) return failed_precondition("cuda backend: not initialised");
    LS_RETURN_IF_ERROR(validate_step_plan(plan, info_.num_layers, geom_));
    // The previous step's work must be done before its staging is reused.
    LS_CUDA_CHECK(cudaStreamSynchronize(compute_));
    lora_off_ = 0;
    page_list_cache_.clear();

    const size_t t = plan.token_ids.size();
    const size_t total = 3 * t + plan.kv_block_indptr.size() + plan.kv_page_ids.size() +
                         plan.sample_rows.size();
    if (total > plan_cap_) {
      spdlog::info("cuda backend: growing the step-plan buffers to {} ints", 2 * total);
      LS_RETURN_IF_ERROR(grow_plan(2 * total));
    }
    size_t off = 0;
    auto put = [&](const std::vector<int32_t>& v) -> int32_t* {
      if (!v.empty()) std::memcpy(plan_h_ + off, v.data(), v.size() * sizeof(int32_t));
      int32_t* dev = plan_d_ + off;
      off += v.size();
      return dev;
    };
    d_token_ids_ = put(plan.token_ids);
    d_positions_ = put(plan.positions);
    d_token_seq_ = put(plan.token_seq);
    d_indptr_ = put(plan.kv_block_indptr);
    d_page_ids_ = put(plan.kv_page_ids);
    d_sample_rows_ = put(plan.sample_rows);
    if (off > 0) {
      LS_CUDA_CHECK(cudaMemcpyAsync(plan_d_, plan_h_, off * sizeof(int32_t),
                                    cudaMemcpyHostToDevice, compute_));
    }
    plan_ = &plan;
    return ok_status();
  }

  Status embedding(const Tensor& table, Tensor out) override {
    LS_RETURN_IF_ERROR(step_ready());
    LS_RETURN_IF_ERROR(check_bf16(table, "embedding table"));
    LS_RETURN_IF_ERROR(check_bf16(out, "embedding out"));
    if (out.rows > static_cast<int64_t>(plan_->token_ids.size()) || out.cols != table.cols) {
      return invalid_argument("cuda backend: embedding shape mismatch");
    }
    for (int64_t i = 0; i < out.rows; ++i) {
      if (plan_->token_ids[i] < 0 || plan_->token_ids[i] >= table.rows) {
        return invalid_argument("embedding: token id " + std::to_string(plan_->token_ids[i]) +
                                " outside [0, " + std::to_string(table.rows) + ")");
      }
    }
    kernels::EmbeddingBf16Params p;
    p.table = bf(table);
    p.ids = d_token_ids_;
    p.out = bf(out);
    p.num_tokens = out.rows;
    p.hidden = table.cols;
    p.vocab = table.rows;
    return kernels::launch_embedding_bf16(p, compute_);
  }

  Status rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor out) override {
    LS_RETURN_IF_ERROR(check_bf16(x, "rmsnorm x"));
    LS_RETURN_IF_ERROR(check_bf16(weight, "rmsnorm weight"));
    LS_RETURN_IF_ERROR(check_bf16(out, "rmsnorm out"));
    if (weight.rows * weight.cols != x.cols || out.cols != x.cols || out.rows < x.rows) {
      return invalid_argument("cuda backend: rmsnorm shape mismatch");
    }
    kernels::RmsNormBf16Params p;
    p.x = bf(x);
    p.weight = bf(weight);
    p.out = bf(out);
    p.num_tokens = x.rows;
    p.hidden = x.cols;
    p.eps = eps;
    return kernels::launch_rmsnorm_bf16(p, compute_);
  }

  Status add_rmsnorm(Tensor residual, const Tensor& delta, const Tensor& weight, float eps,
                     Tensor out) override {
    LS_RETURN_IF_ERROR(check_bf16(residual, "add_rmsnorm residual"));
    LS_RETURN_IF_ERROR(check_bf16(delta, "add_rmsnorm delta"));
    LS_RETURN_IF_ERROR(check_bf16(weight, "add_rmsnorm weight"));
    LS_RETURN_IF_ERROR(check_bf16(out, "add_rmsnorm out"));
    if (weight.rows * weight.cols != residual.cols || delta.cols != residual.cols ||
        out.cols != residual.cols || delta.rows < residual.rows || out.rows < residual.rows) {
      return invalid_argument("cuda backend: add_rmsnorm shape mismatch");
    }
    kernels::AddRmsNormBf16Params p;
    p.residual = bf(residual);
    p.delta = bf(delta);
    p.weight = bf(weight);
    p.out = bf(out);
    p.num_tokens = residual.rows;
    p.hidden = residual.cols;
    p.eps = eps;
    return kernels::launch_add_rmsnorm_bf16(p, compute_);
  }

  Status linear(const Tensor& x, const Tensor& w, Tensor y) override {
    return gemm(x, w, y, /*accumulate=*/false);
  }

  // The bias goes into every row of y first and the GEMM adds x W^T onto it
  // (beta = 1): the fp32 sum is rounded to bf16 once, as torch's addmm.
  Status linear_bias(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor y) override {
    LS_RETURN_IF_ERROR(check_bf16(bias, "linear bias"));
    LS_RETURN_IF_ERROR(check_bf16(y, "linear y"));
    if (x.cols != w.cols || y.cols != w.rows || x.rows != y.rows) {
      return invalid_argument("cuda backend: linear shape mismatch");
    }
    LS_RETURN_IF_ERROR(validate_linear_bias(w, bias, "cuda backend"));
    kernels::BiasBf16Params p;
    p.y = bf(y);
    p.bias = bf(bias);
    p.rows = y.rows;
    p.cols = y.cols;
    p.mode = kernels::BiasMode::kBroadcast;
    LS_RETURN_IF_ERROR(kernels::launch_bias_bf16(p, compute_));
    return gemm(x, w, y, /*accumulate=*/true);
  }

  Status lora(const Tensor& x, Tensor y, const std::vector<LoraSegmentRef>& segments,
              Tensor scratch) override {
    if (segments.empty()) return ok_status();
    LS_RETURN_IF_ERROR(check_bf16(x, "lora x"));
    LS_RETURN_IF_ERROR(check_bf16(y, "lora y"));
    LS_RETURN_IF_ERROR(check_bf16(scratch, "lora scratch"));
    if (x.rows != y.rows || scratch.rows < x.rows) {
      return invalid_argument("cuda backend: lora shape mismatch");
    }
    const int64_t page_elems = geom_.page_bytes / 2;
    int32_t max_rank = 0;
    int32_t prev_end = 0;
    size_t new_page_ints = 0;
    // Runs per layer and module: the message is built only on failure.
    auto bad = [](size_t i, const std::string& what) {
      return invalid_argument("cuda lora segment " + std::to_string(i) + ": " + what);
    };
    for (size_t i = 0; i < segments.size(); ++i) {
      const LoraSegmentRef& s = segments[i];
      if (s.begin < prev_end || s.end < s.begin || s.end > x.rows) {
        return bad(i, "rows overlap, are unsorted or leave the batch");
      }
      if (s.rank <= 0 || s.rank > scratch.cols) {
        return bad(i, "rank " + std::to_string(s.rank) + " outside [1, " +
                          std::to_string(scratch.cols) + "]");
      }
      if (s.page_ids == nullptr || s.num_pages <= 0 || s.a_offset < 0 || s.bt_offset < 0) {
        return bad(i, "missing page table or negative offset");
      }
      if (s.dtype != DType::kBF16) return bad(i, "image is not bf16");
      const int64_t image_elems = static_cast<int64_t>(s.num_pages) * page_elems;
      if (s.a_offset + static_cast<int64_t>(s.rank) * x.cols > image_elems ||
          s.bt_offset + static_cast<int64_t>(s.rank) * y.cols > image_elems) {
        return bad(i, "A or Bt extends past the adapter's pages");
      }
      if (page_list_cache_.count({s.page_ids, s.num_pages}) == 0) {
        for (int32_t k = 0; k < s.num_pages; ++k) {
          if (s.page_ids[k] < 0 || s.page_ids[k] >= geom_.num_pages) {
            return bad(i, "page id outside the pool");
          }
        }
        new_page_ints += static_cast<size_t>(s.num_pages);
      }
      max_rank = std::max(max_rank, s.rank);
      prev_end = s.end;
    }

    // Room in the metadata ring: new page lists, then the segment array.
    const size_t seg_bytes = segments.size() * sizeof(kernels::PagedLoraSegmentDev);
    const size_t need = new_page_ints * sizeof(int32_t) + seg_bytes + 64;
    if (lora_off_ + need > lora_cap_) {
      LS_CUDA_CHECK(cudaStreamSynchronize(compute_));  // everything in the ring is consumed
      lora_off_ = 0;
      page_list_cache_.clear();
      // After the reset every page list is new again.
      size_t all_pages = 0;
      for (const LoraSegmentRef& s : segments) all_pages += static_cast<size_t>(s.num_pages);
      const size_t need_all = all_pages * sizeof(int32_t) + seg_bytes + 64;
      if (need_all > lora_cap_) {
        spdlog::info("cuda backend: growing the LoRA metadata ring to {} bytes", 2 * need_all);
        LS_RETURN_IF_ERROR(grow_lora_ring(2 * need_all));
      }
    }
    const size_t start = round_up(lora_off_, 16);
    size_t off = start;
    std::vector<kernels::PagedLoraSegmentDev>& devsegs = devsegs_;  // grows once, then reused
    devsegs.resize(segments.size());
    for (size_t i = 0; i < segments.size(); ++i) {
      const LoraSegmentRef& s = segments[i];
      auto key = std::make_pair(s.page_ids, s.num_pages);
      auto it = page_list_cache_.find(key);
      int32_t page_begin;
      if (it != page_list_cache_.end()) {
        page_begin = it->second;
      } else {
        std::memcpy(lora_h_ + off, s.page_ids, static_cast<size_t>(s.num_pages) * sizeof(int32_t));
        page_begin = static_cast<int32_t>(off / sizeof(int32_t));
        page_list_cache_.emplace(key, page_begin);
        off += static_cast<size_t>(s.num_pages) * sizeof(int32_t);
      }
      kernels::PagedLoraSegmentDev& d = devsegs[i];
      d.begin = s.begin;
      d.end = s.end;
      d.rank = s.rank;
      d.scale = s.scale;
      d.page_begin = page_begin;
      d.num_pages = s.num_pages;
      d.a_offset = s.a_offset;
      d.bt_offset = s.bt_offset;
    }
    off = round_up(off, 16);
    const size_t seg_off = off;
    std::memcpy(lora_h_ + seg_off, devsegs.data(), seg_bytes);
    off += seg_bytes;
    LS_CUDA_CHECK(cudaMemcpyAsync(lora_d_ + start, lora_h_ + start, off - start,
                                  cudaMemcpyHostToDevice, compute_));
    lora_off_ = off;
    const auto* d_segs = reinterpret_cast<const kernels::PagedLoraSegmentDev*>(lora_d_ + seg_off);
    const auto* d_pages = reinterpret_cast<const int32_t*>(lora_d_);

    kernels::PagedLoraShrinkBf16Params sp;
    sp.x = bf(x);
    sp.x_stride = x.cols;
    sp.v = bf(scratch);
    sp.v_stride = scratch.cols;
    sp.in_dim = x.cols;
    sp.num_tokens = x.rows;
    sp.pool = pool_;
    sp.page_elems = page_elems;
    sp.segments = d_segs;
    sp.page_ids = d_pages;
    sp.num_segments = static_cast<int32_t>(segments.size());
    sp.max_rank = max_rank;
    LS_RETURN_IF_ERROR(kernels::launch_lora_shrink_paged_bf16(sp, compute_));
    kernels::PagedLoraExpandBf16Params ep;
    ep.v = bf(scratch);
    ep.v_stride = scratch.cols;
    ep.y = bf(y);
    ep.y_stride = y.cols;
    ep.out_dim = y.cols;
    ep.num_tokens = y.rows;
    ep.pool = pool_;
    ep.page_elems = page_elems;
    ep.segments = d_segs;
    ep.page_ids = d_pages;
    ep.num_segments = sp.num_segments;
    ep.max_rank = max_rank;
    return kernels::launch_lora_expand_paged_bf16(ep, compute_);
  }

  Status qk_norm(Tensor q, Tensor k, const Tensor& q_weight, const Tensor& k_weight,
                 float eps) override {
    LS_RETURN_IF_ERROR(check_bf16(q, "qk_norm q"));
    LS_RETURN_IF_ERROR(check_bf16(k, "qk_norm k"));
    LS_RETURN_IF_ERROR(check_bf16(q_weight, "qk_norm q_weight"));
    LS_RETURN_IF_ERROR(check_bf16(k_weight, "qk_norm k_weight"));
    LS_RETURN_IF_ERROR(validate_qk_norm(info_, q, k, q_weight, k_weight, "cuda backend"));
    kernels::QkNormBf16Params p;
    p.q = bf(q);
    p.k = bf(k);
    p.q_weight = bf(q_weight);
    p.k_weight = bf(k_weight);
    p.num_tokens = q.rows;
    p.num_q_heads = info_.num_q_heads;
    p.num_kv_heads = info_.num_kv_heads;
    p.head_dim = info_.head_dim;
    p.eps = eps;
    return kernels::launch_qk_norm_bf16(p, compute_);
  }

  Status rope(Tensor q, Tensor k) override {
    LS_RETURN_IF_ERROR(step_ready());
    LS_RETURN_IF_ERROR(check_bf16(q, "rope q"));
    LS_RETURN_IF_ERROR(check_bf16(k, "rope k"));
    if (q.rows != k.rows || q.rows > static_cast<int64_t>(plan_->positions.size()) ||
        q.cols != info_.num_q_heads * info_.head_dim ||
        k.cols != info_.num_kv_heads * info_.head_dim) {
      return invalid_argument("cuda backend: rope shape mismatch");
    }
    kernels::RopeBf16Params p;
    p.q = bf(q);
    p.k = bf(k);
    p.positions = d_positions_;
    p.inv_freq = inv_freq_d_;
    p.num_tokens = q.rows;
    p.num_q_heads = info_.num_q_heads;
    p.num_kv_heads = info_.num_kv_heads;
    p.head_dim = info_.head_dim;
    return kernels::launch_rope_bf16(p, compute_);
  }

  Status kv_append(int32_t layer, const Tensor& k, const Tensor& v) override {
    LS_RETURN_IF_ERROR(step_ready());
    LS_RETURN_IF_ERROR(check_bf16(k, "kv_append k"));
    LS_RETURN_IF_ERROR(check_bf16(v, "kv_append v"));
    const int64_t kv_dim = info_.num_kv_heads * info_.head_dim;
    if (k.rows != v.rows || k.cols != kv_dim || v.cols != kv_dim ||
        k.rows > static_cast<int64_t>(plan_->token_ids.size())) {
      return invalid_argument("cuda backend: kv_append shape mismatch");
    }
    kernels::KvAppendBf16Params p;
    p.k = bf(k);
    p.v = bf(v);
    p.token_seq = d_token_seq_;
    p.positions = d_positions_;
    p.num_tokens = k.rows;
    LS_ASSIGN_OR_RETURN(p.kv, kv_view(layer));
    return kernels::launch_kv_append_bf16(p, compute_);
  }

  Status attention(int32_t layer, const Tensor& q, Tensor out) override {
    LS_RETURN_IF_ERROR(step_ready());
    LS_RETURN_IF_ERROR(check_bf16(q, "attention q"));
    LS_RETURN_IF_ERROR(check_bf16(out, "attention out"));
    if (q.rows != out.rows || q.cols != out.cols || q.cols != info_.num_q_heads * info_.head_dim ||
        q.rows > static_cast<int64_t>(plan_->token_ids.size())) {
      return invalid_argument("cuda backend: attention shape mismatch");
    }
    kernels::AttentionBf16Params p;
    p.q = bf(q);
    p.out = bf(out);
    p.token_seq = d_token_seq_;
    p.positions = d_positions_;
    p.num_tokens = q.rows;
    p.num_q_heads = info_.num_q_heads;
    p.num_kv_heads = info_.num_kv_heads;
    p.head_dim = info_.head_dim;
    p.scale = 1.0f / std::sqrt(static_cast<float>(info_.head_dim));
    LS_ASSIGN_OR_RETURN(p.kv, kv_view(layer));
    return kernels::launch_attention_bf16(p, compute_);
  }

  Status silu_mul(const Tensor& gate, const Tensor& up, Tensor out) override {
    LS_RETURN_IF_ERROR(check_bf16(gate, "silu_mul gate"));
    LS_RETURN_IF_ERROR(check_bf16(up, "silu_mul up"));
    LS_RETURN_IF_ERROR(check_bf16(out, "silu_mul out"));
    if (gate.rows != up.rows || gate.cols != up.cols || out.rows < gate.rows ||
        out.cols != gate.cols) {
      return invalid_argument("cuda backend: silu_mul shape mismatch");
    }
    kernels::SiluMulBf16Params p;
    p.gate = bf(gate);
    p.up = bf(up);
    p.out = bf(out);
    p.num_tokens = gate.rows;
    p.inter = gate.cols;
    return kernels::launch_silu_mul_bf16(p, compute_);
  }

  Status gather_sample_rows(const Tensor& x, Tensor out) override {
    LS_RETURN_IF_ERROR(step_ready());
    LS_RETURN_IF_ERROR(check_bf16(x, "gather x"));
    LS_RETURN_IF_ERROR(check_bf16(out, "gather out"));
    const auto& rows = plan_->sample_rows;
    if (out.rows != static_cast<int64_t>(rows.size()) || out.cols != x.cols) {
      return invalid_argument("cuda backend: gather shape mismatch");
    }
    for (int32_t r : rows) {
      if (r < 0 || r >= x.rows) return invalid_argument("sample row out of range");
    }
    kernels::EmbeddingBf16Params p;  // a row gather: table = x, ids = sample rows
    p.table = bf(x);
    p.ids = d_sample_rows_;
    p.out = bf(out);
    p.num_tokens = out.rows;
    p.hidden = x.cols;
    p.vocab = x.rows;
    return kernels::launch_embedding_bf16(p, compute_);
  }

  Status sample(const Tensor& logits, bool want_logits, SampleResult* out) override {
    LS_RETURN_IF_ERROR(step_ready());
    LS_RETURN_IF_ERROR(check_bf16(logits, "sample logits"));
    const int64_t n = logits.rows;
    if (n != static_cast<int64_t>(plan_->sampling.size())) {
      return invalid_argument("cuda backend: sample rows differ from the plan's");
    }
    const size_t elems = static_cast<size_t>(n * logits.cols);
    if (elems > logits_cap_) {
      spdlog::info("cuda backend: growing the host logits buffer to {} elements", elems);
      if (logits_h_ != nullptr) {
        LS_CUDA_CHECK(cudaFreeHost(logits_h_));
        logits_h_ = nullptr;
        logits_cap_ = 0;
      }
      LS_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&logits_h_), elems * 2,
                                  cudaHostAllocDefault));
      logits_cap_ = elems;
    }
    if (elems > 0) {
      LS_CUDA_CHECK(cudaMemcpyAsync(logits_h_, logits.data, elems * 2, cudaMemcpyDeviceToHost,
                                    compute_));
    }
    LS_CUDA_CHECK(cudaStreamSynchronize(compute_));
    logits_f32_.resize(elems);
    for (size_t i = 0; i < elems; ++i) logits_f32_[i] = bf16_to_f32(logits_h_[i]);
    out->tokens.assign(n, 0);
    out->logprobs.assign(n, 0.0f);
    kernels::SampleParams p;
    p.logits = logits_f32_.data();
    p.num_rows = n;
    p.vocab = logits.cols;
    p.configs = plan_->sampling.data();
    p.steps = plan_->sample_steps.data();
    p.out_tokens = out->tokens.data();
    p.out_logprobs = out->logprobs.data();
    LS_RETURN_IF_ERROR(kernels::sample_ref(p));
    if (want_logits) {
      out->logits = logits_f32_;
    } else {
      out->logits.clear();
    }
    return ok_status();
  }

 private:
  // y = x W^T (+ y when `accumulate`), bf16 in and out, fp32 compute.
  // Row-major y[m,n] = x[m,k] W[n,k]^T is, in cuBLAS's column-major terms,
  // Y^T (n x m) = W (n x k, stored as a k x n column-major matrix, so op T)
  // times X^T (k x m, x's storage as is, op N).
  Status gemm(const Tensor& x, const Tensor& w, Tensor y, bool accumulate) {
    LS_RETURN_IF_ERROR(check_bf16(x, "linear x"));
    LS_RETURN_IF_ERROR(check_bf16(w, "linear w"));
    LS_RETURN_IF_ERROR(check_bf16(y, "linear y"));
    if (x.cols != w.cols || y.cols != w.rows || x.rows != y.rows) {
      return invalid_argument("cuda backend: linear shape mismatch");
    }
    if (x.rows == 0) return ok_status();
    if (x.rows > INT32_MAX || w.rows > INT32_MAX || w.cols > INT32_MAX) {
      return invalid_argument("cuda backend: linear too large for cuBLAS int sizes");
    }
    const int m = static_cast<int>(w.rows);  // rows of Y^T
    const int n = static_cast<int>(x.rows);  // cols of Y^T
    const int k = static_cast<int>(w.cols);
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    LS_CUBLAS_CHECK(blas_api_->gemm_ex(blas_, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, w.data,
                                       CUDA_R_16BF, k, x.data, CUDA_R_16BF, k, &beta, y.data,
                                       CUDA_R_16BF, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return ok_status();
  }

  Status step_ready() const {
    if (plan_ == nullptr) return failed_precondition("cuda backend: no step begun");
    return ok_status();
  }

  StatusOr<Tensor> upload_bf16(const uint16_t* host, int64_t rows, int64_t cols) {
    LS_ASSIGN_OR_RETURN(Tensor out, allocate_activation(rows, cols));
    LS_CUDA_CHECK(cudaMemcpy(out.data, host, static_cast<size_t>(rows * cols) * 2,
                             cudaMemcpyHostToDevice));
    return out;
  }

  // Reallocates the plan buffers (device + pinned host) to `ints` entries.
  // Only called when the compute stream is idle (init, begin_step after sync).
  Status grow_plan(size_t ints) {
    cudaFree(plan_d_);
    cudaFreeHost(plan_h_);
    plan_d_ = nullptr;
    plan_h_ = nullptr;
    plan_cap_ = 0;
    LS_CUDA_CHECK(cudaMalloc(&plan_d_, ints * sizeof(int32_t)));
    LS_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&plan_h_), ints * sizeof(int32_t),
                                cudaHostAllocDefault));
    plan_cap_ = ints;
    return ok_status();
  }

  // Same for the LoRA metadata ring; only with the compute stream idle.
  Status grow_lora_ring(size_t bytes) {
    cudaFree(lora_d_);
    cudaFreeHost(lora_h_);
    lora_d_ = nullptr;
    lora_h_ = nullptr;
    lora_cap_ = 0;
    LS_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&lora_d_), bytes));
    LS_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&lora_h_), bytes, cudaHostAllocDefault));
    lora_cap_ = bytes;
    lora_off_ = 0;
    page_list_cache_.clear();
    return ok_status();
  }

  StatusOr<kernels::PagedKvViewBf16> kv_view(int32_t layer) const {
    if (layer < 0 || layer >= info_.num_layers) return invalid_argument("cuda backend: bad layer");
    if (plan_->num_seqs <= 0) return invalid_argument("cuda backend: step has no sequences");
    kernels::PagedKvViewBf16 v;
    v.pool = pool_;
    v.page_stride = geom_.page_bytes / 2;
    v.page_tokens = geom_.kv_page_tokens;
    v.kv_dim = static_cast<int32_t>(info_.num_kv_heads * info_.head_dim);
    v.num_layers = static_cast<int32_t>(info_.num_layers);
    v.layer = layer;
    v.block_indptr = d_indptr_;
    v.page_ids = d_page_ids_;
    v.num_seqs = plan_->num_seqs;
    return v;
  }

  BackendModelInfo info_;
  PoolGeometry geom_;
  cudaStream_t compute_ = nullptr;
  cudaStream_t copy_ = nullptr;
  cudaEvent_t copy_done_ = nullptr;
  cudaEvent_t compute_mark_ = nullptr;
  const CublasApi* blas_api_ = nullptr;  // set by init() before blas_
  cublasHandle_t blas_ = nullptr;
  void* blas_ws_ = nullptr;
  uint16_t* pool_ = nullptr;
  float* inv_freq_d_ = nullptr;
  std::unordered_map<void*, size_t> owned_;

  // Step plan: one device blob and its pinned staging.
  const StepPlan* plan_ = nullptr;
  int32_t* plan_d_ = nullptr;
  int32_t* plan_h_ = nullptr;
  size_t plan_cap_ = 0;  // ints
  const int32_t* d_token_ids_ = nullptr;
  const int32_t* d_positions_ = nullptr;
  const int32_t* d_token_seq_ = nullptr;
  const int32_t* d_indptr_ = nullptr;
  const int32_t* d_page_ids_ = nullptr;
  const int32_t* d_sample_rows_ = nullptr;

  // LoRA metadata ring (device + pinned staging at the same offsets).
  char* lora_d_ = nullptr;
  char* lora_h_ = nullptr;
  size_t lora_cap_ = 0;
  size_t lora_off_ = 0;
  // (adapter page list, length) -> index of its copy in the ring, as int32s.
  std::map<std::pair<const int32_t*, int32_t>, int32_t> page_list_cache_;
  std::vector<kernels::PagedLoraSegmentDev> devsegs_;  // lora()'s staging for one call

  uint16_t* logits_h_ = nullptr;
  size_t logits_cap_ = 0;
  std::vector<float> logits_f32_;
};

}  // namespace

StatusOr<std::unique_ptr<Backend>> create_cuda_backend() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess || n <= 0) {
    cudaGetLastError();
    return unavailable_error(std::string("backend 'cuda': no CUDA device (") +
                             (err != cudaSuccess ? cudaGetErrorString(err) : "0 devices") +
                             "); use --backend cpu");
  }
  return std::unique_ptr<Backend>(new CudaBackend());
}

}  // namespace loraserve
