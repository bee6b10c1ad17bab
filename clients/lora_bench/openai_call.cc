#include "clients/lora_bench/openai_call.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>
#include <limits>
#include <thread>

namespace loraserve::bench {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using nlohmann::json;

namespace {

// The gRPC code the server would have given for an HTTP error status, so
// the report counts both transports' failures alike.
grpc::StatusCode code_for_http(unsigned status) {
  switch (status) {
    case 400: return grpc::StatusCode::INVALID_ARGUMENT;
    case 401: return grpc::StatusCode::UNAUTHENTICATED;
    case 403: return grpc::StatusCode::PERMISSION_DENIED;
    case 404: return grpc::StatusCode::NOT_FOUND;
    case 409: return grpc::StatusCode::FAILED_PRECONDITION;
    case 429: return grpc::StatusCode::RESOURCE_EXHAUSTED;
    case 503: return grpc::StatusCode::UNAVAILABLE;
    case 504: return grpc::StatusCode::DEADLINE_EXCEEDED;
    default: return grpc::StatusCode::UNKNOWN;
  }
}

// The state of one request, shared with its asio handlers so that a handler
// still queued after the call ended (a cancelled timer) finds it alive. All
// handlers run on the transport's single io thread.
struct CallState : std::enable_shared_from_this<CallState> {
  CallState(asio::io_context& ioc, Driver* d, BenchCall* c)
      : socket(ioc), timer(ioc), driver(d), call(c) {}

  tcp::socket socket;
  asio::steady_timer timer;
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::buffer_body> parser;
  std::string request;
  char chunk[16 << 10];
  std::string events;  // SSE text not yet split into events
  std::string error_body;
  Driver* driver;
  BenchCall* call;     // valid until finish()
  RequestRecord record;
  Clock::time_point last_token;
  bool done_stream = false;  // saw data: [DONE]
  bool ended = false;
  bool cancelled = false;

  void fail(grpc::StatusCode code, std::string message) {
    if (record.code == grpc::StatusCode::OK) {
      record.code = code;
      record.error_message = std::move(message);
    }
    finish();
  }

  void finish() {
    if (ended) return;
    ended = true;
    beast::error_code ec;
    socket.close(ec);
    timer.cancel();
    record.end = Clock::now();
    if (record.code == grpc::StatusCode::OK && !done_stream) {
      record.code = cancelled ? grpc::StatusCode::CANCELLED : grpc::StatusCode::UNKNOWN;
      if (record.error_message.empty()) record.error_message = "the stream ended without [DONE]";
    }
    record.cancelled_at_drain = cancelled && record.code != grpc::StatusCode::OK;
    call->record() = std::move(record);
    BenchCall* c = call;
    call = nullptr;
    driver->on_finished(c);  // the call may be deleted from here on
  }

  void on_event(const std::string& data) {
    if (data == "[DONE]") {
      done_stream = true;
      return;
    }
    json j = json::parse(data, nullptr, false);
    if (j.is_discarded()) return fail(grpc::StatusCode::INTERNAL, "bad SSE JSON: " + data);
    if (j.contains("error")) {
      return fail(grpc::StatusCode::UNKNOWN, j["error"].value("message", std::string("error")));
    }
    if (j.contains("usage") && j["usage"].is_object()) {
      record.completion_tokens = j["usage"].value("completion_tokens", 0u);
    }
    const json& choices = j["choices"];
    if (!choices.is_array() || choices.empty()) return;
    const json& c = choices[0];
    size_t k = 0;
    if (c.contains("logprobs") && c["logprobs"].is_object()) k = c["logprobs"]["tokens"].size();
    if (k > 0) {
      const Clock::time_point now = Clock::now();
      if (record.tokens == 0) {
        record.first_token = now;
      } else {
        const float gap = static_cast<float>(
            std::chrono::duration<double, std::milli>(now - last_token).count() / k);
        record.itl_ms.insert(record.itl_ms.end(), k, gap);
      }
      last_token = now;
      record.tokens += static_cast<uint32_t>(k);
      driver->add_tokens(k);
    }
    if (c.contains("finish_reason") && c["finish_reason"].is_string()) record.got_final = true;
  }

  void on_body(size_t n) {
    if (parser.get().result_int() != 200) {
      error_body.append(chunk, n);
      return;
    }
    events.append(chunk, n);
    size_t end;
    while (!ended && (end = events.find("\n\n")) != std::string::npos) {
      const std::string event = events.substr(0, end);
      events.erase(0, end + 2);
      if (event.rfind("data: ", 0) == 0) on_event(event.substr(6));
    }
  }

  void read_body() {
    auto self = shared_from_this();
    parser.get().body().data = chunk;
    parser.get().body().size = sizeof(chunk);
    bhttp::async_read_some(socket, buffer, parser, [self](beast::error_code ec, size_t) {
      if (self->ended) return;
      if (ec == bhttp::error::need_buffer) ec = {};
      if (ec) return self->fail(grpc::StatusCode::UNAVAILABLE, "reading the body: " + ec.message());
      self->on_body(sizeof(self->chunk) - self->parser.get().body().size);
      if (self->ended) return;
      if (!self->parser.is_done()) return self->read_body();
      const unsigned status = self->parser.get().result_int();
      if (status != 200) {
        json j = json::parse(self->error_body, nullptr, false);
        std::string message = self->error_body;
        if (!j.is_discarded() && j.contains("error")) message = j["error"].value("message", message);
        return self->fail(code_for_http(status), message);
      }
      self->finish();
    });
  }

  void start(const tcp::endpoint& endpoint) {
    auto self = shared_from_this();
    record.start = Clock::now();
    socket.async_connect(endpoint, [self](beast::error_code ec) {
      if (self->ended) return;
      if (ec) return self->fail(grpc::StatusCode::UNAVAILABLE, "connect: " + ec.message());
      asio::async_write(self->socket, asio::buffer(self->request),
                        [self](beast::error_code wec, size_t) {
                          if (self->ended) return;
                          if (wec) return self->fail(grpc::StatusCode::UNAVAILABLE, wec.message());
                          bhttp::async_read_header(self->socket, self->buffer, self->parser,
                                                   [self](beast::error_code rec, size_t) {
                                                     if (self->ended) return;
                                                     if (rec) {
                                                       return self->fail(
                                                           grpc::StatusCode::UNAVAILABLE,
                                                           "reading the header: " + rec.message());
                                                     }
                                                     self->read_body();
                                                   });
                        });
    });
  }
};

class OpenAiCall final : public BenchCall {
 public:
  OpenAiCall(asio::io_context& ioc, const tcp::endpoint& endpoint, const BenchConfig& cfg,
             Driver* driver, RequestSpec spec)
      : ioc_(ioc), endpoint_(endpoint), timeout_s_(cfg.request_timeout_s),
        state_(std::make_shared<CallState>(ioc, driver, this)) {
    json body = {{"prompt", spec.prompt_ids},
                 {"max_tokens", spec.output_len},
                 {"ignore_eos", true},  // the drawn output length is the length we get
                 {"temperature", cfg.temperature},
                 {"seed", cfg.seed + spec.index},
                 {"stream", true},
                 {"stream_options", {{"include_usage", true}}},
                 {"logprobs", 0},
                 {"return_tokens_as_token_ids", true}};
    // No model: the base model. An adapter by its id.
    if (!spec.adapter_id.empty()) body["model"] = spec.adapter_id;
    const std::string text = body.dump();
    std::string& r = state_->request;
    r = "POST /v1/completions HTTP/1.1\r\nHost: " + cfg.http_addr +
        "\r\nContent-Type: application/json\r\nConnection: close\r\n";
    if (!cfg.api_key.empty()) r += "Authorization: Bearer " + cfg.api_key + "\r\n";
    r += "Content-Length: " + std::to_string(text.size()) + "\r\n\r\n" + text;
    state_->parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    RequestRecord& rec = state_->record;
    rec.index = spec.index;
    rec.adapter_id = spec.adapter_id;
    rec.prompt_len = static_cast<uint32_t>(spec.prompt_ids.size());
    rec.output_len = spec.output_len;
    rec.itl_ms.reserve(spec.output_len);
  }

  void start() override {
    std::shared_ptr<CallState> s = state_;
    const tcp::endpoint endpoint = endpoint_;
    const double timeout_s = timeout_s_;
    asio::post(ioc_, [s, endpoint, timeout_s] {
      if (timeout_s > 0) {
        s->timer.expires_after(std::chrono::microseconds(static_cast<int64_t>(timeout_s * 1e6)));
        s->timer.async_wait([s](beast::error_code ec) {
          if (!ec && !s->ended) s->fail(grpc::StatusCode::DEADLINE_EXCEEDED, "request timeout");
        });
      }
      s->start(endpoint);
    });
  }

  void cancel() override {
    std::shared_ptr<CallState> s = state_;
    asio::post(ioc_, [s] {
      if (s->ended) return;
      s->cancelled = true;
      s->fail(grpc::StatusCode::CANCELLED, "cancelled at drain");
    });
  }

 private:
  asio::io_context& ioc_;
  tcp::endpoint endpoint_;
  double timeout_s_;
  std::shared_ptr<CallState> state_;
};

}  // namespace

struct OpenAiTransport::Impl {
  explicit Impl(const BenchConfig& c) : cfg(c), work(asio::make_work_guard(ioc)) {}
  const BenchConfig& cfg;
  asio::io_context ioc;
  asio::executor_work_guard<asio::io_context::executor_type> work;
  tcp::endpoint endpoint;
  std::thread thread;
};

OpenAiTransport::OpenAiTransport(const BenchConfig& cfg) : impl_(std::make_unique<Impl>(cfg)) {}

OpenAiTransport::~OpenAiTransport() {
  impl_->work.reset();
  impl_->ioc.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

bool OpenAiTransport::start(std::string* error) {
  const std::string& addr = impl_->cfg.http_addr;
  const size_t colon = addr.rfind(':');
  if (colon == std::string::npos) {
    *error = "--http-addr wants host:port, got '" + addr + "'";
    return false;
  }
  beast::error_code ec;
  tcp::resolver resolver(impl_->ioc);
  auto results = resolver.resolve(addr.substr(0, colon), addr.substr(colon + 1), ec);
  if (ec || results.empty()) {
    *error = "cannot resolve " + addr + ": " + ec.message();
    return false;
  }
  impl_->endpoint = results.begin()->endpoint();
  impl_->thread = std::thread([this] { impl_->ioc.run(); });
  return true;
}

CallFactory OpenAiTransport::calls() {
  Impl* impl = impl_.get();
  return [impl](Driver* driver, RequestSpec spec) -> BenchCall* {
    return new OpenAiCall(impl->ioc, impl->endpoint, impl->cfg, driver, std::move(spec));
  };
}

}  // namespace loraserve::bench
