#include "clients/lora_bench/metrics.h"

#include <algorithm>
#include <cmath>

namespace loraserve::bench {
namespace {

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

double percentile_sorted(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  const double n = static_cast<double>(sorted.size());
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * n));
  if (rank < 1) rank = 1;
  if (rank > sorted.size()) rank = sorted.size();
  return sorted[rank - 1];
}

Distribution summarize(std::vector<double>* samples) {
  Distribution d;
  std::vector<double>& s = *samples;
  if (s.empty()) return d;
  std::sort(s.begin(), s.end());
  d.count = s.size();
  double sum = 0;
  for (double v : s) sum += v;
  d.mean = sum / static_cast<double>(s.size());
  d.min = s.front();
  d.max = s.back();
  d.p50 = percentile_sorted(s, 50);
  d.p90 = percentile_sorted(s, 90);
  d.p99 = percentile_sorted(s, 99);
  d.cdf.reserve(101);
  for (int p = 0; p <= 100; ++p) d.cdf.push_back(percentile_sorted(s, p));
  return d;
}

void Metrics::add(RequestRecord record) { records_.push_back(std::move(record)); }

RunSummary Metrics::summarize(const SloTargets& slo) const {
  RunSummary r;
  r.issued = records_.size();
  if (records_.empty()) return r;
  Clock::time_point t0 = records_.front().start, t1 = records_.front().end;
  std::vector<double> ttft, itl, e2e, tpot, queue;
  uint64_t meet_ttft = 0, meet_itl = 0, meet_both = 0;
  for (const RequestRecord& rec : records_) {
    t0 = std::min(t0, rec.start);
    t1 = std::max(t1, rec.end);
    r.output_tokens += rec.tokens;
    const bool ok = rec.code == grpc::StatusCode::OK && rec.got_final;
    if (rec.cancelled_at_drain) {
      r.cancelled_at_drain += 1;
      continue;
    }
    if (!ok) {
      r.errors += 1;
      // A stream that ended OK without its final message is a protocol error of its own.
      const std::string name = rec.code == grpc::StatusCode::OK ? "MISSING_FINAL"
                                                                : status_code_name(rec.code);
      r.errors_by_code[name] += 1;
      if (r.first_error.empty()) r.first_error = name + ": " + rec.error_message;
      continue;
    }
    r.completed += 1;
    r.requests_by_adapter[rec.adapter_id] += 1;
    r.prompt_tokens += rec.prompt_len;
    if (rec.tokens < rec.output_len) r.short_outputs += 1;
    const double e2e_ms = ms_between(rec.start, rec.end);
    e2e.push_back(e2e_ms);
    queue.push_back(rec.server_queue_ms);
    double req_ttft = e2e_ms;
    if (rec.tokens > 0) {
      req_ttft = ms_between(rec.start, rec.first_token);
      ttft.push_back(req_ttft);
    }
    for (float g : rec.itl_ms) {
      itl.push_back(g);
      if (g <= slo.itl_ms) meet_itl += 1;
    }
    double req_tpot = 0;
    if (rec.tokens > 1) {
      req_tpot = (e2e_ms - req_ttft) / static_cast<double>(rec.tokens - 1);
      tpot.push_back(req_tpot);
    }
    const bool ttft_ok = req_ttft <= slo.ttft_ms;
    if (ttft_ok) meet_ttft += 1;
    if (ttft_ok && req_tpot <= slo.itl_ms) meet_both += 1;
  }
  r.window_s = std::chrono::duration<double>(t1 - t0).count();
  if (r.window_s > 0) {
    r.request_throughput = static_cast<double>(r.completed) / r.window_s;
    r.output_throughput = static_cast<double>(r.output_tokens) / r.window_s;
    r.total_token_throughput =
        static_cast<double>(r.output_tokens + r.prompt_tokens) / r.window_s;
    r.goodput = static_cast<double>(meet_both) / r.window_s;
  }
  // Attainment is over every request that ended: one the server refused or
  // aborted (an SLO early abort, a deadline) missed its target.
  const uint64_t ended = r.completed + r.errors;
  if (ended > 0) {
    r.slo_ttft = static_cast<double>(meet_ttft) / static_cast<double>(ended);
    r.slo_request = static_cast<double>(meet_both) / static_cast<double>(ended);
  }
  if (!itl.empty()) r.slo_itl = static_cast<double>(meet_itl) / static_cast<double>(itl.size());
  r.ttft_ms = bench::summarize(&ttft);
  r.itl_ms = bench::summarize(&itl);
  r.e2e_ms = bench::summarize(&e2e);
  r.tpot_ms = bench::summarize(&tpot);
  r.server_queue_ms = bench::summarize(&queue);
  return r;
}

}  // namespace loraserve::bench
