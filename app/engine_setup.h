// The one engine bring-up that `serve` and `generate` share: the backend and
// pool flags (one help text for both) and model -> backend -> pool -> Engine.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "checkpoint/model_weights.h"
#include "common/status.h"
#include "engine/engine.h"

namespace loraserve::cli {

// Where cpu-bf16 keeps packed weights unless --cpu-weights-cache says
// otherwise: $LORASERVE_CACHE_DIR, else $XDG_CACHE_HOME/loraserve, else
// $HOME/.cache/loraserve (empty, i.e. none, without any of them).
std::string default_cpu_weights_cache();

struct EngineFlags {
  std::string backend = "auto";
  int threads = 0;
  std::string cpu_isa = "auto";
  std::string kv_cache_dtype = "auto";
  std::string cpu_weights = "auto";
  std::string cpu_weights_cache = default_cpu_weights_cache();
  double pool_fraction = 0.1;
  int64_t pool_mb = 0;
  int32_t kv_page_tokens = 16;
};

// --backend, --threads, --cpu-isa, --kv-cache-dtype, --cpu-weights, --cpu-weights-cache, --pool-fraction, --pool-mb, --kv-page-tokens.
void add_engine_flags(CLI::App* cmd, EngineFlags* flags);

// Creates the backend the flags name, sizes the pool and builds the engine
// over `weights` (the caller may drop its reference afterwards: the engine
// keeps the weights when its backend reads them in place, and otherwise
// holds its own copy). Errors name the step that failed.
StatusOr<std::unique_ptr<Engine>> create_engine(const EngineFlags& flags,
                                                std::shared_ptr<const ModelWeights> weights,
                                                int32_t max_batch_tokens,
                                                int32_t max_batch_seqs);

}  // namespace loraserve::cli
