// `loraserve serve`: the gRPC server. Start-up loads the model onto the
// backend, sizes the page pool, starts the scheduler and listens; SIGTERM or
// SIGINT stops accepting, gives in-flight requests a grace period, then
// cancels what is left and exits 0.
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
#include "server/adapter_paths.h"
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
  std::string listen = "127.0.0.1:50051";
  std::string port_file;
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
Status preload(LoraServeService& service, const Scheduler& scheduler, const std::string& owner,
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
    LS_RETURN_IF_ERROR(service.register_adapter(owner, id, **adapter, nullptr));
  }
  spdlog::info("preloaded {} adapter(s) from {}", dirs.size(), dir);
  return ok_status();
}

int run_serve(const ServeFlags& f) {
  spdlog::set_level(spdlog::level::from_str(f.log_level));
  auto weights = ModelWeights::open(f.model);
  if (!weights.ok()) return fail(weights.status().with_context("loading model " + f.model));
  auto engine = create_engine(f.engine, **weights, f.max_batch_tokens, f.max_running);
  if (!engine.ok()) return fail(engine.status());
  const std::string backend_name = (*engine)->backend().name();
  weights->reset();  // the backend holds its own copy of the weights now

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
  auto tokenizer = Tokenizer::load_dir(f.model);
  if (tokenizer.ok()) {
    svc_opts.tokenizer = *tokenizer;
    spdlog::info("tokenizer: {} ids from {}/tokenizer.json", (*tokenizer)->vocab_size(), f.model);
  } else if (tokenizer.status().code() == StatusCode::kNotFound) {
    spdlog::warn("no tokenizer.json in {}: token ids only (no text prompts or stop strings)",
                 f.model);
  } else {
    return fail(tokenizer.status().with_context("loading the tokenizer"));
  }
  svc_opts.adapter_root = f.adapter_root;
  svc_opts.max_upload_bytes = f.max_upload_mb << 20;
  svc_opts.backend_name = backend_name;
  LoraServeService service(scheduler->get(), &directory, svc_opts);

  const std::string server_owner = tenant_config ? "public" : "";
  if (!f.preload_adapters.empty()) {
    Status s = preload(service, **scheduler, server_owner, f.preload_adapters);
    if (!s.ok()) return fail(s);
  }
  if (tenant_config) {
    for (const Tenant& t : tenant_config->tenants()) {
      for (const DeclaredAdapter& d : t.adapters) {
        auto dir = resolve_adapter_dir(f.adapter_root, d.path);
        if (!dir.ok()) return fail(dir.status().with_context("tenant " + t.name + " adapter " + d.id));
        auto adapter = load_adapter_dir(*dir, (*scheduler)->model_config());
        if (!adapter.ok()) return fail(adapter.status().with_context("tenant " + t.name));
        Status s = service.register_adapter(d.is_public ? "public" : t.name, d.id, **adapter, nullptr);
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

  server->GetHealthCheckService()->SetServingStatus("loraserve.v1.LoraServe", true);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  std::signal(SIGHUP, on_sighup);
  while (g_signal.load() == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
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
  {
    std::lock_guard<std::mutex> lock(stop_mu);
    drained = true;
  }
  stop_cv.notify_all();
  stopper.join();
  server->Wait();
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
  cmd->add_option("--listen", f->listen, "host:port to listen on (port 0 picks a free one)")
      ->capture_default_str();
  cmd->add_option("--port-file", f->port_file, "Write the bound port to this file once listening");
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
