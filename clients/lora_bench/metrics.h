// What one request measured, and the run's summary of all of them.
//
// Definitions (all client-side, from the moment the call is started):
//   TTFT     first message carrying >= 1 token.
//   ITL      each later message that carries k >= 1 tokens, arriving d ms after
//            the previous token-carrying message, contributes k gaps of d/k ms
//            (the server streams one token per step, so k is normally 1).
//   E2E      call start to the final status.
//   TPOT     per request: (E2E - TTFT) / (tokens - 1), used for request-level SLOs.
// Percentiles use the nearest-rank method: p-th = the smallest sample s such
// that at least p% of the samples are <= s (sorted[ceil(p/100 * n) - 1]); it
// always returns a sample and p50 <= p90 <= p99 holds by construction.
#pragma once

#include <grpcpp/grpcpp.h>

#include "clients/common/grpc_util.h"

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace loraserve::bench {

using Clock = std::chrono::steady_clock;

struct RequestRecord {
  uint64_t index = 0;
  std::string adapter_id;
  uint32_t prompt_len = 0;
  uint32_t output_len = 0;        // asked for (max_new_tokens)
  Clock::time_point start;
  Clock::time_point first_token;  // valid when tokens > 0
  Clock::time_point end;
  uint32_t tokens = 0;            // tokens received
  std::vector<float> itl_ms;      // one entry per gap
  grpc::StatusCode code = grpc::StatusCode::OK;
  std::string error_message;
  bool cancelled_at_drain = false;  // we cancelled it after --drain-s
  bool got_final = false;           // saw the message with final = true
  uint32_t completion_tokens = 0;   // from the server's final usage
  double server_ttft_ms = 0;        // from the server's final timings
  double server_queue_ms = 0;
};

struct Distribution {
  uint64_t count = 0;
  double mean = 0, min = 0, max = 0, p50 = 0, p90 = 0, p99 = 0;
  std::vector<double> cdf;  // 101 nearest-rank percentiles p0..p100 (for plots); empty if count 0
};

// Nearest-rank percentile of sorted samples (p in [0, 100]); 0 when empty.
double percentile_sorted(const std::vector<double>& sorted, double p);
// Sorts `samples` in place and summarises them.
Distribution summarize(std::vector<double>* samples);

struct SloTargets {
  double ttft_ms = 0;
  double itl_ms = 0;
};

struct RunSummary {
  double window_s = 0;          // first call start to last call end
  uint64_t issued = 0;
  uint64_t completed = 0;       // status OK with the final message
  uint64_t errors = 0;          // non-OK statuses we did not cause
  uint64_t cancelled_at_drain = 0;
  uint64_t short_outputs = 0;   // completed with fewer tokens than asked
  std::map<std::string, uint64_t> errors_by_code;  // "NOT_FOUND" -> 3
  std::string first_error;      // one example message
  uint64_t prompt_tokens = 0;   // of completed requests
  uint64_t output_tokens = 0;   // received, over all requests
  double request_throughput = 0;  // completed / window
  double output_throughput = 0;   // output tokens / window
  double total_token_throughput = 0;  // (prompt tokens of completed + output tokens) / window
  Distribution ttft_ms, itl_ms, e2e_ms, tpot_ms, server_queue_ms;
  // SLO attainment, fractions in [0, 1] over completed requests (ITL: over gaps).
  double slo_ttft = 0;      // share of ended requests with TTFT <= target (errors miss)
  double slo_itl = 0;       // gaps <= target
  double slo_request = 0;   // requests with TTFT <= target and TPOT <= ITL target
  double goodput = 0;       // requests meeting both per second of window
  std::map<std::string, uint64_t> requests_by_adapter;  // completed, "" = base
};

// Accumulates records as they finish (dispatch thread only) and summarises.
class Metrics {
 public:
  void add(RequestRecord record);
  RunSummary summarize(const SloTargets& slo) const;
  uint64_t finished() const { return records_.size(); }

 private:
  std::vector<RequestRecord> records_;
};

using clients::status_code_name;  // "NOT_FOUND" for grpc::StatusCode::NOT_FOUND

}  // namespace loraserve::bench
