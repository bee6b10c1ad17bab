// The asynchronous driver: issues the workload's requests as streams (gRPC
// Generate over the callback API, one ClientReadReactor per stream; or
// OpenAI HTTP+SSE, openai_call.h), no thread per stream, and collects a
// RequestRecord from each.
//
// Threads: one dispatch thread (the caller of run()) issues calls, reaps
// finished ones into Metrics, prints progress and enforces the bounds; the
// transport's threads run the calls, which touch only their own call and
// hand it back through `finished_` (guarded by mu_). Only the dispatch
// thread deletes calls, so it may cancel any call it has not reaped yet.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_set>
#include <vector>

#include "clients/lora_bench/config.h"
#include "clients/lora_bench/metrics.h"
#include "clients/lora_bench/workload.h"
#include "proto/loraserve.grpc.pb.h"

namespace loraserve::bench {

class Driver;

// One request in flight, whatever the transport. It calls
// Driver::on_finished exactly once, as its last act, after which the driver
// deletes it.
class BenchCall {
 public:
  virtual ~BenchCall() = default;
  virtual void start() = 0;
  // From the dispatch thread; the call still ends through on_finished.
  virtual void cancel() = 0;
  RequestRecord& record() { return record_; }

 protected:
  RequestRecord record_;
};

// Makes the call for one request (not started).
using CallFactory = std::function<BenchCall*(Driver* driver, RequestSpec spec)>;

// Generate streams over `channels`, round robin.
CallFactory grpc_calls(const BenchConfig& cfg,
                       std::vector<std::shared_ptr<grpc::Channel>> channels);

struct DriverOutcome {
  bool all_finished = true;    // false: calls still outstanding after cancel + grace
  bool cancelled_at_drain = false;
  double max_dispatch_lag_ms = 0;  // open loop: latest start behind its arrival time
  Clock::time_point start;
};

class Driver {
 public:
  Driver(const BenchConfig& cfg, CallFactory make_call);
  ~Driver();

  // Runs the workload to the configured bound, then drains; adds every
  // finished request to `metrics`. Always returns (the drain is bounded).
  DriverOutcome run(Workload* workload, Metrics* metrics);

  // Called by a call when it has ended (any thread).
  void on_finished(BenchCall* call);
  // Called by calls as tokens arrive (any thread).
  void add_tokens(uint64_t n) { tokens_.fetch_add(n, std::memory_order_relaxed); }

 private:
  void start_call(RequestSpec spec);
  // Moves finished calls' records into metrics and deletes the calls.
  void reap(Metrics* metrics);
  void cancel_all();

  const BenchConfig& cfg_;
  CallFactory make_call_;

  std::unordered_set<BenchCall*> live_;  // started, not reaped; dispatch thread only
  uint64_t errors_ = 0;                     // dispatch thread only

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<BenchCall*> finished_;  // guarded by mu_

  std::atomic<uint64_t> tokens_{0};
};

}  // namespace loraserve::bench
