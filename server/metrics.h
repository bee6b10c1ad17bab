// The Prometheus text exposition (format 0.0.4) of GET /metrics: the
// scheduler's gauges, counters and latency histograms under the
// `loraserve_` prefix in base units, plus `loraserve_lora_requests_info`
// in the shape the Gateway API Inference Extension's endpoint picker reads
// (deploy/README.md gives its flags). The figures are the ones GetStats
// reports. Label values are bounded: no per-request or per-tenant labels;
// the adapter lists name only adapters in the batch or queued for it.
#pragma once

#include <string>

#include "scheduler/scheduler.h"
#include "server/tenant_directory.h"

namespace loraserve {

struct MetricsOptions {
  std::string model_name;  // the served model's name, in loraserve_info
  std::string backend;     // cpu | cuda, in loraserve_info
};

// One scrape. Thread-safe; reads snapshots, never waits for a step.
std::string render_prometheus(Scheduler& scheduler, const TenantDirectory& tenants,
                              const MetricsOptions& options);

}  // namespace loraserve
