// From logits to the next token: log-softmax, then greedy or seeded sampling
// with temperature, top-k and top-p (applied in that order, as Hugging Face
// and vLLM do). The random draw is a pure function of (seed, step), so a
// request's output does not depend on what else is in the batch, and a GPU
// sampler can reproduce the CPU one.
#pragma once

#include <cstdint>

#include "common/status.h"

namespace loraserve::kernels {

struct SamplingConfig {
  float temperature = 0.0f;  // 0 = greedy (argmax; lowest id on ties)
  int32_t top_k = 0;         // 0 = off
  float top_p = 1.0f;        // 1 = off; keep the smallest prefix of sorted probs with mass >= top_p
  uint64_t seed = 0;
};

struct SampleParams {
  const float* logits = nullptr;          // [num_rows, vocab]
  int64_t num_rows = 0;
  int64_t vocab = 0;
  const SamplingConfig* configs = nullptr;  // [num_rows]
  const uint64_t* steps = nullptr;          // [num_rows] decode step of each row's request
  int32_t* out_tokens = nullptr;            // [num_rows]
  float* out_logprobs = nullptr;            // [num_rows] log p(token) under the unmodified model
};

// A row whose logits hold a NaN or an infinity is not sampled: its token is
// kNonFiniteRow and its logprob NaN, so no garbage token can leave the
// sampler (a model's logits are finite; there is no masking stage that
// could put a legitimate -inf there). The engine fails that request alone.
constexpr int32_t kNonFiniteRow = -1;

Status sample_ref(const SampleParams& p);
// The checks sample_ref makes (shapes, pointers, every row's config).
Status validate_sample(const SampleParams& p);

// The cpu-bf16 backend's sampler: sample_ref's results (same tokens; the
// logprob to ~1e-5) with greedy rows done in two SIMD passes over the row
// (finite check + max + first argmax, then the log-sum-exp) instead of a
// log-softmax in double; other rows go through sample_ref. `isa` is a
// CpuIsa (kernels/gemm/gemm_bf16.h) as an int.
Status sample_cpu(const SampleParams& p, int isa);

// A uniform float in [0, 1) from (seed, step): splitmix64 of the mixed pair.
float sampling_uniform(uint64_t seed, uint64_t step);

// Numerically stable log-softmax of one row.
void log_softmax_row(const float* logits, int64_t vocab, float* out);

}  // namespace loraserve::kernels
