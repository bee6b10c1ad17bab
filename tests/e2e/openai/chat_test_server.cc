// A test-only HTTP server for the chat e2e tests: the product's OpenAI API
// (OpenAiApi + HttpServer over the real Generator, AdapterAdmin, scheduler
// and cpu engine) with a fixed ChatML renderer plugged into the chat hook,
// because the product's Jinja chat-template renderer lives elsewhere. The
// renderer is here, in the test, not in product code.
//
//   chat_test_server --model DIR --adapter-root DIR --http-port-file F
//
// Registers every adapter under --adapter-root, listens on 127.0.0.1:0,
// writes the port, and serves until SIGTERM.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "checkpoint/model_weights.h"
#include "engine/backend.h"
#include "engine/engine.h"
#include "scheduler/scheduler.h"
#include "server/adapter_admin.h"
#include "server/adapter_paths.h"
#include "server/generation.h"
#include "server/http/http_server.h"
#include "server/http/openai_api.h"
#include "server/metrics.h"
#include "tokenizer/tokenizer.h"

namespace {

std::atomic<bool> g_stop{false};
extern "C" void on_term(int) { g_stop.store(true); }

int die(const loraserve::Status& s) {
  std::fprintf(stderr, "chat_test_server: %s\n", s.to_string().c_str());
  return 1;
}

// ChatML: <|im_start|>role\ncontent<|im_end|>\n per message, then the
// assistant's opening when asked. The tiny synthetic tokenizer has no such
// special tokens, so they are plain text to it; what matters to the test is
// that the server tokenizes exactly this string, without a BOS.
loraserve::StatusOr<std::string> render_chatml(const nlohmann::json& messages, bool add_prompt) {
  std::string out;
  for (const auto& m : messages) {
    out += "<|im_start|>" + m.at("role").get<std::string>() + "\n" +
           m.at("content").get<std::string>() + "<|im_end|>\n";
  }
  if (add_prompt) out += "<|im_start|>assistant\n";
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace loraserve;
  std::string model, adapter_root, port_file;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--model") model = argv[i + 1];
    else if (flag == "--adapter-root") adapter_root = argv[i + 1];
    else if (flag == "--http-port-file") port_file = argv[i + 1];
  }
  if (model.empty() || adapter_root.empty() || port_file.empty()) {
    std::fprintf(stderr, "usage: chat_test_server --model DIR --adapter-root DIR --http-port-file F\n");
    return 2;
  }
  auto weights = ModelWeights::open(model);
  if (!weights.ok()) return die(weights.status());
  // The backend `loraserve generate` picks too: the test compares with it.
  auto backend = create_backend("auto");
  if (!backend.ok()) return die(backend.status());
  EngineOptions eo;
  eo.pool_bytes = 64ll << 20;
  eo.max_batch_tokens = 512;
  eo.max_batch_seqs = 64;
  auto engine = Engine::create(std::shared_ptr<const ModelWeights>(std::move(*weights)),
                               std::move(*backend), eo);
  if (!engine.ok()) return die(engine.status());
  SchedulerOptions so;
  auto scheduler = Scheduler::create(engine->get(), so);
  if (!scheduler.ok()) return die(scheduler.status());
  (*scheduler)->start();
  auto tokenizer = Tokenizer::load_dir(model);
  if (!tokenizer.ok()) return die(tokenizer.status());
  TenantDirectory tenants(nullptr);
  Generator generator(scheduler->get(), &tenants, *tokenizer);
  AdapterAdmin admin(scheduler->get(), &tenants, adapter_root);
  for (const auto& entry : std::filesystem::directory_iterator(adapter_root)) {
    auto adapter = load_adapter_dir(entry.path().string(), (*scheduler)->model_config());
    if (!adapter.ok()) return die(adapter.status());
    auto v = admin.register_adapter("", entry.path().filename().string(), **adapter);
    if (!v.ok()) return die(v.status());
  }
  http::OpenAiApiOptions api;
  api.served_model_name = "model";
  api.chat = ChatPrompt(render_chatml, "the test's ChatML");
  Scheduler* sched = scheduler->get();
  api.render_metrics = [sched, &tenants] { return render_prometheus(*sched, tenants, {"model", "cpu"}); };
  http::OpenAiApi openai(&generator, &admin, &tenants, api);
  http::HttpServerOptions ho;
  ho.listen = "127.0.0.1:0";
  http::HttpServer server(ho, [&openai](const http::HttpRequest& r) { return openai.handle(r); });
  Status s = server.start();
  if (!s.ok()) return die(s);
  std::ofstream(port_file) << server.port() << "\n";
  std::signal(SIGTERM, on_term);
  std::signal(SIGINT, on_term);
  while (!g_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  (*scheduler)->stop();
  server.stop();
  return 0;
}
