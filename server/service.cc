#include "server/service.h"

#include <spdlog/spdlog.h>

#include <functional>
#include <map>

#include "server/adapter_paths.h"
#include "server/grpc_status.h"

namespace loraserve {

namespace {

v1::FinishReason to_proto(FinishReason r) {
  switch (r) {
    case FinishReason::kLength: return v1::FINISH_REASON_LENGTH;
    case FinishReason::kStop: return v1::FINISH_REASON_STOP;
    case FinishReason::kCancelled: return v1::FINISH_REASON_CANCELLED;
    default: return v1::FINISH_REASON_UNSPECIFIED;
  }
}

RequestOutcome outcome_of(FinishReason r) {
  switch (r) {
    case FinishReason::kCancelled: return RequestOutcome::kCancelled;
    case FinishReason::kDeadline: return RequestOutcome::kAborted;
    case FinishReason::kError: return RequestOutcome::kFailed;
    default: return RequestOutcome::kCompleted;
  }
}

// Builds scheduler parameters from the wire request; INVALID_ARGUMENT for
// fields the scheduler cannot even represent (its own checks do the rest).
Status to_params(const v1::GenerateRequest& req, const Tokenizer* tokenizer,
                 GenerationParams* p) {
  if (!req.prompt().empty() && !req.prompt_token_ids().empty()) {
    return invalid_argument("send either prompt or prompt_token_ids, not both");
  }
  if (!req.sampling().stop().empty() && tokenizer == nullptr) {
    return failed_precondition("stop strings need the model's tokenizer.json, which this "
                               "server has not loaded; use stop_token_ids");
  }
  if (!req.prompt().empty()) {
    if (tokenizer == nullptr) {
      return failed_precondition("text prompts need the model's tokenizer.json, which this "
                                 "server has not loaded; send prompt_token_ids");
    }
    LS_ASSIGN_OR_RETURN(p->prompt, tokenizer->encode(req.prompt(), /*add_special_tokens=*/true));
    if (p->prompt.empty()) return invalid_argument("prompt encodes to no tokens");
  } else if (req.prompt_token_ids().empty()) {
    return invalid_argument("prompt_token_ids is empty");
  }
  for (uint32_t id : req.prompt_token_ids()) {
    if (id > static_cast<uint32_t>(INT32_MAX)) {
      return invalid_argument("prompt token id " + std::to_string(id) + " is out of range");
    }
    p->prompt.push_back(static_cast<int32_t>(id));
  }
  const v1::SamplingParams& s = req.sampling();
  if (s.max_new_tokens() > static_cast<uint32_t>(INT32_MAX) ||
      s.top_k() > static_cast<uint32_t>(INT32_MAX)) {
    return invalid_argument("max_new_tokens or top_k is out of range");
  }
  p->max_new_tokens = static_cast<int32_t>(s.max_new_tokens());
  p->sampling.temperature = s.temperature();
  p->sampling.top_p = s.top_p();
  p->sampling.top_k = static_cast<int32_t>(s.top_k());
  p->sampling.seed = s.seed();
  for (uint32_t id : s.stop_token_ids()) p->stop_token_ids.push_back(static_cast<int32_t>(id));
  p->ignore_eos = s.ignore_eos();
  return ok_status();
}

// The wire form of an adapter; `own` null when the directory has no record.
void fill_adapter_info(const AdapterSummary& a, const AdapterOwnership* own,
                       v1::AdapterInfo* info) {
  info->set_adapter_id(own != nullptr ? own->public_id : a.id);
  info->set_rank(static_cast<uint32_t>(a.rank));
  for (const std::string& m : a.target_modules) info->add_target_modules(m);
  info->set_bytes(a.bytes);
  info->set_resident(a.resident);
  info->set_in_flight(static_cast<uint32_t>(a.in_flight));
  if (own != nullptr) {
    info->set_owner(own->owner);
    info->set_is_public(own->is_public);
  }
}

}  // namespace

LoraServeService::LoraServeService(Scheduler* scheduler, TenantDirectory* tenants,
                                   ServiceOptions options)
    : scheduler_(scheduler), tenants_(tenants), options_(std::move(options)) {}

StatusOr<Caller> LoraServeService::authenticate(const grpc::ServerContext* ctx) const {
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  std::string value;
  if (it != md.end()) value.assign(it->second.data(), it->second.size());
  return tenants_->authenticate(it == md.end() ? nullptr : &value);
}

grpc::Status LoraServeService::Generate(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                                        grpc::ServerWriter<v1::GenerateResponse>* writer) {
  auto caller = authenticate(ctx);
  if (!caller.ok()) return to_grpc(caller.status());
  return to_grpc(generate(ctx, *caller, *req, writer));
}

Status LoraServeService::generate(grpc::ServerContext* ctx, const Caller& caller,
                                  const v1::GenerateRequest& req,
                                  grpc::ServerWriter<v1::GenerateResponse>* writer) {
  GenerationParams p;
  const Tokenizer* tok = options_.tokenizer.get();
  LS_RETURN_IF_ERROR(to_params(req, tok, &p));
  for (const std::string& stop : req.sampling().stop()) {
    if (stop.empty()) return invalid_argument("stop strings must not be empty");
  }
  if (!req.adapter_id().empty()) {
    LS_RETURN_IF_ERROR(validate_adapter_id(req.adapter_id()));
    LS_ASSIGN_OR_RETURN(p.adapter_id, tenants_->resolve(caller, req.adapter_id()));
  }
  p.tenant = caller.tenant;
  if (ctx->deadline() != std::chrono::system_clock::time_point::max()) {
    p.deadline = Clock::now() + (ctx->deadline() - std::chrono::system_clock::now());
  }
  const std::string request_id =
      req.request_id().empty() ? "req-" + std::to_string(next_request_++) : req.request_id();
  // Quotas count what the request may take: its prompt and every new token.
  const int64_t budget = static_cast<int64_t>(p.prompt.size()) +
                         (p.max_new_tokens > 0 ? p.max_new_tokens : 16);
  LS_RETURN_IF_ERROR(tenants_->begin_request(caller, budget));
  RequestOutcome outcome = RequestOutcome::kFailed;
  uint32_t prompt_tokens = 0, completion_tokens = 0;
  double queue_ms = 0;
  struct EndGuard {
    std::function<void()> fn;
    ~EndGuard() { fn(); }
  } guard{[&] {
    tenants_->end_request(caller, budget, outcome, prompt_tokens, completion_tokens, queue_ms);
  }};

  LS_ASSIGN_OR_RETURN(std::shared_ptr<RequestStream> stream,
                      scheduler_->submit(request_id, std::move(p)));
  // Takes the usage and outcome of the scheduler's final event, so the
  // tenant's account says what the scheduler's stats say.
  auto account = [&](const RequestEvent& fin) {
    outcome = outcome_of(fin.finish);
    prompt_tokens = static_cast<uint32_t>(fin.prompt_tokens);
    completion_tokens = static_cast<uint32_t>(fin.completion_tokens);
    queue_ms = fin.queue_ms;
  };
  // The call is over on our side: the client went away, or gRPC cancelled
  // it at its deadline. Cancel, and wait for the scheduler's verdict (it
  // comes at its next iteration): the scheduler decides whether that was
  // the deadline (DEADLINE_EXCEEDED, an abort) or a cancellation, and the
  // tenant's account then says what the scheduler's stats say.
  auto abandon = [&](const char* why) -> Status {
    stream->cancel();
    outcome = RequestOutcome::kCancelled;
    const auto give_up = Clock::now() + std::chrono::seconds(30);
    while (Clock::now() < give_up) {
      RequestEvent e;
      if (!stream->pop(&e, std::chrono::milliseconds(50)) || !e.final) continue;
      account(e);
      if (e.finish == FinishReason::kDeadline) return e.error;
      break;
    }
    return Status(StatusCode::kCancelled, why);
  };
  // Text: each delta is valid UTF-8; a stop string ends the request here
  // (the scheduler ends it as a stop, a completion) and is not returned.
  std::unique_ptr<TextStream> text_stream;
  if (tok != nullptr) {
    text_stream = std::make_unique<TextStream>(
        options_.tokenizer,
        std::vector<std::string>(req.sampling().stop().begin(), req.sampling().stop().end()));
  }
  bool stopped_by_string = false;
  uint32_t sent_tokens = 0;
  for (;;) {
    RequestEvent e;
    // Wakes at once for events; the timeout only bounds how late a client
    // cancellation is noticed (gRPC's sync API has no cancel callback).
    if (!stream->pop(&e, std::chrono::milliseconds(50))) {
      if (ctx->IsCancelled()) return abandon("client cancelled the request");
      continue;
    }
    if (stopped_by_string && !e.final) continue;  // computed after the stop: dropped
    if (e.final) account(e);  // the scheduler's verdict
    if (e.final && stopped_by_string) {
      // Normally the scheduler's kStop; the client (and the account's token
      // count) get the tokens up to the stop string, whatever came after.
      e.finish = FinishReason::kStop;
      e.completion_tokens = static_cast<int32_t>(sent_tokens);
      completion_tokens = sent_tokens;
      e.tokens.clear();
      e.logprobs.clear();
    }
    if (e.final) {
      if (e.finish == FinishReason::kError || e.finish == FinishReason::kDeadline) {
        spdlog::warn("request {} ended: {}", request_id, e.error.to_string());
        return e.error;
      }
      if (e.finish == FinishReason::kCancelled && ctx->IsCancelled()) {
        return Status(StatusCode::kCancelled, "request cancelled");
      }
    }
    v1::GenerateResponse resp;
    resp.set_request_id(request_id);
    for (int32_t t : e.tokens) resp.add_token_ids(static_cast<uint32_t>(t));
    for (float lp : e.logprobs) resp.add_logprobs(lp);
    sent_tokens += static_cast<uint32_t>(e.tokens.size());
    if (text_stream) {
      TextStream::Delta d = text_stream->push(e.tokens);
      if (d.stopped) {
        stopped_by_string = true;
        stream->stop_early();
      } else if (e.final) {
        d.text += text_stream->finish();
      }
      resp.set_text(d.text);
    }
    if (e.final) {
      resp.set_final(true);
      resp.set_finish_reason(to_proto(e.finish));
      resp.mutable_usage()->set_prompt_tokens(static_cast<uint32_t>(e.prompt_tokens));
      resp.mutable_usage()->set_completion_tokens(static_cast<uint32_t>(e.completion_tokens));
      resp.mutable_timings()->set_queue_ms(e.queue_ms);
      resp.mutable_timings()->set_ttft_ms(e.ttft_ms);
      resp.mutable_timings()->set_total_ms(e.total_ms);
    }
    if (!writer->Write(resp)) {
      if (e.final) return Status(StatusCode::kCancelled, "client went away");
      return abandon("client went away");
    }
    if (e.final) return ok_status();
  }
}

void LoraServeService::describe(const std::string& scheduler_id, v1::AdapterInfo* info) {
  auto a = scheduler_->describe_adapter(scheduler_id);
  if (!a.ok()) return;
  auto own = tenants_->ownership(scheduler_id);
  fill_adapter_info(*a, own.ok() ? &*own : nullptr, info);
}

Status LoraServeService::register_adapter(const std::string& owner, const std::string& id,
                                          const LoraAdapter& adapter, v1::AdapterInfo* info) {
  LS_RETURN_IF_ERROR(validate_adapter_id(id));
  const std::string sid = TenantDirectory::scheduler_id(owner, id);
  const int64_t bytes = scheduler_->adapter_image_bytes(adapter);
  LS_RETURN_IF_ERROR(tenants_->reserve_adapter(owner, bytes));
  Status s = scheduler_->register_adapter(sid, adapter);
  if (!s.ok()) {
    tenants_->release_adapter(owner, bytes);
    if (s.code() == StatusCode::kAlreadyExists) {
      return Status(StatusCode::kAlreadyExists, "adapter '" + id + "' is already loaded");
    }
    return s;
  }
  AdapterOwnership own;
  own.owner = owner;
  own.public_id = id;
  own.is_public = owner == "public";
  own.bytes = bytes;
  tenants_->add_adapter(sid, own);
  if (info != nullptr) describe(sid, info);
  spdlog::info("adapter '{}' loaded for '{}': {} bytes", id, owner, bytes);
  return ok_status();
}

grpc::Status LoraServeService::LoadAdapter(grpc::ServerContext* ctx,
                                           const v1::LoadAdapterRequest* req,
                                           v1::AdapterInfo* resp) {
  auto caller = authenticate(ctx);
  if (!caller.ok()) return to_grpc(caller.status());
  Status s = validate_adapter_id(req->adapter_id());
  if (!s.ok()) return to_grpc(s);
  auto owner = tenants_->owner_for(*caller, req->owner_tenant(), req->is_public());
  if (!owner.ok()) return to_grpc(owner.status());
  auto dir = resolve_adapter_dir(options_.adapter_root, req->path());
  if (!dir.ok()) return to_grpc(dir.status());
  auto adapter = load_adapter_dir(*dir, scheduler_->model_config());
  if (!adapter.ok()) return to_grpc(adapter.status().with_context("adapter '" + req->path() + "'"));
  return to_grpc(register_adapter(*owner, req->adapter_id(), **adapter, resp));
}

grpc::Status LoraServeService::UploadAdapter(grpc::ServerContext* ctx,
                                             grpc::ServerReader<v1::UploadAdapterChunk>* reader,
                                             v1::AdapterInfo* resp) {
  auto caller = authenticate(ctx);
  if (!caller.ok()) return to_grpc(caller.status());
  v1::UploadAdapterChunk chunk;
  std::string id, owner_tenant, config_json, tensors;
  bool is_public = false;
  bool first = true;
  while (reader->Read(&chunk)) {
    if (first) {
      id = chunk.adapter_id();
      owner_tenant = chunk.owner_tenant();
      is_public = chunk.is_public();
      first = false;
    } else if (!chunk.adapter_id().empty() && chunk.adapter_id() != id) {
      return to_grpc(invalid_argument("adapter_id changed in the middle of an upload"));
    }
    config_json += chunk.adapter_config_json();
    tensors += chunk.safetensors_data();
    if (static_cast<int64_t>(config_json.size() + tensors.size()) > options_.max_upload_bytes) {
      return to_grpc(resource_exhausted("upload exceeds " +
                                        std::to_string(options_.max_upload_bytes) + " bytes"));
    }
  }
  if (first) return to_grpc(invalid_argument("empty upload"));
  Status s = validate_adapter_id(id);
  if (!s.ok()) return to_grpc(s);
  auto owner = tenants_->owner_for(*caller, owner_tenant, is_public);
  if (!owner.ok()) return to_grpc(owner.status());
  if (config_json.empty()) return to_grpc(invalid_argument("upload has no adapter_config_json"));
  if (tensors.empty()) return to_grpc(invalid_argument("upload has no safetensors_data"));
  auto adapter = LoraAdapter::load_bytes(config_json, std::move(tensors),
                                         scheduler_->model_config(), "upload '" + id + "'");
  if (!adapter.ok()) return to_grpc(adapter.status());
  return to_grpc(register_adapter(*owner, id, **adapter, resp));
}

grpc::Status LoraServeService::UnloadAdapter(grpc::ServerContext* ctx,
                                             const v1::UnloadAdapterRequest* req,
                                             v1::UnloadAdapterResponse* resp) {
  auto caller = authenticate(ctx);
  if (!caller.ok()) return to_grpc(caller.status());
  Status s = validate_adapter_id(req->adapter_id());
  if (!s.ok()) return to_grpc(s);
  auto owner = tenants_->owner_for(*caller, req->owner_tenant(), false);
  if (!owner.ok()) return to_grpc(owner.status());
  const std::string sid = TenantDirectory::scheduler_id(*owner, req->adapter_id());
  if (!tenants_->ownership(sid).ok()) {
    return to_grpc(not_found("adapter '" + req->adapter_id() + "' is not loaded"));
  }
  s = scheduler_->unregister_adapter(sid);
  if (!s.ok()) {
    if (s.code() == StatusCode::kFailedPrecondition) {
      return to_grpc(failed_precondition("adapter '" + req->adapter_id() +
                                         "' is used by requests in flight; unload it when they "
                                         "finish"));
    }
    return to_grpc(s);
  }
  auto removed = tenants_->remove_adapter(sid);
  if (removed.ok()) tenants_->release_adapter(removed->owner, removed->bytes);
  spdlog::info("adapter '{}' of '{}' unloaded", req->adapter_id(), *owner);
  resp->set_adapter_id(req->adapter_id());
  return grpc::Status::OK;
}

grpc::Status LoraServeService::ListAdapters(grpc::ServerContext* ctx,
                                            const v1::ListAdaptersRequest*,
                                            v1::ListAdaptersResponse* resp) {
  auto caller = authenticate(ctx);
  if (!caller.ok()) return to_grpc(caller.status());
  for (const auto& [sid, own] : tenants_->visible_adapters(*caller)) {
    auto a = scheduler_->describe_adapter(sid);
    if (a.ok()) fill_adapter_info(*a, &own, resp->add_adapters());
  }
  return grpc::Status::OK;
}

grpc::Status LoraServeService::GetStats(grpc::ServerContext* ctx, const v1::GetStatsRequest*,
                                        v1::Stats* resp) {
  auto caller = authenticate(ctx);
  if (!caller.ok()) return to_grpc(caller.status());
  const SchedulerStats s = scheduler_->stats();
  resp->set_waiting_requests(static_cast<uint32_t>(s.waiting));
  resp->set_running_requests(static_cast<uint32_t>(s.running));
  resp->set_last_batch_tokens(static_cast<uint32_t>(s.last_batch_tokens));
  resp->set_last_batch_requests(static_cast<uint32_t>(s.last_batch_requests));
  resp->set_tokens_per_second(s.tokens_per_second);
  resp->set_requests_completed(s.completed);
  resp->set_requests_cancelled(s.cancelled);
  resp->set_requests_failed(s.failed + s.aborted);
  resp->set_requests_non_finite(s.non_finite);
  resp->set_tokens_generated(s.tokens_generated);
  resp->set_preemptions(s.preemptions);
  resp->set_steps(s.steps);
  resp->set_registered_adapters(static_cast<uint32_t>(s.engine.registered_adapters));
  resp->set_backend(options_.backend_name);
  v1::PoolStats* pool = resp->mutable_pool();
  pool->set_pages_total(static_cast<uint32_t>(s.engine.pool.total));
  pool->set_pages_free(static_cast<uint32_t>(s.engine.pool.free));
  pool->set_pages_kv(static_cast<uint32_t>(s.engine.pool.kv));
  pool->set_pages_adapter(static_cast<uint32_t>(s.engine.pool.adapter));
  pool->set_page_bytes(static_cast<uint64_t>(s.engine.page_bytes));
  pool->set_resident_adapters(static_cast<uint32_t>(s.engine.adapters.resident));
  pool->set_swap_ins(static_cast<uint64_t>(s.engine.adapters.swap_ins));
  pool->set_evictions(static_cast<uint64_t>(s.engine.adapters.evictions));
  pool->set_bytes_copied(static_cast<uint64_t>(s.engine.adapters.bytes_copied));
  for (const TenantAccount& a : tenants_->accounts(*caller)) {
    v1::TenantStats* t = resp->add_tenants();
    t->set_tenant(a.tenant);
    t->set_requests(a.requests);
    t->set_in_flight(static_cast<uint32_t>(a.in_flight));
    t->set_prompt_tokens(a.prompt_tokens);
    t->set_completion_tokens(a.completion_tokens);
    t->set_mean_queue_ms(a.finished ? a.queue_ms_total / static_cast<double>(a.finished) : 0.0);
    t->set_aborted(a.aborted);
    t->set_rejected(a.rejected);
    t->set_cancelled(a.cancelled);
    auto c = s.tenant_counters.find(a.tenant);
    t->set_virtual_tokens(c == s.tenant_counters.end() ? 0.0 : c->second);
  }
  return grpc::Status::OK;
}

}  // namespace loraserve
