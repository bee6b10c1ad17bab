// Engine: one base model on one backend, its adapters, its sequences' KV
// cache in the page pool, and the forward step over a mixed batch.
//
// Owns the backend, the uploaded weights, the PagePool bookkeeping and the
// KvPageTable. Callers (the CLI now, the scheduler later) add sequences,
// then call step() with each sequence's new tokens: a prompt (or a chunk of
// it) for prefill, the last sampled token for decode, both kinds mixed in
// one batch, each sequence with its own adapter. Not thread-safe: one step
// loop drives it.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "engine/backend.h"
#include "engine/lora_adapter.h"
#include "engine/model_config.h"
#include "engine/model_weights.h"
#include "engine/step_plan.h"
#include "memory/kv_page_table.h"
#include "memory/page_pool.h"

namespace loraserve {

struct EngineOptions {
  int64_t pool_bytes = 64ll << 20;  // the unified page pool
  int32_t kv_page_tokens = 16;      // tokens per KV page (one layer)
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
  int32_t token = -1;
  float logprob = 0.0f;
  std::vector<float> logits;  // [vocab] when want_logits
};

class Engine {
 public:
  static StatusOr<std::unique_ptr<Engine>> create(const ModelWeights& weights,
                                                  std::unique_ptr<Backend> backend,
                                                  const EngineOptions& options);
  ~Engine();

  // Uploads an adapter (validated against this model when it was loaded);
  // returns its slot. INVALID_ARGUMENT for a rank above max_lora_rank.
  StatusOr<int32_t> add_adapter(const LoraAdapter& adapter);
  // FAILED_PRECONDITION while a sequence still uses the slot.
  Status remove_adapter(int32_t slot);

  // A new, empty sequence using adapter `adapter_slot` (-1 for none).
  Status start_sequence(int64_t seq_id, int32_t adapter_slot);
  // Frees the sequence's KV pages at once; unknown ids are a no-op.
  void end_sequence(int64_t seq_id);
  int64_t sequence_length(int64_t seq_id) const;

  // One forward over the batch. Results come back in the order of `batch`.
  // On error nothing about the sequences changes (lengths stay).
  Status step(const std::vector<SequenceStep>& batch, std::vector<SequenceResult>* results);

  const ModelConfig& config() const { return config_; }
  const EngineOptions& options() const { return options_; }
  PagePoolStats pool_stats() const { return pool_->stats(); }
  const Backend& backend() const { return *backend_; }

 private:
  struct LayerWeights {
    Tensor input_norm, q, k, v, o, post_norm, gate, up, down;
  };
  struct AdapterSlot {
    bool used = false;
    int32_t users = 0;
    // Per layer, per module: A [rank, in], Bt [rank, out] in backend memory.
    std::vector<std::array<Tensor, kNumLoraModules>> a, bt;
    std::vector<std::array<int32_t, kNumLoraModules>> rank;
    std::vector<std::array<float, kNumLoraModules>> scale;
  };
  struct Activations {
    Tensor residual, x, q, k, v, attn, o, gate, up, act, mlp_out, lora_scratch, sample_x, logits;
  };
  struct Sequence {
    int32_t adapter_slot = -1;
    int64_t length = 0;
  };

  Engine() = default;
  Status upload_model(const ModelWeights& weights);
  Status allocate_activations();
  Status validate_batch(const std::vector<SequenceStep>& batch) const;
  // The forward pass over the plan in plan_ (llama_forward.cc).
  Status forward(const std::vector<AdapterRun>& runs, int64_t num_tokens,
                 int64_t num_samples, bool want_logits, SampleResult* sampled);
  void lora_segments(const std::vector<AdapterRun>& runs, int64_t layer, LoraModule m,
                     std::vector<LoraSegmentRef>* out) const;

  ModelConfig config_;
  EngineOptions options_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<PagePool> pool_;
  std::unique_ptr<KvPageTable> kv_;
  Tensor embed_, final_norm_, lm_head_;
  std::vector<LayerWeights> layers_;
  std::vector<AdapterSlot> adapters_;
  Activations act_;
  std::unordered_map<int64_t, Sequence> seqs_;
  std::vector<Tensor> owned_;  // everything uploaded, released in the destructor
};

}  // namespace loraserve
