// The end of a run: the table on stdout and the --json document.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "clients/lora_bench/config.h"
#include "clients/lora_bench/driver.h"
#include "clients/lora_bench/metrics.h"
#include "clients/lora_bench/server_admin.h"

namespace loraserve::bench {

struct Report {
  const BenchConfig* cfg = nullptr;
  RunSummary summary;
  DriverOutcome outcome;
  std::optional<SetupResult> setup;
  std::optional<v1::Stats> stats_before, stats_after;
  int exit_code = kExitOk;
};

// Everything as one JSON document (schema: clients/lora_bench/README.md).
nlohmann::json to_json(const Report& r);

// The human-readable table.
void print_table(const Report& r, std::FILE* out);

}  // namespace loraserve::bench
