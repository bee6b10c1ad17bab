// pool_bench: the unified page pool, measured three ways (see docs/memory.md).
//
//   1. Throughput of the bookkeeping: PagePool allocate/free, KvPageTable
//      ensure_capacity/release under a serving-like mix, AdapterCache
//      acquire/release (hits) and swap-in/evict (misses).
//   2. Capacity for Llama-2-7B and Llama-3-8B shapes (bf16, 16-token pages):
//      how many adapters of each rank, and how many KV tokens, fit a pool.
//   3. A mixed workload: random adapters (ranks 8-64) and sequences (1-2048
//      tokens) until the first allocation fails; utilisation and efficiency.
//
// Everything runs through the real PagePool / KvPageTable / AdapterCache with
// a PoolWriter that copies nothing, and adapter images whose sizes are
// computed as engine/adapter_image.cc computes them but whose bytes are never
// allocated (data == nullptr). Not a test: it prints tables and exits 0.
//
// Usage: pool_bench [--ops N] [--seed S]
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/dtype.h"
#include "checkpoint/lora_adapter.h"
#include "checkpoint/model_config.h"
#include "memory/adapter_cache.h"
#include "memory/adapter_store.h"
#include "memory/kv_page_table.h"
#include "memory/page_pool.h"

namespace loraserve {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int64_t kGiB = 1ll << 30;
constexpr int64_t kMiB = 1ll << 20;
constexpr DType kDType = DType::kBF16;
constexpr int32_t kPageTokens = 16;
constexpr uint32_t kQkvo = 0x0f;  // q, k, v, o
constexpr uint32_t kAll7 = 0x7f;  // q, k, v, o, gate, up, down
const int32_t kRanks[] = {8, 16, 32, 64};
const int64_t kPoolGiB[] = {8, 20, 40};

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

void check(const Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "pool_bench: %s: %s\n", what, s.to_string().c_str());
    std::exit(1);
  }
}

// Copies nothing: the benchmark measures bookkeeping and packing, not PCIe.
class NoopWriter : public PoolWriter {
 public:
  Status write_pages(const std::vector<int32_t>&, const void*, size_t) override {
    return ok_status();
  }
};

struct Shape {
  const char* name;
  ModelConfig cfg;
};

Shape make_shape(const char* name, int64_t kv_heads, int64_t inter) {
  Shape s;
  s.name = name;
  s.cfg.model_type = "llama";
  s.cfg.hidden_size = 4096;
  s.cfg.intermediate_size = inter;
  s.cfg.num_hidden_layers = 32;
  s.cfg.num_attention_heads = 32;
  s.cfg.num_key_value_heads = kv_heads;
  s.cfg.head_dim = 128;
  return s;
}

int64_t page_bytes_of(const ModelConfig& c) {
  // As Engine::create: K and V of kv_page_tokens tokens of one layer.
  return 2ll * kPageTokens * c.kv_dim() * static_cast<int64_t>(dtype_size(kDType));
}

int64_t kv_bytes_per_token(const ModelConfig& c) {
  return 2ll * c.num_hidden_layers * c.kv_dim() * static_cast<int64_t>(dtype_size(kDType));
}

// An image laid out as make_adapter_image lays it out (per layer, per
// module in mask: A [rank, in] then Bt [rank, out]), without its bytes.
std::shared_ptr<AdapterImage> make_image(const std::string& id, const ModelConfig& c,
                                         int32_t rank, uint32_t mask) {
  auto image = std::make_shared<AdapterImage>();
  image->id = id;
  image->dtype = kDType;
  image->num_layers = c.num_hidden_layers;
  image->num_modules = kNumLoraModules;
  image->slices.resize(static_cast<size_t>(image->num_layers) * kNumLoraModules);
  image->max_rank = rank;
  image->module_mask = mask;
  int64_t offset = 0;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    for (int m = 0; m < kNumLoraModules; ++m) {
      if (!(mask & (1u << m))) continue;
      const LoraModule mod = static_cast<LoraModule>(m);
      LoraSlice& s = image->slices[l * kNumLoraModules + m];
      s.rank = rank;
      s.scale = 1.0f;
      s.a_offset = offset;
      offset += static_cast<int64_t>(rank) * lora_module_in_dim(c, mod);
      s.bt_offset = offset;
      offset += static_cast<int64_t>(rank) * lora_module_out_dim(c, mod);
    }
  }
  image->num_elems = offset;  // data stays nullptr: the NoopWriter never reads it
  return image;
}

// Number of maximal runs of consecutive ascending page ids: how many copies a
// PoolWriter that coalesces neighbouring pages would issue.
int64_t ascending_runs(const std::vector<int32_t>& pages) {
  int64_t runs = pages.empty() ? 0 : 1;
  for (size_t i = 1; i < pages.size(); ++i) runs += pages[i] != pages[i - 1] + 1;
  return runs;
}

// Rows (of A or Bt) whose bytes cross a page boundary, and all rows.
void straddling_rows(const AdapterImage& img, const ModelConfig& c, int64_t page_bytes,
                     int64_t* straddle, int64_t* rows) {
  const int64_t es = static_cast<int64_t>(dtype_size(img.dtype));
  *straddle = *rows = 0;
  for (int64_t l = 0; l < img.num_layers; ++l) {
    for (int m = 0; m < kNumLoraModules; ++m) {
      const LoraSlice& s = img.slice(l, m);
      if (s.rank == 0) continue;
      const LoraModule mod = static_cast<LoraModule>(m);
      for (int pass = 0; pass < 2; ++pass) {
        const int64_t len = (pass == 0 ? lora_module_in_dim(c, mod) : lora_module_out_dim(c, mod)) * es;
        const int64_t base = (pass == 0 ? s.a_offset : s.bt_offset) * es;
        for (int32_t r = 0; r < s.rank; ++r) {
          const int64_t b = base + r * len;
          *straddle += b / page_bytes != (b + len - 1) / page_bytes;
          *rows += 1;
        }
      }
    }
  }
}

const char* mask_name(uint32_t mask) { return mask == kQkvo ? "qkvo" : "all7"; }

std::string cpu_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      return colon == std::string::npos ? line : line.substr(colon + 2);
    }
  }
  return "unknown";
}

// ---------------------------------------------------------------- 1. throughput

void bench_throughput(int64_t ops, uint64_t seed) {
  std::printf("\n== 1. Bookkeeping throughput (one thread) ==\n");
  std::printf("%-58s %12s %10s\n", "operation", "ops/s", "ns/op");
  auto row = [](const char* what, int64_t n, double secs) {
    std::printf("%-58s %12.3g %10.1f\n", what, n / secs, 1e9 * secs / n);
  };

  {  // single-page allocate + free pairs
    PagePool pool(1 << 16);
    std::vector<int32_t> out;
    out.reserve(16);
    const auto t0 = Clock::now();
    for (int64_t i = 0; i < ops; ++i) {
      out.clear();
      check(pool.allocate(1, PageOwner::kKv, &out), "allocate");
      check(pool.free(out[0]), "free");
    }
    row("PagePool allocate(1)+free pair", ops, seconds_since(t0));
  }
  {  // batches of 16 pages (the pages are counted as ops)
    PagePool pool(1 << 16);
    std::vector<int32_t> out;
    out.reserve(16);
    const int64_t batches = ops / 16;
    const auto t0 = Clock::now();
    for (int64_t i = 0; i < batches; ++i) {
      out.clear();
      check(pool.allocate(16, PageOwner::kAdapter, &out), "allocate");
      check(pool.free_all(out), "free_all");
    }
    const double secs = seconds_since(t0);
    row("PagePool allocate(16)+free_all batch", batches, secs);
    row("  same, per page (allocate+free)", batches * 16, secs);
  }

  const Shape shape = make_shape("llama-2-7b", 32, 11008);
  const int64_t page_bytes = page_bytes_of(shape.cfg);
  const int32_t num_pages = static_cast<int32_t>(40 * kGiB / page_bytes);
  const int32_t layers = static_cast<int32_t>(shape.cfg.num_hidden_layers);

  {  // KV: a serving-like mix (decode steps, new prompts, finishes, preemption)
    PagePool pool(num_pages);
    KvPageTable kv(&pool, kPageTokens, layers);
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<int64_t> prompt_len(1, 2048);
    const int kLive = 64;
    std::vector<int64_t> ids(kLive), lens(kLive);
    int64_t next_id = 0;
    int64_t ensure_calls = 0, releases = 0, preempts = 0;
    auto start = [&](int i) {
      for (;;) {
        ids[i] = next_id++;
        lens[i] = prompt_len(rng);
        ++ensure_calls;
        if (kv.ensure_capacity(ids[i], lens[i]).ok()) return;
        // Pool full: preempt another sequence and retry.
        const int victim = static_cast<int>(rng() % kLive);
        if (victim == i) continue;
        kv.release(ids[victim]);
        ++releases;
        ++preempts;
        lens[victim] = 0;
        ids[victim] = next_id++;
        ++ensure_calls;
        check(kv.ensure_capacity(ids[victim], 1), "restart");
        lens[victim] = 1;
      }
    };
    for (int i = 0; i < kLive; ++i) start(i);
    const int64_t steps = ops / 4;
    const auto t0 = Clock::now();
    for (int64_t s = 0; s < steps; ++s) {
      const int i = static_cast<int>(rng() % kLive);
      if (rng() % 512 == 0) {  // finished: ~512 decode steps per sequence on average
        kv.release(ids[i]);
        ++releases;
        start(i);
        continue;
      }
      lens[i] += 1;
      ++ensure_calls;
      if (!kv.ensure_capacity(ids[i], lens[i]).ok()) {
        kv.release(ids[i]);
        ++releases;
        ++preempts;
        start(i);
      }
    }
    const double secs = seconds_since(t0);
    char what[128];
    std::snprintf(what, sizeof what, "KvPageTable mix: ensure_capacity+release calls (%d live)",
                  kLive);
    row(what, ensure_calls + releases, secs);
    std::printf("    (%" PRId64 " ensure_capacity, %" PRId64 " release of which %" PRId64
                " preemptions; %d pages of %lld KiB, %d layers)\n",
                ensure_calls, releases, preempts, num_pages,
                static_cast<long long>(page_bytes / 1024), layers);
  }
  {  // KV: ensure_capacity that needs no new block (most decode steps)
    PagePool pool(num_pages);
    KvPageTable kv(&pool, kPageTokens, layers);
    check(kv.ensure_capacity(7, kPageTokens), "ensure");
    const auto t0 = Clock::now();
    for (int64_t i = 0; i < ops; ++i) {
      check(kv.ensure_capacity(7, 1 + (i & (kPageTokens - 1))), "ensure");
    }
    row("KvPageTable ensure_capacity, block already there", ops, seconds_since(t0));
  }
  {  // KV: new 1-token sequence + release (one block = `layers` pages)
    PagePool pool(num_pages);
    KvPageTable kv(&pool, kPageTokens, layers);
    const int64_t n = ops / 8;
    const auto t0 = Clock::now();
    for (int64_t i = 0; i < n; ++i) {
      check(kv.ensure_capacity(i, 1), "ensure");
      kv.release(i);
    }
    char what[128];
    std::snprintf(what, sizeof what, "KvPageTable new block (%d pages)+release", layers);
    row(what, n, seconds_since(t0));
  }

  {  // KV: the per-step CSR view of 64 sequences of 1024 tokens
    PagePool pool(num_pages);
    KvPageTable kv(&pool, kPageTokens, layers);
    std::vector<int64_t> seqs;
    for (int64_t i = 0; i < 64; ++i) {
      check(kv.ensure_capacity(i, 1024), "ensure");
      seqs.push_back(i);
    }
    std::vector<int32_t> indptr, ids;
    const int64_t n = ops / 10000;
    const auto t0 = Clock::now();
    for (int64_t i = 0; i < n; ++i) check(kv.build_view(seqs, &indptr, &ids), "build_view");
    char what[128];
    std::snprintf(what, sizeof what, "KvPageTable build_view, 64 seqs x 1024 tok (%zu ids)",
                  ids.size());
    row(what, n, seconds_since(t0));
  }

  // AdapterCache on the same geometry, rank-16 q,k,v,o adapters (128 pages).
  const int kResidents = 1000;
  std::vector<std::shared_ptr<AdapterImage>> images;
  for (int i = 0; i < kResidents + 1; ++i) {
    images.push_back(make_image("a" + std::to_string(i), shape.cfg, 16, kQkvo));
  }
  NoopWriter writer;
  {  // hits: acquire + release of a resident adapter among 1000 idle residents
    PagePool pool(num_pages);
    AdapterCache cache(&pool, page_bytes, &writer);
    for (int i = 0; i < kResidents; ++i) check(cache.prefetch(images[i]), "prefetch");
    const int64_t n = ops / 4;
    const auto t0 = Clock::now();
    for (int64_t i = 0; i < n; ++i) {
      const auto& img = images[i % kResidents];
      check(cache.acquire(img).status(), "acquire");
      check(cache.release(img->id), "release");
    }
    row("AdapterCache acquire+release, resident (1000 idle)", n, seconds_since(t0));
  }
  for (int residents : {100, kResidents}) {  // misses: the pool holds `residents`
     // adapters; cycling residents+1 makes every acquire evict the LRU one and
     // swap the next in (no bytes copied)
    const int32_t pages_each = static_cast<int32_t>(
        (static_cast<int64_t>(images[0]->num_bytes()) + page_bytes - 1) / page_bytes);
    PagePool pool(pages_each * residents);
    AdapterCache cache(&pool, page_bytes, &writer);
    for (int i = 0; i < residents; ++i) check(cache.prefetch(images[i]), "prefetch");
    const int64_t n = ops / 100;
    const auto t0 = Clock::now();
    for (int64_t i = 0; i < n; ++i) {
      const auto& img = images[(residents + i) % (residents + 1)];
      check(cache.acquire(img).status(), "acquire");
      check(cache.release(img->id), "release");
    }
    const double secs = seconds_since(t0);
    char what[128];
    std::snprintf(what, sizeof what, "AdapterCache swap-in+evict, %d pages (%d idle)",
                  pages_each, residents);
    row(what, n, secs);
    if (cache.stats().evictions < n) std::printf("    (warning: fewer evictions than acquires)\n");
    // Untimed: how many ascending runs of ids each swapped-in adapter gets
    // (how many copies a PoolWriter that coalesces neighbouring pages issues).
    int64_t runs = 0, count = 0;
    for (int64_t i = n; i < n + 2 * (residents + 1); ++i) {
      StatusOr<const ResidentAdapter*> got = cache.acquire(images[(residents + i) % (residents + 1)]);
      check(got.status(), "acquire");
      runs += ascending_runs((*got)->pages);
      ++count;
      check(cache.release((*got)->image->id), "release");
    }
    std::printf("    (each swapped-in adapter's %d pages form %.1f ascending id runs on average;"
                " fresh pool: 1)\n",
                pages_each, double(runs) / count);
  }
  {  // plan_admission with 1000 idle residents, pool full, needing 1 KV block
    const int32_t pages_each = static_cast<int32_t>(
        (static_cast<int64_t>(images[0]->num_bytes()) + page_bytes - 1) / page_bytes);
    PagePool pool(pages_each * kResidents);
    AdapterCache cache(&pool, page_bytes, &writer);
    for (int i = 0; i < kResidents; ++i) check(cache.prefetch(images[i]), "prefetch");
    const int64_t n = ops / 10;
    int64_t admissible = 0;
    const auto t0 = Clock::now();
    for (int64_t i = 0; i < n; ++i) {
      admissible += cache.plan_admission(layers, images[i % kResidents].get()).admissible;
    }
    row("AdapterCache plan_admission (full pool, 1000 idle)", n, seconds_since(t0));
    if (admissible != n) std::printf("    (warning: %" PRId64 " not admissible)\n", n - admissible);
  }
}

// ---------------------------------------------------------------- 2. capacity

// Acquires copies of one adapter shape until the pool is full.
int64_t adapters_that_fit(const ModelConfig& c, int32_t num_pages, int32_t rank, uint32_t mask,
                          int32_t* pages_used) {
  PagePool pool(num_pages);
  NoopWriter writer;
  AdapterCache cache(&pool, page_bytes_of(c), &writer);
  int64_t n = 0;
  for (;;) {
    auto image = make_image("a" + std::to_string(n), c, rank, mask);
    if (!cache.acquire(std::move(image)).ok()) break;
    ++n;
  }
  *pages_used = pool.num_pages() - pool.num_free();
  return n;
}

// Grows 2048-token sequences, then the last one 16 tokens at a time, until full.
int64_t kv_tokens_that_fit(const ModelConfig& c, int32_t num_pages) {
  PagePool pool(num_pages);
  KvPageTable kv(&pool, kPageTokens, static_cast<int32_t>(c.num_hidden_layers));
  int64_t tokens = 0;
  int64_t seq = 0;
  while (kv.ensure_capacity(seq, 2048).ok()) {
    tokens += 2048;
    ++seq;
  }
  int64_t len = 0;
  while (kv.ensure_capacity(seq, len + kPageTokens).ok()) len += kPageTokens;
  return tokens + len;
}

void bench_capacity(const std::vector<Shape>& shapes) {
  std::printf("\n== 2. Capacity (bf16, %d-token pages) ==\n", kPageTokens);
  std::printf("\nAdapter images (A [r,in] + Bt [r,out] per layer and module, 32 layers):\n");
  std::printf("%-12s %-5s %5s %10s %8s %14s %11s %16s\n", "model", "tgts", "rank", "MiB", "pages",
              "last-page fill", "efficiency", "rows straddling");
  for (const Shape& s : shapes) {
    const int64_t pb = page_bytes_of(s.cfg);
    for (uint32_t mask : {kQkvo, kAll7}) {
      for (int32_t r : kRanks) {
        const auto img = make_image("x", s.cfg, r, mask);
        const int64_t bytes = static_cast<int64_t>(img->num_bytes());
        const int64_t pages = (bytes + pb - 1) / pb;
        const int64_t tail = bytes - (pages - 1) * pb;
        int64_t straddle = 0, rows = 0;
        straddling_rows(*img, s.cfg, pb, &straddle, &rows);
        std::printf("%-12s %-5s %5d %10.2f %8" PRId64 " %13.1f%% %10.3f%% %8" PRId64 "/%-7" PRId64
                    "\n",
                    s.name, mask_name(mask), r, double(bytes) / kMiB, pages, 100.0 * tail / pb,
                    100.0 * bytes / (pages * pb), straddle, rows);
      }
    }
  }

  std::printf("\nWhat fits a pool (real PagePool/AdapterCache/KvPageTable, filled until the first"
              " failure):\n");
  std::printf("%-12s %6s %7s %8s %9s %9s | %-22s | %-22s | %s\n", "model", "pool", "page",
              "pages", "KV tokens", "KV/ideal", "adapters qkvo r8/16/32/64",
              "adapters all7 r8/16/32/64", "min eff, left<1");
  for (const Shape& s : shapes) {
    const int64_t pb = page_bytes_of(s.cfg);
    for (int64_t gib : kPoolGiB) {
      const int64_t pool_bytes = gib * kGiB;
      const int32_t num_pages = static_cast<int32_t>(pool_bytes / pb);
      const int64_t tokens = kv_tokens_that_fit(s.cfg, num_pages);
      const double ideal_tokens = double(pool_bytes) / kv_bytes_per_token(s.cfg);
      std::string cols[2];
      double worst_eff = 1.0;
      bool left_lt_one = true;  // the pages left over never hold one more adapter
      int mi = 0;
      for (uint32_t mask : {kQkvo, kAll7}) {
        for (int32_t r : kRanks) {
          int32_t used = 0;
          const int64_t n = adapters_that_fit(s.cfg, num_pages, r, mask, &used);
          const double bytes = double(make_image("x", s.cfg, r, mask)->num_bytes());
          worst_eff = std::min(worst_eff, n * bytes / (double(used) * pb));
          const int64_t pages_each = (static_cast<int64_t>(bytes) + pb - 1) / pb;
          left_lt_one = left_lt_one && num_pages - used < pages_each;
          if (!cols[mi].empty()) cols[mi] += "/";
          cols[mi] += std::to_string(n);
        }
        ++mi;
      }
      std::printf("%-12s %3" PRId64 " GiB %4" PRId64 " KiB %8d %9" PRId64 " %8.2f%% | %-22s | "
                  "%-22s | %.2f%%, %s\n",
                  s.name, gib, pb / 1024, num_pages, tokens, 100.0 * tokens / ideal_tokens,
                  cols[0].c_str(), cols[1].c_str(), 100.0 * worst_eff,
                  left_lt_one ? "yes" : "NO");
    }
  }
}

// ---------------------------------------------------------------- 3. mixed workload

struct MixResult {
  // At the first failed allocation.
  double util_first = 0;   // pages allocated / total pages
  double eff_first = 0;    // bytes needed / bytes of allocated pages
  int32_t free_first = 0;  // free pages then
  int32_t need_first = 0;  // pages the failed request needed
  // After 200 consecutive failures (the pool as full as random requests get it).
  double util_full = 0;
  double eff_full = 0;
  int64_t adapters = 0, seqs = 0, tokens = 0;
  int64_t evictions = 0;
  int64_t frag_failures = 0;  // failures with need <= free pages: must stay 0
  int64_t futile_evictions = 0;  // idle adapters evicted for a KV request that still failed
  double adapter_run = 0;        // resident adapters' pages per ascending run (at the end)
};

// Requests: 25% a new adapter (rank 8/16/32/64, q,k,v,o or all 7 modules,
// uniformly), 75% a new sequence of 1-2048 tokens. `idle_fraction` of the
// adapters are released right after being acquired (cached, evictable), and
// KV pressure evicts them first, as Engine::reserve_kv does.
MixResult run_mix(const ModelConfig& c, int32_t num_pages, double idle_fraction, uint64_t seed) {
  const int64_t pb = page_bytes_of(c);
  const int64_t per_token = kv_bytes_per_token(c);
  PagePool pool(num_pages);
  NoopWriter writer;
  AdapterCache cache(&pool, pb, &writer);
  KvPageTable kv(&pool, kPageTokens, static_cast<int32_t>(c.num_hidden_layers));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u01(0.0, 1.0);
  std::uniform_int_distribution<int64_t> seq_len(1, 2048);
  std::unordered_map<int64_t, int64_t> seq_tokens;
  MixResult r;
  int64_t next = 0;

  auto measure = [&](double* util, double* eff) {
    const int32_t used = pool.num_pages() - pool.num_free();
    double needed = 0;
    for (const std::string& id : cache.resident_ids()) {
      needed += double(cache.find(id)->image->num_bytes());
    }
    for (const auto& kvp : seq_tokens) needed += double(kvp.second) * per_token;
    *util = double(used) / pool.num_pages();
    *eff = used == 0 ? 1.0 : needed / (double(used) * pb);
  };

  bool failed_once = false;
  int consecutive = 0;
  while (consecutive < 200) {
    bool ok = false;
    int32_t need = 0;
    if (u01(rng) < 0.25) {
      const int32_t rank = kRanks[rng() % 4];
      const uint32_t mask = (rng() & 1) ? kQkvo : kAll7;
      auto image = make_image("m" + std::to_string(next++), c, rank, mask);
      need = cache.pages_for(*image);
      const std::string id = image->id;
      ok = cache.acquire(std::move(image)).ok();
      if (ok) {
        ++r.adapters;
        if (u01(rng) < idle_fraction) check(cache.release(id), "release");
      }
    } else {
      const int64_t id = next++;
      const int64_t len = seq_len(rng);
      need = kv.pages_needed(id, len);
      const int64_t evicted_before = cache.stats().evictions;
      if (need > pool.num_free()) cache.make_free(need);  // as Engine::reserve_kv
      ok = kv.ensure_capacity(id, len).ok();
      if (!ok) r.futile_evictions += cache.stats().evictions - evicted_before;
      if (ok) {
        seq_tokens[id] = len;
        ++r.seqs;
        r.tokens += len;
      }
    }
    if (ok) {
      consecutive = 0;
      continue;
    }
    ++consecutive;
    if (need <= pool.num_free()) ++r.frag_failures;
    if (!failed_once) {
      failed_once = true;
      r.free_first = pool.num_free();
      r.need_first = need;
      measure(&r.util_first, &r.eff_first);
    }
  }
  measure(&r.util_full, &r.eff_full);
  r.evictions = cache.stats().evictions;
  int64_t pages = 0, runs = 0;
  for (const std::string& id : cache.resident_ids()) {
    pages += static_cast<int64_t>(cache.find(id)->pages.size());
    runs += ascending_runs(cache.find(id)->pages);
  }
  r.adapter_run = runs == 0 ? 0 : double(pages) / runs;
  return r;
}

void bench_mixed(const std::vector<Shape>& shapes, uint64_t seed) {
  std::printf("\n== 3. Mixed workload until the pool is full ==\n");
  std::printf("requests: 25%% adapter (rank 8/16/32/64 x {qkvo, all7}), 75%% sequence (1-2048"
              " tokens); seed %" PRIu64 "\n",
              seed);
  std::printf("util = pages allocated / pages; eff = bytes needed (adapter weights + KV of stored"
              " tokens) / bytes of allocated pages\n");
  std::printf("'first fail': at the first failed allocation (free = pages left, need = pages the"
              " failed request wanted);\n'full': after 200 consecutive failures. frag = failures"
              " with need <= free (0 = no fragmentation loss).\nidle = share of adapters released"
              " after acquire (evictable; KV pressure evicts them as Engine::reserve_kv does);"
              " futile = of\nthose evictions, the ones made for a KV request that failed anyway;"
              " run = resident adapter pages per ascending run of ids.\n");
  std::printf("%-12s %6s %5s | %8s %8s %6s %6s | %8s %8s | %5s %5s %7s %5s %6s %5s %6s\n",
              "model", "pool", "idle", "util@1st", "eff@1st", "free", "need", "util", "eff",
              "adps", "seqs", "tokens", "evict", "futile", "frag", "run");
  for (const Shape& s : shapes) {
    const int64_t pb = page_bytes_of(s.cfg);
    for (int64_t gib : kPoolGiB) {
      const int32_t num_pages = static_cast<int32_t>(gib * kGiB / pb);
      for (double idle : {0.0, 0.5}) {
        const MixResult r = run_mix(s.cfg, num_pages, idle, seed);
        std::printf("%-12s %2" PRId64 " GiB %4.0f%% | %7.2f%% %7.3f%% %6d %6d | %7.2f%% %7.3f%% |"
                    " %5" PRId64 " %5" PRId64 " %7" PRId64 " %5" PRId64 " %6" PRId64 " %5" PRId64
                    " %6.1f\n",
                    s.name, gib, 100 * idle, 100 * r.util_first, 100 * r.eff_first, r.free_first,
                    r.need_first, 100 * r.util_full, 100 * r.eff_full, r.adapters, r.seqs,
                    r.tokens, r.evictions, r.futile_evictions, r.frag_failures, r.adapter_run);
      }
    }
  }
}

}  // namespace
}  // namespace loraserve

int main(int argc, char** argv) {
  using namespace loraserve;
  int64_t ops = 10'000'000;
  uint64_t seed = 42;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--ops") && i + 1 < argc) {
      ops = std::atoll(argv[++i]);
    } else if (!std::strcmp(argv[i], "--seed") && i + 1 < argc) {
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else {
      std::fprintf(stderr, "usage: pool_bench [--ops N] [--seed S]\n");
      return 2;
    }
  }
  if (ops < 1000) ops = 1000;
  const std::vector<Shape> shapes = {make_shape("llama-2-7b", 32, 11008),
                                     make_shape("llama-3-8b", 8, 14336)};
  std::printf("pool_bench: unified page pool\n");
  std::printf("cpu: %s, %u hardware threads (benchmark uses one)\n", cpu_name().c_str(),
              std::thread::hardware_concurrency());
  std::printf("settings: ops %" PRId64 ", seed %" PRIu64 ", dtype bf16, kv_page_tokens %d, pools",
              ops, seed, kPageTokens);
  for (int64_t g : kPoolGiB) std::printf(" %" PRId64 "", g);
  std::printf(" GiB\n");
  for (const Shape& s : shapes) {
    std::printf("  %-11s hidden %" PRId64 ", layers %" PRId64 ", heads %" PRId64 ", kv heads %" PRId64
                ", inter %" PRId64 ": page %" PRId64 " KiB, KV %" PRId64 " KiB/token\n",
                s.name, s.cfg.hidden_size, s.cfg.num_hidden_layers, s.cfg.num_attention_heads,
                s.cfg.num_key_value_heads, s.cfg.intermediate_size, page_bytes_of(s.cfg) / 1024,
                kv_bytes_per_token(s.cfg) / 1024);
  }
  const auto t0 = std::chrono::steady_clock::now();
  bench_throughput(ops, seed);
  bench_capacity(shapes);
  bench_mixed(shapes, seed);
  std::printf("\ntotal %.1f s\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return 0;
}
