#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/sampling/sampling.h"

namespace loraserve::kernels {

namespace {

uint64_t splitmix64(uint64_t x) {
  uint64_t z = x + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

Status validate_config(const SamplingConfig& c, int64_t row) {
  const std::string where = "sample: row " + std::to_string(row) + ": ";
  if (!(c.temperature >= 0.0f) || !std::isfinite(c.temperature)) {
    return invalid_argument(where + "temperature must be finite and >= 0");
  }
  if (c.top_k < 0) return invalid_argument(where + "top_k must be >= 0");
  if (!(c.top_p > 0.0f && c.top_p <= 1.0f))
    return invalid_argument(where + "top_p must be in (0, 1]");
  return ok_status();
}


// Lowest id wins ties, so greedy decoding is deterministic across backends.
int32_t argmax(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (x[i] > x[best]) best = i;
  }
  return static_cast<int32_t>(best);
}

// Token ids ordered by descending scaled logit, ties by lower id; only the first `keep` are
// guaranteed sorted (that is all top-k needs).
std::vector<int32_t> order_by_logit(const std::vector<double>& scaled, int64_t keep) {
  std::vector<int32_t> ids(scaled.size());
  std::iota(ids.begin(), ids.end(), 0);
  auto before = [&](int32_t a, int32_t b) {
    return scaled[a] > scaled[b] || (scaled[a] == scaled[b] && a < b);
  };
  std::partial_sort(ids.begin(), ids.begin() + keep, ids.end(), before);
  ids.resize(static_cast<size_t>(keep));
  return ids;
}

// Softmax over the kept tokens (already in descending order), then the top-p cut: the smallest
// prefix whose mass reaches top_p, never empty.
std::vector<double> kept_probs(const std::vector<double>& scaled, const std::vector<int32_t>& ids,
                               float top_p) {
  std::vector<double> probs(ids.size());
  const double max_logit = scaled[ids[0]];
  double total = 0.0;
  for (size_t i = 0; i < ids.size(); ++i) {
    probs[i] = std::exp(scaled[ids[i]] - max_logit);
    total += probs[i];
  }
  double mass = 0.0;
  size_t n = 0;
  while (n < probs.size()) {
    probs[n] /= total;
    mass += probs[n++];
    if (mass >= top_p) break;
  }
  probs.resize(n);
  return probs;
}

int32_t sample_row(const float* logits, int64_t vocab, const SamplingConfig& c, uint64_t step) {
  if (c.temperature == 0.0f) return argmax(logits, vocab);
  std::vector<double> scaled(static_cast<size_t>(vocab));
  const double inv_t = 1.0 / static_cast<double>(c.temperature);
  for (int64_t i = 0; i < vocab; ++i) scaled[i] = static_cast<double>(logits[i]) * inv_t;
  const int64_t keep = (c.top_k > 0 && c.top_k < vocab) ? c.top_k : vocab;
  const std::vector<int32_t> ids = order_by_logit(scaled, keep);
  const std::vector<double> probs = kept_probs(scaled, ids, c.top_p);
  // Inverse CDF over the renormalised prefix, in descending-probability order.
  const double total = std::accumulate(probs.begin(), probs.end(), 0.0);
  const double target = static_cast<double>(sampling_uniform(c.seed, step)) * total;
  double cdf = 0.0;
  for (size_t i = 0; i < probs.size(); ++i) {
    cdf += probs[i];
    if (target < cdf) return ids[i];
  }
  return ids[probs.size() - 1];  // rounding left target at the very top of the CDF
}

}  // namespace

// splitmix64(splitmix64(seed) ^ step); the top 24 bits become a float so every value is exact
// and strictly below 1. A GPU sampler must compute exactly this to reproduce CPU draws.
float sampling_uniform(uint64_t seed, uint64_t step) {
  const uint64_t h = splitmix64(splitmix64(seed) ^ step);
  return static_cast<float>(h >> 40) * (1.0f / 16777216.0f);
}

void log_softmax_row(const float* logits, int64_t vocab, float* out) {
  if (!logits || !out || vocab <= 0) return;
  const float max_logit = *std::max_element(logits, logits + vocab);
  double sum = 0.0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - max_logit);
  const double log_z = static_cast<double>(max_logit) + std::log(sum);
  for (int64_t i = 0; i < vocab; ++i) out[i] = static_cast<float>(logits[i] - log_z);
}

Status validate_sample(const SampleParams& p) {
  if (p.num_rows < 0) return invalid_argument("sample: num_rows < 0");
  if (p.vocab <= 0) return invalid_argument("sample: vocab must be > 0");
  if (p.num_rows == 0) return ok_status();
  if (!p.logits || !p.configs || !p.steps || !p.out_tokens) {
    return invalid_argument("sample: null logits, configs, steps or out_tokens");
  }
  for (int64_t r = 0; r < p.num_rows; ++r) LS_RETURN_IF_ERROR(validate_config(p.configs[r], r));
  return ok_status();
}

Status sample_ref(const SampleParams& p) {
  LS_RETURN_IF_ERROR(validate_sample(p));
  std::vector<float> logprobs(static_cast<size_t>(p.vocab));
  for (int64_t r = 0; r < p.num_rows; ++r) {
    const float* row = p.logits + r * p.vocab;
    if (!std::all_of(row, row + p.vocab, [](float x) { return std::isfinite(x); })) {
      p.out_tokens[r] = kNonFiniteRow;
      if (p.out_logprobs) p.out_logprobs[r] = std::nanf("");
      continue;
    }
    const int32_t token = sample_row(row, p.vocab, p.configs[r], p.steps[r]);
    p.out_tokens[r] = token;
    // The reported logprob is the model's, before temperature/top-k/top-p reshaped the draw.
    if (p.out_logprobs) {
      log_softmax_row(row, p.vocab, logprobs.data());
      p.out_logprobs[r] = logprobs[static_cast<size_t>(token)];
    }
  }
  return ok_status();
}

}  // namespace loraserve::kernels
