// Latency histograms the scheduler fills as requests move through it, for
// the Prometheus exposition in server/ (and anything else that wants a
// distribution rather than a counter). Plain fixed buckets in seconds.
//
// Thread-safety: observe() is called by the scheduler loop; snapshot() by
// any thread (a scrape). Each histogram has its own leaf mutex, held for a
// few adds, so the loop never waits on a scrape for longer than a copy.
#pragma once

#include <cstdint>
#include <mutex>
#include <vector>

namespace loraserve {

class Histogram {
 public:
  // `upper_bounds` ascending; an implicit +Inf bucket follows the last.
  explicit Histogram(std::vector<double> upper_bounds);

  void observe(double value);

  struct Snapshot {
    std::vector<double> upper_bounds;
    std::vector<uint64_t> counts;  // per bucket (not cumulative); size = bounds + 1 (+Inf)
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const;

 private:
  const std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::vector<uint64_t> counts_;  // guarded by mu_
  double sum_ = 0;                // guarded by mu_
  uint64_t count_ = 0;            // guarded by mu_
};

// Every histogram the scheduler keeps, all in seconds.
struct SchedulerHistograms {
  SchedulerHistograms();
  Histogram time_to_first_token;  // arrival -> first generated token
  Histogram inter_token_latency;  // between consecutive tokens of one request
  Histogram e2e_request_latency;  // arrival -> end, for requests that completed (stop, length)
  Histogram queue_time;           // arrival -> first admitted into the running batch
  Histogram step_time;            // one engine step
};

}  // namespace loraserve
