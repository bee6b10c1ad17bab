#include "engine/engine.h"

#include <algorithm>
#include <string>
#include <unordered_set>
#include <utility>

#include "engine/adapter_image.h"
#include "engine/step_plan.h"

namespace loraserve {

namespace {
std::string seq_name(int64_t id) { return "sequence " + std::to_string(id); }
}  // namespace

StatusOr<std::unique_ptr<Engine>> Engine::create(const ModelWeights& weights,
                                                 std::unique_ptr<Backend> backend,
                                                 const EngineOptions& options) {
  if (backend && backend->maps_weights()) {
    return failed_precondition("engine: backend " + backend->name() +
                               " reads the checkpoint in place; create the engine with shared "
                               "ownership of the weights");
  }
  return create_impl(weights, nullptr, std::move(backend), options);
}

StatusOr<std::unique_ptr<Engine>> Engine::create(std::shared_ptr<const ModelWeights> weights,
                                                 std::unique_ptr<Backend> backend,
                                                 const EngineOptions& options) {
  if (!weights) return invalid_argument("engine: no weights");
  const ModelWeights& w = *weights;
  return create_impl(w, std::move(weights), std::move(backend), options);
}

StatusOr<std::unique_ptr<Engine>> Engine::create_impl(const ModelWeights& weights,
                                                      std::shared_ptr<const ModelWeights> keep,
                                                      std::unique_ptr<Backend> backend,
                                                      const EngineOptions& options) {
  if (!backend) return invalid_argument("engine: no backend");
  if (options.kv_page_tokens <= 0 || options.max_batch_tokens <= 0 ||
      options.max_batch_seqs <= 0 || options.max_lora_rank <= 0) {
    return invalid_argument("engine: page tokens, batch limits and max rank must be positive");
  }
  std::unique_ptr<Engine> e(new Engine());
  // Only a backend that reads the mapping keeps it: the others copied what
  // they need, and the mapped pages would otherwise stay resident.
  if (backend->maps_weights()) e->weights_ = std::move(keep);
  e->config_ = weights.config();
  e->options_ = options;
  e->backend_ = std::move(backend);
  const ModelConfig& c = e->config_;

  // Page geometry: one page holds the K and V rows of `kv_page_tokens`
  // tokens of one layer (the unified-paging issue revisits this when
  // adapter weights move into the same pool).
  PoolGeometry& geom = e->geom_;
  geom.kv_page_tokens = options.kv_page_tokens;
  geom.page_bytes = 2ll * options.kv_page_tokens * c.kv_dim() *
                    static_cast<int64_t>(dtype_size(e->backend_->kv_dtype()));
  const int64_t pages = options.pool_bytes / geom.page_bytes;
  if (pages < c.num_hidden_layers) {
    return invalid_argument("engine: pool of " + std::to_string(options.pool_bytes) +
                            " bytes holds fewer pages than one KV block needs (" +
                            std::to_string(c.num_hidden_layers) + " pages of " +
                            std::to_string(geom.page_bytes) + " bytes)");
  }
  geom.num_pages = static_cast<int32_t>(std::min<int64_t>(pages, INT32_MAX));

  BackendModelInfo info;
  info.hidden = c.hidden_size;
  info.num_q_heads = c.num_attention_heads;
  info.num_kv_heads = c.num_key_value_heads;
  info.head_dim = c.head_dim;
  info.num_layers = c.num_hidden_layers;
  info.vocab = c.vocab_size;
  info.rope_inv_freq = kernels::rope_inv_freq(c.head_dim, c.rope_theta,
                                              c.rope_scaling ? &*c.rope_scaling : nullptr);
  LS_RETURN_IF_ERROR(e->backend_->init(info, geom));
  e->pool_ = std::make_unique<PagePool>(geom.num_pages);
  e->kv_ = std::make_unique<KvPageTable>(e->pool_.get(), geom.kv_page_tokens,
                                         static_cast<int32_t>(c.num_hidden_layers));
  e->store_ = std::make_unique<AdapterStore>(e->backend_->host_allocator());
  e->cache_ = std::make_unique<AdapterCache>(e->pool_.get(), geom.page_bytes, e->backend_.get());
  LS_RETURN_IF_ERROR(e->upload_model(weights));
  LS_RETURN_IF_ERROR(e->backend_->weights_uploaded());
  LS_RETURN_IF_ERROR(e->allocate_activations());
  return e;
}

Engine::~Engine() {
  if (!backend_) return;
  for (const Tensor& t : owned_) backend_->release(t);
}

Status Engine::upload_model(const ModelWeights& weights) {
  auto up = [&](const TensorInfo* t, Tensor* out) -> Status {
    LS_ASSIGN_OR_RETURN(*out, backend_->upload_weight(*t));
    owned_.push_back(*out);
    return ok_status();
  };
  LS_RETURN_IF_ERROR(up(weights.embed_tokens(), &embed_));
  LS_RETURN_IF_ERROR(up(weights.final_norm(), &final_norm_));
  if (weights.lm_head() == weights.embed_tokens()) {
    lm_head_ = embed_;
  } else {
    LS_RETURN_IF_ERROR(up(weights.lm_head(), &lm_head_));
  }
  for (const LayerTensors& l : weights.layers()) {
    LayerWeights w;
    LS_RETURN_IF_ERROR(up(l.input_layernorm, &w.input_norm));
    LS_RETURN_IF_ERROR(up(l.q_proj, &w.q));
    LS_RETURN_IF_ERROR(up(l.k_proj, &w.k));
    LS_RETURN_IF_ERROR(up(l.v_proj, &w.v));
    LS_RETURN_IF_ERROR(up(l.o_proj, &w.o));
    LS_RETURN_IF_ERROR(up(l.post_attention_layernorm, &w.post_norm));
    LS_RETURN_IF_ERROR(up(l.gate_proj, &w.gate));
    LS_RETURN_IF_ERROR(up(l.up_proj, &w.up));
    LS_RETURN_IF_ERROR(up(l.down_proj, &w.down));
    const std::pair<const TensorInfo*, Tensor*> extras[] = {{l.q_bias, &w.q_bias},
                                                            {l.k_bias, &w.k_bias},
                                                            {l.v_bias, &w.v_bias},
                                                            {l.q_norm, &w.q_norm},
                                                            {l.k_norm, &w.k_norm}};
    for (const auto& [t, out] : extras) {
      if (t != nullptr) LS_RETURN_IF_ERROR(up(t, out));
    }
    layers_.push_back(w);
  }
  return ok_status();
}

Status Engine::allocate_activations() {
  const ModelConfig& c = config_;
  const int64_t t = options_.max_batch_tokens;
  const int64_t s = options_.max_batch_seqs;
  auto alloc = [&](int64_t rows, int64_t cols, Tensor* out) -> Status {
    LS_ASSIGN_OR_RETURN(*out, backend_->allocate_activation(rows, cols));
    owned_.push_back(*out);
    return ok_status();
  };
  LS_RETURN_IF_ERROR(alloc(t, c.hidden_size, &act_.residual));
  LS_RETURN_IF_ERROR(alloc(t, c.hidden_size, &act_.x));
  LS_RETURN_IF_ERROR(alloc(t, c.q_dim(), &act_.q));
  LS_RETURN_IF_ERROR(alloc(t, c.kv_dim(), &act_.k));
  LS_RETURN_IF_ERROR(alloc(t, c.kv_dim(), &act_.v));
  LS_RETURN_IF_ERROR(alloc(t, c.q_dim(), &act_.attn));
  LS_RETURN_IF_ERROR(alloc(t, c.hidden_size, &act_.o));
  LS_RETURN_IF_ERROR(alloc(t, c.intermediate_size, &act_.gate));
  LS_RETURN_IF_ERROR(alloc(t, c.intermediate_size, &act_.up));
  LS_RETURN_IF_ERROR(alloc(t, c.intermediate_size, &act_.act));
  LS_RETURN_IF_ERROR(alloc(t, c.hidden_size, &act_.mlp_out));
  LS_RETURN_IF_ERROR(alloc(t, options_.max_lora_rank, &act_.lora_scratch));
  LS_RETURN_IF_ERROR(alloc(s, c.hidden_size, &act_.sample_x));
  LS_RETURN_IF_ERROR(alloc(s, c.vocab_size, &act_.logits));
  return ok_status();
}

DType Engine::adapter_image_dtype(const LoraAdapter& adapter) const {
  // Every weight is looked at only where the answer can change the dtype
  // (cpu-bf16); cuda and cpu hold one dtype whatever the file.
  const DType if_exact = backend_->adapter_dtype(/*exact_in_bf16=*/true);
  const DType otherwise = backend_->adapter_dtype(/*exact_in_bf16=*/false);
  if (if_exact == otherwise || !adapter_exact_in_bf16(adapter)) return otherwise;
  return if_exact;
}

Status Engine::register_adapter(const std::string& id, const LoraAdapter& adapter) {
  if (id.empty()) return invalid_argument("adapter id must not be empty");
  if (adapter.max_rank() > options_.max_lora_rank) {
    return invalid_argument("adapter '" + id + "' has rank " + std::to_string(adapter.max_rank()) +
                            ", above the engine's max_lora_rank " +
                            std::to_string(options_.max_lora_rank));
  }
  if (store_->get(id).ok()) {
    return Status(StatusCode::kAlreadyExists, "adapter '" + id + "' is already registered");
  }
  LS_ASSIGN_OR_RETURN(std::shared_ptr<AdapterImage> image,
                      make_adapter_image(id, adapter, config_, adapter_image_dtype(adapter),
                                         store_->allocator()));
  const int32_t pages = cache_->pages_for(*image);
  if (pages > pool_->num_pages()) {
    return resource_exhausted("adapter '" + id + "' needs " + std::to_string(pages) +
                              " pages; the whole pool has " + std::to_string(pool_->num_pages()));
  }
  return store_->add(std::move(image));
}

Status Engine::unregister_adapter(const std::string& id) {
  if (!store_->get(id).ok()) return not_found("adapter '" + id + "' is not registered");
  LS_RETURN_IF_ERROR(cache_->drop(id));
  return store_->remove(id);
}

bool Engine::has_adapter(const std::string& id) const { return store_->get(id).ok(); }

Status Engine::prefetch_adapter(const std::string& id) {
  LS_ASSIGN_OR_RETURN(auto image, store_->get(id));
  return cache_->prefetch(std::move(image));
}

StatusOr<AdmissionPlan> Engine::plan_admission(int64_t prompt_tokens,
                                               const std::string& adapter_id,
                                               int32_t reserved_kv_pages) const {
  std::shared_ptr<const AdapterImage> image;
  if (!adapter_id.empty()) {
    LS_ASSIGN_OR_RETURN(image, store_->get(adapter_id));
  }
  const int32_t kv_pages = kv_->pages_needed(/*seq=*/-1, prompt_tokens);
  AdmissionPlan plan = cache_->plan_admission(kv_pages + reserved_kv_pages, image.get());
  plan.kv_pages = kv_pages;
  return plan;
}

Status Engine::start_sequence(int64_t seq_id, const std::string& adapter_id) {
  if (seqs_.count(seq_id)) return invalid_argument(seq_name(seq_id) + " already exists");
  Sequence seq;
  seq.adapter_id = adapter_id;
  if (!adapter_id.empty()) {
    LS_ASSIGN_OR_RETURN(auto image, store_->get(adapter_id));
    LS_ASSIGN_OR_RETURN(seq.adapter, cache_->acquire(std::move(image)));
  }
  seqs_.emplace(seq_id, std::move(seq));
  return ok_status();
}

void Engine::end_sequence(int64_t seq_id) {
  auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) return;
  kv_->release(seq_id);
  // The sequence pinned its adapter in start_sequence; releasing cannot fail.
  if (!it->second.adapter_id.empty()) (void)cache_->release(it->second.adapter_id);
  seqs_.erase(it);
}

EngineStats Engine::stats() const {
  EngineStats s;
  s.pool = pool_->stats();
  s.adapters = cache_->stats();
  s.page_bytes = geom_.page_bytes;
  s.registered_adapters = static_cast<int32_t>(store_->size());
  s.sequences = static_cast<int32_t>(seqs_.size());
  return s;
}

int64_t Engine::sequence_length(int64_t seq_id) const {
  auto it = seqs_.find(seq_id);
  return it == seqs_.end() ? -1 : it->second.length;
}

Status Engine::validate_batch(const std::vector<SequenceStep>& batch) const {
  if (batch.empty()) return invalid_argument("empty batch");
  int64_t tokens = 0;
  int64_t samples = 0;
  std::unordered_set<int64_t> seen;
  for (const SequenceStep& s : batch) {
    auto it = seqs_.find(s.seq_id);
    if (it == seqs_.end()) return not_found(seq_name(s.seq_id) + " was not started");
    if (!seen.insert(s.seq_id).second) {
      return invalid_argument(seq_name(s.seq_id) + " appears twice in one step");
    }
    if (s.tokens.empty()) return invalid_argument(seq_name(s.seq_id) + " has no new tokens");
    for (int32_t id : s.tokens) {
      if (id < 0 || id >= config_.vocab_size) {
        return invalid_argument("token id " + std::to_string(id) + " outside the vocabulary [0, " +
                                std::to_string(config_.vocab_size) + ")");
      }
    }
    if (it->second.length + static_cast<int64_t>(s.tokens.size()) >
        config_.max_position_embeddings) {
      return out_of_range(seq_name(s.seq_id) + " would exceed the context of " +
                          std::to_string(config_.max_position_embeddings) + " tokens");
    }
    tokens += static_cast<int64_t>(s.tokens.size());
    samples += s.sample ? 1 : 0;
  }
  if (tokens > options_.max_batch_tokens) {
    return invalid_argument("step has " + std::to_string(tokens) + " tokens, more than max " +
                            std::to_string(options_.max_batch_tokens));
  }
  if (samples > options_.max_batch_seqs) {
    return invalid_argument("step samples " + std::to_string(samples) +
                            " sequences, more than max " + std::to_string(options_.max_batch_seqs));
  }
  return ok_status();
}

void Engine::lora_segments(const std::vector<AdapterRun>& runs, int64_t layer, LoraModule m,
                           std::vector<LoraSegmentRef>* out) const {
  out->clear();
  for (const AdapterRun& r : runs) {
    const ResidentAdapter* adapter = step_adapters_[r.slot];
    const LoraSlice& slice = adapter->image->slice(layer, static_cast<int32_t>(m));
    if (slice.rank == 0) continue;
    LoraSegmentRef seg;
    seg.begin = r.begin;
    seg.end = r.end;
    seg.rank = slice.rank;
    seg.scale = slice.scale;
    seg.page_ids = adapter->pages.data();
    seg.num_pages = static_cast<int32_t>(adapter->pages.size());
    seg.a_offset = slice.a_offset;
    seg.bt_offset = slice.bt_offset;
    seg.dtype = adapter->image->dtype;
    out->push_back(seg);
  }
}

Status Engine::reserve_kv(const std::vector<SequenceStep>& batch) {
  int32_t need = 0;
  for (const SequenceStep& s : batch) {
    need += kv_->pages_needed(s.seq_id, seqs_.at(s.seq_id).length + static_cast<int64_t>(s.tokens.size()));
  }
  // KV pressure evicts idle adapters before anything fails, but only when
  // that makes the step fit: otherwise the caller preempts instead and the
  // cached adapters stay.
  if (need > pool_->num_free() && need <= pool_->num_free() + cache_->evictable_pages()) {
    cache_->make_free(need);
  }
  for (const SequenceStep& s : batch) {
    const int64_t total = seqs_.at(s.seq_id).length + static_cast<int64_t>(s.tokens.size());
    LS_RETURN_IF_ERROR(kv_->ensure_capacity(s.seq_id, total));
  }
  return ok_status();
}

Status Engine::step(const std::vector<SequenceStep>& batch, std::vector<SequenceResult>* results) {
  LS_RETURN_IF_ERROR(validate_batch(batch));
  std::vector<PlanEntry> entries;
  entries.reserve(batch.size());
  bool want_logits = false;
  step_adapters_.clear();
  std::unordered_map<const ResidentAdapter*, int32_t> slot_of;
  for (const SequenceStep& s : batch) {
    const Sequence& seq = seqs_.at(s.seq_id);
    PlanEntry e;
    e.seq_id = s.seq_id;
    if (seq.adapter != nullptr) {
      auto [it, fresh] = slot_of.emplace(seq.adapter, static_cast<int32_t>(step_adapters_.size()));
      if (fresh) step_adapters_.push_back(seq.adapter);
      e.adapter_slot = it->second;
    }
    e.start_pos = seq.length;
    e.tokens = &s.tokens;
    e.sample = s.sample;
    e.sampling = s.sampling;
    e.step = s.step;
    entries.push_back(e);
    want_logits = want_logits || (s.sample && s.want_logits);
  }
  BuiltPlan built = build_step_plan(entries);
  LS_RETURN_IF_ERROR(reserve_kv(batch));
  LS_RETURN_IF_ERROR(
      kv_->build_view(built.seq_ids, &built.plan.kv_block_indptr, &built.plan.kv_page_ids));

  LS_RETURN_IF_ERROR(backend_->begin_step(built.plan));
  SampleResult sampled;
  LS_RETURN_IF_ERROR(forward(built.adapter_runs, static_cast<int64_t>(built.plan.token_ids.size()),
                             static_cast<int64_t>(built.plan.sample_rows.size()), want_logits,
                             &sampled));

  results->assign(batch.size(), SequenceResult{});
  for (size_t i = 0; i < batch.size(); ++i) {
    (*results)[i].seq_id = batch[i].seq_id;
    seqs_.at(batch[i].seq_id).length += static_cast<int64_t>(batch[i].tokens.size());
  }
  const int64_t vocab = config_.vocab_size;
  for (size_t r = 0; r < built.sample_entry.size(); ++r) {
    const int32_t idx = built.sample_entry[r];
    SequenceResult& res = (*results)[idx];
    if (sampled.tokens[r] == kernels::kNonFiniteRow) {
      res.non_finite = true;
      continue;
    }
    res.sampled = true;
    res.token = sampled.tokens[r];
    res.logprob = sampled.logprobs[r];
    if (batch[idx].want_logits && !sampled.logits.empty()) {
      res.logits.assign(sampled.logits.begin() + static_cast<int64_t>(r) * vocab,
                        sampled.logits.begin() + static_cast<int64_t>(r + 1) * vocab);
    }
  }
  return ok_status();
}

}  // namespace loraserve
