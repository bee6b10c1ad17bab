// The asynchronous gRPC driver: issues the workload's requests as Generate
// streams over the callback API (one ClientReadReactor per stream, no thread
// per stream) and collects a RequestRecord from each.
//
// Threads: one dispatch thread (the caller of run()) issues calls, reaps
// finished ones into Metrics, prints progress and enforces the bounds; gRPC's
// callback threads run the reactors, which touch only their own call and hand
// it back through `finished_` (guarded by mu_). Only the dispatch thread
// deletes calls, so it may TryCancel any call it has not reaped yet.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <unordered_set>
#include <vector>

#include "clients/lora_bench/config.h"
#include "clients/lora_bench/metrics.h"
#include "clients/lora_bench/workload.h"
#include "proto/loraserve.grpc.pb.h"

namespace loraserve::bench {

class GenerateCall;

struct DriverOutcome {
  bool all_finished = true;    // false: calls still outstanding after cancel + grace
  bool cancelled_at_drain = false;
  double max_dispatch_lag_ms = 0;  // open loop: latest start behind its arrival time
  Clock::time_point start;
};

class Driver {
 public:
  Driver(const BenchConfig& cfg, std::vector<std::shared_ptr<grpc::Channel>> channels);
  ~Driver();

  // Runs the workload to the configured bound, then drains; adds every
  // finished request to `metrics`. Always returns (the drain is bounded).
  DriverOutcome run(Workload* workload, Metrics* metrics);

  // Called by a reactor from its OnDone (any thread).
  void on_finished(GenerateCall* call);
  // Called by reactors as tokens arrive (any thread).
  void add_tokens(uint64_t n) { tokens_.fetch_add(n, std::memory_order_relaxed); }

 private:
  void start_call(RequestSpec spec);
  // Moves finished calls' records into metrics and deletes the calls.
  void reap(Metrics* metrics);
  void cancel_all();

  const BenchConfig& cfg_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<v1::LoraServe::Stub>> stubs_;
  size_t next_stub_ = 0;

  std::unordered_set<GenerateCall*> live_;  // started, not reaped; dispatch thread only
  uint64_t errors_ = 0;                     // dispatch thread only

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<GenerateCall*> finished_;  // guarded by mu_

  std::atomic<uint64_t> tokens_{0};
};

}  // namespace loraserve::bench
