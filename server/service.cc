#include "server/service.h"

#include <spdlog/spdlog.h>

#include "server/grpc_request.h"
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

// The wire form of an adapter.
void fill_adapter_info(const AdapterView& v, v1::AdapterInfo* info) {
  const AdapterSummary& a = v.summary;
  info->set_adapter_id(v.id);
  info->set_rank(static_cast<uint32_t>(a.rank));
  for (const std::string& m : a.target_modules) info->add_target_modules(m);
  info->set_bytes(a.bytes);
  info->set_resident(a.resident);
  info->set_in_flight(static_cast<uint32_t>(a.in_flight));
  if (v.ownership) {
    info->set_owner(v.ownership->owner);
    info->set_is_public(v.ownership->is_public);
    info->set_version(v.ownership->version);
    info->set_stored(v.ownership->stored);
  }
  info->set_loaded(v.loaded);
}

}  // namespace

LoraServeService::LoraServeService(Generator* generator, AdapterAdmin* adapters,
                                   TenantDirectory* tenants, ServiceOptions options)
    : generator_(generator),
      adapters_(adapters),
      tenants_(tenants),
      scheduler_(generator->scheduler()),
      options_(std::move(options)) {}

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
  GenerationInput in;
  LS_RETURN_IF_ERROR(grpc_request_to_input(req, options_.chat, &in));
  if (ctx->deadline() != std::chrono::system_clock::time_point::max()) {
    in.deadline = Clock::now() + (ctx->deadline() - std::chrono::system_clock::now());
  }
  LS_ASSIGN_OR_RETURN(std::unique_ptr<Generation> g, generator_->start(caller, std::move(in)));
  // The call is over on our side (the client went away, or gRPC cancelled
  // it at its deadline): cancel, and wait for the scheduler's verdict, which
  // comes at its next iteration. The scheduler decides whether that was the
  // deadline (DEADLINE_EXCEEDED, an abort) or a cancellation, the one place
  // deadlines are decided; stats and the tenant's account agree. The wait
  // is bounded in case a step runs long; the account follows the verdict
  // even after we return.
  constexpr auto kVerdictWait = std::chrono::seconds(10);
  for (;;) {
    GenerationChunk c;
    // Wakes at once for events; the timeout only bounds how late a client
    // cancellation is noticed (gRPC's sync API has no cancel callback).
    if (!g->next(&c, std::chrono::milliseconds(50))) {
      if (ctx->IsCancelled()) return g->abandon("client cancelled the request", kVerdictWait);
      continue;
    }
    if (c.final) {
      if (c.finish == FinishReason::kError || c.finish == FinishReason::kDeadline) return c.error;
      if (c.finish == FinishReason::kCancelled && ctx->IsCancelled()) {
        return Status(StatusCode::kCancelled, "request cancelled");
      }
    }
    v1::GenerateResponse resp;
    resp.set_request_id(g->request_id());
    for (int32_t t : c.tokens) resp.add_token_ids(static_cast<uint32_t>(t));
    for (float lp : c.logprobs) resp.add_logprobs(lp);
    if (generator_->tokenizer() != nullptr) resp.set_text(c.text);
    if (c.final) {
      resp.set_final(true);
      resp.set_finish_reason(to_proto(c.finish));
      resp.mutable_usage()->set_prompt_tokens(static_cast<uint32_t>(c.prompt_tokens));
      resp.mutable_usage()->set_completion_tokens(static_cast<uint32_t>(c.completion_tokens));
      resp.mutable_timings()->set_queue_ms(c.queue_ms);
      resp.mutable_timings()->set_ttft_ms(c.ttft_ms);
      resp.mutable_timings()->set_total_ms(c.total_ms);
    }
    if (!writer->Write(resp)) {
      if (c.final) return Status(StatusCode::kCancelled, "client went away");
      return g->abandon("client went away", kVerdictWait);
    }
    if (c.final) return ok_status();
  }
}

grpc::Status LoraServeService::LoadAdapter(grpc::ServerContext* ctx,
                                           const v1::LoadAdapterRequest* req,
                                           v1::AdapterInfo* resp) {
  auto caller = authenticate(ctx);
  if (!caller.ok()) return to_grpc(caller.status());
  auto v = adapters_->load(*caller, req->adapter_id(), req->path(),
                           AdapterOwnerChoice{req->owner_tenant(), req->is_public(),
                                              req->replace()});
  if (!v.ok()) return to_grpc(v.status());
  fill_adapter_info(*v, resp);
  return grpc::Status::OK;
}

grpc::Status LoraServeService::UploadAdapter(grpc::ServerContext* ctx,
                                             grpc::ServerReader<v1::UploadAdapterChunk>* reader,
                                             v1::AdapterInfo* resp) {
  auto caller = authenticate(ctx);
  if (!caller.ok()) return to_grpc(caller.status());
  v1::UploadAdapterChunk chunk;
  std::string id, owner_tenant, config_json, tensors;
  bool is_public = false;
  bool replace = false;
  bool first = true;
  while (reader->Read(&chunk)) {
    if (first) {
      id = chunk.adapter_id();
      owner_tenant = chunk.owner_tenant();
      is_public = chunk.is_public();
      replace = chunk.replace();
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
  auto v = adapters_->upload(*caller, id, AdapterOwnerChoice{owner_tenant, is_public, replace}, config_json,
                             std::move(tensors));
  if (!v.ok()) return to_grpc(v.status());
  fill_adapter_info(*v, resp);
  return grpc::Status::OK;
}

grpc::Status LoraServeService::UnloadAdapter(grpc::ServerContext* ctx,
                                             const v1::UnloadAdapterRequest* req,
                                             v1::UnloadAdapterResponse* resp) {
  auto caller = authenticate(ctx);
  if (!caller.ok()) return to_grpc(caller.status());
  Status s = adapters_->unload(*caller, req->adapter_id(), req->owner_tenant());
  if (!s.ok()) return to_grpc(s);
  resp->set_adapter_id(req->adapter_id());
  return grpc::Status::OK;
}

grpc::Status LoraServeService::ListAdapters(grpc::ServerContext* ctx,
                                            const v1::ListAdaptersRequest*,
                                            v1::ListAdaptersResponse* resp) {
  auto caller = authenticate(ctx);
  if (!caller.ok()) return to_grpc(caller.status());
  for (const AdapterView& v : adapters_->list(*caller)) fill_adapter_info(v, resp->add_adapters());
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
  resp->set_prompt_tokens(s.prompt_tokens);
  resp->set_requests_finished_stop(s.finished_stop);
  resp->set_requests_finished_length(s.finished_length);
  resp->set_requests_aborted_deadline(s.aborted - s.aborted_ttft_slo);
  resp->set_requests_aborted_ttft_slo(s.aborted_ttft_slo);
  resp->set_requests_cancelled_by_shutdown(s.cancelled_shutdown);
  // Adapter ids as callers name them, and only those the caller may see.
  for (const std::string& sid : s.running_adapters) {
    auto own = tenants_->ownership(sid);
    if (caller->admin || (own.ok() && (own->owner == caller->tenant || own->is_public))) {
      resp->add_running_adapters(own.ok() ? own->public_id : sid);
    }
  }
  for (const std::string& sid : s.waiting_adapters) {
    auto own = tenants_->ownership(sid);
    if (caller->admin || (own.ok() && (own->owner == caller->tenant || own->is_public))) {
      resp->add_waiting_adapters(own.ok() ? own->public_id : sid);
    }
  }
  const SchedulerHistograms& hs = scheduler_->histograms();
  const std::pair<const char*, const Histogram*> histograms[] = {
      {"time_to_first_token", &hs.time_to_first_token},
      {"inter_token_latency", &hs.inter_token_latency},
      {"e2e_request_latency", &hs.e2e_request_latency},
      {"request_queue_time", &hs.queue_time},
      {"step_duration", &hs.step_time}};
  for (const auto& [name, hist] : histograms) {
    const Histogram::Snapshot snap = hist->snapshot();
    v1::Histogram* out = resp->add_histograms();
    out->set_name(name);
    for (double b : snap.upper_bounds) out->add_upper_bounds(b);
    for (uint64_t c : snap.counts) out->add_counts(c);
    out->set_sum(snap.sum);
    out->set_count(snap.count);
  }
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
