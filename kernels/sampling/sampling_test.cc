#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>
#include <vector>

#include "kernels/sampling/sampling.h"

namespace loraserve::kernels {
namespace {

SamplingConfig config(float temperature, int32_t top_k = 0, float top_p = 1.0f,
                      uint64_t seed = 1234) {
  SamplingConfig c;
  c.temperature = temperature;
  c.top_k = top_k;
  c.top_p = top_p;
  c.seed = seed;
  return c;
}

struct Draw {
  int32_t token = -1;
  float logprob = 0.0f;
};

Draw sample_one(const std::vector<float>& logits, const SamplingConfig& c, uint64_t step) {
  Draw d;
  SampleParams p;
  p.logits = logits.data();
  p.num_rows = 1;
  p.vocab = static_cast<int64_t>(logits.size());
  p.configs = &c;
  p.steps = &step;
  p.out_tokens = &d.token;
  p.out_logprobs = &d.logprob;
  EXPECT_TRUE(sample_ref(p).ok());
  return d;
}

std::vector<double> naive_softmax(const std::vector<float>& logits, double temperature) {
  std::vector<double> p(logits.size());
  double z = 0.0;
  for (size_t i = 0; i < logits.size(); ++i) z += (p[i] = std::exp(logits[i] / temperature));
  for (double& x : p) x /= z;
  return p;
}

std::vector<double> frequencies(const std::vector<float>& logits, const SamplingConfig& c,
                                int steps) {
  std::vector<double> f(logits.size(), 0.0);
  for (int s = 0; s < steps; ++s) f[sample_one(logits, c, s).token] += 1.0 / steps;
  return f;
}

TEST(Sampling, GreedyTakesArgmaxAndLowestIdOnTies) {
  EXPECT_EQ(sample_one({0.5f, 3.0f, -1.0f, 2.0f}, config(0.0f), 0).token, 1);
  EXPECT_EQ(sample_one({1.0f, 5.0f, 5.0f, 2.0f}, config(0.0f), 0).token, 1);
  EXPECT_EQ(sample_one({7.0f, 7.0f, 7.0f}, config(0.0f), 9).token, 0);
}

TEST(Sampling, LogprobIsLogSoftmaxOfRawLogits) {
  const std::vector<float> logits = {1.0f, 2.5f, -0.5f, 0.25f, 2.0f};
  // Hand check for token 1: log_softmax = 2.5 - log(e^1 + e^2.5 + e^-0.5 + e^0.25 + e^2)
  //   = 2.5 - log(2.7182818 + 12.1824940 + 0.6065307 + 1.2840254 + 7.3890561)
  //   = 2.5 - log(24.1803880) = 2.5 - 3.1855419 = -0.6855419
  EXPECT_NEAR(sample_one(logits, config(0.0f), 0).logprob, -0.6855419f, 1e-6);
  const std::vector<double> p = naive_softmax(logits, 1.0);
  for (const SamplingConfig& c : {config(0.7f), config(2.0f, 3), config(1.3f, 0, 0.6f)}) {
    for (uint64_t step = 0; step < 50; ++step) {
      const Draw d = sample_one(logits, c, step);
      EXPECT_NEAR(d.logprob, std::log(p[d.token]), 1e-6) << "temperature " << c.temperature;
    }
  }
}

TEST(Sampling, LogSoftmaxRowIsStableAndMatchesNaive) {
  const std::vector<float> logits = {1000.0f, 1001.0f, 999.0f};
  std::vector<float> out(3);
  log_softmax_row(logits.data(), 3, out.data());
  // Shifted by 1000: {0, 1, -1} - log(1 + e + e^-1) = {0, 1, -1} - log(4.0861613) = - 1.4076059
  EXPECT_NEAR(out[0], -1.4076059f, 1e-5);
  EXPECT_NEAR(out[1], -0.4076059f, 1e-5);
  EXPECT_NEAR(out[2], -2.4076059f, 1e-5);
}

TEST(Sampling, TopKOneIsGreedyAtAnyTemperature) {
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0.0f, 3.0f);
  std::vector<float> logits(50);
  for (float& x : logits) x = d(rng);
  const int32_t greedy = sample_one(logits, config(0.0f), 0).token;
  for (float t : {0.05f, 1.0f, 10.0f, 1000.0f}) {
    for (uint64_t step = 0; step < 100; ++step) {
      EXPECT_EQ(sample_one(logits, config(t, 1), step).token, greedy) << t;
    }
  }
}

TEST(Sampling, DeterministicInSeedAndStepAndVariesAcrossSteps) {
  const std::vector<float> flat(8, 0.0f);
  std::set<int32_t> seen;
  for (uint64_t step = 0; step < 64; ++step) {
    const int32_t a = sample_one(flat, config(1.0f, 0, 1.0f, 42), step).token;
    EXPECT_EQ(sample_one(flat, config(1.0f, 0, 1.0f, 42), step).token, a);
    seen.insert(a);
  }
  EXPECT_GE(seen.size(), 6u) << "64 draws from a uniform 8-token vocab should hit most tokens";
  int differ = 0;
  for (uint64_t step = 0; step < 64; ++step) {
    differ += sample_one(flat, config(1.0f, 0, 1.0f, 42), step).token !=
              sample_one(flat, config(1.0f, 0, 1.0f, 43), step).token;
  }
  EXPECT_GT(differ, 32) << "another seed gives another stream";
}

TEST(Sampling, UniformIsInUnitIntervalAndCentred) {
  double sum = 0.0;
  for (uint64_t s = 0; s < 10000; ++s) {
    const float u = sampling_uniform(7, s);
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    sum += u;
  }
  EXPECT_NEAR(sum / 10000, 0.5, 0.01);
  EXPECT_EQ(sampling_uniform(7, 3), sampling_uniform(7, 3));
  EXPECT_NE(sampling_uniform(7, 3), sampling_uniform(8, 3));
}

TEST(Sampling, UniformIsTheDocumentedSplitmixHash) {
  // splitmix64(x): z = x + 0x9E3779B97F4A7C15; z = (z ^ z>>30) * 0xBF58476D1CE4E5B9;
  // z = (z ^ z>>27) * 0x94D049BB133111EB; z ^ z>>31. u = (splitmix64(splitmix64(seed) ^ step)
  // >> 40) / 2^24. Values from an independent Python evaluation of that formula:
  //   (0, 0)                -> 0xa706dd2f4d197e6f >> 40 = 10946269 -> 0.65244847536087036
  //   (42, 7)               -> 0x16062d6c1339e500 >> 40 = 1443373  -> 0.08603173494338989
  //   (2^64 - 1, 123456789) -> 0xf101957ca4197c3f >> 40 = 15794581 -> 0.94143038988113403
  // A GPU sampler has to produce exactly these.
  EXPECT_EQ(sampling_uniform(0, 0), 10946269.0f / 16777216.0f);
  EXPECT_EQ(sampling_uniform(42, 7), 1443373.0f / 16777216.0f);
  EXPECT_EQ(sampling_uniform(~0ull, 123456789), 15794581.0f / 16777216.0f);
}

TEST(Sampling, InverseCdfWalksTokensInDescendingProbability) {
  // probs by id {0.15, 0.5, 0.05, 0.3}: the walk visits ids 1, 3, 0, 2 with cumulative mass
  // 0.5, 0.8, 0.95, 1.0, so u < 0.5 -> 1, u < 0.8 -> 3, u < 0.95 -> 0, else 2.
  const std::vector<float> logits = {std::log(0.15f), std::log(0.5f), std::log(0.05f),
                                     std::log(0.3f)};
  for (uint64_t step = 0; step < 300; ++step) {
    const double u = sampling_uniform(17, step);
    if (std::fabs(u - 0.5) < 1e-5 || std::fabs(u - 0.8) < 1e-5 || std::fabs(u - 0.95) < 1e-5) {
      continue;  // too close to a boundary for fp32 logits to decide
    }
    const int32_t want = u < 0.5 ? 1 : u < 0.8 ? 3 : u < 0.95 ? 0 : 2;
    EXPECT_EQ(sample_one(logits, config(1.0f, 0, 1.0f, 17), step).token, want) << "u=" << u;
  }
}

TEST(Sampling, TinyTopPIsArgmax) {
  const std::vector<float> logits = {0.1f, 0.3f, 0.2f, 0.29f};
  for (uint64_t step = 0; step < 200; ++step) {
    EXPECT_EQ(sample_one(logits, config(1.0f, 0, 1e-6f), step).token, 1);
  }
}

TEST(Sampling, FrequenciesMatchTemperedSoftmax) {
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f};
  const float t = 0.7f;
  const std::vector<double> want = naive_softmax(logits, t);
  const std::vector<double> got = frequencies(logits, config(t, 0, 1.0f, 99), 20000);
  for (size_t i = 0; i < want.size(); ++i) {
    // Standard error is at most sqrt(0.25 / 20000) = 0.0035; 0.03 is the loose bound,
    // 0.012 (about 3.5 sigma) the one that catches a wrong temperature.
    EXPECT_NEAR(got[i], want[i], 0.012) << "token " << i;
  }
}

TEST(Sampling, TopPKeepsTheSmallestPrefixAndRenormalises) {
  // probs {0.5, 0.3, 0.15, 0.05}; top_p 0.7 keeps {0, 1} (0.5 < 0.7 <= 0.8), renormalised to
  // {0.5 / 0.8, 0.3 / 0.8} = {0.625, 0.375}.
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f),
                                     std::log(0.05f)};
  const std::vector<double> got = frequencies(logits, config(1.0f, 0, 0.7f, 5), 20000);
  EXPECT_EQ(got[2], 0.0);
  EXPECT_EQ(got[3], 0.0);
  EXPECT_NEAR(got[0], 0.625, 0.012);
  EXPECT_NEAR(got[1], 0.375, 0.012);
}

TEST(Sampling, TopKTwoNeverLeavesTheTwoLargest) {
  const std::vector<float> logits = {0.1f, 3.0f, 2.9f, 0.2f, 2.8f};
  // A high temperature flattens the rest, so any leak past top-k would show.
  const std::vector<double> got = frequencies(logits, config(5.0f, 2, 1.0f, 8), 4000);
  EXPECT_EQ(got[0] + got[3] + got[4], 0.0);
  EXPECT_GT(got[1], 0.4);
  EXPECT_GT(got[2], 0.4);
}

TEST(Sampling, TopKBoundaryTiesKeepLowestIds) {
  const std::vector<float> logits = {1.0f, 2.0f, 2.0f, 2.0f};
  const std::vector<double> got = frequencies(logits, config(1.0f, 2, 1.0f, 3), 2000);
  EXPECT_EQ(got[0] + got[3], 0.0);
  EXPECT_GT(got[1], 0.4);
  EXPECT_GT(got[2], 0.4);
}

TEST(Sampling, BatchRowsUseTheirOwnConfigs) {
  const std::vector<float> logits = {0.0f, 1.0f, 0.0f,   // row 0: greedy -> 1
                                     5.0f, 0.0f, 5.0f};  // row 1: top_k 1, tie -> 0
  const SamplingConfig cfg[2] = {config(0.0f), config(3.0f, 1)};
  const uint64_t steps[2] = {4, 5};
  int32_t tokens[2] = {-1, -1};
  float logprobs[2];
  SampleParams p{logits.data(), 2, 3, cfg, steps, tokens, logprobs};
  ASSERT_TRUE(sample_ref(p).ok());
  EXPECT_EQ(tokens[0], 1);
  EXPECT_EQ(tokens[1], 0);
}

TEST(Sampling, RejectsBadConfigs) {
  const std::vector<float> logits = {0.0f, 1.0f};
  const uint64_t step = 0;
  int32_t token;
  float logprob;
  for (const SamplingConfig& c : {config(-1.0f), config(1.0f, -1), config(1.0f, 0, 0.0f),
                                  config(1.0f, 0, 1.5f), config(NAN)}) {
    SampleParams p{logits.data(), 1, 2, &c, &step, &token, &logprob};
    EXPECT_EQ(sample_ref(p).code(), StatusCode::kInvalidArgument);
  }
  const SamplingConfig c = config(0.0f);
  SampleParams p{logits.data(), 1, 2, &c, nullptr, &token, &logprob};
  EXPECT_EQ(sample_ref(p).code(), StatusCode::kInvalidArgument) << "null steps";
}

TEST(Sampling, NonFiniteRowsAreNotSampledAndOtherRowsAreUntouched) {
  // Four rows: clean, a NaN, +inf (which argmax would happily pick), -inf;
  // greedy and seeded sampling alike. Only the clean row draws a token.
  const int64_t vocab = 5;
  std::vector<float> logits = {0.1f, 2.0f, -1.0f, 0.5f, 0.0f,   // clean: argmax 1
                               0.1f, 2.0f, NAN,   0.5f, 0.0f,   // NaN
                               0.1f, 2.0f, -1.0f, INFINITY, 0.0f,
                               -INFINITY, 2.0f, -1.0f, 0.5f, 0.0f};
  for (float temperature : {0.0f, 0.8f}) {
    std::vector<SamplingConfig> configs(4, config(temperature));
    std::vector<uint64_t> steps(4, 3);
    std::vector<int32_t> tokens(4, 99);
    std::vector<float> logprobs(4, 99.0f);
    SampleParams p;
    p.logits = logits.data();
    p.num_rows = 4;
    p.vocab = vocab;
    p.configs = configs.data();
    p.steps = steps.data();
    p.out_tokens = tokens.data();
    p.out_logprobs = logprobs.data();
    ASSERT_TRUE(sample_ref(p).ok());
    const std::vector<float> row0(logits.begin(), logits.begin() + vocab);
    const Draw alone = sample_one(row0, configs[0], 3);
    EXPECT_EQ(tokens[0], alone.token);
    EXPECT_EQ(logprobs[0], alone.logprob);
    if (temperature == 0.0f) {
      EXPECT_EQ(tokens[0], 1);
    }
    for (int r = 1; r < 4; ++r) {
      EXPECT_EQ(tokens[r], kNonFiniteRow) << "row " << r;
      EXPECT_TRUE(std::isnan(logprobs[r])) << "row " << r;
    }
  }
}

}  // namespace
}  // namespace loraserve::kernels
