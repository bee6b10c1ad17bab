// OpenAiApi: the routes of the HTTP frontend, an HttpHandler.
//
//   POST /v1/completions, POST /v1/chat/completions   (GenerationReply)
//   GET  /v1/models
//   POST /v1/load_lora_adapter {lora_name, lora_path}, /v1/unload_lora_adapter {lora_name}
//   GET  /health (200 serving, 503 draining), GET /metrics (Prometheus text)
//
// Authentication, adapter resolution, quotas and adapter loading are the
// same code the gRPC service runs (Generator, AdapterAdmin, TenantDirectory);
// errors are mapped by http_status.h. /health and /metrics need no key, as
// probes and scrapers send none. Adapter loading reads files and waits for
// the engine, so it runs on a small pool of its own, never on an io thread.
// Thread-safe.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "server/adapter_admin.h"
#include "server/chat_prompt.h"
#include "server/generation.h"
#include "server/http/http_types.h"
#include "server/http/openai_request.h"
#include "server/tenant_directory.h"

namespace loraserve::http {

struct OpenAiApiOptions {
  std::string served_model_name;  // `model` that means the base model
  ChatPrompt chat;                // the model's chat template (gRPC's too); none: chats get a 400
  std::function<std::string()> render_metrics;  // GET /metrics; empty = 404
  int admin_threads = 1;
};

class OpenAiApi {
 public:
  // Every pointer must outlive the api.
  OpenAiApi(Generator* generator, AdapterAdmin* adapters, TenantDirectory* tenants,
            OpenAiApiOptions options);
  ~OpenAiApi();  // waits for admin work in progress

  HandlerResult handle(const HttpRequest& request);
  // Draining: /health says 503 and new generations and loads are refused.
  void set_draining(bool draining) { draining_.store(draining); }

 private:
  HandlerResult generate(const HttpRequest& request, ApiKind kind);
  HandlerResult models(const HttpRequest& request);
  HandlerResult load_adapter(const HttpRequest& request);
  HandlerResult unload_adapter(const HttpRequest& request);
  HandlerResult health() const;
  HandlerResult metrics() const;
  StatusOr<Caller> authenticate(const HttpRequest& request) const;
  // Runs `work` on the admin pool; its reply is sent when it returns.
  HandlerResult run_blocking(std::function<HttpReply()> work);

  Generator* generator_;
  AdapterAdmin* adapters_;
  TenantDirectory* tenants_;
  OpenAiApiOptions options_;
  int64_t created_;  // the base model's `created`: when the server started
  std::atomic<bool> draining_{false};
  struct AdminPool;
  std::unique_ptr<AdminPool> admin_pool_;
};

}  // namespace loraserve::http
