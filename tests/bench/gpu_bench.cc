// gpu_bench: the issue-6 GPU benchmarks, each as a ratio measured in the same run.
//   0. copy bandwidth: a large device-to-device cudaMemcpy (bytes read + written).
//   1. SGMV decode shapes: paged bf16 LoRA shrink+expand (hidden 4096, one token
//      per request, each request its own adapter, ranks 8/16/32/64 mixed, adapter
//      images in shuffled 256 KiB pool pages) vs the copy bandwidth, and vs one
//      cublasGemmEx per adapter (shrink and expand) on contiguous copies.
//   2. Decode step, Llama-2-7B shape, bf16: the step's LINEAR LAYERS ONLY (fused
//      qkv, o, fused gate_up, down per layer, then lm_head; cuBLAS as the cuda
//      backend's `linear` calls it) plus paged LoRA (rank 16, q/k/v/o, all-distinct
//      adapters). Attention, norms, rope, silu and embedding are NOT included.
//   3. Prefill: one 2048-token chunk through the same linear layers (no lm_head),
//      with and without LoRA (8 requests of 256 tokens, distinct adapters).
// Timing: CUDA events, warm-up first, median of the repeats; inputs rotate among
// several weight sets where one set would fit in L2. Every CUDA/cuBLAS call is
// checked; a failure prints the call and ends that table, not the program.
// Without a CUDA device it prints "no CUDA device" and exits 0.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "checkpoint/synth.h"
#include "kernels/lora/lora_paged.h"

namespace {

using loraserve::kernels::PagedLoraExpandBf16Params;
using loraserve::kernels::PagedLoraSegmentDev;
using loraserve::kernels::PagedLoraShrinkBf16Params;

struct BenchError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void cuda_check(cudaError_t e, const char* stmt, int line) {
  if (e != cudaSuccess) {
    throw BenchError(std::string("CUDA error ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) +
                     ") in `" + stmt + "` at gpu_bench.cc:" + std::to_string(line));
  }
}
void blas_check(cublasStatus_t s, const char* stmt, int line) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    throw BenchError(std::string("cuBLAS error ") + std::to_string(static_cast<int>(s)) + " in `" +
                     stmt + "` at gpu_bench.cc:" + std::to_string(line));
  }
}
void status_check(const loraserve::Status& s, const char* stmt, int line) {
  if (!s.ok()) {
    throw BenchError(std::string("launcher error: ") + s.message() + " in `" + stmt +
                     "` at gpu_bench.cc:" + std::to_string(line));
  }
}
#define CK(x) cuda_check((x), #x, __LINE__)
#define BK(x) blas_check((x), #x, __LINE__)
#define SK(x) status_check((x), #x, __LINE__)

// Owning device buffer.
struct DevBuf {
  void* p = nullptr;
  size_t bytes = 0;
  DevBuf() = default;
  explicit DevBuf(size_t n) : bytes(n) {
    if (n) CK(cudaMalloc(&p, n));
  }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  DevBuf(DevBuf&& o) noexcept : p(o.p), bytes(o.bytes) { o.p = nullptr; o.bytes = 0; }
  DevBuf& operator=(DevBuf&& o) noexcept {
    std::swap(p, o.p);
    std::swap(bytes, o.bytes);
    return *this;
  }
  ~DevBuf() {
    if (p) cudaFree(p);
  }
  template <typename T>
  T* as() const { return static_cast<T*>(p); }
};

struct Events {
  cudaEvent_t a = nullptr, b = nullptr;
  Events() {
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
  }
  ~Events() {
    if (a) cudaEventDestroy(a);
    if (b) cudaEventDestroy(b);
  }
};

// A 32 MiB device block of random bf16 in [-amp, amp] (no zeros, NaN or
// denormals), tiled over larger buffers by device-to-device copies.
class Filler {
 public:
  explicit Filler(uint64_t seed) : src_(kBytes) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> d(0.01f, 1.0f);
    std::vector<uint16_t> h(kBytes / 2);
    for (auto& v : h) {
      float x = d(rng) * 0.05f;
      if (rng() & 1) x = -x;
      v = loraserve::f32_to_bf16(x);
    }
    CK(cudaMemcpy(src_.p, h.data(), kBytes, cudaMemcpyHostToDevice));
  }
  void fill(void* dst, size_t bytes) {
    size_t off = 0, k = 0;
    while (off < bytes) {
      const size_t shift = (k++ * 4096) % (kBytes / 2);  // vary the phase between tiles
      const size_t n = std::min(bytes - off, kBytes - shift);
      CK(cudaMemcpy(static_cast<char*>(dst) + off, src_.as<char>() + shift, n, cudaMemcpyDeviceToDevice));
      off += n;
    }
  }
 private:
  static constexpr size_t kBytes = 32ull << 20;
  DevBuf src_;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Median over `reps` of the time (ms) of fn(i), each rep timed on its own with
// events, after `warm` untimed calls.
double time_median_ms(cudaStream_t s, int warm, int reps, const std::function<void(int)>& fn) {
  Events ev;
  for (int i = 0; i < warm; ++i) fn(i);
  CK(cudaStreamSynchronize(s));
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    CK(cudaEventRecord(ev.a, s));
    fn(warm + i);
    CK(cudaEventRecord(ev.b, s));
    CK(cudaEventSynchronize(ev.b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, ev.a, ev.b));
    t.push_back(ms);
  }
  return median(t);
}

constexpr int kWarm = 5;
constexpr int kReps = 20;
constexpr int64_t kPageBytes = 256 * 1024;
constexpr int64_t kPageElems = kPageBytes / 2;

// ---------------------------------------------------------------- 0. copy
double measure_copy_gbps(cudaStream_t s) {
  const size_t n = 1ull << 30;  // 1 GiB each way
  DevBuf a(n), b(n);
  CK(cudaMemsetAsync(a.p, 0x3c, n, s));
  CK(cudaMemsetAsync(b.p, 0x3c, n, s));
  const double ms = time_median_ms(s, 3, kReps, [&](int) {
    CK(cudaMemcpyAsync(b.p, a.p, n, cudaMemcpyDeviceToDevice, s));
  });
  const double gbps = 2.0 * n / (ms * 1e-3) / 1e9;
  std::printf("== 0. device-to-device copy: 1 GiB, median of %d: %.3f ms, %.1f GB/s (read + write)\n\n",
              kReps, ms, gbps);
  return gbps;
}

// A set of adapters placed in shuffled pages of a bf16 pool, with the device
// segment array and page-id array one launch needs. Each adapter's image is
// `image_elems(rank)` long; `layout` gives A/Bt offsets in it.
struct PagedSet {
  DevBuf segs;   // PagedLoraSegmentDev[num_segments]
  DevBuf pages;  // int32 page ids
  int num_segments = 0;
  int max_rank = 0;
};

PagedSet upload_set(const std::vector<PagedLoraSegmentDev>& segs, const std::vector<int32_t>& pages) {
  PagedSet s;
  s.num_segments = static_cast<int>(segs.size());
  for (const auto& g : segs) s.max_rank = std::max(s.max_rank, g.rank);
  s.segs = DevBuf(segs.size() * sizeof(PagedLoraSegmentDev));
  s.pages = DevBuf(std::max<size_t>(1, pages.size()) * sizeof(int32_t));
  CK(cudaMemcpy(s.segs.p, segs.data(), segs.size() * sizeof(PagedLoraSegmentDev), cudaMemcpyHostToDevice));
  if (!pages.empty()) {
    CK(cudaMemcpy(s.pages.p, pages.data(), pages.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
  }
  return s;
}

void lora_paged(cudaStream_t st, const PagedSet& set, const uint16_t* pool, const uint16_t* x,
                int64_t x_stride, int64_t in_dim, uint16_t* v, int64_t v_stride, uint16_t* y,
                int64_t y_stride, int64_t out_dim, int64_t num_tokens) {
  PagedLoraShrinkBf16Params sp;
  sp.x = x;
  sp.x_stride = x_stride;
  sp.v = v;
  sp.v_stride = v_stride;
  sp.in_dim = in_dim;
  sp.num_tokens = num_tokens;
  sp.pool = pool;
  sp.page_elems = kPageElems;
  sp.segments = set.segs.as<PagedLoraSegmentDev>();
  sp.page_ids = set.pages.as<int32_t>();
  sp.num_segments = set.num_segments;
  sp.max_rank = set.max_rank;
  SK(loraserve::kernels::launch_lora_shrink_paged_bf16(sp, st));
  PagedLoraExpandBf16Params ep;
  ep.v = v;
  ep.v_stride = v_stride;
  ep.y = y;
  ep.y_stride = y_stride;
  ep.out_dim = out_dim;
  ep.num_tokens = num_tokens;
  ep.pool = pool;
  ep.page_elems = kPageElems;
  ep.segments = sp.segments;
  ep.page_ids = sp.page_ids;
  ep.num_segments = sp.num_segments;
  ep.max_rank = sp.max_rank;
  SK(loraserve::kernels::launch_lora_expand_paged_bf16(ep, st));
}

// Row-major y[m,n] = x[m,k] W[n,k]^T as the cuda backend's `linear` does it.
void gemm_xwT(cublasHandle_t h, const uint16_t* x, const uint16_t* w, uint16_t* y, int tokens,
              int out, int in, float alpha = 1.0f, float beta = 0.0f, int ldy = -1) {
  BK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, out, tokens, in, &alpha, w, CUDA_R_16BF, in, x,
                  CUDA_R_16BF, in, &beta, y, CUDA_R_16BF, ldy < 0 ? out : ldy, CUBLAS_COMPUTE_32F,
                  CUBLAS_GEMM_DEFAULT));
}

// ---------------------------------------------------------------- 1. SGMV
void bench_sgmv(cudaStream_t st, cublasHandle_t blas, double copy_gbps) {
  const int64_t H = 4096;
  const int ranks_pool[4] = {8, 16, 32, 64};
  const int batches[] = {1, 8, 32, 64, 128, 256};
  const int64_t v_stride = 64;
  std::printf("== 1. SGMV shrink+expand, decode shapes: one %lldx%lld module, 1 token/request, each "
              "request its own adapter,\n     ranks {8,16,32,64} mixed, images in shuffled %lld KiB "
              "pages (bf16); median of %d after %d warm-up; weights rotate among\n     sets so at "
              "least ~256 MiB is cycled (defeats L2). bytes = A+B of each adapter once + x + y "
              "(read+write) + v.\n",
              (long long)H, (long long)H, (long long)(kPageBytes / 1024), kReps, kWarm);
  std::printf("%6s %6s %5s %10s %11s %10s %9s %8s %12s %9s %8s\n", "batch", "ranks", "sets",
              "bytes(KB)", "sgmv(us)", "rerun(us)", "GB/s", "%copy", "cublas(us)", "speedup", "target");
  std::mt19937 rng(1234);
  Filler filler(99);
  for (int B : batches) {
    // Ranks: cycle the four ranks (balanced mix), shuffled over the batch.
    std::vector<int> ranks(B);
    for (int i = 0; i < B; ++i) ranks[i] = ranks_pool[i % 4];
    std::shuffle(ranks.begin(), ranks.end(), rng);
    if (B == 1) ranks[0] = 16;
    int64_t set_pages = 0, set_elems = 0;
    for (int r : ranks) {
      const int64_t e = 2 * r * H;
      set_pages += (e + kPageElems - 1) / kPageElems;
      set_elems += e;
    }
    const int64_t min_pages = (256ll << 20) / kPageBytes;
    const int nsets = static_cast<int>(std::max<int64_t>(1, (min_pages + set_pages - 1) / set_pages));
    const int64_t total_pages = set_pages * nsets + 8;  // a few never used
    std::vector<int32_t> perm(total_pages);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    DevBuf pool(total_pages * kPageBytes);
    filler.fill(pool.p, pool.bytes);
    DevBuf contig(static_cast<size_t>(set_elems) * nsets * 2);
    std::vector<PagedSet> sets;
    std::vector<std::vector<int64_t>> contig_off(nsets, std::vector<int64_t>(B));
    int64_t next_page = 0, next_contig = 0;
    for (int s = 0; s < nsets; ++s) {
      std::vector<PagedLoraSegmentDev> segs(B);
      std::vector<int32_t> pages;
      for (int i = 0; i < B; ++i) {
        const int r = ranks[i];
        const int64_t e = 2 * r * H;
        const int64_t np = (e + kPageElems - 1) / kPageElems;
        PagedLoraSegmentDev& g = segs[i];
        g.begin = i;
        g.end = i + 1;
        g.rank = r;
        g.scale = 0.5f;
        g.page_begin = static_cast<int32_t>(pages.size());
        g.num_pages = static_cast<int32_t>(np);
        g.a_offset = 0;
        g.bt_offset = r * H;
        for (int64_t p = 0; p < np; ++p) pages.push_back(perm[next_page++]);
        // Contiguous copy of the same image for the cuBLAS baseline.
        uint16_t* dst = contig.as<uint16_t>() + next_contig;
        contig_off[s][i] = next_contig;
        for (int64_t p = 0; p < np; ++p) {
          const int64_t n = std::min(kPageElems, e - p * kPageElems);
          CK(cudaMemcpy(dst + p * kPageElems, pool.as<uint16_t>() + int64_t(pages[g.page_begin + p]) * kPageElems,
                        n * 2, cudaMemcpyDeviceToDevice));
        }
        next_contig += e;
      }
      sets.push_back(upload_set(segs, pages));
    }
    DevBuf x(B * H * 2), y(B * H * 2), v(B * v_stride * 2);
    filler.fill(x.p, x.bytes);
    filler.fill(y.p, y.bytes);
    filler.fill(v.p, v.bytes);
    const uint16_t* xp = x.as<uint16_t>();
    uint16_t* yp = y.as<uint16_t>();
    uint16_t* vp = v.as<uint16_t>();
    const double sgmv_ms = time_median_ms(st, kWarm, kReps, [&](int it) {
      const PagedSet& s = sets[it % nsets];
      lora_paged(st, s, pool.as<uint16_t>(), xp, H, H, vp, v_stride, yp, H, H, B);
    });
    // The same version timed again: the spread between the two is the noise.
    const double sgmv_ms2 = time_median_ms(st, kWarm, kReps, [&](int it) {
      const PagedSet& s = sets[(it + 1) % nsets];
      lora_paged(st, s, pool.as<uint16_t>(), xp, H, H, vp, v_stride, yp, H, H, B);
    });
    // Baseline: per adapter, v_i = x_i A_i^T (m=r), y_i += 0.5 * v_i Bt_i.
    const double blas_ms = time_median_ms(st, kWarm, kReps, [&](int it) {
      const int s = it % nsets;
      for (int i = 0; i < B; ++i) {
        const int r = ranks[i];
        const uint16_t* A = contig.as<uint16_t>() + contig_off[s][i];
        const uint16_t* Bt = A + r * H;
        gemm_xwT(blas, xp + i * H, A, vp + i * v_stride, 1, r, static_cast<int>(H));
        const float alpha = 0.5f, beta = 1.0f;
        BK(cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(H), 1, r, &alpha, Bt,
                        CUDA_R_16BF, static_cast<int>(H), vp + i * v_stride, CUDA_R_16BF, r, &beta,
                        yp + i * H, CUDA_R_16BF, static_cast<int>(H), CUBLAS_COMPUTE_32F,
                        CUBLAS_GEMM_DEFAULT));
      }
    });
    double bytes = static_cast<double>(set_elems) * 2 + B * H * 2.0 * 3 + B * 64.0 * 2 * 2;
    const double gbps = bytes / (sgmv_ms * 1e-3) / 1e9;
    const double pct = 100.0 * gbps / copy_gbps;
    std::printf("%6d %6s %5d %10.1f %11.2f %10.2f %9.1f %7.1f%% %12.2f %8.2fx %8s\n", B,
                B == 1 ? "16" : "mixed", nsets, bytes / 1024, sgmv_ms * 1e3, sgmv_ms2 * 1e3, gbps, pct,
                blas_ms * 1e3,
                blas_ms / sgmv_ms, pct >= 70.0 ? "ok" : "MISS");
    std::fflush(stdout);
  }
  std::printf("  (target: %%copy >= 70%%; speedup = cuBLAS per-adapter time / SGMV time)\n\n");
}

// ------------------------------------------------- 2 + 3. Llama-2-7B linears
struct Llama {
  int64_t H, I, L, V, q, kv;
  std::vector<DevBuf> wqkv, wo, wgu, wd;  // per layer
  DevBuf lm_head;
  double weight_bytes = 0;  // every linear weight (incl. lm_head) read once
};

struct LoraModel {
  // Adapter a's image: for layer l, module m in {q,k,v,o}: A [r,H] then Bt [r,out].
  DevBuf pool;
  std::vector<PagedSet> set;  // per (l*4+m), segments for `num_adapters` requests
};

LoraModel build_lora(const Llama& m, int num_adapters, int rank, int tokens_per_req, Filler& f,
                     std::mt19937& rng) {
  LoraModel lm;
  const int64_t outs[4] = {m.q, m.kv, m.kv, m.H};
  const int64_t ins[4] = {m.H, m.H, m.H, m.q};
  std::vector<int64_t> a_off(m.L * 4), bt_off(m.L * 4);
  int64_t e = 0;
  for (int64_t l = 0; l < m.L; ++l) {
    for (int mod = 0; mod < 4; ++mod) {
      a_off[l * 4 + mod] = e;
      e += rank * ins[mod];
      bt_off[l * 4 + mod] = e;
      e += rank * outs[mod];
    }
  }
  const int64_t np = (e + kPageElems - 1) / kPageElems;
  const int64_t total = np * num_adapters + 4;
  std::vector<int32_t> perm(total);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  lm.pool = DevBuf(total * kPageBytes);
  f.fill(lm.pool.p, lm.pool.bytes);
  std::vector<int32_t> pages(perm.begin(), perm.begin() + np * num_adapters);
  for (int64_t lmod = 0; lmod < m.L * 4; ++lmod) {
    std::vector<PagedLoraSegmentDev> segs(num_adapters);
    for (int a = 0; a < num_adapters; ++a) {
      auto& g = segs[a];
      g.begin = a * tokens_per_req;
      g.end = (a + 1) * tokens_per_req;
      g.rank = rank;
      g.scale = 0.5f;
      g.page_begin = static_cast<int32_t>(a * np);
      g.num_pages = static_cast<int32_t>(np);
      g.a_offset = a_off[lmod];
      g.bt_offset = bt_off[lmod];
    }
    lm.set.push_back(upload_set(segs, pages));
  }
  return lm;
}

struct Acts {
  DevBuf x, qkv, attn, o, gu, act, d, logits, v;
  Acts(const Llama& m, int64_t T, bool logits_rows) {
    x = DevBuf(T * m.H * 2);
    qkv = DevBuf(T * (m.q + 2 * m.kv) * 2);
    attn = DevBuf(T * m.q * 2);
    o = DevBuf(T * m.H * 2);
    gu = DevBuf(T * 2 * m.I * 2);
    act = DevBuf(T * m.I * 2);
    d = DevBuf(T * m.H * 2);
    logits = DevBuf((logits_rows ? T : 1) * m.V * 2);
    v = DevBuf(T * 64 * 2);
  }
  void fill(Filler& f) {
    for (DevBuf* b : {&x, &qkv, &attn, &o, &gu, &act, &d, &logits, &v}) f.fill(b->p, b->bytes);
  }
};

// The linear part of one step over T tokens (plus lm_head for decode).
void run_linears(cudaStream_t st, cublasHandle_t h, const Llama& m, Acts& a, int T, bool lm_head,
                 const LoraModel* lora) {
  const int H = static_cast<int>(m.H), I = static_cast<int>(m.I), q = static_cast<int>(m.q),
            kv = static_cast<int>(m.kv);
  const int qkv_cols = q + 2 * kv;
  auto* x = a.x.as<uint16_t>();
  auto* qkv = a.qkv.as<uint16_t>();
  for (int64_t l = 0; l < m.L; ++l) {
    gemm_xwT(h, x, m.wqkv[l].as<uint16_t>(), qkv, T, qkv_cols, H);
    if (lora) {
      const int64_t col0[3] = {0, q, q + kv};
      const int64_t outs[3] = {q, kv, kv};
      for (int mod = 0; mod < 3; ++mod) {
        lora_paged(st, lora->set[l * 4 + mod], lora->pool.as<uint16_t>(), x, H, H, a.v.as<uint16_t>(),
                   64, qkv + col0[mod], qkv_cols, outs[mod], T);
      }
    }
    gemm_xwT(h, a.attn.as<uint16_t>(), m.wo[l].as<uint16_t>(), a.o.as<uint16_t>(), T, H, q);
    if (lora) {
      lora_paged(st, lora->set[l * 4 + 3], lora->pool.as<uint16_t>(), a.attn.as<uint16_t>(), q, q,
                 a.v.as<uint16_t>(), 64, a.o.as<uint16_t>(), H, H, T);
    }
    gemm_xwT(h, x, m.wgu[l].as<uint16_t>(), a.gu.as<uint16_t>(), T, 2 * I, H);
    gemm_xwT(h, a.act.as<uint16_t>(), m.wd[l].as<uint16_t>(), a.d.as<uint16_t>(), T, H, I);
  }
  if (lm_head) gemm_xwT(h, x, m.lm_head.as<uint16_t>(), a.logits.as<uint16_t>(), T, static_cast<int>(m.V), H);
}

// Times `fn` captured as a CUDA graph (replays), falling back to eager launches
// if capture fails. Returns the median ms; `mode` says which.
double time_step(cudaStream_t st, const std::function<void()>& fn, const char** mode) {
  cudaGraph_t g = nullptr;
  cudaGraphExec_t ge = nullptr;
  bool graph_ok = false;
  if (cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal) == cudaSuccess) {
    bool threw = false;
    try {
      fn();
    } catch (const BenchError& e) {
      threw = true;
      std::printf("  (graph capture failed: %s; timing eager launches)\n", e.what());
    }
    const cudaError_t ec = cudaStreamEndCapture(st, &g);
    if (!threw && ec == cudaSuccess && g && cudaGraphInstantiate(&ge, g, 0) == cudaSuccess) graph_ok = true;
  }
  cudaGetLastError();  // clear a capture error, if any
  double ms;
  if (graph_ok) {
    *mode = "graph";
    ms = time_median_ms(st, 3, kReps, [&](int) { CK(cudaGraphLaunch(ge, st)); });
  } else {
    *mode = "eager";
    ms = time_median_ms(st, 3, kReps, [&](int) { fn(); });
  }
  if (ge) cudaGraphExecDestroy(ge);
  if (g) cudaGraphDestroy(g);
  return ms;
}

void bench_llama(cudaStream_t st, cublasHandle_t blas, double copy_gbps) {
  auto cfg = loraserve::synth_preset("llama2-7b");
  if (!cfg.ok()) throw BenchError("synth_preset(llama2-7b): " + cfg.status().message());
  Llama m;
  m.H = cfg->hidden_size;
  m.I = cfg->intermediate_size;
  m.L = cfg->num_hidden_layers;
  m.V = cfg->vocab_size;
  m.q = cfg->q_dim();
  m.kv = cfg->kv_dim();
  std::printf("== 2. Decode step, Llama-2-7B shape (H=%lld I=%lld L=%lld V=%lld q=%lld kv=%lld), bf16, "
              "random weights.\n     LINEAR LAYERS ONLY (fused qkv, o, fused gate_up, down, lm_head via "
              "cublasGemmEx; + paged LoRA shrink/expand on q/k/v/o).\n     NOT INCLUDED (not implemented "
              "yet): attention, rmsnorm, rope, silu*mul, embedding, sampling; KV cache traffic.\n",
              (long long)m.H, (long long)m.I, (long long)m.L, (long long)m.V, (long long)m.q,
              (long long)m.kv);
  Filler f(7);
  std::mt19937 rng(42);
  for (int64_t l = 0; l < m.L; ++l) {
    m.wqkv.emplace_back((m.q + 2 * m.kv) * m.H * 2);
    m.wo.emplace_back(m.H * m.q * 2);
    m.wgu.emplace_back(2 * m.I * m.H * 2);
    m.wd.emplace_back(m.H * m.I * 2);
    for (DevBuf* b : {&m.wqkv.back(), &m.wo.back(), &m.wgu.back(), &m.wd.back()}) {
      f.fill(b->p, b->bytes);
      m.weight_bytes += b->bytes;
    }
  }
  m.lm_head = DevBuf(m.V * m.H * 2);
  f.fill(m.lm_head.p, m.lm_head.bytes);
  m.weight_bytes += m.lm_head.bytes;
  CK(cudaDeviceSynchronize());
  const double roof_ms = m.weight_bytes / (copy_gbps * 1e9) * 1e3;
  std::printf("     weight bytes %.2f GB, roofline at copy bandwidth %.1f GB/s: %.3f ms\n",
              m.weight_bytes / 1e9, copy_gbps, roof_ms);
  std::printf("%6s %7s %11s %11s %9s %9s %8s\n", "batch", "mode", "base(ms)", "lora(ms)", "ratio",
              "target", "check");
  const int rank = 16;
  {
    Acts a(m, 1, true);
    a.fill(f);
    const char* mode = "";
    const double ms = time_step(st, [&] { run_linears(st, blas, m, a, 1, true, nullptr); }, &mode);
    const double r = ms / roof_ms;
    std::printf("%6d %7s %11.3f %11s %8.3fx %9s %8s   (base / roofline)\n", 1, mode, ms, "-", r,
                "<=1.25", r <= 1.25 ? "ok" : "MISS");
    std::fflush(stdout);
  }
  for (int B : {32, 128}) {
    LoraModel lora = build_lora(m, B, rank, 1, f, rng);
    Acts a(m, B, true);
    a.fill(f);
    CK(cudaDeviceSynchronize());
    const char* mode = "";
    const double base = time_step(st, [&] { run_linears(st, blas, m, a, B, true, nullptr); }, &mode);
    const char* mode2 = "";
    const double with = time_step(st, [&] { run_linears(st, blas, m, a, B, true, &lora); }, &mode2);
    const double r = with / base;
    std::printf("%6d %7s %11.3f %11.3f %8.3fx %9s %8s   (lora / base, rank %d q/k/v/o, %d distinct "
                "adapters, pool %.0f MB)\n",
                B, mode2, base, with, r, "<=1.10", r <= 1.10 ? "ok" : "MISS", rank, B,
                lora.pool.bytes / 1e6);
    std::fflush(stdout);
  }
  std::printf("\n");

  // 3. Prefill: one 2048-token chunk, linear layers only, no lm_head.
  const int T = 2048, reqs = 8;
  std::printf("== 3. Prefill, one %d-token chunk, Llama-2-7B linear layers only (no lm_head; attention, "
              "norms, rope, silu NOT included: not implemented yet).\n     LoRA: %d requests x %d tokens, "
              "distinct adapters, rank %d, q/k/v/o, via the same paged launchers.\n",
              T, reqs, T / reqs, rank);
  {
    LoraModel lora = build_lora(m, reqs, rank, T / reqs, f, rng);
    Acts a(m, T, false);
    a.fill(f);
    CK(cudaDeviceSynchronize());
    const char* mode = "";
    const double base = time_step(st, [&] { run_linears(st, blas, m, a, T, false, nullptr); }, &mode);
    const char* mode2 = "";
    const double with = time_step(st, [&] { run_linears(st, blas, m, a, T, false, &lora); }, &mode2);
    const double flops = 2.0 * T * (m.weight_bytes - m.lm_head.bytes) / 2;
    std::printf("%8s %7s %10s %12s %10s\n", "variant", "mode", "ms", "tokens/s", "TFLOP/s");
    std::printf("%8s %7s %10.3f %12.0f %10.1f\n", "base", mode, base, T / (base * 1e-3),
                flops / (base * 1e-3) / 1e12);
    std::printf("%8s %7s %10.3f %12.0f %10.1f   (lora / base = %.3fx)\n", "lora", mode2, with,
                T / (with * 1e-3), flops / (with * 1e-3) / 1e12, with / base);
  }
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  bool sgmv_only = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--sgmv-only") == 0) sgmv_only = true;
    if (std::strcmp(argv[i], "--help") == 0) {
      std::printf("usage: gpu_bench [--sgmv-only]\n");
      return 0;
    }
  }
  int ndev = 0;
  const cudaError_t e = cudaGetDeviceCount(&ndev);
  if (e != cudaSuccess || ndev == 0) {
    std::printf("no CUDA device (%s); nothing to benchmark\n",
                e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    return 0;
  }
  int failures = 0;
  cudaStream_t st = nullptr;
  cublasHandle_t blas = nullptr;
  DevBuf blas_ws;
  double copy_gbps = 0;
  try {
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    int drv = 0, rt = 0;
    CK(cudaDriverGetVersion(&drv));
    CK(cudaRuntimeGetVersion(&rt));
    std::printf("gpu_bench: device %s (sm_%d%d, %d SMs, %.1f GiB, L2 %d MiB), driver %d, runtime %d\n\n",
                prop.name, prop.major, prop.minor, prop.multiProcessorCount,
                prop.totalGlobalMem / double(1 << 30), prop.l2CacheSize >> 20, drv, rt);
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    BK(cublasCreate(&blas));
    BK(cublasSetStream(blas, st));
    blas_ws = DevBuf(32ull << 20);  // fixed workspace: lets cuBLAS calls be graph-captured
    BK(cublasSetWorkspace(blas, blas_ws.p, blas_ws.bytes));
    copy_gbps = measure_copy_gbps(st);
  } catch (const std::exception& ex) {
    std::printf("ERROR (setup): %s\n", ex.what());
    return 1;
  }
  try {
    bench_sgmv(st, blas, copy_gbps);
  } catch (const std::exception& ex) {
    std::printf("ERROR (table 1, SGMV): %s\n\n", ex.what());
    ++failures;
    cudaGetLastError();
  }
  if (!sgmv_only) {
    try {
      bench_llama(st, blas, copy_gbps);
    } catch (const std::exception& ex) {
      std::printf("ERROR (tables 2-3, Llama-2-7B step/prefill): %s\n\n", ex.what());
      ++failures;
      cudaGetLastError();
    }
  }
  cublasDestroy(blas);
  cudaStreamDestroy(st);
  std::printf("gpu_bench done: %d table group(s) failed\n", failures);
  return failures ? 1 : 0;
}
