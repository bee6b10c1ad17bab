// The cpu-bf16 backend: the fast CPU path (issue #19).
//
// Base weights stay in the checkpoint's mmapped bf16 bytes (no converted
// copy, no load-time pass: Engine keeps the ModelWeights alive, see
// Backend::maps_weights); projections run kernels/gemm/gemm_bf16 with f32
// accumulation on the best instruction set this CPU has. --cpu-weights
// packed instead repacks every matrix once at load into 16-column panels
// (gemm_bf16_panels.h) for the VDPBF16PS panel kernel, and lets the mapping
// go; with --cpu-weights-cache the packed matrices are written to disk once
// (in the background, while the first start serves) and mapped from there on
// later starts (engine/packed_weights_cache.h). The KV cache is bf16 by
// default (--kv-cache-dtype f32 keeps the cpu backend's): rows are rounded
// once as they are appended and widened exactly as attention reads them.
// Everything else is the f32 cpu backend's: pool, adapter images and the
// order of every op, with the heavy ones (attention, LoRA, sampling, silu) on
// SIMD and all ops split over one ThreadPool (--threads).
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "checkpoint/safetensors.h"
#include "common/thread_pool.h"
#include "engine/cpu_backend.h"
#include "engine/packed_weights_cache.h"
#include "kernels/gemm/gemm_bf16.h"
#include "kernels/gemm/gemm_bf16_panels.h"
#include "kernels/rope/rope.h"

namespace loraserve {
namespace {

using kernels::CpuIsa;

class CpuBf16Backend final : public CpuBackend {
 public:
  CpuBf16Backend(int threads, CpuIsa isa, DType kv_dtype, bool packed,
                 std::unique_ptr<PackedWeightsCache> cache)
      : threads_(threads), isa_(isa), kv_dtype_(kv_dtype), packed_(packed), cache_(std::move(cache)) {
    if (cache_) {
      cache_->set_parallel_for([this](int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
        threads_.parallel_for(n, 1, fn);
      });
    }
  }
  ~CpuBf16Backend() override {
    finish_background_work();
    if (profile_) print_profile();
    for (void* p : owned_bf16_) std::free(p);
  }

  std::string name() const override { return "cpu-bf16"; }
  bool maps_weights() const override { return !packed_; }
  DType kv_dtype() const override { return kv_dtype_; }
  DType adapter_dtype(bool exact_in_bf16) const override {
    return exact_in_bf16 ? DType::kBF16 : DType::kF32;
  }
  std::string describe() const override {
    return std::string("cpu-bf16 (") + kernels::cpu_isa_name(isa_) + ", " +
           std::to_string(threads_.size()) + " threads, " + dtype_name(kv_dtype_) + " KV cache, " +
           (packed_ ? "packed" : "mapped") + " weights" + cache_note() + ")";
  }

  std::string cache_note() const {
    if (!cache_) return "";
    const PackedWeightsCache::Stats& s = cache_->stats();
    return ", " + std::to_string(s.hits) + " mapped from the cache in " + cache_->dir() + ", " +
           std::to_string(s.misses) + " packed";
  }

  StatusOr<Tensor> upload_weight(const TensorInfo& t) override {
    if (t.shape.size() != 2) return CpuBackend::upload_weight(t);  // norms, biases: f32
    const int64_t rows = t.shape[0], cols = t.shape[1];
    if (in_panels(cols)) return upload_packed(t);
    if (!packed_ && t.dtype == DType::kBF16 && reinterpret_cast<uintptr_t>(t.data) % 2 == 0) {
      // In place: the mapping outlives the backend (Engine holds the weights).
      return Tensor{const_cast<void*>(t.data), DType::kBF16, rows, cols};
    }
    // F32 / F16 checkpoints, a misaligned bf16 tensor, and (packed) an odd
    // width the panels cannot hold: one bf16 copy in rows.
    LS_ASSIGN_OR_RETURN(uint16_t* out, alloc_bf16(rows * cols));
    copy_bf16_rows(t, out);
    drop_mapped_pages(t);
    return Tensor{out, DType::kBF16, rows, cols};
  }

  // --cpu-weights packed: the matrix in 16-column panels, mapped from the
  // cache or packed on every thread. A non-bf16 checkpoint is rounded to
  // bf16 rows first.
  StatusOr<Tensor> upload_packed(const TensorInfo& t) {
    const int64_t rows = t.shape[0], cols = t.shape[1];
    const size_t bytes = static_cast<size_t>(kernels::bf16_panels_size(rows, cols)) * 2;
    if (cache_) {
      if (const void* hit = cache_->find(t, bytes)) {
        return Tensor{const_cast<void*>(hit), DType::kBF16, rows, cols};  // never written
      }
    }
    const uint16_t* src = static_cast<const uint16_t*>(t.data);
    std::vector<uint16_t> rounded;
    if (t.dtype != DType::kBF16) {
      rounded.resize(static_cast<size_t>(rows * cols));
      copy_bf16_rows(t, rounded.data());
      src = rounded.data();
    }
    LS_ASSIGN_OR_RETURN(uint16_t* out, alloc_bf16(kernels::bf16_panels_size(rows, cols)));
    LS_RETURN_IF_ERROR(run_split(kernels::bf16_panel_count(rows), 1, [&](int64_t b, int64_t e) {
      return kernels::pack_bf16_panels(src, rows, cols, out, b, e);
    }));
    drop_mapped_pages(t);  // else peak RSS holds the model twice while it loads
    if (cache_) cache_->add(t, out, bytes);
    return Tensor{out, DType::kBF16, rows, cols};
  }

  // Writes what was packed to the cache on a thread of its own, so that the
  // first start serves as soon as it has packed (the write and its fsync
  // take 5-7 s for a 1.2 B model on this disk; docs/benchmarks.md). The
  // writer only reads the packed matrices, which release() and the
  // destructor free only after joining it; it runs at the lowest priority,
  // checksumming on its own thread, to stay out of the serving threads' way.
  // A cache that cannot be written (a full disk, a read-only home) costs the
  // next start a packing pass, not this one its model: a warning, not an
  // error.
  Status weights_uploaded() override {
    if (!cache_ || cache_->stats().misses == 0) return ok_status();
    cache_->set_parallel_for(nullptr);
    cache_writer_ = std::thread([this] {
      (void)setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 19);
      const auto t0 = std::chrono::steady_clock::now();
      Status s = cache_->write_pending();
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const PackedWeightsCache::Stats& st = cache_->stats();
      if (!s.ok()) {
        spdlog::warn("cpu-bf16: packed weights not cached ({}); the next start packs them again",
                     s.message());
      } else if (st.entries_written > 0) {
        spdlog::info("cpu-bf16: wrote {:.2f} GB of packed weights to {} in {:.1f} s",
                     st.bytes_written / 1e9, cache_->dir(), secs);
      }
      cache_written_ = true;
    });
    return ok_status();
  }

  void finish_background_work() override {
    if (!cache_writer_.joinable()) return;
    if (!cache_written_) spdlog::info("cpu-bf16: waiting for the packed-weights cache write to finish");
    cache_writer_.join();
  }

  // Which matrices upload_weight packs (and linear and embedding then read
  // as panels): with --cpu-weights packed, every one the panels can hold.
  bool in_panels(int64_t cols) const { return packed_ && cols % 2 == 0; }

  StatusOr<uint16_t*> alloc_bf16(int64_t elems) {
    // Huge pages: a 2.5 GB model is ~1200 page faults at load instead of 600000.
    void* p = alloc_host(static_cast<size_t>(elems) * 2);
    if (p == nullptr) return resource_exhausted("cpu-bf16 backend: out of host memory");
    owned_bf16_.push_back(p);
    return static_cast<uint16_t*>(p);
  }

  // t's rows as bf16 (rounded to nearest even from f32/f16).
  static void copy_bf16_rows(const TensorInfo& t, uint16_t* out) {
    const int64_t rows = t.shape[0], cols = t.shape[1];
    if (t.dtype == DType::kBF16) {
      std::memcpy(out, t.data, static_cast<size_t>(rows * cols) * 2);
      return;
    }
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      convert_to_f32(t.dtype, static_cast<const char*>(t.data) + r * cols * dtype_size(t.dtype),
                     row.data(), row.size());
      for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = f32_to_bf16(row[c]);
    }
  }

  void release(const Tensor& t) override {
    finish_background_work();  // the writer may be reading this matrix
    for (size_t i = 0; i < owned_bf16_.size(); ++i) {
      if (owned_bf16_[i] == t.data) {
        std::free(owned_bf16_[i]);
        owned_bf16_.erase(owned_bf16_.begin() + static_cast<std::ptrdiff_t>(i));
        return;
      }
    }
    CpuBackend::release(t);
  }

  Status embedding(const Tensor& table, Tensor out) override {
    OpTimer timer(this, Op::kEmbedding);
    if (table.dtype != DType::kBF16) return CpuBackend::embedding(table, out);
    if (out.cols != table.cols) return invalid_argument("cpu-bf16 backend: embedding width mismatch");
    const int32_t* ids = plan_->token_ids.data();
    for (int64_t t = 0; t < out.rows; ++t) {
      if (ids[t] < 0 || ids[t] >= table.rows) {
        return invalid_argument("embedding: token id " + std::to_string(ids[t]) + " outside [0, " +
                                std::to_string(table.rows) + ")");
      }
      const auto* data = static_cast<const uint16_t*>(table.data);
      float* dst = f32(out) + t * out.cols;
      if (in_panels(table.cols)) {  // packed like every matrix (lm_head's too, when tied)
        kernels::bf16_panels_row_f32(data, table.cols, ids[t], dst);
        continue;
      }
      const uint16_t* row = data + ids[t] * table.cols;
      for (int64_t c = 0; c < table.cols; ++c) dst[c] = bf16_to_f32(row[c]);
    }
    return ok_status();
  }

  Status linear(const Tensor& x, const Tensor& w, Tensor y) override {
    OpTimer timer(this, Op::kLinear);
    if (w.dtype != DType::kBF16) return CpuBackend::linear(x, w, y);
    if (x.cols != w.cols || y.cols != w.rows || x.rows != y.rows) {
      return invalid_argument("cpu-bf16 backend: linear shape mismatch");
    }
    LS_RETURN_IF_ERROR(check_f32(x, "linear input"));
    kernels::GemmBf16Params p;
    p.x = f32(x);
    p.w = static_cast<const uint16_t*>(w.data);
    p.y = f32(y);
    p.m = x.rows;
    p.n = w.rows;
    p.k = w.cols;
    p.w_panels = in_panels(w.cols);
    if (isa_ == CpuIsa::kAvx512Bf16) {
      const size_t need = static_cast<size_t>(x.rows * x.cols);
      if (xb_.size() < need) xb_.resize(need);  // grows to the largest step once
      threads_.parallel_for(x.rows, 1, [&](int64_t b, int64_t e) {
        kernels::f32_to_bf16_rows(f32(x) + b * x.cols, xb_.data() + b * x.cols, (e - b) * x.cols, isa_);
      });
      p.xb = xb_.data();
    }
    // Column ranges in multiples of every kernel's register tile (6 and 4;
    // panels: 3 of 16 columns).
    return run_split(w.rows, p.w_panels ? 48 : 24, [&](int64_t b, int64_t e) {
      kernels::GemmBf16Params part = p;
      part.n_begin = b;
      part.n_end = e;
      return kernels::gemm_bf16_cpu(part, isa_);
    });
  }

  Status lora(const Tensor& x, Tensor y, const std::vector<LoraSegmentRef>& segments,
              Tensor scratch) override {
    OpTimer timer(this, Op::kLora);
    if (segments.empty()) return ok_status();
    // bf16 images (adapters exact in bf16) and f32 ones take disjoint rows.
    LS_RETURN_IF_ERROR(lora_over<uint16_t>(x, y, segments, scratch));
    return lora_over<float>(x, y, segments, scratch);
  }

  template <typename W>
  Status lora_over(const Tensor& x, Tensor y, const std::vector<LoraSegmentRef>& segments,
                   Tensor scratch) {
    kernels::PagedLoraShrinkParamsOver<W> sp;
    kernels::PagedLoraExpandParamsOver<W> ep;
    lora_params(x, y, segments, scratch, &sp, &ep);
    if (sp.num_segments == 0) return ok_status();
    LS_RETURN_IF_ERROR(kernels::validate_lora_shrink_paged(sp));
    LS_RETURN_IF_ERROR(kernels::validate_lora_expand_paged(ep));
    const int isa = static_cast<int>(isa_);
    // A token's expand reads only its own shrink's output, so one pass over
    // the tokens does both (one parallel_for a call, not two).
    threads_.parallel_for(x.rows, 1, [&](int64_t b, int64_t e) {
      kernels::lora_shrink_paged_cpu(sp, isa, b, e);
      kernels::lora_expand_paged_cpu(ep, isa, b, e);
    });
    return ok_status();
  }

  Status attention(int32_t layer, const Tensor& q, Tensor out) override {
    OpTimer timer(this, Op::kAttention);
    if (kv_dtype_ == DType::kBF16) return attend(attention_params<uint16_t>(layer, q, out));
    return attend(attention_params(layer, q, out));
  }

  template <typename KvT>
  Status attend(const kernels::AttentionParamsOver<KvT>& p) {
    LS_RETURN_IF_ERROR(kernels::validate_attention(p));
    const int isa = static_cast<int>(isa_);
    threads_.parallel_for(p.num_tokens, 1, [&](int64_t b, int64_t e) {
      kernels::attention_cpu_tokens(p, isa, b, e);
    });
    return ok_status();
  }

  Status kv_append(int32_t layer, const Tensor& k, const Tensor& v) override {
    OpTimer timer(this, Op::kKvAppend);
    if (kv_dtype_ != DType::kBF16) return CpuBackend::kv_append(layer, k, v);
    LS_RETURN_IF_ERROR(check_f32(k, "kv_append k"));
    LS_RETURN_IF_ERROR(check_f32(v, "kv_append v"));
    return kernels::kv_append_bf16kv_cpu(kv_append_params(k, v, kv_view<uint16_t>(layer)),
                                         static_cast<int>(isa_));
  }

  Status silu_mul(const Tensor& gate, const Tensor& up, Tensor out) override {
    OpTimer timer(this, Op::kSiluMul);
    if (gate.rows != up.rows || gate.rows != out.rows || gate.cols != up.cols ||
        gate.cols != out.cols) {
      return invalid_argument("cpu-bf16 backend: silu_mul shape mismatch");
    }
    threads_.parallel_for(gate.rows, 1, [&](int64_t b, int64_t e) {
      kernels::silu_mul_f32(f32(gate) + b * gate.cols, f32(up) + b * up.cols,
                            f32(out) + b * out.cols, (e - b) * gate.cols, isa_);
    });
    return ok_status();
  }

  Status rope(Tensor q, Tensor k) override {
    OpTimer timer(this, Op::kRope);
    return run_split(q.rows, 1, [&](int64_t b, int64_t e) {
      kernels::RopeParams p;
      p.q = f32(q) + b * q.cols;
      p.k = f32(k) + b * k.cols;
      p.positions = plan_->positions.data() + b;
      p.inv_freq = info_.rope_inv_freq.data();
      p.num_tokens = e - b;
      p.num_q_heads = info_.num_q_heads;
      p.num_kv_heads = info_.num_kv_heads;
      p.head_dim = info_.head_dim;
      return kernels::rope_ref(p);
    });
  }

  Status sample(const Tensor& logits, bool want_logits, SampleResult* out) override {
    OpTimer timer(this, Op::kSample);
    LS_ASSIGN_OR_RETURN(const kernels::SampleParams all, sample_params(logits, out));
    LS_RETURN_IF_ERROR(run_split(all.num_rows, 1, [&](int64_t b, int64_t e) {
      kernels::SampleParams p = all;  // rows [b, e)
      p.logits += b * all.vocab;
      p.num_rows = e - b;
      p.configs += b;
      p.steps += b;
      p.out_tokens += b;
      p.out_logprobs += b;
      return kernels::sample_cpu(p, static_cast<int>(isa_));
    }));
    keep_logits(logits, want_logits, out);
    return ok_status();
  }

  Status rmsnorm(const Tensor& x, const Tensor& weight, float eps, Tensor out) override {
    OpTimer timer(this, Op::kNorm);
    const kernels::RmsNormParams p = rmsnorm_params(x, weight, eps, out);
    LS_RETURN_IF_ERROR(kernels::validate_rmsnorm(p));
    threads_.parallel_for(p.num_tokens, 1, [&](int64_t b, int64_t e) {
      kernels::rmsnorm_rows_cpu(p, static_cast<int>(isa_), b, e);
    });
    return ok_status();
  }

  Status add_rmsnorm(Tensor residual, const Tensor& delta, const Tensor& weight, float eps,
                     Tensor out) override {
    OpTimer timer(this, Op::kNorm);
    const kernels::AddRmsNormParams p = add_rmsnorm_params(residual, delta, weight, eps, out);
    LS_RETURN_IF_ERROR(kernels::validate_add_rmsnorm(p));
    threads_.parallel_for(p.num_tokens, 1, [&](int64_t b, int64_t e) {
      kernels::add_rmsnorm_rows_cpu(p, static_cast<int>(isa_), b, e);
    });
    return ok_status();
  }

  // The f32 backend's op, timed (LORASERVE_PROFILE_OPS=1 prints where steps go).

  Status linear_bias(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor y) override {
    OpTimer timer(this, Op::kBias);
    return CpuBackend::linear_bias(x, w, bias, y);
  }

 private:
  enum class Op { kEmbedding, kLinear, kLora, kAttention, kSiluMul, kRope, kSample, kNorm,
                  kKvAppend, kBias, kCount };
  static const char* op_name(Op op) {
    static const char* names[] = {"embedding", "linear", "lora", "attention", "silu_mul",
                                  "rope", "sample", "rmsnorm", "kv_append", "linear_bias"};
    return names[static_cast<int>(op)];
  }
  struct OpTimer {
    OpTimer(CpuBf16Backend* b, Op op) : b_(b), op_(op) {
      if (b_->profile_) t0_ = std::chrono::steady_clock::now();
    }
    ~OpTimer() {
      if (!b_->profile_) return;
      b_->op_ns_[static_cast<int>(op_)] +=
          std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0_).count();
      b_->op_calls_[static_cast<int>(op_)]++;
    }
    CpuBf16Backend* b_;
    Op op_;
    std::chrono::steady_clock::time_point t0_;
  };
  void print_profile() const {
    int64_t total = 0;
    for (int64_t ns : op_ns_) total += ns;
    if (total == 0) return;
    std::fprintf(stderr, "cpu-bf16 op profile (LORASERVE_PROFILE_OPS): %.1f ms in ops\n", total / 1e6);
    for (int i = 0; i < static_cast<int>(Op::kCount); ++i) {
      if (op_calls_[i] == 0) continue;
      std::fprintf(stderr, "  %-12s %9.1f ms %5.1f%% %8lld calls\n", op_name(static_cast<Op>(i)),
                   op_ns_[i] / 1e6, 100.0 * op_ns_[i] / total, static_cast<long long>(op_calls_[i]));
    }
  }
  // linear_bias is timed as a whole; its linear() call inside is counted too.
  bool profile_ = std::getenv("LORASERVE_PROFILE_OPS") != nullptr;
  int64_t op_ns_[static_cast<int>(Op::kCount)] = {};
  int64_t op_calls_[static_cast<int>(Op::kCount)] = {};

  // parallel_for whose chunks return Status: the first error wins.
  template <typename Fn>
  Status run_split(int64_t n, int64_t grain, Fn&& fn) {
    std::mutex mu;
    Status first = ok_status();
    threads_.parallel_for(n, grain, [&](int64_t b, int64_t e) {
      Status s = fn(b, e);
      if (!s.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        if (first.ok()) first = std::move(s);
      }
    });
    return first;
  }

  ThreadPool threads_;
  CpuIsa isa_;
  DType kv_dtype_;
  bool packed_;                      // --cpu-weights packed
  std::unique_ptr<PackedWeightsCache> cache_;  // --cpu-weights-cache; null: none
  std::thread cache_writer_;         // weights_uploaded's write of cache_
  std::atomic<bool> cache_written_{false};  // the writer is done (ok or not)
  std::vector<uint16_t> xb_;         // x in bf16 for the VDPBF16PS kernel
  std::vector<void*> owned_bf16_;    // converted or packed weights
};

}  // namespace

StatusOr<std::unique_ptr<Backend>> create_cpu_bf16_backend(const BackendOptions& options) {
  LS_ASSIGN_OR_RETURN(CpuIsa isa, kernels::parse_cpu_isa(options.cpu_isa));
  if (options.threads < 0) return invalid_argument("--threads must be >= 0 (0: one per CPU)");
  // A bf16 cache unless f32 is asked for: half the bytes per token, and
  // attention reads half as much (issue #19, item 3).
  const DType kv = options.kv_cache_dtype == "f32" ? DType::kF32 : DType::kBF16;
  // auto packs where the panel kernel runs: 1.4-2.1x the batched steps and
  // 1.2-2.0x the prefill of the row kernel at the same RSS (the mapping's
  // pages are dropped as each matrix is packed). Packing a 1.2 B model takes
  // 2-5 s; with a cache, only its first start pays that (docs/benchmarks.md).
  const bool packed = options.cpu_weights == "packed" ||
                      (options.cpu_weights == "auto" && isa == CpuIsa::kAvx512Bf16);
  if (packed && isa != CpuIsa::kAvx512Bf16) {
    return invalid_argument(std::string("--cpu-weights packed: the panel kernel needs AVX512-BF16 "
                                        "(this run uses ") +
                            kernels::cpu_isa_name(isa) + "); use --cpu-weights mapped");
  }
  std::unique_ptr<PackedWeightsCache> cache;
  if (packed && !options.cpu_weights_cache.empty()) {
    // A cache that cannot be opened only costs the packing pass at start.
    StatusOr<std::unique_ptr<PackedWeightsCache>> opened =
        PackedWeightsCache::open(options.cpu_weights_cache, kernels::kBf16PanelsLayout);
    if (opened.ok()) {
      cache = std::move(*opened);
    } else {
      spdlog::warn("cpu-bf16: no packed-weights cache ({}); packing at every start",
                   opened.status().message());
    }
  }
  return std::unique_ptr<Backend>(
      std::make_unique<CpuBf16Backend>(options.threads, isa, kv, packed, std::move(cache)));
}

}  // namespace loraserve
