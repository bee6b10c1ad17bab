// lora-cli generate: one streaming Generate call. Tokens are printed as they
// arrive; Ctrl-C cancels the call (the server sees the cancellation and frees
// the request's pages) and prints what came so far. With --chat (or
// --messages) the prompt is a chat that the server renders with the model's
// chat template, as its HTTP chat endpoint does.
#include <signal.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "clients/lora_cli/client.h"
#include "proto/loraserve.grpc.pb.h"

namespace loraserve::client {
namespace {

struct GenerateOptions {
  std::string adapter;  // empty = base model
  std::vector<uint32_t> prompt_ids;
  std::string prompt;  // text, encoded by the server's tokenizer
  bool chat = false;    // send `prompt` as one user message instead
  std::string system;   // with chat: a system message before it
  std::string messages_file;  // a JSON list of {role, content}; "-" = stdin
  std::vector<std::string> stop;
  uint32_t max_new_tokens = 0;  // 0 = server default
  float temperature = 0.0f;
  uint32_t top_k = 0;
  float top_p = 0.0f;
  uint64_t seed = 0;
  std::vector<uint32_t> stop_ids;
  bool ignore_eos = false;
  std::string request_id;
  bool json = false;
};

// Set by the SIGINT handler; read by the watcher thread. A lock-free atomic is
// async-signal-safe to store to.
std::atomic<bool> g_interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free);

extern "C" void on_sigint(int) {
  g_interrupted.store(true);
  // A second Ctrl-C kills the process the usual way.
  signal(SIGINT, SIG_DFL);
}

// While alive: SIGINT cancels `ctx`. The handler only sets a flag; this
// object's thread polls it and calls TryCancel (not async-signal-safe itself).
class InterruptWatcher {
 public:
  explicit InterruptWatcher(grpc::ClientContext* ctx) : ctx_(ctx) {
    g_interrupted.store(false);
    struct sigaction action = {};
    action.sa_handler = on_sigint;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, &previous_);
    thread_ = std::thread([this] { run(); });
  }
  ~InterruptWatcher() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
    sigaction(SIGINT, &previous_, nullptr);
  }
  InterruptWatcher(const InterruptWatcher&) = delete;
  InterruptWatcher& operator=(const InterruptWatcher&) = delete;

  bool interrupted() const { return g_interrupted.load(); }

 private:
  void run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!done_) {
      cv_.wait_for(lock, std::chrono::milliseconds(20));
      if (g_interrupted.load()) {
        ctx_->TryCancel();
        return;
      }
    }
  }

  grpc::ClientContext* ctx_;
  struct sigaction previous_ = {};
  std::mutex mu_;  // guards done_
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

const char* finish_reason_name(v1::FinishReason reason) {
  switch (reason) {
    case v1::FINISH_REASON_LENGTH:
      return "length";
    case v1::FINISH_REASON_STOP:
      return "stop";
    case v1::FINISH_REASON_CANCELLED:
      return "cancelled";
    default:
      return "unspecified";
  }
}

// A float as the shortest decimal that reads back to it (-0.1234567, not
// -0.12345670163631439 as a widened double would print).
double float_for_json(float value) {
  char buf[32];
  const auto result = std::to_chars(buf, buf + sizeof(buf) - 1, value);
  *result.ptr = '\0';
  return std::strtod(buf, nullptr);
}

double ms_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

// Reads --messages: a JSON list of {role, content} (or {"messages": [...]},
// an OpenAI request body). Roles are left to the server to judge.
bool read_messages(const std::string& path, v1::GenerateRequest* request, std::string* error) {
  std::string text;
  if (path == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      *error = "cannot read " + path;
      return false;
    }
    text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  nlohmann::json doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_object() && doc.contains("messages")) doc = doc["messages"];
  if (!doc.is_array() || doc.empty()) {
    *error = path + ": expected a non-empty JSON list of {\"role\", \"content\"}";
    return false;
  }
  for (const nlohmann::json& m : doc) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() ||
        !m.contains("content") || !m["content"].is_string()) {
      *error = path + ": each message needs \"role\" and \"content\" strings";
      return false;
    }
    v1::ChatMessage* out = request->add_messages();
    out->set_role(m["role"].get<std::string>());
    out->set_content(m["content"].get<std::string>());
  }
  return true;
}

int run_generate(const GlobalOptions& opts, const GenerateOptions& gen) {
  if (gen.prompt_ids.empty() && gen.prompt.empty() && gen.messages_file.empty()) {
    std::fprintf(stderr, "error: give --prompt TEXT, --prompt-ids IDS or --messages FILE\n");
    return kExitUsage;
  }
  if (gen.chat && gen.prompt.empty()) {
    std::fprintf(stderr, "error: --chat sends --prompt TEXT as the user's message\n");
    return kExitUsage;
  }
  v1::GenerateRequest request;
  request.set_adapter_id(gen.adapter);
  for (uint32_t id : gen.prompt_ids) request.add_prompt_token_ids(id);
  if (!gen.messages_file.empty()) {
    std::string error;
    if (!read_messages(gen.messages_file, &request, &error)) {
      std::fprintf(stderr, "error: %s\n", error.c_str());
      return kExitUsage;
    }
  } else if (gen.chat) {
    if (!gen.system.empty()) {
      v1::ChatMessage* system = request.add_messages();
      system->set_role("system");
      system->set_content(gen.system);
    }
    v1::ChatMessage* user = request.add_messages();
    user->set_role("user");
    user->set_content(gen.prompt);
  } else {
    request.set_prompt(gen.prompt);
  }
  request.set_request_id(gen.request_id);
  v1::SamplingParams* sampling = request.mutable_sampling();
  sampling->set_max_new_tokens(gen.max_new_tokens);
  sampling->set_temperature(gen.temperature);
  sampling->set_top_k(gen.top_k);
  sampling->set_top_p(gen.top_p);
  sampling->set_seed(gen.seed);
  for (uint32_t id : gen.stop_ids) sampling->add_stop_token_ids(id);
  for (const std::string& st : gen.stop) sampling->add_stop(st);
  sampling->set_ignore_eos(gen.ignore_eos);

  auto stub = v1::LoraServe::NewStub(make_channel(opts));
  grpc::ClientContext ctx;
  set_deadline(opts, &ctx);
  clients::add_adapter_routing(&ctx, gen.adapter);

  std::vector<uint32_t> tokens;
  std::vector<float> logprobs;
  std::string text;
  const bool show_text = gen.prompt_ids.empty();  // text (or chat) in, text out
  v1::GenerateResponse final_message;
  bool got_final = false;
  std::string request_id = gen.request_id;
  double client_ttft_ms = -1.0;
  const auto start = std::chrono::steady_clock::now();

  grpc::Status status;
  bool interrupted = false;
  {
    InterruptWatcher watcher(&ctx);
    auto reader = stub->Generate(&ctx, request);
    v1::GenerateResponse response;
    while (reader->Read(&response)) {
      if (!response.request_id().empty()) request_id = response.request_id();
      if (client_ttft_ms < 0 && response.token_ids_size() > 0) client_ttft_ms = ms_since(start);
      for (int i = 0; i < response.token_ids_size(); ++i) {
        tokens.push_back(response.token_ids(i));
        if (!gen.json && !show_text) std::printf("%u ", response.token_ids(i));
      }
      text += response.text();
      if (!gen.json && show_text) std::fputs(response.text().c_str(), stdout);
      for (float lp : response.logprobs()) logprobs.push_back(lp);
      if (!gen.json) std::fflush(stdout);
      if (response.final()) {
        final_message = response;
        got_final = true;
      }
    }
    status = reader->Finish();
    interrupted = watcher.interrupted();
  }
  const double client_total_ms = ms_since(start);
  if (!gen.json && !tokens.empty()) std::printf("\n");

  // Ctrl-C: report what came, as a cancelled generation.
  const bool cancelled_here = interrupted && !got_final;
  if (!cancelled_here) {
    if (!status.ok()) return report_error(status);
    if (!got_final) return report_error("the stream ended without a final message");
  }

  const char* finish =
      cancelled_here ? "cancelled" : finish_reason_name(final_message.finish_reason());
  const uint32_t prompt_tokens = got_final ? final_message.usage().prompt_tokens()
                                           : static_cast<uint32_t>(gen.prompt_ids.size());
  const uint32_t completion_tokens =
      got_final ? final_message.usage().completion_tokens() : static_cast<uint32_t>(tokens.size());
  // Server timings when the server finished the request; our own clock otherwise.
  const double ttft_ms = got_final ? final_message.timings().ttft_ms() : client_ttft_ms;
  const double total_ms = got_final ? final_message.timings().total_ms() : client_total_ms;

  if (gen.json) {
    nlohmann::json out;
    out["tokens"] = tokens;
    out["text"] = text;
    nlohmann::json lps = nlohmann::json::array();
    for (float lp : logprobs) lps.push_back(float_for_json(lp));
    out["logprobs"] = std::move(lps);
    out["finish_reason"] = finish;
    out["prompt_tokens"] = prompt_tokens;
    out["completion_tokens"] = completion_tokens;
    out["ttft_ms"] = ttft_ms;
    out["total_ms"] = total_ms;
    out["request_id"] = request_id;
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("finish_reason: %s\n", finish);
    std::printf("usage: prompt_tokens=%u completion_tokens=%u\n", prompt_tokens, completion_tokens);
    if (got_final) {
      std::printf("timings: queue_ms=%.2f ttft_ms=%.2f total_ms=%.2f (client total %.2f ms)\n",
                  final_message.timings().queue_ms(), ttft_ms, total_ms, client_total_ms);
    } else {
      std::printf("timings (client clock): ttft_ms=%.2f total_ms=%.2f\n", ttft_ms, total_ms);
    }
    std::printf("request_id: %s\n", request_id.c_str());
  }
  std::fflush(stdout);
  if (cancelled_here) {
    std::fprintf(stderr, "interrupted: the request was cancelled\n");
    return kExitInterrupted;
  }
  return kExitOk;
}

}  // namespace

void add_generate_command(CLI::App& app, const GlobalOptions* opts, Runner* runner) {
  auto gen = std::make_shared<GenerateOptions>();
  CLI::App* cmd = app.add_subcommand("generate", "stream tokens for one prompt");
  cmd->add_option("--adapter", gen->adapter, "adapter id (omit for the base model)");
  auto* ids = cmd->add_option("--prompt-ids", gen->prompt_ids, "prompt token ids, e.g. 1,2,3")
                  ->delimiter(',');
  auto* text = cmd->add_option("--prompt", gen->prompt,
                               "prompt text (the server encodes it); the reply streams as text");
  auto* chat = cmd->add_flag("--chat", gen->chat,
                             "send --prompt as a user message, rendered by the model's chat "
                             "template (the assistant's reply follows)");
  auto* system = cmd->add_option("--system", gen->system, "with --chat: a system message first");
  auto* messages = cmd->add_option("--messages", gen->messages_file,
                                   "a chat: JSON file with a list of {role, content} "
                                   "(system, user, assistant); - reads stdin");
  ids->excludes(text);
  text->excludes(ids);
  chat->needs(text);
  system->needs(chat);
  messages->excludes(ids)->excludes(text)->excludes(chat);
  cmd->add_option("--stop", gen->stop, "stop string (repeatable); not included in the output");
  cmd->add_option("--max-new-tokens", gen->max_new_tokens, "0 = server default");
  cmd->add_option("--temperature", gen->temperature, "0 = greedy")->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-k", gen->top_k, "0 = off");
  cmd->add_option("--top-p", gen->top_p, "0 or 1 = off")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", gen->seed, "sampling seed");
  cmd->add_option("--stop-ids", gen->stop_ids, "stop token ids, e.g. 2,13")->delimiter(',');
  cmd->add_flag("--ignore-eos", gen->ignore_eos, "do not stop at the model's EOS token");
  cmd->add_option("--request-id", gen->request_id, "echoed back; the server makes one if empty");
  cmd->add_flag("--json", gen->json, "print one JSON line at the end instead of streaming");
  cmd->callback(
      [opts, gen, runner] { *runner = [opts, gen] { return run_generate(*opts, *gen); }; });
}

}  // namespace loraserve::client
