// `loraserve serve`: the gRPC server, and with --http-listen the OpenAI-
// compatible HTTP API and /metrics beside it on the same scheduler. Start-up
// loads the model onto the backend, sizes the page pool, starts the
// scheduler and listens; SIGTERM or SIGINT stops accepting (HTTP /health
// turns 503), gives in-flight requests a grace period, then cancels what is
// left and exits 0.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <cstdio>
#include <iostream>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "app/commands.h"
#include "app/engine_setup.h"
#include "checkpoint/model_weights.h"
#include "common/file_util.h"
#include "engine/engine.h"
#include "scheduler/scheduler.h"
#include "server/adapter_admin.h"
#include "server/adapter_paths.h"
#include "server/chat_prompt.h"
#include "server/generation.h"
#include "server/http/http_server.h"
#include "server/http/openai_api.h"
#include "server/metrics.h"
#include "server/service.h"
#include "server/tenant_config.h"
#include "server/tenant_directory.h"
#include "tokenizer/tokenizer.h"

namespace loraserve::cli {

namespace {

std::atomic<int> g_signal{0};
std::atomic<bool> g_reload{false};
extern "C" void on_signal(int sig) { g_signal.store(sig); }
extern "C" void on_sighup(int) { g_reload.store(true); }

// The PEM text of a --tls-* file; the first failure is kept in *status.
std::string read_pem(const std::string& path, Status* status) {
  StatusOr<std::string> text = read_file(path);
  if (!text.ok()) {
    if (status->ok()) *status = text.status();
    return "";
  }
  return std::move(*text);
}

struct ServeFlags {
  std::string model;
  std::string adapter_root;
  std::string preload_adapters;
  std::string adapter_store;       // "" = uploads and loads are not persisted
  double adapter_store_poll_s = 1.0;
  std::string listen = "127.0.0.1:50051";
  std::string port_file;
  std::string http_listen;  // "" = no HTTP
  std::string http_port_file;
  std::string served_model_name;  // "" = the model directory's name
  std::string chat_template;      // "" = the model's own
  int http_threads = 2;
  int64_t http_max_body_bytes = 8 << 20;
  int http_max_connections = 10000;
  double http_read_timeout_s = 30;
  double http_write_timeout_s = 30;
  EngineFlags engine;
  int32_t max_batch_tokens = 512;
  int32_t max_running = 64;
  int32_t max_queue = 1024;
  std::string policy = "fcfs";
  double ttft_slo_ms = 0;
  std::string tenants;
  std::string tls_cert, tls_key, tls_client_ca;
  double shutdown_grace_s = 10.0;
  int64_t max_upload_mb = 4096;
  std::string log_level = "info";
};

int fail(const Status& s) {
  spdlog::error("{}", s.to_string());
  return 1;
}

// Adapters found in DIR at start belong to the server: shared by every
// tenant ("public") when tenants are configured.
Status preload(AdapterAdmin& admin, const Scheduler& scheduler, const std::string& owner,
               const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return not_found("--preload-adapters: no directory " + dir);
  std::vector<fs::path> dirs;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_directory() && fs::exists(entry.path() / "adapter_config.json")) {
      dirs.push_back(entry.path());
    }
  }
  std::sort(dirs.begin(), dirs.end());
  for (const fs::path& p : dirs) {
    const std::string id = p.filename().string();
    LS_RETURN_IF_ERROR(validate_adapter_id(id).with_context("preloading " + p.string()));
    auto adapter = load_adapter_dir(p.string(), scheduler.model_config());
    if (!adapter.ok()) return adapter.status().with_context("preloading " + p.string());
    LS_RETURN_IF_ERROR(admin.register_adapter(owner, id, **adapter).status());
  }
  spdlog::info("preloaded {} adapter(s) from {}", dirs.size(), dir);
  return ok_status();
}

int run_serve(const ServeFlags& f) {
  spdlog::set_level(spdlog::level::from_str(f.log_level));
  auto weights = ModelWeights::open(f.model);
  if (!weights.ok()) return fail(weights.status().with_context("loading model " + f.model));
  auto engine = create_engine(f.engine, std::move(*weights), f.max_batch_tokens, f.max_running);
  if (!engine.ok()) return fail(engine.status());
  const std::string backend_name = (*engine)->backend().name();
  spdlog::info("backend {}", (*engine)->backend().describe());

  SchedulerOptions so;
  so.max_batch_tokens = f.max_batch_tokens;
  so.max_running = f.max_running;
  so.max_queue = f.max_queue;
  so.policy = f.policy;
  so.ttft_slo_ms = f.ttft_slo_ms;
  auto scheduler = Scheduler::create(engine->get(), so);
  if (!scheduler.ok()) return fail(scheduler.status());
  std::shared_ptr<const TenantConfig> tenant_config;
  if (!f.tenants.empty()) {
    auto cfg = TenantConfig::load_file(f.tenants);
    if (!cfg.ok()) return fail(cfg.status());
    tenant_config = std::make_shared<const TenantConfig>(std::move(*cfg));
  }
  TenantDirectory directory(tenant_config);
  (*scheduler)->start();

  ServiceOptions svc_opts;
  std::shared_ptr<const Tokenizer> text_tokenizer;
  auto tokenizer = Tokenizer::load_dir(f.model);
  if (tokenizer.ok()) {
    text_tokenizer = *tokenizer;
    spdlog::info("tokenizer: {} ids from {}/tokenizer.json", (*tokenizer)->vocab_size(), f.model);
  } else if (tokenizer.status().code() == StatusCode::kNotFound) {
    spdlog::warn("no tokenizer.json in {}: token ids only (no text prompts or stop strings)",
                 f.model);
  } else {
    return fail(tokenizer.status().with_context("loading the tokenizer"));
  }
  svc_opts.max_upload_bytes = f.max_upload_mb << 20;
  svc_opts.backend_name = backend_name;
  // The model's chat template (or --chat-template), for gRPC `messages` and
  // HTTP chats alike; none: chat requests are refused, naming it.
  auto chat = ChatPrompt::load(f.model, f.chat_template);
  if (!chat.ok()) return fail(chat.status());
  if (chat->has_template()) {
    spdlog::info("chat template from {}", chat->origin());
  } else {
    spdlog::info("no chat template in {}: chat requests are refused", f.model);
  }
  svc_opts.chat = *chat;
  Generator generator(scheduler->get(), &directory, text_tokenizer);
  std::unique_ptr<DurableAdapterStore> store;
  if (!f.adapter_store.empty()) {
    auto opened = DurableAdapterStore::open(f.adapter_store);
    if (!opened.ok()) return fail(opened.status().with_context("--adapter-store"));
    store = std::move(*opened);
    std::vector<std::string> problems;
    const size_t stored = store->list(&problems).size();
    for (const std::string& p : problems) spdlog::warn("adapter store: {}", p);
    spdlog::info("adapter store {}: {} adapter(s), each loaded on first use", f.adapter_store,
                 stored);
  }
  AdapterAdmin admin(scheduler->get(), &directory, f.adapter_root, store.get());
  if (store) {
    generator.set_adapter_fetcher([&admin](const Caller& caller, const std::string& id) {
      return admin.fetch_from_store(caller, id);
    });
  }
  LoraServeService service(&generator, &admin, &directory, svc_opts);

  const std::string server_owner = tenant_config ? "public" : "";
  if (!f.preload_adapters.empty()) {
    Status s = preload(admin, **scheduler, server_owner, f.preload_adapters);
    if (!s.ok()) return fail(s);
  }
  if (tenant_config) {
    for (const Tenant& t : tenant_config->tenants()) {
      for (const DeclaredAdapter& d : t.adapters) {
        auto dir = resolve_adapter_dir(f.adapter_root, d.path);
        if (!dir.ok()) return fail(dir.status().with_context("tenant " + t.name + " adapter " + d.id));
        auto adapter = load_adapter_dir(*dir, (*scheduler)->model_config());
        if (!adapter.ok()) return fail(adapter.status().with_context("tenant " + t.name));
        Status s =
            admin.register_adapter(d.is_public ? "public" : t.name, d.id, **adapter).status();
        if (!s.ok()) return fail(s.with_context("tenant " + t.name + " adapter " + d.id));
      }
    }
    spdlog::info("{} tenant(s) from {}; API keys required", tenant_config->tenants().size(), f.tenants);
  } else {
    spdlog::warn("no --tenants: the server is open (one tenant, no API keys)");
  }

  std::shared_ptr<grpc::ServerCredentials> creds = grpc::InsecureServerCredentials();
  if (!f.tls_cert.empty() || !f.tls_key.empty()) {
    if (f.tls_cert.empty() || f.tls_key.empty()) {
      return fail(invalid_argument("--tls-cert and --tls-key go together"));
    }
    Status rs;
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({read_pem(f.tls_key, &rs), read_pem(f.tls_cert, &rs)});
    if (!f.tls_client_ca.empty()) {
      ssl.pem_root_certs = read_pem(f.tls_client_ca, &rs);
      ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
    }
    if (!rs.ok()) return fail(rs);
    creds = grpc::SslServerCredentials(ssl);
  } else if (!f.tls_client_ca.empty()) {
    return fail(invalid_argument("--tls-client-ca needs --tls-cert and --tls-key"));
  } else if (tenant_config) {
    spdlog::warn("API keys travel in plaintext: use --tls-cert/--tls-key off loopback");
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(f.listen, creds, &port);
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(64 << 20);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) return fail(unavailable_error("cannot listen on " + f.listen));

  const EngineStats st = (*engine)->stats();
  spdlog::info("loraserve listening on {} (port {}), backend {}, pool {} pages of {} bytes",
               f.listen, port, backend_name, st.pool.total, st.page_bytes);
  if (f.adapter_root.empty()) spdlog::info("no --adapter-root: adapters load by upload only");
  if (!f.port_file.empty()) {
    std::ofstream(f.port_file) << port << "\n";
  }

  // The OpenAI-compatible HTTP API beside gRPC, on the same scheduler.
  std::string served_model = f.served_model_name;
  if (served_model.empty()) {
    served_model = std::filesystem::path(f.model).lexically_normal().filename().string();
    if (served_model.empty()) {
      served_model = std::filesystem::path(f.model).lexically_normal().parent_path().filename().string();
    }
  }
  std::unique_ptr<http::OpenAiApi> openai;
  std::unique_ptr<http::HttpServer> http_server;
  if (!f.http_listen.empty()) {
    http::OpenAiApiOptions api;
    api.served_model_name = served_model;
    api.chat = *chat;
    MetricsOptions mo{served_model, backend_name};
    Scheduler* sched = scheduler->get();
    api.render_metrics = [sched, &directory, mo] { return render_prometheus(*sched, directory, mo); };
    openai = std::make_unique<http::OpenAiApi>(&generator, &admin, &directory, api);
    http::HttpServerOptions ho;
    ho.listen = f.http_listen;
    ho.io_threads = f.http_threads;
    ho.max_body_bytes = f.http_max_body_bytes;
    ho.max_connections = f.http_max_connections;
    ho.read_timeout = std::chrono::milliseconds(static_cast<int64_t>(f.http_read_timeout_s * 1000));
    ho.write_timeout = std::chrono::milliseconds(static_cast<int64_t>(f.http_write_timeout_s * 1000));
    http::OpenAiApi* handler = openai.get();
    http_server = std::make_unique<http::HttpServer>(
        ho, [handler](const http::HttpRequest& r) { return handler->handle(r); });
    Status hs = http_server->start();
    if (!hs.ok()) return fail(hs);
    spdlog::info("OpenAI-compatible HTTP API on {} (port {}), model name '{}'", f.http_listen,
                 http_server->port(), served_model);
    if (tenant_config) spdlog::warn("HTTP carries API keys in plaintext: keep it on loopback or behind TLS");
    if (!f.http_port_file.empty()) std::ofstream(f.http_port_file) << http_server->port() << "\n";
  }

  server->GetHealthCheckService()->SetServingStatus("loraserve.v1.LoraServe", true);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  std::signal(SIGHUP, on_sighup);
  auto next_sync = std::chrono::steady_clock::now();
  const auto sync_every =
      std::chrono::milliseconds(static_cast<int64_t>(std::max(0.05, f.adapter_store_poll_s) * 1000));
  while (g_signal.load() == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    // Unloads and replaces made through other replicas; replaced weights
    // whose requests have ended.
    if (std::chrono::steady_clock::now() >= next_sync) {
      admin.sync_with_store();
      next_sync = std::chrono::steady_clock::now() + sync_every;
    }
    if (g_reload.exchange(false)) {
      if (f.tenants.empty()) {
        spdlog::info("SIGHUP: no --tenants file to reload");
        continue;
      }
      auto cfg = TenantConfig::load_file(f.tenants);
      if (!cfg.ok()) {
        spdlog::error("SIGHUP: keeping the old tenants: {}", cfg.status().to_string());
        continue;
      }
      spdlog::info("SIGHUP: reloaded {} tenant(s) from {}", cfg->tenants().size(), f.tenants);
      directory.set_config(std::make_shared<const TenantConfig>(std::move(*cfg)));
    }
  }

  spdlog::info("signal {}: draining for up to {:.1f} s", g_signal.load(), f.shutdown_grace_s);
  server->GetHealthCheckService()->SetServingStatus(false);
  if (openai) openai->set_draining(true);
  const auto grace = std::chrono::milliseconds(static_cast<int64_t>(f.shutdown_grace_s * 1000));
  const auto deadline = std::chrono::system_clock::now() + grace;
  // Requests still running shortly before the deadline are cancelled by the
  // scheduler, so their streams end with a CANCELLED final message rather
  // than being cut by gRPC.
  std::mutex stop_mu;
  std::condition_variable stop_cv;
  bool drained = false;
  std::thread stopper([&] {
    std::unique_lock<std::mutex> lock(stop_mu);
    const auto margin = std::min(grace / 5, std::chrono::milliseconds(500));
    stop_cv.wait_until(lock, deadline - margin, [&] { return drained; });
    (*scheduler)->stop();
  });
  server->Shutdown(deadline);
  // HTTP streams get the same grace as gRPC's.
  while (http_server && http_server->active_responses() > 0 &&
         std::chrono::system_clock::now() + std::chrono::milliseconds(500) < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  {
    std::lock_guard<std::mutex> lock(stop_mu);
    drained = true;
  }
  stop_cv.notify_all();
  stopper.join();
  server->Wait();
  // The scheduler has ended every request; their last events reach HTTP
  // clients before the connections close.
  if (http_server) http_server->stop();
  spdlog::info("loraserve stopped");
  return 0;
}

}  // namespace

void add_serve_command(CLI::App& app, Runner* runner) {
  auto f = std::make_shared<ServeFlags>();
  CLI::App* cmd = app.add_subcommand("serve", "Serve the model and its adapters over gRPC");
  cmd->add_option("--model", f->model, "HF model directory")->required();
  cmd->add_option("--adapter-root", f->adapter_root,
                  "Directory LoadAdapter paths are relative to (nothing outside it is read)");
  cmd->add_option("--preload-adapters", f->preload_adapters,
                  "Register every adapter directory inside DIR at start (id = directory name)");
  cmd->add_option("--adapter-store", f->adapter_store,
                  "Directory where uploaded and loaded adapters are kept (crash-safe; survives "
                  "restarts; replicas may share it on one volume)");
  cmd->add_option("--adapter-store-poll-s", f->adapter_store_poll_s,
                  "How often to pick up unloads and replaces made through other replicas")
      ->capture_default_str();
  cmd->add_option("--listen", f->listen, "host:port to listen on (port 0 picks a free one)")
      ->capture_default_str();
  cmd->add_option("--port-file", f->port_file, "Write the bound port to this file once listening");
  cmd->add_option("--http-listen", f->http_listen,
                  "host:port for the OpenAI-compatible HTTP API and /metrics (off unless given; "
                  "port 0 picks a free one)");
  cmd->add_option("--http-port-file", f->http_port_file,
                  "Write the bound HTTP port to this file once listening");
  cmd->add_option("--chat-template", f->chat_template,
                  "Jinja chat template file; default: the model's chat_template.jinja or "
                  "tokenizer_config.json chat_template");
  cmd->add_option("--served-model-name", f->served_model_name,
                  "The `model` name of the base model over HTTP (default: the model directory's name)");
  cmd->add_option("--http-threads", f->http_threads, "HTTP io threads")
      ->check(CLI::Range(1, 64))->capture_default_str();
  cmd->add_option("--http-max-body-bytes", f->http_max_body_bytes, "Largest HTTP request body (413 beyond)")
      ->check(CLI::Range(int64_t{1024}, int64_t{1} << 32))->capture_default_str();
  cmd->add_option("--http-max-connections", f->http_max_connections,
                  "Open HTTP connections beyond which new ones are closed")
      ->check(CLI::Range(1, 1 << 20))->capture_default_str();
  cmd->add_option("--http-read-timeout-s", f->http_read_timeout_s,
                  "Seconds to read one HTTP request, idle keep-alive wait included")
      ->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--http-write-timeout-s", f->http_write_timeout_s,
                  "Seconds one HTTP write may take before the client is dropped")
      ->check(CLI::PositiveNumber)->capture_default_str();
  add_engine_flags(cmd, &f->engine);
  cmd->add_option("--max-batch-tokens", f->max_batch_tokens,
                  "Token budget of one step (decode tokens + prefill chunks)")
      ->check(CLI::Range(1, 1 << 20))->capture_default_str();
  cmd->add_option("--max-running", f->max_running, "Requests in the running batch")
      ->check(CLI::Range(1, 1 << 16))->capture_default_str();
  cmd->add_option("--max-queue", f->max_queue, "Waiting requests before RESOURCE_EXHAUSTED")
      ->check(CLI::Range(1, 1 << 24))->capture_default_str();
  cmd->add_option("--policy", f->policy,
                  "Scheduling policy: fcfs, or vtc (fair share of tokens between tenants)")
      ->capture_default_str();
  cmd->add_option("--ttft-slo-ms", f->ttft_slo_ms,
                  "Abort queued requests that can no longer get a first token within this (0 = off)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--tenants", f->tenants,
                  "Tenants, API key hashes and quotas (YAML or JSON); reloaded on SIGHUP");
  cmd->add_option("--tls-cert", f->tls_cert, "PEM certificate chain: serve TLS only");
  cmd->add_option("--tls-key", f->tls_key, "PEM private key for --tls-cert");
  cmd->add_option("--tls-client-ca", f->tls_client_ca,
                  "PEM CA bundle: require and verify client certificates");
  cmd->add_option("--shutdown-grace-s", f->shutdown_grace_s,
                  "Seconds in-flight requests get to finish after SIGTERM")
      ->capture_default_str();
  cmd->add_option("--max-upload-mb", f->max_upload_mb, "Largest adapter upload")->capture_default_str();
  cmd->add_option("--log-level", f->log_level, "trace|debug|info|warn|error")->capture_default_str();
  cmd->callback([f, runner]() { *runner = [f]() { return run_serve(*f); }; });
}

}  // namespace loraserve::cli
