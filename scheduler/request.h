// A generation request as the scheduler sees it, and the mailbox through
// which the scheduler streams its tokens back to whoever submitted it.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "kernels/sampling/sampling.h"

namespace loraserve {

using Clock = std::chrono::steady_clock;

enum class FinishReason { kNone = 0, kLength, kStop, kCancelled, kError, kDeadline };

// One message of a request's stream: new tokens, or the end of it.
struct RequestEvent {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  bool final = false;
  FinishReason finish = FinishReason::kNone;
  Status error;              // non-OK with FinishReason::kError and kDeadline
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  double queue_ms = 0, ttft_ms = 0, total_ms = 0;
};

// Thread-safe single-producer (scheduler) single-consumer (RPC handler)
// queue of events, plus the consumer's cancellation flag.
class RequestStream {
 public:
  void push(RequestEvent e);
  // Waits up to `timeout` for an event; false when none arrived.
  bool pop(RequestEvent* out, std::chrono::milliseconds timeout);
  void cancel() { cancelled_.store(true); }
  // The consumer found the end itself (a stop string): the request ends as
  // cancel() ends it, but counts as finished by FinishReason::kStop.
  void stop_early() {
    stopped_early_.store(true);
    cancelled_.store(true);
  }
  bool cancelled() const { return cancelled_.load(); }
  bool stopped_early() const { return stopped_early_.load(); }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<RequestEvent> events_;  // guarded by mu_
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> stopped_early_{false};
};

struct GenerationParams {
  std::string adapter_id;          // "" = base model
  std::vector<int32_t> prompt;
  int32_t max_new_tokens = 16;
  kernels::SamplingConfig sampling;
  std::vector<int32_t> stop_token_ids;
  int32_t eos_token_id = -1;       // stops generation unless ignore_eos
  bool ignore_eos = false;
  std::string tenant;              // fairness and accounting ("" = open mode)
  // The client's deadline for the whole request; max() = none.
  Clock::time_point deadline = Clock::time_point::max();
};

// Owned by the scheduler thread from submission to the final event.
struct Request {
  std::string id;
  GenerationParams params;
  std::shared_ptr<RequestStream> stream;
  Clock::time_point arrival;
  uint64_t arrival_seq = 0;        // FCFS order

  // Scheduler state. The token context is prompt + generated; `kv_len` of
  // it is in the KV cache. A preempted request keeps its generated tokens
  // and recomputes its KV from the context when it is admitted again.
  int64_t seq_id = -1;             // engine sequence while running
  std::vector<int32_t> generated;
  int64_t kv_len = 0;
  bool scheduled_once = false;
  Clock::time_point first_scheduled, first_token;
  int32_t preemptions = 0;
  // Set when the request ends; the loop sends it once the iteration's stats
  // are published, so a client that sees its end also sees it in GetStats.
  RequestEvent final_event;

  int64_t context_len() const {
    return static_cast<int64_t>(params.prompt.size() + generated.size());
  }
  int32_t context_at(int64_t i) const {
    const int64_t p = static_cast<int64_t>(params.prompt.size());
    return i < p ? params.prompt[i] : generated[i - p];
  }
};

}  // namespace loraserve
