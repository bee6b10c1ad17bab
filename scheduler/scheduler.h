// Scheduler: iteration-level continuous batching over one Engine.
//
// A single thread (the step loop) owns the engine's sequences. Each
// iteration it drops cancelled requests (freeing their pages at once),
// admits waiting requests by policy and memory (KV pages for the context
// plus the adapter's pages if it is not resident), builds one batch of every
// running request's decode token plus prefill chunks under a token budget
// (chunked prefill), runs the step, streams the new tokens, and finishes
// requests on max tokens, stop tokens or EOS. When the KV cache runs out the
// policy's victim is preempted (its pages freed; it recomputes later).
//
// Threading: submit(), the adapter admin calls and stats() may be called
// from any thread. `mu_` guards the incoming queue, counters and in-flight
// counts (in_flight_ under its own leaf lock); `engine_mu_` serialises engine use between the loop and admin
// calls. Lock order: mu_ before engine_mu_; the loop never takes mu_ while
// holding engine_mu_.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "engine/engine.h"
#include "checkpoint/lora_adapter.h"
#include "scheduler/metrics.h"
#include "scheduler/policy.h"
#include "scheduler/request.h"

namespace loraserve {

struct SchedulerOptions {
  int32_t max_batch_tokens = 512;  // tokens per step (decode tokens + prefill chunks)
  int32_t max_running = 64;        // sequences in the running batch
  int32_t max_queue = 1024;        // waiting requests before RESOURCE_EXHAUSTED
  int32_t default_max_new_tokens = 16;
  int32_t max_new_tokens_limit = 4096;
  std::string policy = "fcfs";      // fcfs | vtc
  // Abort (DEADLINE_EXCEEDED) waiting requests that can no longer produce
  // their first token within this many ms of arrival; 0 = off.
  double ttft_slo_ms = 0;
};

struct SchedulerStats {
  int32_t waiting = 0;
  int32_t running = 0;
  int32_t last_batch_tokens = 0;
  int32_t last_batch_requests = 0;
  double tokens_per_second = 0;
  uint64_t completed = 0;
  uint64_t cancelled = 0;
  uint64_t failed = 0;
  uint64_t non_finite = 0;         // of `failed`: logits not finite (NaN/inf), see run_step
  uint64_t tokens_generated = 0;
  uint64_t preemptions = 0;
  uint64_t steps = 0;
  uint64_t aborted = 0;            // deadline or TTFT-SLO aborts
  // Breakdowns of the counts above, for the Prometheus exposition.
  uint64_t finished_stop = 0;      // completed by EOS, a stop token or a stop string
  uint64_t finished_length = 0;    // completed by max_new_tokens
  uint64_t aborted_ttft_slo = 0;   // of `aborted`: the TTFT SLO (the rest: deadlines)
  uint64_t cancelled_shutdown = 0; // of `cancelled`: the server stopping (the rest: clients)
  uint64_t prompt_tokens = 0;      // prompt tokens of requests that ended
  double step_ms_ewma = 0;
  std::map<std::string, double> tenant_counters;  // the policy's (vtc)
  EngineStats engine;
  // Adapter ids ("" = base model excluded) of the requests in the running
  // batch and of those waiting for it, each sorted and distinct.
  std::vector<std::string> running_adapters;
  std::vector<std::string> waiting_adapters;
};

struct AdapterSummary {
  std::string id;
  int32_t rank = 0;
  std::vector<std::string> target_modules;
  uint64_t bytes = 0;
  bool resident = false;
  int32_t in_flight = 0;
};

class Scheduler {
 public:
  // `engine` must outlive the scheduler. INVALID_ARGUMENT for an unknown policy.
  static StatusOr<std::unique_ptr<Scheduler>> create(Engine* engine, const SchedulerOptions& opts);
  ~Scheduler();

  void start();
  // Stops the loop; every request still in flight ends with kCancelled.
  void stop();

  // Validates and queues a request; its tokens arrive on the returned
  // stream. INVALID_ARGUMENT (bad fields, prompt too long), NOT_FOUND
  // (unknown adapter), RESOURCE_EXHAUSTED (queue full), UNAVAILABLE
  // (stopping).
  StatusOr<std::shared_ptr<RequestStream>> submit(const std::string& request_id,
                                                  GenerationParams params);

  Status register_adapter(const std::string& id, const LoraAdapter& adapter);
  // Refused (FAILED_PRECONDITION) while requests, waiting or running, use it.
  Status unregister_adapter(const std::string& id);
  std::vector<AdapterSummary> list_adapters();
  // One adapter's summary; NOT_FOUND when it is not registered.
  StatusOr<AdapterSummary> describe_adapter(const std::string& id);
  SchedulerStats stats();
  // Latency distributions (seconds); thread-safe to read at any time.
  const SchedulerHistograms& histograms() const { return histograms_; }
  const SchedulerOptions& options() const { return opts_; }
  const ModelConfig& model_config() const { return engine_->config(); }
  int64_t adapter_image_bytes(const LoraAdapter& adapter) const {
    return engine_->adapter_image_bytes(adapter);
  }

 private:
  class StepMemoryView;
  AdapterSummary summarize(const AdapterImage& image);
  Scheduler(Engine* engine, const SchedulerOptions& opts, std::unique_ptr<SchedulingPolicy> policy);
  void loop();
  // One iteration under engine_mu_; fills `ended` with requests that ended.
  void iterate(std::vector<std::unique_ptr<Request>>* ended);
  void drop_cancelled(std::vector<std::unique_ptr<Request>>* ended);
  // Client deadlines and the TTFT SLO: ends requests that cannot make it.
  // The one place deadlines are decided; it runs before drop_cancelled, so
  // a request past its deadline ends as kDeadline even if its client also
  // cancelled (gRPC cancels a call at its deadline).
  void abort_late(std::vector<std::unique_ptr<Request>>* ended);
  void admit(std::vector<std::unique_ptr<Request>>* ended);
  // Runs one engine step, preempting on KV exhaustion; false if nothing ran.
  bool run_step(std::vector<std::unique_ptr<Request>>* ended);
  void finish(Request* r, FinishReason why, const Status& error,
              std::vector<std::unique_ptr<Request>>* ended);
  void preempt(Request* r);
  void enqueue_waiting(Request* r);

  Engine* engine_;
  SchedulerOptions opts_;
  std::unique_ptr<SchedulingPolicy> policy_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Request>> incoming_;  // guarded by mu_
  // Adapter id -> requests submitted and not yet ended. flight_mu_ is a leaf
  // lock: nothing else is taken while it is held.
  std::mutex flight_mu_;
  std::map<std::string, int32_t> in_flight_;  // guarded by flight_mu_
  bool stopping_ = false;                          // guarded by mu_
  uint64_t next_arrival_ = 0;                      // guarded by mu_
  std::deque<std::pair<Clock::time_point, int32_t>> recent_tokens_;  // guarded by mu_

  std::mutex engine_mu_;
  // Admin calls waiting for engine_mu_: the loop steps aside for them, since
  // std::mutex is not fair and the loop retakes it at once.
  std::atomic<int32_t> admin_waiting_{0};
  std::atomic<uint64_t> non_finite_{0};  // requests failed for non-finite logits
  // What stats() reports, published by the loop after every iteration so a
  // monitoring call never waits for the engine.
  mutable std::mutex snapshot_mu_;
  SchedulerStats snapshot_;                   // guarded by snapshot_mu_
  std::set<std::string> resident_snapshot_;   // guarded by snapshot_mu_
  uint64_t resident_version_ = ~0ull;         // engine residency it reflects; engine_mu_
  void publish_snapshot();                    // loop thread, engine_mu_ held
  // Loop-owned state (only the loop thread touches these).
  std::map<Request*, std::unique_ptr<Request>> owned_;
  std::deque<Request*> waiting_;  // arrival order
  std::vector<Request*> arrived_;  // taken from incoming_, not yet shown to the policy
  std::vector<Request*> running_;
  int64_t next_seq_id_ = 1;
  int32_t last_batch_tokens_ = 0, last_batch_requests_ = 0;
  uint64_t step_count_ = 0, preemptions_ = 0;
  std::atomic<int32_t> waiting_count_{0}, running_count_{0};
  std::atomic<uint64_t> completed_{0}, cancelled_{0}, failed_{0}, tokens_generated_{0}, aborted_{0};
  std::atomic<uint64_t> finished_stop_{0}, finished_length_{0}, aborted_ttft_slo_{0},
      cancelled_shutdown_{0}, prompt_tokens_{0};
  bool shutting_down_ = false;  // loop-owned: cancellations now are the server's
  SchedulerHistograms histograms_;
  double step_ms_ewma_ = 0;  // loop-owned; read under engine_mu_

  std::thread thread_;
};

}  // namespace loraserve
