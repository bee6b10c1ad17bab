// Host-only checks of lora-bench's pieces: percentiles, workload determinism
// and distributions, metrics summaries.
#include <gtest/gtest.h>

#include <map>

#include "clients/lora_bench/metrics.h"
#include "clients/lora_bench/workload.h"

namespace loraserve::bench {
namespace {

TEST(LoraBenchPercentile, NearestRank) {
  std::vector<double> s = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  EXPECT_EQ(percentile_sorted(s, 0), 1);
  EXPECT_EQ(percentile_sorted(s, 50), 5);
  EXPECT_EQ(percentile_sorted(s, 90), 9);
  EXPECT_EQ(percentile_sorted(s, 99), 10);
  EXPECT_EQ(percentile_sorted(s, 100), 10);
  EXPECT_EQ(percentile_sorted({}, 50), 0);
  std::vector<double> one = {42};
  Distribution d = summarize(&one);
  EXPECT_EQ(d.p50, 42);
  EXPECT_EQ(d.p99, 42);
  EXPECT_EQ(d.cdf.size(), 101u);
}

BenchConfig config() {
  BenchConfig c;
  c.rate = 50;
  c.num_requests = 1000;
  c.num_adapters = 10;
  c.prompt_len = {4, 8};
  c.output_len = {2, 3};
  c.vocab = 100;
  c.seed = 5;
  return c;
}

TEST(LoraBenchWorkload, SameSeedSameRequests) {
  BenchConfig c = config();
  auto a = make_synthetic_workload(c);
  auto b = make_synthetic_workload(c);
  for (int i = 0; i < 100; ++i) {
    RequestSpec x = *a->next(), y = *b->next();
    EXPECT_EQ(x.arrival_s, y.arrival_s);
    EXPECT_EQ(x.adapter_id, y.adapter_id);
    EXPECT_EQ(x.prompt_ids, y.prompt_ids);
    EXPECT_EQ(x.output_len, y.output_len);
  }
}

TEST(LoraBenchWorkload, RangesRateAndPopularity) {
  BenchConfig c = config();
  c.popularity = "powerlaw";
  c.alpha = 1.5;
  auto w = make_synthetic_workload(c);
  std::map<std::string, int> hits;
  double last = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    RequestSpec r = *w->next();
    ASSERT_GE(r.prompt_ids.size(), 4u);
    ASSERT_LE(r.prompt_ids.size(), 8u);
    ASSERT_GE(r.output_len, 2u);
    ASSERT_LE(r.output_len, 3u);
    for (uint32_t id : r.prompt_ids) ASSERT_LT(id, 100u);
    ASSERT_GE(r.arrival_s, last);
    last = r.arrival_s;
    hits[r.adapter_id] += 1;
  }
  EXPECT_NEAR(last / (n - 1), 1.0 / 50, 0.002);  // mean gap 1/rate
  EXPECT_GT(hits["adapter-000"], hits["adapter-001"]);
  EXPECT_GT(hits["adapter-001"], hits["adapter-009"]);
  // P(0) = 1 / sum_{i=1..10} i^-1.5
  double z = 0;
  for (double x : power_law_weights(10, 1.5)) z += x;
  EXPECT_NEAR(hits["adapter-000"] / double(n), 1.0 / z, 0.02);
}

TEST(LoraBenchWorkload, GammaKeepsTheMeanRate) {
  BenchConfig c = config();
  c.cv = 3;
  auto w = make_synthetic_workload(c);
  double last = 0;
  for (int i = 0; i < 20000; ++i) last = w->next()->arrival_s;
  EXPECT_NEAR(last / 19999, 1.0 / 50, 0.004);
}

TEST(LoraBenchMetrics, CountsAndErrors) {
  Metrics m;
  const Clock::time_point t0 = Clock::now();
  RequestRecord ok;
  ok.start = t0;
  ok.first_token = t0 + std::chrono::milliseconds(10);
  ok.end = t0 + std::chrono::milliseconds(30);
  ok.tokens = 3;
  ok.output_len = 3;
  ok.itl_ms = {10, 10};
  ok.got_final = true;
  m.add(ok);
  RequestRecord bad;
  bad.start = t0;
  bad.end = t0 + std::chrono::milliseconds(1);
  bad.code = grpc::StatusCode::NOT_FOUND;
  m.add(bad);
  RunSummary s = m.summarize({100, 5});
  EXPECT_EQ(s.completed, 1u);
  EXPECT_EQ(s.errors, 1u);
  EXPECT_EQ(s.errors_by_code["NOT_FOUND"], 1u);
  EXPECT_NEAR(s.ttft_ms.p50, 10, 0.01);
  EXPECT_NEAR(s.tpot_ms.p50, 10, 0.01);
  EXPECT_EQ(s.slo_ttft, 0.5);  // the failed request counts as a miss
  EXPECT_EQ(s.slo_itl, 0.0);
  EXPECT_EQ(s.slo_request, 0.0);
}

}  // namespace
}  // namespace loraserve::bench
