// attention_bench: the cpu-bf16 backend's decode attention alone
// (kernels/attention/attention_cpu.cc) over a bf16 paged KV cache shaped like
// Llama-3.2-1B's (32 query heads, 8 KV heads of 64 or `--kv-heads`, 16-token
// pages of 16 layers): `--seqs` sequences, one new token each, at each
// `--context`, their pages shuffled through a pool on huge pages (as the
// backend holds it). Prints the median time of a step's attention (every
// layer) and the KV bytes it read per second against the host read
// bandwidth measured in the same run (the roofline). Not a test; the figures are in
// docs/benchmarks.md.
//   attention_bench [--context 64,512,2048] [--seqs 16] [--threads N] [--reps 20]
//                   [--kv-heads 8]
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/thread_pool.h"
#include "kernels/attention/attention.h"
#include "kernels/gemm/gemm_bf16.h"

namespace loraserve {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kLayers = 16, kQHeads = 32, kHeadDim = 64, kPageTokens = 16;

// Best of 5 sums of 512 MiB on `threads` threads (GB/s).
double read_gbps(ThreadPool& threads) {
  std::vector<float> buf(size_t{1} << 27, 1.0f);
  std::vector<double> sink(static_cast<size_t>(threads.size()) * 64, 0.0);
  double best = 0.0;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = Clock::now();
    threads.parallel_for(static_cast<int64_t>(buf.size()), 1 << 16, [&](int64_t b, int64_t e) {
      float acc[16] = {};
      for (int64_t i = b; i + 16 <= e; i += 16)
        for (int j = 0; j < 16; ++j) acc[j] += buf[static_cast<size_t>(i + j)];
      double s = 0;
      for (float a : acc) s += a;
      sink[static_cast<size_t>(b % 64)] += s;
    });
    const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, static_cast<double>(buf.size() * sizeof(float)) / sec / 1e9);
  }
  if (sink[0] < 0) std::printf("%f\n", sink[0]);  // keep the sums
  return best;
}

// Median ms of one step's attention over every layer at `ctx` tokens of context.
double step_ms(ThreadPool& threads, int seqs, int ctx, int kv_heads, int reps,
               kernels::CpuIsa isa) {
  const int64_t kv_dim = static_cast<int64_t>(kv_heads) * kHeadDim;
  const int64_t page_stride = 2LL * kPageTokens * kv_dim;
  const int pages_per_seq = (ctx + kPageTokens) / kPageTokens;  // positions 0..ctx
  const int64_t num_pages = static_cast<int64_t>(seqs) * pages_per_seq * kLayers;
  constexpr size_t kHuge = size_t{2} << 20;
  const size_t bytes = (static_cast<size_t>(num_pages * page_stride) * 2 + kHuge - 1) / kHuge * kHuge;
  auto* pool = static_cast<uint16_t*>(std::aligned_alloc(kHuge, bytes));
  if (pool == nullptr) return -1.0;
  madvise(pool, bytes, MADV_HUGEPAGE);
  std::mt19937 rng(1);
  for (size_t i = 0; i < bytes / 2; ++i) pool[i] = static_cast<uint16_t>(0x3f80 + (rng() & 0x7f));
  std::vector<int32_t> page_ids(static_cast<size_t>(num_pages));
  std::iota(page_ids.begin(), page_ids.end(), 0);
  std::shuffle(page_ids.begin(), page_ids.end(), rng);
  std::vector<int32_t> indptr(static_cast<size_t>(seqs) + 1), token_seq(static_cast<size_t>(seqs)),
      positions(static_cast<size_t>(seqs), ctx);
  for (int s = 0; s <= seqs; ++s) indptr[static_cast<size_t>(s)] = s * pages_per_seq;
  std::iota(token_seq.begin(), token_seq.end(), 0);
  std::vector<float> q(static_cast<size_t>(seqs) * kQHeads * kHeadDim), out(q.size());
  for (float& v : q) v = static_cast<float>(rng() % 1000) / 1000.0f;
  std::vector<double> ms;
  for (int rep = 0; rep < reps + 1; ++rep) {
    const auto t0 = Clock::now();
    for (int layer = 0; layer < kLayers; ++layer) {
      kernels::AttentionParamsOver<uint16_t> p;
      p.q = q.data();
      p.out = out.data();
      p.token_seq = token_seq.data();
      p.positions = positions.data();
      p.num_tokens = seqs;
      p.num_q_heads = kQHeads;
      p.num_kv_heads = kv_heads;
      p.head_dim = kHeadDim;
      p.scale = 0.125f;
      p.kv.pool = pool;
      p.kv.page_stride = page_stride;
      p.kv.page_tokens = kPageTokens;
      p.kv.kv_dim = static_cast<int32_t>(kv_dim);
      p.kv.num_layers = kLayers;
      p.kv.layer = layer;
      p.kv.block_indptr = indptr.data();
      p.kv.page_ids = page_ids.data();
      p.kv.num_seqs = seqs;
      threads.parallel_for(seqs, 1, [&](int64_t b, int64_t e) {
        kernels::attention_cpu_tokens(p, static_cast<int>(isa), b, e);
      });
    }
    if (rep > 0) ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  std::free(pool);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace
}  // namespace loraserve

int main(int argc, char** argv) {
  using namespace loraserve;
  CLI::App app{"attention_bench: cpu-bf16 decode attention over a paged bf16 KV cache"};
  std::vector<int> contexts = {64, 512, 2048};
  int seqs = 16, threads_n = 0, reps = 20, kv_heads = 8;
  app.add_option("--context", contexts, "Context lengths (tokens)")->delimiter(',')->capture_default_str();
  app.add_option("--seqs", seqs, "Sequences (one new token each)")->capture_default_str();
  app.add_option("--threads", threads_n, "Threads (0: one per CPU)")->capture_default_str();
  app.add_option("--reps", reps, "Timed steps per context")->capture_default_str();
  app.add_option("--kv-heads", kv_heads,
                 "KV heads of 64 for the 32 query heads (8: Llama 3, 32: Llama 2's MHA)")
      ->check(CLI::IsMember({1, 2, 4, 8, 16, 32}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (seqs < 1 || reps < 1) {
    std::fprintf(stderr, "attention_bench: --seqs and --reps must be >= 1\n");
    return 2;
  }
  ThreadPool threads(threads_n);
  const kernels::CpuIsa isa = kernels::detect_cpu_isa();
  const double gbps = read_gbps(threads);
  std::printf(
      "attention_bench: %s, %d threads, %d sequences, %d query heads on %d KV heads, "
      "host read %.1f GB/s\n",
      kernels::cpu_isa_name(isa), threads.size(), seqs, kQHeads, kv_heads, gbps);
  std::printf("%8s %10s %12s %10s %14s\n", "context", "step ms", "KV MB/step", "KV GB/s", "x roofline");
  for (int ctx : contexts) {
    if (ctx < 1) continue;
    const double ms = step_ms(threads, seqs, ctx, kv_heads, reps, isa);
    if (ms < 0) {
      std::fprintf(stderr, "attention_bench: out of memory at context %d\n", ctx);
      return 1;
    }
    const double kv_bytes =
        static_cast<double>(seqs) * (ctx + 1) * kLayers * 2 * kv_heads * kHeadDim * 2;
    std::printf("%8d %10.2f %12.1f %10.1f %14.2f\n", ctx, ms, kv_bytes / 1e6, kv_bytes / (ms * 1e6),
                ms / (kv_bytes / (gbps * 1e6)));
  }
  std::printf("attention_bench done\n");
  return 0;
}
