// The requests of a run, drawn deterministically from the seed: arrival times
// (Poisson or gamma gaps at --rate), adapter (uniform or power-law over
// --num-adapters), prompt token ids and output length. Or read from a JSONL
// trace. Not thread-safe: the driver's dispatch thread alone calls next().
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "clients/lora_bench/config.h"

namespace loraserve::bench {

struct RequestSpec {
  uint64_t index = 0;        // 0, 1, 2, ... in issue order
  double arrival_s = 0;      // offset from the start of the run (open loop only)
  std::string adapter_id;    // empty = base model
  std::vector<uint32_t> prompt_ids;
  uint32_t output_len = 0;   // max_new_tokens, with ignore_eos
};

class Workload {
 public:
  virtual ~Workload() = default;
  // The next request, or nullopt when the source is exhausted (a trace's end).
  // Arrival times are non-decreasing.
  virtual std::optional<RequestSpec> next() = 0;
};

// The synthetic source from the flags. Separate generators for arrivals,
// adapters and lengths/tokens, so that changing --rate does not change which
// adapters or prompts a run sends.
std::unique_ptr<Workload> make_synthetic_workload(const BenchConfig& cfg);

// Reads cfg.trace (one JSON object per line; blank lines and lines starting
// with '#' skipped). "adapter" is a string id ("" or null = base) or an
// integer i (= adapter-%03d); "prompt_ids" is used as given, else
// "prompt_len" random ids are drawn from the seed. Lines are sorted by
// arrival_s. Returns nullptr and sets *error on a malformed line.
std::unique_ptr<Workload> load_trace_workload(const BenchConfig& cfg, std::string* error);

// Power-law popularity over n items: P(i) ~ 1/(i+1)^alpha (alpha 0 = uniform).
// Exposed for tests.
std::vector<double> power_law_weights(int n, double alpha);

}  // namespace loraserve::bench
