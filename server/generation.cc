#include "server/generation.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "server/adapter_paths.h"

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

// Scheduler parameters from the transport's request; the scheduler's own
// checks (vocabulary, context, sampling ranges) do the rest.
Status to_params(const GenerationInput& in, const Tokenizer* tokenizer, GenerationParams* p) {
  if (!in.stop.empty() && tokenizer == nullptr) {
    return failed_precondition("stop strings need the model's tokenizer.json, which this "
                               "server has not loaded; use stop_token_ids");
  }
  for (const std::string& stop : in.stop) {
    if (stop.empty()) return invalid_argument("stop strings must not be empty");
  }
  if (in.has_prompt_text) {
    if (!in.prompt_ids.empty()) return invalid_argument("send either a text prompt or token ids");
    if (tokenizer == nullptr) {
      return failed_precondition("text prompts need the model's tokenizer.json, which this "
                                 "server has not loaded; send token ids");
    }
    LS_ASSIGN_OR_RETURN(p->prompt, tokenizer->encode(in.prompt_text, in.add_special_tokens));
    if (p->prompt.empty()) return invalid_argument("prompt encodes to no tokens");
  } else {
    if (in.prompt_ids.empty()) return invalid_argument("the prompt is empty");
    p->prompt = in.prompt_ids;
  }
  if (in.max_new_tokens < 0) return invalid_argument("max_new_tokens must not be negative");
  p->max_new_tokens = in.max_new_tokens;
  p->sampling = in.sampling;
  p->stop_token_ids = in.stop_token_ids;
  p->ignore_eos = in.ignore_eos;
  p->deadline = in.deadline;
  return ok_status();
}

}  // namespace

Generator::Generator(Scheduler* scheduler, TenantDirectory* tenants,
                     std::shared_ptr<const Tokenizer> tokenizer)
    : scheduler_(scheduler), tenants_(tenants), tokenizer_(std::move(tokenizer)) {}

StatusOr<std::unique_ptr<Generation>> Generator::start(const Caller& caller, GenerationInput in) {
  GenerationParams p;
  LS_RETURN_IF_ERROR(to_params(in, tokenizer_.get(), &p));
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
  // From here the destructor ends the quota reservation on every path.
  g->tenants_ = tenants_;
  g->caller_ = caller;
  g->budget_ = budget;
  g->outcome_ = RequestOutcome::kFailed;
  LS_ASSIGN_OR_RETURN(g->stream_, scheduler_->submit(g->request_id_, std::move(p)));
  g->outcome_ = RequestOutcome::kCancelled;  // until the final event says otherwise
  if (tokenizer_ != nullptr) g->text_ = std::make_unique<TextStream>(tokenizer_, in.stop);
  return g;
}

Generation::~Generation() {
  if (stream_ != nullptr) {
    stream_->set_listener({});
    if (!done_) stream_->cancel();  // the scheduler frees its pages next iteration
  }
  if (tenants_ != nullptr) {
    tenants_->end_request(caller_, budget_, outcome_, final_prompt_tokens_,
                          final_completion_tokens_, queue_ms_);
  }
}

void Generation::set_listener(std::function<void()> on_event) {
  stream_->set_listener(std::move(on_event));
}

void Generation::cancel() {
  if (!done_) stream_->cancel();
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
  if (e.final && stopped_by_string_) {
    e.finish = FinishReason::kStop;
    e.completion_tokens = sent_tokens_;
    e.tokens.clear();
    e.logprobs.clear();
  }
  *out = GenerationChunk();
  if (e.final) {
    done_ = true;
    outcome_ = outcome_of(e.finish);
    final_prompt_tokens_ = static_cast<uint32_t>(e.prompt_tokens);
    final_completion_tokens_ = static_cast<uint32_t>(e.completion_tokens);
    queue_ms_ = e.queue_ms;
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
