// Generation: what every transport (the gRPC service, the OpenAI HTTP
// frontend) does for one generation request, written once. Generator::start
// validates the request, resolves the caller's adapter, tokenizes a text
// prompt, takes the tenant's quota and submits to the scheduler; the
// Generation it returns turns the scheduler's events into chunks of ids,
// logprobs and UTF-8 text with stop strings applied, and gives the quota
// back when it is destroyed, whatever path the transport took.
//
// A Generation is driven by one thread at a time: either blocking in next()
// (gRPC's sync handlers) or, for asynchronous transports, woken by the
// listener and draining with try_next(). Generator is thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "kernels/sampling/sampling.h"
#include "scheduler/request.h"
#include "scheduler/scheduler.h"
#include "server/tenant_directory.h"
#include "tokenizer/text_stream.h"
#include "tokenizer/tokenizer.h"

namespace loraserve {

// One request as the transports hand it over, already in loraserve's terms.
struct GenerationInput {
  std::string request_id;    // "" = one is made up
  std::string adapter_id;    // as the caller names it; "" = the base model
  // Exactly one of the two prompts: text (tokenized here) or token ids.
  bool has_prompt_text = false;
  std::string prompt_text;
  // Text prompts: add the tokenizer's BOS/EOS. A rendered chat template
  // already carries its own, so chat passes false.
  bool add_special_tokens = true;
  std::vector<int32_t> prompt_ids;
  int32_t max_new_tokens = 0;  // 0 = the scheduler's default
  // Instead: as many as the context leaves after the prompt (capped by the
  // scheduler's limit), for chat replies that end when the model says so.
  bool max_new_tokens_to_context = false;
  kernels::SamplingConfig sampling;
  std::vector<std::string> stop;  // stop strings (need the tokenizer)
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  Clock::time_point deadline = Clock::time_point::max();
};

// What a transport sends for one scheduler event.
struct GenerationChunk {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::string text;  // valid UTF-8, stop strings cut; "" without a tokenizer
  bool final = false;
  // With final: kStop / kLength (completed), kCancelled (the server stopped
  // it, or the client cancelled), kError / kDeadline (with `error`).
  FinishReason finish = FinishReason::kNone;
  Status error;
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  double queue_ms = 0, ttft_ms = 0, total_ms = 0;
};

class Generation {
 public:
  // Cancels the request if it has not ended; the quota is given back with
  // the scheduler's final event (at once when it has been handed out).
  ~Generation();
  Generation(const Generation&) = delete;
  Generation& operator=(const Generation&) = delete;

  const std::string& request_id() const { return request_id_; }
  int32_t prompt_tokens() const { return prompt_tokens_; }

  // The next chunk if one is ready (never waits); false otherwise.
  bool try_next(GenerationChunk* out);
  // Waits up to `timeout` for the next chunk.
  bool next(GenerationChunk* out, std::chrono::milliseconds timeout);
  // Called from the scheduler thread after each event (see
  // RequestStream::set_listener); must be cheap and must not call back in.
  void set_listener(std::function<void()> on_event);
  // The client went away or gave up: the scheduler frees the request's
  // pages at its next iteration and decides how it ended (a cancel this
  // close to the request's deadline is the deadline's: see
  // Scheduler::abort_late). The tenant's account follows that verdict even
  // when it comes after this Generation is gone.
  void cancel();
  // cancel(), then waits up to `wait` for the scheduler's verdict, for
  // transports that can block (gRPC cancels a call at its deadline, and
  // the client should hear DEADLINE_EXCEEDED, as the stats count it). The
  // verdict's error for a deadline or a failure; CANCELLED with `why`
  // otherwise, or when no verdict came in time.
  Status abandon(const std::string& why, std::chrono::milliseconds wait);
  // The final chunk has been handed out.
  bool done() const { return done_; }

 private:
  friend class Generator;
  Generation() = default;
  // False when the event produces nothing to send (ids computed after a
  // stop string).
  bool convert(RequestEvent e, GenerationChunk* out);

  // The tenant's side of the request (its quota reservation), settled
  // once: see generation.cc.
  struct Account;
  std::shared_ptr<Account> account_;
  std::string request_id_;
  int32_t prompt_tokens_ = 0;
  std::shared_ptr<RequestStream> stream_;
  std::unique_ptr<TextStream> text_;
  bool stopped_by_string_ = false;
  int32_t sent_tokens_ = 0;
  bool done_ = false;
};

class Generator {
 public:
  // `tokenizer` null = token ids only (no text prompts, text or stop strings).
  Generator(Scheduler* scheduler, TenantDirectory* tenants,
            std::shared_ptr<const Tokenizer> tokenizer);

  // Validates, authorizes the adapter, takes the quota and submits.
  // INVALID_ARGUMENT, FAILED_PRECONDITION (text without a tokenizer),
  // NOT_FOUND (adapter), RESOURCE_EXHAUSTED (quota, queue), UNAVAILABLE.
  StatusOr<std::unique_ptr<Generation>> start(const Caller& caller, GenerationInput input);

  const std::shared_ptr<const Tokenizer>& tokenizer() const { return tokenizer_; }
  Scheduler* scheduler() const { return scheduler_; }

  // Called for an adapter id the directory does not know before answering
  // NOT_FOUND (the adapter store's lazy load); it may block while loading.
  // Set before serving.
  using AdapterFetcher = std::function<Status(const Caller&, const std::string& id)>;
  void set_adapter_fetcher(AdapterFetcher fetch) { fetch_adapter_ = std::move(fetch); }

 private:
  AdapterFetcher fetch_adapter_;
  Scheduler* scheduler_;
  TenantDirectory* tenants_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::atomic<uint64_t> next_request_{1};
};

}  // namespace loraserve
