#include "server/generation.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <mutex>

#include "server/adapter_paths.h"
#include "server/generation_params.h"

namespace loraserve {

namespace {

RequestOutcome outcome_of(FinishReason r) {
  switch (r) {
    case FinishReason::kCancelled: return RequestOutcome::kCancelled;
    case FinishReason::kDeadline: return RequestOutcome::kAborted;
    case FinishReason::kError: return RequestOutcome::kFailed;
    default: return RequestOutcome::kCompleted;
  }
}

// The final event as the client saw it: after a stop string, a completion
// with the tokens sent, whatever the scheduler computed after it.
void apply_stop_string(int32_t sent_tokens, RequestEvent* fin) {
  fin->finish = FinishReason::kStop;
  fin->completion_tokens = sent_tokens;
  fin->tokens.clear();
  fin->logprobs.clear();
}

}  // namespace

// The quota reservation of one request, ended exactly once: with the final
// event the client read or, when the client left first, with the
// scheduler's final event whenever it comes (a listener on the stream), so
// that the tenant's account always says what the scheduler's stats say
// (a cancel at the deadline is an abort in both). Released without either
// (the stream gone with no final event, which the scheduler never does):
// counted cancelled.
struct Generation::Account {
  TenantDirectory* tenants = nullptr;
  Caller caller;
  int64_t budget = 0;  // quota tokens taken by begin_request
  std::mutex mu;
  bool settled = false;  // guarded by mu

  void settle(RequestOutcome outcome, const RequestEvent* fin) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (settled) return;
      settled = true;
    }
    if (tenants == nullptr) return;
    tenants->end_request(caller, budget, outcome,
                         fin ? static_cast<uint32_t>(fin->prompt_tokens) : 0,
                         fin ? static_cast<uint32_t>(fin->completion_tokens) : 0,
                         fin ? fin->queue_ms : 0);
  }
  void settle(const RequestEvent& fin) { settle(outcome_of(fin.finish), &fin); }
  ~Account() { settle(RequestOutcome::kCancelled, nullptr); }
};

Generator::Generator(Scheduler* scheduler, TenantDirectory* tenants,
                     std::shared_ptr<const Tokenizer> tokenizer)
    : scheduler_(scheduler), tenants_(tenants), tokenizer_(std::move(tokenizer)) {}

StatusOr<std::unique_ptr<Generation>> Generator::start(const Caller& caller, GenerationInput in) {
  GenerationParams p;
  LS_RETURN_IF_ERROR(to_generation_params(in, tokenizer_.get(), &p));
  if (!in.adapter_id.empty()) {
    LS_RETURN_IF_ERROR(validate_adapter_id(in.adapter_id));
    auto sid = tenants_->resolve(caller, in.adapter_id);
    if (!sid.ok() && sid.status().code() == StatusCode::kNotFound && fetch_adapter_) {
      Status fetched = fetch_adapter_(caller, in.adapter_id);
      if (!fetched.ok() && fetched.code() != StatusCode::kNotFound) return fetched;
      sid = tenants_->resolve(caller, in.adapter_id);
    }
    if (!sid.ok()) return sid.status();
    p.adapter_id = std::move(*sid);
  }
  p.tenant = caller.tenant;
  if (in.max_new_tokens_to_context) {
    const int64_t room = scheduler_->model_config().max_position_embeddings -
                         static_cast<int64_t>(p.prompt.size());
    if (room <= 0) {
      return invalid_argument("prompt of " + std::to_string(p.prompt.size()) +
                              " tokens fills the model's context of " +
                              std::to_string(scheduler_->model_config().max_position_embeddings));
    }
    p.max_new_tokens = static_cast<int32_t>(
        std::min<int64_t>(room, scheduler_->options().max_new_tokens_limit));
  }
  std::unique_ptr<Generation> g(new Generation());
  g->request_id_ =
      in.request_id.empty() ? "req-" + std::to_string(next_request_++) : std::move(in.request_id);
  g->prompt_tokens_ = static_cast<int32_t>(p.prompt.size());
  // Quotas count what the request may take: its prompt and every new token.
  const int32_t max_new =
      p.max_new_tokens > 0 ? p.max_new_tokens : scheduler_->options().default_max_new_tokens;
  const int64_t budget = static_cast<int64_t>(p.prompt.size()) + max_new;
  LS_RETURN_IF_ERROR(tenants_->begin_request(caller, budget));
  // From here the account ends the quota reservation on every path.
  g->account_ = std::make_shared<Generation::Account>();
  g->account_->tenants = tenants_;
  g->account_->caller = caller;
  g->account_->budget = budget;
  auto stream = scheduler_->submit(g->request_id_, std::move(p));
  if (!stream.ok()) {
    g->account_->settle(RequestOutcome::kFailed, nullptr);
    return stream.status();
  }
  g->stream_ = std::move(*stream);
  if (tokenizer_ != nullptr) g->text_ = std::make_unique<TextStream>(tokenizer_, in.stop);
  return g;
}

Generation::~Generation() {
  if (stream_ == nullptr) return;
  if (done_) {
    stream_->set_listener({});
    return;
  }
  stream_->cancel();  // the scheduler frees its pages next iteration
  // The client left first: the scheduler's final event settles the
  // account. The listener runs only inside the stream's own calls, so the
  // raw pointer is alive whenever it runs (and a shared one would be a
  // cycle); it runs at once if the final event is already queued.
  RequestStream* stream = stream_.get();
  std::shared_ptr<Account> account = account_;
  const bool stopped = stopped_by_string_;
  const int32_t sent = sent_tokens_;
  stream_->set_listener([stream, account, stopped, sent] {
    RequestEvent e;
    while (stream->try_pop(&e)) {
      if (!e.final) continue;
      if (stopped) apply_stop_string(sent, &e);
      account->settle(e);
    }
  });
}

void Generation::set_listener(std::function<void()> on_event) {
  stream_->set_listener(std::move(on_event));
}

void Generation::cancel() {
  if (!done_) stream_->cancel();
}

Status Generation::abandon(const std::string& why, std::chrono::milliseconds wait) {
  cancel();
  const auto until = Clock::now() + wait;
  GenerationChunk c;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
    if (left.count() <= 0 || !next(&c, left)) break;
    if (!c.final) continue;
    if (c.finish == FinishReason::kDeadline || c.finish == FinishReason::kError) return c.error;
    break;
  }
  return Status(StatusCode::kCancelled, why);
}

bool Generation::try_next(GenerationChunk* out) {
  RequestEvent e;
  while (!done_ && stream_->try_pop(&e)) {
    if (convert(std::move(e), out)) return true;
  }
  return false;
}

bool Generation::next(GenerationChunk* out, std::chrono::milliseconds timeout) {
  const auto until = Clock::now() + timeout;
  RequestEvent e;
  while (!done_) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now());
    if (left.count() <= 0 || !stream_->pop(&e, left)) return false;
    if (convert(std::move(e), out)) return true;
  }
  return false;
}

bool Generation::convert(RequestEvent e, GenerationChunk* out) {
  // Ids the engine computed after a stop string ended the text are dropped;
  // the final event still comes (the scheduler ends the request as kStop).
  if (stopped_by_string_ && !e.final) return false;
  if (e.final && stopped_by_string_) apply_stop_string(sent_tokens_, &e);
  *out = GenerationChunk();
  if (e.final) {
    done_ = true;
    account_->settle(e);
    if (e.finish == FinishReason::kError || e.finish == FinishReason::kDeadline) {
      spdlog::warn("request {} ended: {}", request_id_, e.error.to_string());
    }
  }
  sent_tokens_ += static_cast<int32_t>(e.tokens.size());
  if (text_ != nullptr) {
    TextStream::Delta d = text_->push(e.tokens);
    if (d.stopped) {
      stopped_by_string_ = true;
      stream_->stop_early();
    } else if (e.final) {
      d.text += text_->finish();
    }
    out->text = std::move(d.text);
  }
  out->tokens = std::move(e.tokens);
  out->logprobs = std::move(e.logprobs);
  out->final = e.final;
  out->finish = e.finish;
  out->error = e.error;
  out->prompt_tokens = e.prompt_tokens;
  out->completion_tokens = e.completion_tokens;
  out->queue_ms = e.queue_ms;
  out->ttft_ms = e.ttft_ms;
  out->total_ms = e.total_ms;
  return true;
}

}  // namespace loraserve
