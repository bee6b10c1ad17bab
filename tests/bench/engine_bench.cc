// engine_bench: whole forward steps through the Engine on any backend, the
// issue-6 tables 2 and 3 measured end to end (attention, norms, rope, LoRA,
// lm_head and sampling included, not only the linear layers):
//
//   decode  B sequences with `--context` tokens of KV each, then timed decode
//           steps (one token per sequence): base model only, and every
//           sequence with its own adapter (distinct pool images; the same
//           weights registered under N ids), the two kinds of steps
//           alternating. Ratio lora / base per batch. Batch 1 is also
//           compared with the roofline: bf16 bytes of weights a decode step
//           reads over the bandwidth measured in the same run (cuda: device
//           copy; cpu backends: a multi-threaded host read of 512 MiB).
//   prefill one sequence, one chunk of `--prefill` tokens, base and LoRA:
//           tokens/s and the ratio.
//
// Every figure is a median over repetitions measured in this run; nothing is
// compared with a stored number. Not a test: it prints a table (and
// `--json FILE`) and exits 0 unless something fails.
//
//   engine_bench --synth llama2-7b --workdir /tmp/eb --backend cuda --pool-mb 30000
//   engine_bench --model DIR --adapter DIR --backend cpu --batches 1,8
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#ifdef LORASERVE_WITH_CUDA
#include <cuda_runtime.h>
#endif

#include "common/thread_pool.h"
#include "engine/backend.h"
#include "engine/engine.h"
#include "checkpoint/lora_adapter.h"
#include "checkpoint/model_weights.h"
#include "checkpoint/synth.h"

namespace loraserve {
namespace {

struct Flags {
  std::string model, adapter, synth, workdir = "/tmp/engine_bench", backend = "auto", json;
  int threads = 0;
  std::string cpu_isa = "auto";
  std::string kv_cache_dtype = "auto";
  std::string cpu_weights = "auto";
  std::string cpu_weights_cache;  // none unless asked: a benchmark measures what it names
  bool overlap_background = false;  // measure beside the backend's background work
  std::vector<int> batches = {1, 32, 128};
  int context = 128;
  int decode_steps = 16;
  int prefill = 2048;
  int prefill_reps = 3;
  int num_adapters = -1;  // default: the largest batch
  int rank = 16;
  int64_t pool_mb = 0;
  double pool_fraction = 0.85;
};

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

[[noreturn]] void die(const std::string& what, const Status& s) {
  std::fprintf(stderr, "engine_bench: %s: %s\n", what.c_str(), s.to_string().c_str());
  std::exit(1);
}
#define CHECK_OK(expr, what)           \
  do {                                 \
    const Status st_ = (expr);         \
    if (!st_.ok()) die((what), st_);   \
  } while (0)

// Bytes of base weights one decode step reads: everything except the
// embedding table, of which it reads a few rows (unless tied to lm_head).
int64_t decode_weight_bytes(const ModelConfig& c) {
  const int64_t h = c.hidden_size, i = c.intermediate_size;
  const int64_t per_layer = h * c.q_dim() + 2 * h * c.kv_dim() + c.q_dim() * h + 3 * h * i + 2 * h;
  return 2 * (c.num_hidden_layers * per_layer + c.vocab_size * h + h);
}

// Device-to-device copy bandwidth (read + write bytes over time), best of 5.
double copy_gbps() {
#ifdef LORASERVE_WITH_CUDA
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) return 0.0;
  const size_t bytes = std::min<size_t>(size_t{1} << 30, free_b / 8);
  void *a = nullptr, *b = nullptr;
  if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) {
    cudaFree(a);
    cudaGetLastError();
    return 0.0;
  }
  double best = 0.0;
  for (int rep = 0; rep < 6; ++rep) {
    cudaDeviceSynchronize();
    const auto t0 = Clock::now();
    if (cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice) != cudaSuccess) break;
    cudaDeviceSynchronize();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (rep > 0) best = std::max(best, 2.0 * static_cast<double>(bytes) / s / 1e9);
  }
  cudaFree(a);
  cudaFree(b);
  return best;
#else
  return 0.0;
#endif
}

// Host memory read bandwidth: every thread sums its share of a buffer far
// larger than the caches (best of 5 passes), the way a decode step reads
// weights. The cpu backends' roofline divides by this.
double host_read_gbps(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const size_t n = size_t{1} << 27;  // 512 MiB of floats, far past any L3
  std::vector<float> buf(n, 1.0f);
  ThreadPool pool(threads);
  double best = 0.0;
  std::vector<double> sink(static_cast<size_t>(threads), 0.0);
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = Clock::now();
    pool.parallel_for(static_cast<int64_t>(n), 1 << 16, [&](int64_t b, int64_t e) {
      const float* p = buf.data();
      float acc[16] = {};
      for (int64_t i = b; i + 16 <= e; i += 16) {
        for (int j = 0; j < 16; ++j) acc[j] += p[i + j];
      }
      double s = 0;
      for (float a : acc) s += a;
      sink[static_cast<size_t>(b * threads / static_cast<int64_t>(n))] += s;
    });
    const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::max(best, static_cast<double>(n * sizeof(float)) / sec / 1e9);
  }
  if (sink[0] < 0) std::printf("%f\n", sink[0]);  // keep the sums
  buf = std::vector<float>();
  // The probe's buffer is not the engine's: restart the peak-RSS count.
  std::ofstream("/proc/self/clear_refs") << "5";
  return best;
}

// Peak resident set of this process so far (MiB), from /proc/self/status.
double peak_rss_mb() {
  std::ifstream f("/proc/self/status");
  std::string key;
  while (f >> key) {
    if (key == "VmHWM:") {
      double kb = 0;
      f >> kb;
      return kb / 1024.0;
    }
    std::string rest;
    std::getline(f, rest);
  }
  return 0.0;
}

struct Bench {
  Flags f;
  std::shared_ptr<const ModelWeights> weights;
  std::unique_ptr<Engine> engine;
  std::vector<std::string> adapter_ids;
  int64_t next_seq = 1;
  nlohmann::json out = nlohmann::json::object();

  std::vector<int32_t> prompt(int n, int64_t salt) const {
    std::vector<int32_t> p(static_cast<size_t>(n));
    const int64_t vocab = engine->config().vocab_size;
    for (int k = 0; k < n; ++k) p[static_cast<size_t>(k)] = static_cast<int32_t>((salt * 7919 + k * 104729) % (vocab - 3) + 3);
    return p;
  }

  // Starts `n` sequences (adapter i or none), prefills `context` tokens each
  // in steps of at most max_batch_tokens; returns their ids.
  std::vector<int64_t> start(int n, bool lora) {
    std::vector<int64_t> ids;
    for (int i = 0; i < n; ++i) {
      const int64_t id = next_seq++;
      const std::string adapter = lora ? adapter_ids[static_cast<size_t>(i) % adapter_ids.size()] : "";
      CHECK_OK(engine->start_sequence(id, adapter), "start_sequence");
      ids.push_back(id);
    }
    const int per_step = std::max(1, engine->options().max_batch_tokens / std::max(1, f.context));
    for (size_t b = 0; b < ids.size(); b += static_cast<size_t>(per_step)) {
      std::vector<SequenceStep> batch;
      for (size_t i = b; i < std::min(ids.size(), b + static_cast<size_t>(per_step)); ++i) {
        SequenceStep s;
        s.seq_id = ids[i];
        s.tokens = prompt(f.context, ids[i]);
        batch.push_back(std::move(s));
      }
      std::vector<SequenceResult> res;
      CHECK_OK(engine->step(batch, &res), "prefill step");
    }
    return ids;
  }

  // Median decode step (ms) of `batch` sequences without adapters and of
  // `batch` sequences each on its own adapter. The two kinds of steps
  // alternate, so that a slow stretch of a shared machine hits both alike
  // and their ratio stays meaningful.
  std::pair<double, double> decode_ms(int batch) {
    std::vector<int64_t> ids[2] = {start(batch, false), start(batch, true)};
    std::vector<int32_t> last[2] = {std::vector<int32_t>(ids[0].size(), 5),
                                    std::vector<int32_t>(ids[1].size(), 5)};
    std::vector<double> times[2];
    for (int step = 0; step < f.decode_steps + 2; ++step) {
      for (int kind = 0; kind < 2; ++kind) {
        std::vector<SequenceStep> b(ids[kind].size());
        for (size_t i = 0; i < ids[kind].size(); ++i) {
          b[i].seq_id = ids[kind][i];
          b[i].tokens = {last[kind][i]};
          b[i].step = static_cast<uint64_t>(step);
        }
        std::vector<SequenceResult> res;
        const auto t0 = Clock::now();
        CHECK_OK(engine->step(b, &res), "decode step");
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
        if (step >= 2) times[kind].push_back(ms);  // the first steps warm up
        for (size_t i = 0; i < res.size(); ++i) last[kind][i] = res[i].token;
      }
    }
    for (const auto& kind : ids)
      for (int64_t id : kind) engine->end_sequence(id);
    return {median(times[0]), median(times[1])};
  }

  double prefill_ms(bool lora) {
    std::vector<double> times;
    for (int rep = 0; rep < f.prefill_reps + 1; ++rep) {
      const int64_t id = next_seq++;
      CHECK_OK(engine->start_sequence(id, lora ? adapter_ids[0] : ""), "start_sequence");
      SequenceStep s;
      s.seq_id = id;
      s.tokens = prompt(f.prefill, id);
      std::vector<SequenceResult> res;
      const auto t0 = Clock::now();
      CHECK_OK(engine->step({s}, &res), "prefill step");
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      if (rep > 0) times.push_back(ms);
      engine->end_sequence(id);
    }
    return median(times);
  }
};

int run(const Flags& flags) {
  Bench b;
  b.f = flags;
  std::string model_dir = flags.model, adapter_dir = flags.adapter;
  if (!flags.synth.empty()) {
    auto preset = synth_preset(flags.synth);
    if (!preset.ok()) die("--synth", preset.status());
    SynthOptions so;
    so.config = *preset;
    so.seed = 7;
    so.num_adapters = 1;
    so.ranks = {flags.rank};
    model_dir = flags.workdir + "/model";
    adapter_dir = flags.workdir + "/adapters/adapter-000";
    // Reuse a model synthesized by an earlier run with the same preset.
    const bool have = std::filesystem::exists(model_dir + "/model.safetensors") &&
                      std::filesystem::exists(adapter_dir + "/adapter_model.safetensors");
    if (!have) {
      const auto t0 = Clock::now();
      CHECK_OK(synth_write(so, flags.workdir), "synth");
      std::printf("synthesized %s into %s in %.1f s\n", flags.synth.c_str(), flags.workdir.c_str(),
                  std::chrono::duration<double>(Clock::now() - t0).count());
    }
  }
  if (model_dir.empty()) {
    std::fprintf(stderr, "engine_bench: --model DIR or --synth PRESET is required\n");
    return 2;
  }
  auto weights = ModelWeights::open(model_dir);
  if (!weights.ok()) die("model", weights.status());
  b.weights = std::move(*weights);
  const ModelConfig cfg = b.weights->config();
  BackendOptions bo;
  bo.threads = flags.threads;
  bo.cpu_isa = flags.cpu_isa;
  bo.kv_cache_dtype = flags.kv_cache_dtype;
  bo.cpu_weights = flags.cpu_weights;
  bo.cpu_weights_cache = flags.cpu_weights_cache;
  auto backend = create_backend(flags.backend, bo);
  if (!backend.ok()) die("backend", backend.status());
  const std::string backend_name = (*backend)->name();
  const bool cpu = backend_name != "cuda";
  const double gbps = cpu ? host_read_gbps(flags.threads) : copy_gbps();
  auto pool_bytes = choose_pool_bytes(**backend, flags.pool_mb, flags.pool_fraction);
  if (!pool_bytes.ok()) die("pool", pool_bytes.status());
  const int max_batch = *std::max_element(flags.batches.begin(), flags.batches.end());
  EngineOptions eo;
  eo.pool_bytes = *pool_bytes;
  eo.max_batch_tokens = std::max({flags.prefill, max_batch, flags.context});
  eo.max_batch_seqs = std::max(max_batch, 1);
  const auto t_load = Clock::now();
  auto engine = Engine::create(b.weights, std::move(*backend), eo);
  if (!engine.ok()) die("engine", engine.status());
  b.engine = std::move(*engine);
  // Only the engine keeps the mapping, and only when its backend reads the
  // weights in place (as `serve` does): a packed or converted backend's RSS
  // then holds its own copy alone.
  b.weights.reset();
  const double load_s = std::chrono::duration<double>(Clock::now() - t_load).count();
  // The server answers from here on; what the backend still writes in the
  // background (cpu-bf16's packed-weights cache) is timed on its own.
  const auto t_background = Clock::now();
  if (!flags.overlap_background) b.engine->finish_background_work();
  const double background_s = std::chrono::duration<double>(Clock::now() - t_background).count();

  const int num_adapters = flags.num_adapters > 0 ? flags.num_adapters : max_batch;
  if (adapter_dir.empty()) {
    std::fprintf(stderr, "engine_bench: --adapter DIR (or --synth) is required\n");
    return 2;
  }
  auto adapter = LoraAdapter::load_dir(adapter_dir, cfg);
  if (!adapter.ok()) die("adapter", adapter.status());
  for (int i = 0; i < num_adapters; ++i) {
    b.adapter_ids.push_back("bench-" + std::to_string(i));
    CHECK_OK(b.engine->register_adapter(b.adapter_ids.back(), **adapter), "register_adapter");
  }

  std::printf("engine_bench: backend %s, model %s (hidden %lld, %lld layers, vocab %lld), "
              "pool %.0f MiB, upload %.2f s (then %.2f s of background work), %d adapters (rank %d, from %s)\n",
              b.engine->backend().describe().c_str(), model_dir.c_str(), static_cast<long long>(cfg.hidden_size),
              static_cast<long long>(cfg.num_hidden_layers), static_cast<long long>(cfg.vocab_size),
              static_cast<double>(*pool_bytes) / (1 << 20), load_s, background_s, num_adapters,
              (*adapter)->max_rank(), adapter_dir.c_str());
  b.out["backend"] = backend_name;
  b.out["kv_cache_dtype"] = dtype_name(b.engine->backend().kv_dtype());
  b.out["cpu_weights"] = flags.cpu_weights;
  b.out["cpu_weights_cache"] = flags.cpu_weights_cache;
  b.out["backend_describe"] = b.engine->backend().describe();  // what auto resolved to
  b.out["model"] = model_dir;
  b.out["copy_gbps"] = gbps;  // host read bandwidth on the cpu backends
  b.out["load_s"] = load_s;
  b.out["background_s"] = background_s;
  b.out["overlap_background"] = flags.overlap_background;
  b.out["weight_bytes"] = decode_weight_bytes(cfg);
  b.out["context"] = flags.context;

  b.decode_ms(1);  // warm-up: first launches, allocator growth, caches
  std::printf("\n== decode step (context %d, median of %d steps)\n", flags.context, flags.decode_steps);
  std::printf("%6s %12s %12s %10s %14s\n", "batch", "base ms", "lora ms", "lora/base", "base tok/s");
  for (int batch : flags.batches) {
    const auto [base, lora] = b.decode_ms(batch);
    std::printf("%6d %12.3f %12.3f %10.3f %14.0f\n", batch, base, lora, lora / base,
                batch * 1000.0 / base);
    b.out["decode"].push_back(
        {{"batch", batch}, {"base_ms", base}, {"lora_ms", lora}, {"ratio", lora / base}});
    if (batch == 1 && gbps > 0.0) {
      // bf16 weight bytes: what cpu-bf16 and cuda read; the f32 cpu backend reads twice that.
      const double roof_ms = static_cast<double>(decode_weight_bytes(cfg)) / (gbps * 1e9) * 1e3;
      std::printf("       batch 1 roofline: %.0f MB of bf16 weights at %.1f GB/s (%s) = %.3f ms; "
                  "base step / roofline = %.3f\n",
                  decode_weight_bytes(cfg) / 1e6, gbps, cpu ? "host read" : "device copy", roof_ms,
                  base / roof_ms);
      b.out["roofline_ms"] = roof_ms;
      b.out["batch1_over_roofline"] = base / roof_ms;
    }
  }
  if (flags.prefill > 0) {
    std::printf("\n== prefill (one %d-token chunk, median of %d)\n", flags.prefill, flags.prefill_reps);
    const double base = b.prefill_ms(false);
    const double lora = b.prefill_ms(true);
    std::printf("%12s %12s %10s %14s %14s\n", "base ms", "lora ms", "lora/base", "base tok/s",
                "lora tok/s");
    std::printf("%12.2f %12.2f %10.3f %14.0f %14.0f\n", base, lora, lora / base,
                flags.prefill * 1000.0 / base, flags.prefill * 1000.0 / lora);
    b.out["prefill"] = {{"tokens", flags.prefill}, {"base_ms", base}, {"lora_ms", lora}};
  }
  const double rss = peak_rss_mb();
  std::printf("\npeak RSS %.0f MiB (bf16 weights %.0f MiB, pool %.0f MiB)\n", rss,
              decode_weight_bytes(cfg) / 1048576.0, static_cast<double>(*pool_bytes) / 1048576.0);
  b.out["peak_rss_mb"] = rss;
  const EngineStats st = b.engine->stats();
  std::printf("\npool: %lld pages of %lld bytes, %d adapters registered\nengine_bench done\n",
              static_cast<long long>(st.pool.total), static_cast<long long>(st.page_bytes),
              st.registered_adapters);
  if (!flags.json.empty()) {
    std::ofstream(flags.json) << b.out.dump(1) << "\n";
  }
  return 0;
}

}  // namespace
}  // namespace loraserve

int main(int argc, char** argv) {
  loraserve::Flags f;
  CLI::App app{"engine_bench: decode steps and prefill through the Engine, base vs LoRA"};
  app.add_option("--model", f.model, "Model directory (HF Llama)");
  app.add_option("--adapter", f.adapter, "PEFT adapter directory, registered --num-adapters times");
  app.add_option("--synth", f.synth, "Synthesize this preset (" + loraserve::synth_preset_names() + ") into --workdir");
  app.add_option("--workdir", f.workdir, "Where --synth writes (reused when present)")->capture_default_str();
  app.add_option("--backend", f.backend, "auto, cpu, cpu-bf16 or cuda")->capture_default_str();
  app.add_option("--threads", f.threads, "cpu-bf16 threads (0: one per CPU)")->capture_default_str();
  app.add_option("--cpu-isa", f.cpu_isa, "cpu-bf16 kernels: auto, avx512bf16, avx512, avx2, scalar")
      ->capture_default_str();
  app.add_option("--kv-cache-dtype", f.kv_cache_dtype, "auto, bf16 or f32")->capture_default_str();
  app.add_option("--cpu-weights", f.cpu_weights, "cpu-bf16: auto, mapped or packed")->capture_default_str();
  app.add_option("--cpu-weights-cache", f.cpu_weights_cache,
                 "cpu-bf16, packed: directory of the packed-weights cache (default none)");
  app.add_flag("--overlap-background", f.overlap_background,
               "Time the steps while the backend's start-up work still runs (cpu-bf16: the "
               "cache write), as a first start's first requests see them");
  app.add_option("--batches", f.batches, "Decode batch sizes")->delimiter(',')->capture_default_str();
  app.add_option("--context", f.context, "KV tokens per sequence before the timed steps")->capture_default_str();
  app.add_option("--decode-steps", f.decode_steps, "Timed decode steps per batch")->capture_default_str();
  app.add_option("--prefill", f.prefill, "Prefill chunk in tokens (0: skip)")->capture_default_str();
  app.add_option("--prefill-reps", f.prefill_reps, "Timed prefills")->capture_default_str();
  app.add_option("--num-adapters", f.num_adapters, "Adapter ids registered (default: largest batch)");
  app.add_option("--rank", f.rank, "Rank of the synthesized adapter")->capture_default_str();
  app.add_option("--pool-mb", f.pool_mb, "Page pool in MiB (default: --pool-fraction)");
  app.add_option("--pool-fraction", f.pool_fraction, "Share of free device memory for the pool")
      ->capture_default_str();
  app.add_option("--json", f.json, "Write the figures here");
  CLI11_PARSE(app, argc, argv);
  return loraserve::run(f);
}
