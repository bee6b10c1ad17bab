// The Llama-family forward pass over one step's flattened token batch,
// written once against Backend. Per layer:
//   x = rmsnorm(h); q,k,v = x W^T (+ bias: Qwen2) (+ LoRA);
//   (Qwen3: q, k = per-head rmsnorm(q, k)); rope; append K/V to the pages;
//   attn = causal GQA attention; o = attn Wo^T (+ LoRA); h += o;
//   x = rmsnorm(h); g,u = x W^T (+ LoRA); m = (silu(g) * u) Wd^T (+ LoRA); h += m
// then the final norm and lm_head on the rows that sample.
#include "engine/engine.h"

namespace loraserve {

Status Engine::forward(const std::vector<AdapterRun>& runs, int64_t num_tokens,
                       int64_t num_samples, bool want_logits, SampleResult* sampled) {
  Backend& b = *backend_;
  const float eps = static_cast<float>(config_.rms_norm_eps);
  const int64_t n = num_tokens;
  Tensor h = act_.residual.first_rows(n);
  Tensor x = act_.x.first_rows(n);
  Tensor q = act_.q.first_rows(n);
  Tensor k = act_.k.first_rows(n);
  Tensor v = act_.v.first_rows(n);
  Tensor attn = act_.attn.first_rows(n);
  Tensor o = act_.o.first_rows(n);
  Tensor gate = act_.gate.first_rows(n);
  Tensor up = act_.up.first_rows(n);
  Tensor mlp_act = act_.act.first_rows(n);
  Tensor mlp_out = act_.mlp_out.first_rows(n);
  Tensor scratch = act_.lora_scratch.first_rows(n);
  std::vector<LoraSegmentRef> segs;

  // A projection (with its bias, if the layer has one) followed by its LoRA
  // delta for the segments that adapt it: PEFT adds the delta to the output
  // of the biased base layer.
  auto project = [&](const Tensor& in, const Tensor& w, Tensor out, int64_t layer, LoraModule m,
                     const Tensor& bias = Tensor{}) -> Status {
    if (bias.data != nullptr) {
      LS_RETURN_IF_ERROR(b.linear_bias(in, w, bias, out));
    } else {
      LS_RETURN_IF_ERROR(b.linear(in, w, out));
    }
    lora_segments(runs, layer, m, &segs);
    if (segs.empty()) return ok_status();
    return b.lora(in, out, segs, scratch);
  };

  LS_RETURN_IF_ERROR(b.embedding(embed_, h));
  for (int64_t l = 0; l < static_cast<int64_t>(layers_.size()); ++l) {
    const LayerWeights& w = layers_[l];
    if (l == 0) {
      LS_RETURN_IF_ERROR(b.rmsnorm(h, w.input_norm, eps, x));
    } else {
      LS_RETURN_IF_ERROR(b.add_rmsnorm(h, mlp_out, w.input_norm, eps, x));
    }
    LS_RETURN_IF_ERROR(project(x, w.q, q, l, LoraModule::kQ, w.q_bias));
    LS_RETURN_IF_ERROR(project(x, w.k, k, l, LoraModule::kK, w.k_bias));
    LS_RETURN_IF_ERROR(project(x, w.v, v, l, LoraModule::kV, w.v_bias));
    if (w.q_norm.data != nullptr) {
      LS_RETURN_IF_ERROR(b.qk_norm(q, k, w.q_norm, w.k_norm, eps));
    }
    LS_RETURN_IF_ERROR(b.rope(q, k));
    LS_RETURN_IF_ERROR(b.kv_append(static_cast<int32_t>(l), k, v));
    LS_RETURN_IF_ERROR(b.attention(static_cast<int32_t>(l), q, attn));
    LS_RETURN_IF_ERROR(project(attn, w.o, o, l, LoraModule::kO));
    LS_RETURN_IF_ERROR(b.add_rmsnorm(h, o, w.post_norm, eps, x));
    LS_RETURN_IF_ERROR(project(x, w.gate, gate, l, LoraModule::kGate));
    LS_RETURN_IF_ERROR(project(x, w.up, up, l, LoraModule::kUp));
    LS_RETURN_IF_ERROR(b.silu_mul(gate, up, mlp_act));
    LS_RETURN_IF_ERROR(project(mlp_act, w.down, mlp_out, l, LoraModule::kDown));
  }
  LS_RETURN_IF_ERROR(b.add_rmsnorm(h, mlp_out, final_norm_, eps, x));
  if (num_samples == 0) return ok_status();
  Tensor rows = act_.sample_x.first_rows(num_samples);
  Tensor logits = act_.logits.first_rows(num_samples);
  LS_RETURN_IF_ERROR(b.gather_sample_rows(x, rows));
  LS_RETURN_IF_ERROR(b.linear(rows, lm_head_, logits));
  return b.sample(logits, want_logits, sampled);
}

}  // namespace loraserve
