#include "server/http/openai_api.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <mutex>
#include <random>

#include "server/http/error_body.h"
#include "server/http/openai_reply.h"
#include "server/http/openai_request.h"

namespace loraserve::http {

namespace {

using nlohmann::json;

// Deeper JSON than any request needs is refused before parsing, so no
// input can make the parser or the value's destructor recurse deeply.
constexpr int kMaxJsonDepth = 64;

int json_depth(const std::string& text) {
  int depth = 0, max_depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      max_depth = std::max(max_depth, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return max_depth;
}

// The body as a JSON object, or a 400 saying why not (syntax, invalid
// UTF-8 inside a string, nesting, not an object).
bool parse_body(const std::string& body, json* out, HttpReply* error) {
  if (json_depth(body) > kMaxJsonDepth) {
    *error = error_reply(invalid_argument("the JSON body nests deeper than " +
                                          std::to_string(kMaxJsonDepth) + " levels"));
    return false;
  }
  try {
    *out = json::parse(body);
  } catch (const json::exception& e) {
    *error = error_reply(invalid_argument(std::string("the body is not valid JSON: ") + e.what()));
    return false;
  }
  if (!out->is_object()) {
    *error = error_reply(invalid_argument("the body must be a JSON object"));
    return false;
  }
  return true;
}

HandlerResult reply(HttpReply r) { return HandlerResult{std::move(r), nullptr}; }
HandlerResult error(const Status& s, const std::string& param = "") {
  return reply(error_reply(s, param));
}
HttpReply json_reply(const json& j, int status = 200) {
  HttpReply r;
  r.status = status;
  r.body = j.dump(-1, ' ', false, json::error_handler_t::replace);
  return r;
}

std::string random_id(const char* prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(rng()));
  return std::string(prefix) + hex;
}

// Work moved off the io threads; its reply is picked up by the session.
class BlockingReply final : public AsyncReply {
 public:
  BlockingReply(boost::asio::thread_pool* pool, std::function<HttpReply()> work)
      : pool_(pool), work_(std::move(work)), state_(std::make_shared<State>()) {}
  bool streaming() const override { return false; }
  void start(std::function<void()> wake) override {
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      state_->wake = std::move(wake);
    }
    boost::asio::post(*pool_, [state = state_, work = std::move(work_)] {
      HttpReply r = work();
      std::function<void()> wake;
      {
        std::lock_guard<std::mutex> lock(state->mu);
        state->reply = std::move(r);
        state->done = true;
        wake = state->wake;
      }
      wake();
    });
  }
  bool poll(std::string*, HttpReply* reply) override {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (!state_->done) return false;
    *reply = state_->reply;
    return true;
  }
  // An adapter load runs to its end; the result is simply not sent.
  void cancel() override {}

 private:
  struct State {
    std::mutex mu;
    bool done = false;  // guarded by mu
    HttpReply reply;    // guarded by mu
    std::function<void()> wake;
  };
  boost::asio::thread_pool* pool_;
  std::function<HttpReply()> work_;
  std::shared_ptr<State> state_;
};

json adapter_json(const AdapterView& v, const std::string& parent, int64_t created) {
  std::string owner = "loraserve";
  if (v.ownership && !v.ownership->owner.empty()) owner = v.ownership->owner;
  return {{"id", v.id},
          {"object", "model"},
          {"created", created},
          {"owned_by", owner},
          {"root", v.id},
          {"parent", parent},
          {"rank", v.summary.rank},
          {"bytes", v.summary.bytes},
          {"resident", v.summary.resident},
          {"version", v.ownership ? v.ownership->version : 1},
          {"stored", v.ownership && v.ownership->stored},
          {"loaded", v.loaded}};
}

}  // namespace

struct OpenAiApi::AdminPool {
  explicit AdminPool(int threads) : pool(static_cast<size_t>(std::max(1, threads))) {}
  ~AdminPool() { pool.join(); }
  boost::asio::thread_pool pool;
};

OpenAiApi::OpenAiApi(Generator* generator, AdapterAdmin* adapters, TenantDirectory* tenants,
                     OpenAiApiOptions options)
    : generator_(generator),
      adapters_(adapters),
      tenants_(tenants),
      options_(std::move(options)),
      created_(std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count()),
      admin_pool_(std::make_unique<AdminPool>(options_.admin_threads)) {}

OpenAiApi::~OpenAiApi() = default;

HandlerResult OpenAiApi::handle(const HttpRequest& r) {
  struct Route {
    const char* path;
    const char* method;
    std::function<HandlerResult()> run;
  };
  const Route routes[] = {
      {"/v1/completions", "POST", [&] { return generate(r, ApiKind::kCompletion); }},
      {"/v1/chat/completions", "POST", [&] { return generate(r, ApiKind::kChat); }},
      {"/v1/models", "GET", [&] { return models(r); }},
      {"/v1/load_lora_adapter", "POST", [&] { return load_adapter(r); }},
      {"/v1/unload_lora_adapter", "POST", [&] { return unload_adapter(r); }},
      {"/health", "GET", [&] { return health(); }},
      {"/metrics", "GET", [&] { return metrics(); }},
  };
  for (const Route& route : routes) {
    if (r.path != route.path) continue;
    if (r.method != route.method) {
      HttpReply e;
      e.status = 405;
      e.body = error_body(std::string(route.path) + " takes " + route.method, "invalid_request_error",
                          "", "method_not_allowed");
      return reply(std::move(e));
    }
    return route.run();
  }
  HttpReply e;
  e.status = 404;
  e.body = error_body("no route for " + r.method + " " + r.path, "not_found_error", "", "not_found");
  return reply(std::move(e));
}

StatusOr<Caller> OpenAiApi::authenticate(const HttpRequest& r) const {
  return tenants_->authenticate(r.header("authorization"));
}

HandlerResult OpenAiApi::generate(const HttpRequest& r, ApiKind kind) {
  if (draining_.load()) return error(unavailable_error("the server is draining"));
  auto caller = authenticate(r);
  if (!caller.ok()) return error(caller.status());
  json body;
  HttpReply bad;
  if (!parse_body(r.body, &body, &bad)) return reply(std::move(bad));
  OpenAiRequest req;
  RequestError err;
  const bool parsed = kind == ApiKind::kChat ? parse_chat_request(body, &req, &err)
                                             : parse_completion_request(body, &req, &err);
  if (!parsed) return error(err.status, err.param);
  if (!req.model.empty() && req.model != options_.served_model_name) {
    req.input.adapter_id = req.model;
  }
  if (kind == ApiKind::kChat) {
    // The same rendering gRPC's Generate does for `messages`.
    Status rendered = options_.chat.apply(req.messages, req.add_generation_prompt, &req.input);
    if (!rendered.ok()) return error(rendered, "messages");
  }
  ReplyShape shape;
  shape.kind = kind;
  shape.id = random_id(kind == ApiKind::kChat ? "chatcmpl-" : "cmpl-");
  shape.created = std::chrono::duration_cast<std::chrono::seconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  shape.model = req.model.empty() ? options_.served_model_name : req.model;
  shape.stream = req.stream;
  shape.include_usage = req.include_usage;
  shape.logprobs = req.logprobs;
  shape.tokens_as_ids = req.tokens_as_ids;
  shape.tokenizer = generator_->tokenizer();
  req.input.request_id = shape.id;
  auto g = generator_->start(*caller, std::move(req.input));
  if (!g.ok()) {
    const StatusCode c = g.status().code();
    return error(g.status(), c == StatusCode::kNotFound ? "model" : "");
  }
  return HandlerResult{{}, std::make_unique<GenerationReply>(std::move(*g), std::move(shape))};
}

HandlerResult OpenAiApi::models(const HttpRequest& r) {
  auto caller = authenticate(r);
  if (!caller.ok()) return error(caller.status());
  json data = json::array();
  data.push_back({{"id", options_.served_model_name},
                  {"object", "model"},
                  {"created", created_},
                  {"owned_by", "loraserve"},
                  {"root", options_.served_model_name},
                  {"parent", nullptr}});
  for (const AdapterView& v : adapters_->list(*caller)) {
    data.push_back(adapter_json(v, options_.served_model_name, created_));
  }
  return reply(json_reply({{"object", "list"}, {"data", data}}));
}

HandlerResult OpenAiApi::load_adapter(const HttpRequest& r) {
  if (draining_.load()) return error(unavailable_error("the server is draining"));
  auto caller = authenticate(r);
  if (!caller.ok()) return error(caller.status());
  json body;
  HttpReply bad;
  if (!parse_body(r.body, &body, &bad)) return reply(std::move(bad));
  auto name = body.find("lora_name");
  auto path = body.find("lora_path");
  if (name == body.end() || !name->is_string()) {
    return error(invalid_argument("'lora_name' is required, as a string"), "lora_name");
  }
  if (path == body.end() || !path->is_string()) {
    return error(invalid_argument("'lora_path' is required, as a string"), "lora_path");
  }
  AdapterOwnerChoice choice;
  auto owner = body.find("owner_tenant");
  if (owner != body.end() && !owner->is_null()) {
    if (!owner->is_string()) return error(invalid_argument("'owner_tenant' must be a string"), "owner_tenant");
    choice.owner_tenant = owner->get<std::string>();
  }
  auto pub = body.find("is_public");
  if (pub != body.end() && !pub->is_null()) {
    if (!pub->is_boolean()) return error(invalid_argument("'is_public' must be a boolean"), "is_public");
    choice.is_public = pub->get<bool>();
  }
  auto replace = body.find("replace");
  if (replace != body.end() && !replace->is_null()) {
    if (!replace->is_boolean()) return error(invalid_argument("'replace' must be a boolean"), "replace");
    choice.replace = replace->get<bool>();
  }
  return run_blocking([this, caller = *caller, id = name->get<std::string>(),
                       dir = path->get<std::string>(), choice] {
    auto v = adapters_->load(caller, id, dir, choice);
    if (!v.ok()) {
      const StatusCode c = v.status().code();
      return error_reply(v.status(), c == StatusCode::kAlreadyExists ? "lora_name" : "lora_path");
    }
    return json_reply(adapter_json(*v, options_.served_model_name, created_));
  });
}

HandlerResult OpenAiApi::unload_adapter(const HttpRequest& r) {
  auto caller = authenticate(r);
  if (!caller.ok()) return error(caller.status());
  json body;
  HttpReply bad;
  if (!parse_body(r.body, &body, &bad)) return reply(std::move(bad));
  auto name = body.find("lora_name");
  if (name == body.end() || !name->is_string()) {
    return error(invalid_argument("'lora_name' is required, as a string"), "lora_name");
  }
  std::string owner_tenant;
  auto owner = body.find("owner_tenant");
  if (owner != body.end() && !owner->is_null()) {
    if (!owner->is_string()) return error(invalid_argument("'owner_tenant' must be a string"), "owner_tenant");
    owner_tenant = owner->get<std::string>();
  }
  return run_blocking([this, caller = *caller, id = name->get<std::string>(), owner_tenant] {
    Status s = adapters_->unload(caller, id, owner_tenant);
    if (!s.ok()) return error_reply(s, "lora_name");
    return json_reply({{"id", id}, {"object", "model"}, {"deleted", true}});
  });
}

HandlerResult OpenAiApi::health() const {
  if (draining_.load()) return reply(json_reply({{"status", "draining"}}, 503));
  return reply(json_reply({{"status", "ok"}}));
}

HandlerResult OpenAiApi::metrics() const {
  HttpReply r;
  if (!options_.render_metrics) return error(not_found("metrics are not enabled"));
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  r.body = options_.render_metrics();
  return reply(std::move(r));
}

HandlerResult OpenAiApi::run_blocking(std::function<HttpReply()> work) {
  return HandlerResult{{}, std::make_unique<BlockingReply>(&admin_pool_->pool, std::move(work))};
}

}  // namespace loraserve::http
