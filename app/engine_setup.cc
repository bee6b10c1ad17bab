#include "app/engine_setup.h"

#include <cstdlib>
#include <utility>

namespace loraserve::cli {

std::string default_cpu_weights_cache() {
  auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v == nullptr ? "" : v;
  };
  if (!env("LORASERVE_CACHE_DIR").empty()) return env("LORASERVE_CACHE_DIR");
  if (!env("XDG_CACHE_HOME").empty()) return env("XDG_CACHE_HOME") + "/loraserve";
  if (!env("HOME").empty()) return env("HOME") + "/.cache/loraserve";
  return "";
}

void add_engine_flags(CLI::App* cmd, EngineFlags* f) {
  cmd->add_option("--backend", f->backend,
                  "auto | cpu (f32 reference) | cpu-bf16 (bf16 weights in place, SIMD, threads) | cuda")
      ->capture_default_str();
  cmd->add_option("--threads", f->threads, "cpu-bf16: threads for every op (0: one per CPU)")
      ->check(CLI::Range(0, 1024))
      ->capture_default_str();
  cmd->add_option("--cpu-isa", f->cpu_isa,
                  "cpu-bf16: kernels to use: auto | avx512bf16 | avx512 | avx2 | scalar")
      ->capture_default_str();
  cmd->add_option("--kv-cache-dtype", f->kv_cache_dtype,
                  "KV cache elements: auto (bf16 on cpu-bf16 and cuda, f32 on cpu) | bf16 | f32")
      ->capture_default_str();
  cmd->add_option("--cpu-weights", f->cpu_weights,
                  "cpu-bf16: auto (packed where the CPU has AVX512-BF16, else mapped) | mapped "
                  "(the checkpoint's bf16 read in place, no load pass) | packed (repacked at load "
                  "for the AVX512-BF16 kernel: faster batches and prefill)")
      ->capture_default_str();
  cmd->add_option("--cpu-weights-cache", f->cpu_weights_cache,
                  "cpu-bf16, packed weights: a directory where they are kept once packed and "
                  "mapped from on later starts (no packing pass); 'off': pack at "
                  "every start. Default: $LORASERVE_CACHE_DIR, $XDG_CACHE_HOME/loraserve or "
                  "~/.cache/loraserve")
      ->capture_default_str();
  cmd->add_option("--pool-fraction", f->pool_fraction,
                  "Unified page pool (KV cache + resident adapters) as a fraction of free device "
                  "memory (cuda) or available host memory (cpu)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--pool-mb", f->pool_mb, "Unified page pool in MiB; overrides --pool-fraction")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--kv-page-tokens", f->kv_page_tokens, "Tokens per KV page of one layer")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
}

StatusOr<std::unique_ptr<Engine>> create_engine(const EngineFlags& f,
                                                std::shared_ptr<const ModelWeights> weights,
                                                int32_t max_batch_tokens,
                                                int32_t max_batch_seqs) {
  BackendOptions bo;
  bo.threads = f.threads;
  bo.cpu_isa = f.cpu_isa;
  bo.kv_cache_dtype = f.kv_cache_dtype;
  bo.cpu_weights = f.cpu_weights;
  bo.cpu_weights_cache = f.cpu_weights_cache == "off" ? "" : f.cpu_weights_cache;
  LS_ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, create_backend(f.backend, bo));
  LS_ASSIGN_OR_RETURN(int64_t pool_bytes, choose_pool_bytes(*backend, f.pool_mb, f.pool_fraction));
  EngineOptions opts;
  opts.pool_bytes = pool_bytes;
  opts.kv_page_tokens = f.kv_page_tokens;
  opts.max_batch_tokens = max_batch_tokens;
  opts.max_batch_seqs = max_batch_seqs;
  return Engine::create(std::move(weights), std::move(backend), opts);
}

}  // namespace loraserve::cli
