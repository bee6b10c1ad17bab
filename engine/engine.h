// Engine: one base model on one backend, the unified page pool shared by
// the KV cache and the resident adapters, and the forward step over a
// mixed batch.
//
// Owns the backend, the uploaded base weights, the PagePool bookkeeping,
// the KvPageTable, the host AdapterStore and the AdapterCache. Callers (the
// scheduler when serving, scheduler/offline for `loraserve generate` and
// tests) register adapters by id, start
// sequences (which pins the sequence's adapter in the pool, swapping it in
// if needed), then call step() with each sequence's new tokens: a prompt or
// a chunk of it for prefill, the last sampled token for decode, both kinds
// mixed in one batch, each sequence with its own adapter.
//
// Threading: register/unregister and everything else are called from one
// thread (the step loop); the AdapterStore alone is safe to read elsewhere.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "checkpoint/lora_adapter.h"
#include "checkpoint/model_config.h"
#include "checkpoint/model_weights.h"
#include "common/status.h"
#include "engine/backend.h"
#include "engine/step_plan.h"
#include "memory/adapter_cache.h"
#include "memory/adapter_store.h"
#include "memory/kv_page_table.h"
#include "memory/page_pool.h"

namespace loraserve {

struct EngineOptions {
  int64_t pool_bytes = 64ll << 20;  // the unified page pool (KV cache + resident adapters)
  int32_t kv_page_tokens = 16;      // tokens per KV page of one layer
  int32_t max_batch_tokens = 2048;  // tokens in one step (activations are sized for it)
  int32_t max_batch_seqs = 256;     // sequences sampled in one step
  int32_t max_lora_rank = 256;      // largest adapter rank accepted
};

struct SequenceStep {
  int64_t seq_id = 0;
  std::vector<int32_t> tokens;  // appended at the sequence's current length
  bool sample = true;
  kernels::SamplingConfig sampling;
  uint64_t step = 0;            // index of the token being drawn (seeds sampling)
  bool want_logits = false;
};

struct SequenceResult {
  int64_t seq_id = 0;
  bool sampled = false;
  // The sequence was due to sample but its logits were not finite (NaN or
  // inf, e.g. an adapter whose weights overflow on this input): no token
  // was drawn (sampled stays false, token -1). The caller must end it.
  bool non_finite = false;
  int32_t token = -1;
  float logprob = 0.0f;
  std::vector<float> logits;  // [vocab] when want_logits
};

struct EngineStats {
  PagePoolStats pool;
  AdapterCacheStats adapters;
  int64_t page_bytes = 0;
  int32_t registered_adapters = 0;
  int32_t sequences = 0;
};

class Engine {
 public:
  // The caller keeps `weights` as long as it likes: refused (FAILED_PRECONDITION)
  // for a backend that maps the checkpoint (cpu-bf16), which needs the
  // shared form below.
  static StatusOr<std::unique_ptr<Engine>> create(const ModelWeights& weights,
                                                  std::unique_ptr<Backend> backend,
                                                  const EngineOptions& options);
  // The engine shares ownership of the weights: backends may read the
  // checkpoint's mapping in place for the engine's whole life.
  static StatusOr<std::unique_ptr<Engine>> create(std::shared_ptr<const ModelWeights> weights,
                                                  std::unique_ptr<Backend> backend,
                                                  const EngineOptions& options);
  ~Engine();

  // Converts the adapter into its pool image and keeps it in the host store.
  // ALREADY_EXISTS for a taken id; INVALID_ARGUMENT for a rank above
  // max_lora_rank; RESOURCE_EXHAUSTED when it could never fit in the pool.
  Status register_adapter(const std::string& id, const LoraAdapter& adapter);
  // FAILED_PRECONDITION while a sequence uses it; NOT_FOUND when unknown.
  Status unregister_adapter(const std::string& id);
  bool has_adapter(const std::string& id) const;
  // Bytes the adapter's image takes in the pool (its weights in the
  // backend's dtype), for quotas.
  int64_t adapter_image_bytes(const LoraAdapter& adapter) const {
    return static_cast<int64_t>(adapter.weight_bytes() / sizeof(float) *
                                dtype_size(adapter_image_dtype(adapter)));
  }
  // The element type of the adapter's image on this engine's backend.
  DType adapter_image_dtype(const LoraAdapter& adapter) const;
  // Whether the adapter is in the page pool now.
  bool adapter_resident(const std::string& id) const {
    return cache_->residency(id) != Residency::kMissing;
  }
  std::vector<std::string> resident_adapters() const { return cache_->resident_ids(); }
  // Changes whenever an adapter enters or leaves the pool.
  uint64_t residency_version() const { return cache_->residency_version(); }
  // Swaps a registered adapter in ahead of use, into free pages only.
  Status prefetch_adapter(const std::string& id);
  // Can a sequence with `prompt_tokens` tokens using `adapter_id` ("" for
  // none) start now, and which idle adapters would be evicted?
  // `reserved_kv_pages` are pages already promised to other sequences.
  StatusOr<AdmissionPlan> plan_admission(int64_t prompt_tokens, const std::string& adapter_id,
                                         int32_t reserved_kv_pages = 0) const;
  // KV pages sequence `seq_id` still needs to hold `total_tokens` tokens.
  int32_t kv_pages_needed(int64_t seq_id, int64_t total_tokens) const {
    return kv_->pages_needed(seq_id, total_tokens);
  }

  // A new, empty sequence using adapter `adapter_id` ("" for none); pins the
  // adapter in the pool (swap-in, evicting idle adapters LRU if needed).
  // NOT_FOUND for an unknown adapter, RESOURCE_EXHAUSTED for a full pool.
  Status start_sequence(int64_t seq_id, const std::string& adapter_id);
  // Frees the sequence's KV pages at once and unpins its adapter.
  void end_sequence(int64_t seq_id);
  int64_t sequence_length(int64_t seq_id) const;

  // One forward over the batch. Results come back in the order of `batch`.
  // KV pages grow as needed, evicting idle adapters first. On error no
  // sequence's length changes.
  Status step(const std::vector<SequenceStep>& batch, std::vector<SequenceResult>* results);

  const ModelConfig& config() const { return config_; }
  const EngineOptions& options() const { return options_; }
  EngineStats stats() const;
  const Backend& backend() const { return *backend_; }
  // Waits for the backend's start-up work that outlives create() (cpu-bf16:
  // the packed-weights cache write); for benchmarks, which must not measure
  // beside it.
  void finish_background_work() { backend_->finish_background_work(); }
  const AdapterStore& adapter_store() const { return *store_; }

 private:
  struct LayerWeights {
    Tensor input_norm, q, k, v, o, post_norm, gate, up, down;
    Tensor q_bias, k_bias, v_bias;  // Qwen2; data null otherwise
    Tensor q_norm, k_norm;          // Qwen3; data null otherwise
  };
  struct Activations {
    Tensor residual, x, q, k, v, attn, o, gate, up, act, mlp_out, lora_scratch, sample_x, logits;
  };
  struct Sequence {
    std::string adapter_id;  // "" = base model
    const ResidentAdapter* adapter = nullptr;  // pinned while the sequence lives
    int64_t length = 0;
  };

  Engine() = default;
  static StatusOr<std::unique_ptr<Engine>> create_impl(const ModelWeights& weights,
                                                       std::shared_ptr<const ModelWeights> keep,
                                                       std::unique_ptr<Backend> backend,
                                                       const EngineOptions& options);
  Status upload_model(const ModelWeights& weights);
  Status allocate_activations();
  Status validate_batch(const std::vector<SequenceStep>& batch) const;
  Status reserve_kv(const std::vector<SequenceStep>& batch);
  // The forward pass over the current plan (llama_forward.cc).
  Status forward(const std::vector<AdapterRun>& runs, int64_t num_tokens, int64_t num_samples,
                 bool want_logits, SampleResult* sampled);
  void lora_segments(const std::vector<AdapterRun>& runs, int64_t layer, LoraModule m,
                     std::vector<LoraSegmentRef>* out) const;

  // Before backend_, so that it is destroyed after it: a backend that maps
  // the checkpoint (cpu-bf16) reads these bytes until it is gone.
  std::shared_ptr<const ModelWeights> weights_;
  ModelConfig config_;
  EngineOptions options_;
  std::unique_ptr<Backend> backend_;
  PoolGeometry geom_;
  std::unique_ptr<PagePool> pool_;
  std::unique_ptr<KvPageTable> kv_;
  std::unique_ptr<AdapterStore> store_;
  std::unique_ptr<AdapterCache> cache_;
  Tensor embed_, final_norm_, lm_head_;
  std::vector<LayerWeights> layers_;
  Activations act_;
  std::unordered_map<int64_t, Sequence> seqs_;
  // Adapters of this step's runs, by slot index in AdapterRun::slot.
  std::vector<const ResidentAdapter*> step_adapters_;
  std::vector<Tensor> owned_;  // everything uploaded, released in the destructor
};

}  // namespace loraserve
