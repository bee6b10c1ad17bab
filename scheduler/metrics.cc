#include "scheduler/metrics.h"

#include <algorithm>

namespace loraserve {

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  // Prometheus buckets are `le` (less than or equal): the first bound >= value.
  const size_t i = static_cast<size_t>(
      std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin());
  std::lock_guard<std::mutex> lock(mu_);
  counts_[i] += 1;
  sum_ += value;
  count_ += 1;
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.upper_bounds = bounds_;
  std::lock_guard<std::mutex> lock(mu_);
  s.counts = counts_;
  s.sum = sum_;
  s.count = count_;
  return s;
}

namespace {
// Bounds reach down to a millisecond: the cpu backend's tiny models answer
// in a few ms, and real models on a GPU in tens to hundreds.
std::vector<double> latency_bounds() {
  return {0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75,
          1.0,   2.5,    5.0,   7.5,  10.0, 20.0, 40.0, 80.0};
}
std::vector<double> request_bounds() {
  return {0.005, 0.01, 0.025, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0,
          10.0,  15.0, 20.0,  30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0};
}
}  // namespace

SchedulerHistograms::SchedulerHistograms()
    : time_to_first_token(latency_bounds()),
      inter_token_latency(latency_bounds()),
      e2e_request_latency(request_bounds()),
      queue_time(request_bounds()),
      step_time({0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0}) {}

}  // namespace loraserve
