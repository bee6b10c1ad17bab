#include "clients/lora_bench/report.h"

#include <cstdio>
#include <cstring>

namespace loraserve::bench {
namespace {

nlohmann::json dist_json(const Distribution& d) {
  return {{"count", d.count}, {"mean", d.mean}, {"min", d.min}, {"max", d.max},
          {"p50", d.p50},     {"p90", d.p90},   {"p99", d.p99}};
}

nlohmann::json config_json(const BenchConfig& c) {
  return {{"addr", c.addr},
          {"connections", c.connections},
          {"duration_s", c.duration_s},
          {"num_requests", c.num_requests},
          {"drain_s", c.drain_s},
          {"request_timeout_s", c.request_timeout_s},
          {"mode", c.users > 0 ? "closed" : "open"},
          {"rate", c.rate},
          {"cv", c.cv},
          {"users", c.users},
          {"num_adapters", c.base_only ? 0 : c.num_adapters},
          {"registered_adapters", c.setup_dir.empty() ? 0 : c.num_adapters},
          {"popularity", c.popularity},
          {"alpha", c.alpha},
          {"base_only", c.base_only},
          {"trace", c.trace},
          {"prompt_len", {c.prompt_len.lo, c.prompt_len.hi}},
          {"output_len", {c.output_len.lo, c.output_len.hi}},
          {"vocab", c.vocab},
          {"seed", c.seed},
          {"temperature", c.temperature},
          {"setup_dir", c.setup_dir},
          {"ttft_slo_ms", c.ttft_slo_ms},
          {"itl_slo_ms", c.itl_slo_ms}};
}

// after - before of the server's monotonic counters, as plain numbers.
nlohmann::json stats_delta(const v1::Stats& a, const v1::Stats& b) {
  const auto d = [](uint64_t x, uint64_t y) {
    return static_cast<int64_t>(y) - static_cast<int64_t>(x);
  };
  return {{"requests_completed", d(a.requests_completed(), b.requests_completed())},
          {"requests_cancelled", d(a.requests_cancelled(), b.requests_cancelled())},
          {"requests_failed", d(a.requests_failed(), b.requests_failed())},
          {"tokens_generated", d(a.tokens_generated(), b.tokens_generated())},
          {"preemptions", d(a.preemptions(), b.preemptions())},
          {"steps", d(a.steps(), b.steps())},
          {"swap_ins", d(a.pool().swap_ins(), b.pool().swap_ins())},
          {"evictions", d(a.pool().evictions(), b.pool().evictions())},
          {"bytes_copied", d(a.pool().bytes_copied(), b.pool().bytes_copied())}};
}

void row(std::FILE* out, const char* name, const Distribution& d) {
  if (d.count == 0) {
    std::fprintf(out, "  %-6s %10s\n", name, "-");
    return;
  }
  std::fprintf(out, "  %-6s %10.2f %10.2f %10.2f %10.2f %10.2f %8llu\n", name, d.mean, d.p50,
               d.p90, d.p99, d.max, static_cast<unsigned long long>(d.count));
}

}  // namespace

nlohmann::json to_json(const Report& r) {
  const RunSummary& s = r.summary;
  nlohmann::json j;
  j["tool"] = "lora-bench";
  j["schema_version"] = 1;
  j["config"] = config_json(*r.cfg);
  j["setup"] = r.setup ? nlohmann::json{{"loaded", r.setup->loaded},
                                        {"already_present", r.setup->already_present},
                                        {"seconds", r.setup->seconds}}
                       : nlohmann::json(nullptr);
  j["run"] = {{"window_s", s.window_s},
              {"issued", s.issued},
              {"completed", s.completed},
              {"errors", s.errors},
              {"cancelled_at_drain", s.cancelled_at_drain},
              {"short_outputs", s.short_outputs},
              {"prompt_tokens", s.prompt_tokens},
              {"output_tokens", s.output_tokens},
              {"request_throughput", s.request_throughput},
              {"output_throughput", s.output_throughput},
              {"total_token_throughput", s.total_token_throughput},
              {"max_dispatch_lag_ms", r.outcome.max_dispatch_lag_ms},
              {"all_calls_ended", r.outcome.all_finished}};
  j["errors_by_code"] = s.errors_by_code;
  j["first_error"] = s.first_error;
  j["latency_ms"] = {{"ttft", dist_json(s.ttft_ms)},
                     {"itl", dist_json(s.itl_ms)},
                     {"tpot", dist_json(s.tpot_ms)},
                     {"e2e", dist_json(s.e2e_ms)},
                     {"server_queue", dist_json(s.server_queue_ms)}};
  j["percentile_method"] = "nearest-rank: sorted[ceil(p/100*n)-1]";
  j["cdf_ms"] = {{"percentiles", "p0..p100 in steps of 1"},
                 {"ttft", s.ttft_ms.cdf},
                 {"itl", s.itl_ms.cdf},
                 {"e2e", s.e2e_ms.cdf}};
  j["slo"] = {{"ttft_ms", r.cfg->ttft_slo_ms},
              {"itl_ms", r.cfg->itl_slo_ms},
              {"ttft_attainment", s.slo_ttft},
              {"itl_attainment", s.slo_itl},
              {"request_attainment", s.slo_request},
              {"goodput_rps", s.goodput}};
  j["distinct_adapters_completed"] = s.requests_by_adapter.size();
  j["requests_by_adapter"] = s.requests_by_adapter;
  nlohmann::json server;
  server["before"] = r.stats_before ? nlohmann::json::parse(stats_to_json(*r.stats_before))
                                    : nlohmann::json(nullptr);
  server["after"] = r.stats_after ? nlohmann::json::parse(stats_to_json(*r.stats_after))
                                  : nlohmann::json(nullptr);
  server["delta"] = r.stats_before && r.stats_after
                        ? stats_delta(*r.stats_before, *r.stats_after)
                        : nlohmann::json(nullptr);
  j["server"] = server;
  j["exit_code"] = r.exit_code;
  return j;
}

void print_table(const Report& r, std::FILE* out) {
  const BenchConfig& c = *r.cfg;
  const RunSummary& s = r.summary;
  std::string mode;
  char buf[160];
  if (c.users > 0) {
    std::snprintf(buf, sizeof buf, "closed loop, %d users", c.users);
  } else if (!c.trace.empty()) {
    std::snprintf(buf, sizeof buf, "trace %s", c.trace.c_str());
  } else {
    std::snprintf(buf, sizeof buf, "open loop, %s %.2f req/s", c.cv == 1.0 ? "Poisson" : "gamma",
                  c.rate);
    if (c.cv != 1.0) std::snprintf(buf + strlen(buf), sizeof buf - strlen(buf), " cv %.2f", c.cv);
  }
  mode = buf;
  std::string adapters = "base model";
  if (!c.trace.empty() && !c.base_only) {
    adapters = "adapters from the trace";
  } else if (!c.base_only && c.num_adapters > 0) {
    adapters = std::to_string(c.num_adapters) + " adapters, " + c.popularity;
    if (c.popularity == "powerlaw") adapters += " alpha " + std::to_string(c.alpha).substr(0, 4);
  }
  std::fprintf(out, "lora-bench  %s  %s  %s\n", c.addr.c_str(), mode.c_str(), adapters.c_str());
  if (r.setup) {
    std::fprintf(out, "  setup      %d adapters loaded, %d already present, %.2f s\n",
                 r.setup->loaded, r.setup->already_present, r.setup->seconds);
  }
  std::fprintf(out,
               "  requests   issued %llu  completed %llu  errors %llu  cancelled %llu  "
               "window %.2f s\n",
               static_cast<unsigned long long>(s.issued),
               static_cast<unsigned long long>(s.completed),
               static_cast<unsigned long long>(s.errors),
               static_cast<unsigned long long>(s.cancelled_at_drain), s.window_s);
  std::fprintf(out,
               "  throughput %.2f req/s  output %.1f tok/s  prompt+output %.1f tok/s  "
               "(%llu output tokens)\n",
               s.request_throughput, s.output_throughput, s.total_token_throughput,
               static_cast<unsigned long long>(s.output_tokens));
  std::fprintf(out, "  %-6s %10s %10s %10s %10s %10s %8s\n", "ms", "mean", "p50", "p90", "p99",
               "max", "n");
  row(out, "TTFT", s.ttft_ms);
  row(out, "ITL", s.itl_ms);
  row(out, "TPOT", s.tpot_ms);
  row(out, "E2E", s.e2e_ms);
  std::fprintf(out,
               "  SLO        TTFT <= %.0f ms: %.1f%%  ITL <= %.0f ms: %.1f%%  both (TPOT): %.1f%%  "
               "goodput %.2f req/s\n",
               c.ttft_slo_ms, 100 * s.slo_ttft, c.itl_slo_ms, 100 * s.slo_itl,
               100 * s.slo_request, s.goodput);
  if (!s.errors_by_code.empty()) {
    std::fprintf(out, "  errors    ");
    for (const auto& [code, n] : s.errors_by_code) {
      std::fprintf(out, " %s %llu", code.c_str(), static_cast<unsigned long long>(n));
    }
    std::fprintf(out, "  (first: %s)\n", s.first_error.c_str());
  }
  if (s.short_outputs > 0) {
    std::fprintf(out, "  warning    %llu completed requests got fewer tokens than asked\n",
                 static_cast<unsigned long long>(s.short_outputs));
  }
  if (r.stats_before && r.stats_after) {
    const v1::Stats& a = *r.stats_before;
    const v1::Stats& b = *r.stats_after;
    std::fprintf(out,
                 "  server     completed +%lld  failed +%lld  swap-ins +%lld  evictions +%lld  "
                 "preemptions +%lld  pool %u/%u pages free, %u adapters resident (%s)\n",
                 static_cast<long long>(b.requests_completed() - a.requests_completed()),
                 static_cast<long long>(b.requests_failed() - a.requests_failed()),
                 static_cast<long long>(b.pool().swap_ins() - a.pool().swap_ins()),
                 static_cast<long long>(b.pool().evictions() - a.pool().evictions()),
                 static_cast<long long>(b.preemptions() - a.preemptions()), b.pool().pages_free(),
                 b.pool().pages_total(), b.pool().resident_adapters(), b.backend().c_str());
  }
}

}  // namespace loraserve::bench
