#include <cmath>

#include "kernels/rope/rope.h"

namespace loraserve::kernels {

namespace {

constexpr double kPi = 3.14159265358979323846;

// transformers' _compute_llama3_parameters: keep high frequencies, divide low frequencies by
// `factor`, and blend linearly (in 1/wavelength) in between.
double llama3_scale(double inv_freq, const Llama3RopeScaling& s) {
  const double old_len = static_cast<double>(s.original_max_position_embeddings);
  const double low_freq_wavelen = old_len / s.low_freq_factor;
  const double high_freq_wavelen = old_len / s.high_freq_factor;
  const double wavelen = 2.0 * kPi / inv_freq;
  if (wavelen < high_freq_wavelen) return inv_freq;
  if (wavelen > low_freq_wavelen) return inv_freq / s.factor;
  // Only reachable with high_freq_factor == low_freq_factor when both wavelengths coincide;
  // HF would divide by zero there, and either endpoint is the continuous answer.
  if (s.high_freq_factor == s.low_freq_factor) return inv_freq;
  const double smooth =
      (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
  return (1.0 - smooth) * inv_freq / s.factor + smooth * inv_freq;
}

Status validate(const RopeParams& p) {
  if (p.num_tokens < 0) return invalid_argument("rope: num_tokens < 0");
  if (p.head_dim <= 0 || p.head_dim % 2 != 0) {
    return invalid_argument("rope: head_dim must be positive and even");
  }
  if (p.num_q_heads <= 0 || p.num_kv_heads <= 0) {
    return invalid_argument("rope: num_q_heads and num_kv_heads must be > 0");
  }
  if (p.num_tokens == 0) return ok_status();
  if (!p.q || !p.k || !p.positions || !p.inv_freq) {
    return invalid_argument("rope: null q, k, positions or inv_freq");
  }
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    if (p.positions[t] < 0) return invalid_argument("rope: negative position");
  }
  return ok_status();
}

void rotate_heads(float* x, int64_t num_heads, int64_t head_dim, const float* cos_t,
                  const float* sin_t) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < num_heads; ++h) {
    float* v = x + h * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      const float x1 = v[i];
      const float x2 = v[i + half];
      v[i] = x1 * cos_t[i] - x2 * sin_t[i];
      v[i + half] = x2 * cos_t[i] + x1 * sin_t[i];
    }
  }
}

}  // namespace

std::vector<float> rope_inv_freq(int64_t head_dim, double theta, const Llama3RopeScaling* scaling) {
  if (head_dim <= 0 || head_dim % 2 != 0 || !(theta > 0.0)) return {};
  std::vector<float> inv_freq(static_cast<size_t>(head_dim / 2));
  for (int64_t i = 0; i < head_dim / 2; ++i) {
    const double exponent = static_cast<double>(2 * i) / static_cast<double>(head_dim);
    double f = 1.0 / std::pow(theta, exponent);
    if (scaling) f = llama3_scale(f, *scaling);
    inv_freq[static_cast<size_t>(i)] = static_cast<float>(f);
  }
  return inv_freq;
}

Status rope_ref(const RopeParams& p) {
  LS_RETURN_IF_ERROR(validate(p));
  const int64_t half = p.head_dim / 2;
  std::vector<float> cos_t(static_cast<size_t>(half)), sin_t(static_cast<size_t>(half));
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    const float pos = static_cast<float>(p.positions[t]);
    for (int64_t i = 0; i < half; ++i) {
      // fp32 angle and fp32 cos/sin, as HF computes `freqs` and `emb.cos()`.
      const float angle = pos * p.inv_freq[i];
      cos_t[static_cast<size_t>(i)] = std::cos(angle);
      sin_t[static_cast<size_t>(i)] = std::sin(angle);
    }
    rotate_heads(p.q + t * p.num_q_heads * p.head_dim, p.num_q_heads, p.head_dim, cos_t.data(),
                 sin_t.data());
    rotate_heads(p.k + t * p.num_kv_heads * p.head_dim, p.num_kv_heads, p.head_dim, cos_t.data(),
                 sin_t.data());
  }
  return ok_status();
}

}  // namespace loraserve::kernels
