#include "server/service.h"

#include <spdlog/spdlog.h>

#include "server/adapter_loader.h"
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

}  // namespace

LoraServeService::LoraServeService(Scheduler* scheduler, ServiceOptions options)
    : scheduler_(scheduler), options_(std::move(options)) {}

grpc::Status LoraServeService::Generate(grpc::ServerContext* ctx, const v1::GenerateRequest* req,
                                        grpc::ServerWriter<v1::GenerateResponse>* writer) {
  if (req->prompt_token_ids().empty()) {
    if (!req->prompt().empty()) {
      return to_grpc(unimplemented("text prompts need the tokenizer, which this server does not "
                                   "have yet; send prompt_token_ids"));
    }
    return to_grpc(invalid_argument("prompt_token_ids is empty"));
  }
  if (!req->adapter_id().empty()) {
    Status id_ok = validate_adapter_id(req->adapter_id());
    if (!id_ok.ok()) return to_grpc(id_ok);
  }
  GenerationParams p;
  p.adapter_id = req->adapter_id();
  for (uint32_t id : req->prompt_token_ids()) {
    if (id > static_cast<uint32_t>(INT32_MAX)) {
      return to_grpc(invalid_argument("prompt token id " + std::to_string(id) + " is out of range"));
    }
    p.prompt.push_back(static_cast<int32_t>(id));
  }
  const v1::SamplingParams& s = req->sampling();
  if (s.max_new_tokens() > static_cast<uint32_t>(INT32_MAX) ||
      s.top_k() > static_cast<uint32_t>(INT32_MAX)) {
    return to_grpc(invalid_argument("max_new_tokens or top_k is out of range"));
  }
  p.max_new_tokens = static_cast<int32_t>(s.max_new_tokens());
  p.sampling.temperature = s.temperature();
  p.sampling.top_p = s.top_p();
  p.sampling.top_k = static_cast<int32_t>(s.top_k());
  p.sampling.seed = s.seed();
  for (uint32_t id : s.stop_token_ids()) p.stop_token_ids.push_back(static_cast<int32_t>(id));
  p.ignore_eos = s.ignore_eos();
  const std::string request_id =
      req->request_id().empty() ? "req-" + std::to_string(next_request_++) : req->request_id();

  auto stream = scheduler_->submit(request_id, std::move(p));
  if (!stream.ok()) return to_grpc(stream.status());

  for (;;) {
    RequestEvent e;
    if (!(*stream)->pop(&e, std::chrono::milliseconds(20))) {
      if (ctx->IsCancelled()) {
        // The scheduler frees the request's pages at its next iteration.
        (*stream)->cancel();
        return grpc::Status(grpc::StatusCode::CANCELLED, "client cancelled the request");
      }
      continue;
    }
    if (e.final && e.finish == FinishReason::kError) {
      spdlog::warn("request {} failed: {}", request_id, e.error.to_string());
      return to_grpc(e.error);
    }
    v1::GenerateResponse resp;
    resp.set_request_id(request_id);
    for (int32_t t : e.tokens) resp.add_token_ids(static_cast<uint32_t>(t));
    for (float lp : e.logprobs) resp.add_logprobs(lp);
    if (e.final) {
      if (e.finish == FinishReason::kCancelled && ctx->IsCancelled()) {
        return grpc::Status(grpc::StatusCode::CANCELLED, "request cancelled");
      }
      resp.set_final(true);
      resp.set_finish_reason(to_proto(e.finish));
      resp.mutable_usage()->set_prompt_tokens(static_cast<uint32_t>(e.prompt_tokens));
      resp.mutable_usage()->set_completion_tokens(static_cast<uint32_t>(e.completion_tokens));
      resp.mutable_timings()->set_queue_ms(e.queue_ms);
      resp.mutable_timings()->set_ttft_ms(e.ttft_ms);
      resp.mutable_timings()->set_total_ms(e.total_ms);
    }
    if (!writer->Write(resp)) {
      (*stream)->cancel();
      return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
    }
    if (e.final) return grpc::Status::OK;
  }
}

void LoraServeService::describe(const std::string& id, v1::AdapterInfo* resp) {
  for (const AdapterSummary& a : scheduler_->list_adapters()) {
    if (a.id != id) continue;
    resp->set_adapter_id(a.id);
    resp->set_rank(static_cast<uint32_t>(a.rank));
    for (const std::string& m : a.target_modules) resp->add_target_modules(m);
    resp->set_bytes(a.bytes);
    resp->set_resident(a.resident);
    resp->set_in_flight(static_cast<uint32_t>(a.in_flight));
    return;
  }
  resp->set_adapter_id(id);
}

Status LoraServeService::register_and_describe(const std::string& id, const LoraAdapter& adapter,
                                               v1::AdapterInfo* resp) {
  LS_RETURN_IF_ERROR(scheduler_->register_adapter(id, adapter));
  describe(id, resp);
  spdlog::info("adapter '{}' loaded: rank {}, {} bytes", id, resp->rank(), resp->bytes());
  return ok_status();
}

grpc::Status LoraServeService::LoadAdapter(grpc::ServerContext*, const v1::LoadAdapterRequest* req,
                                           v1::AdapterInfo* resp) {
  Status s = validate_adapter_id(req->adapter_id());
  if (!s.ok()) return to_grpc(s);
  auto dir = resolve_adapter_dir(options_.adapter_root, req->path());
  if (!dir.ok()) return to_grpc(dir.status());
  auto adapter = load_adapter_dir(*dir, scheduler_->model_config());
  if (!adapter.ok()) return to_grpc(adapter.status().with_context("adapter '" + req->path() + "'"));
  return to_grpc(register_and_describe(req->adapter_id(), **adapter, resp));
}

grpc::Status LoraServeService::UploadAdapter(grpc::ServerContext*,
                                             grpc::ServerReader<v1::UploadAdapterChunk>* reader,
                                             v1::AdapterInfo* resp) {
  v1::UploadAdapterChunk chunk;
  std::string id, config_json, tensors;
  bool first = true;
  while (reader->Read(&chunk)) {
    if (first) {
      id = chunk.adapter_id();
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
  if (config_json.empty()) return to_grpc(invalid_argument("upload has no adapter_config_json"));
  if (tensors.empty()) return to_grpc(invalid_argument("upload has no safetensors_data"));
  auto adapter = LoraAdapter::load_bytes(config_json, std::move(tensors),
                                         scheduler_->model_config(), "upload '" + id + "'");
  if (!adapter.ok()) return to_grpc(adapter.status());
  return to_grpc(register_and_describe(id, **adapter, resp));
}

grpc::Status LoraServeService::UnloadAdapter(grpc::ServerContext*,
                                             const v1::UnloadAdapterRequest* req,
                                             v1::UnloadAdapterResponse* resp) {
  Status s = validate_adapter_id(req->adapter_id());
  if (!s.ok()) return to_grpc(s);
  s = scheduler_->unregister_adapter(req->adapter_id());
  if (!s.ok()) return to_grpc(s);
  spdlog::info("adapter '{}' unloaded", req->adapter_id());
  resp->set_adapter_id(req->adapter_id());
  return grpc::Status::OK;
}

grpc::Status LoraServeService::ListAdapters(grpc::ServerContext*, const v1::ListAdaptersRequest*,
                                            v1::ListAdaptersResponse* resp) {
  for (const AdapterSummary& a : scheduler_->list_adapters()) {
    v1::AdapterInfo* info = resp->add_adapters();
    info->set_adapter_id(a.id);
    info->set_rank(static_cast<uint32_t>(a.rank));
    for (const std::string& m : a.target_modules) info->add_target_modules(m);
    info->set_bytes(a.bytes);
    info->set_resident(a.resident);
    info->set_in_flight(static_cast<uint32_t>(a.in_flight));
  }
  return grpc::Status::OK;
}

grpc::Status LoraServeService::GetStats(grpc::ServerContext*, const v1::GetStatsRequest*,
                                        v1::Stats* resp) {
  const SchedulerStats s = scheduler_->stats();
  resp->set_waiting_requests(static_cast<uint32_t>(s.waiting));
  resp->set_running_requests(static_cast<uint32_t>(s.running));
  resp->set_last_batch_tokens(static_cast<uint32_t>(s.last_batch_tokens));
  resp->set_last_batch_requests(static_cast<uint32_t>(s.last_batch_requests));
  resp->set_tokens_per_second(s.tokens_per_second);
  resp->set_requests_completed(s.completed);
  resp->set_requests_cancelled(s.cancelled);
  resp->set_requests_failed(s.failed);
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
  return grpc::Status::OK;
}

}  // namespace loraserve
