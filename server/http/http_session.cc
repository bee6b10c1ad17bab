#include "server/http/http_session.h"

#include <spdlog/spdlog.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <algorithm>
#include <cctype>
#include <cstdio>

#include "server/http/error_body.h"

namespace loraserve::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

namespace {

std::string reason_phrase(int status) {
  if (status == 499) return "Client Closed Request";
  const auto s = std::string(bhttp::obsolete_reason(bhttp::int_to_status(static_cast<unsigned>(status))));
  return s.empty() || s == "<unknown-status>" ? "Status" : s;
}

// Keep-alive replies say how long the connection may idle (the read
// timeout), so clients drop it before the server does rather than race it.
std::string connection_header(bool close, std::chrono::milliseconds idle) {
  if (close) return "Connection: close\r\n";
  return "Connection: keep-alive\r\nKeep-Alive: timeout=" +
         std::to_string(std::max<int64_t>(1, idle.count() / 1000)) + "\r\n";
}

std::string serialize(const HttpReply& r, bool close, std::chrono::milliseconds idle) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + reason_phrase(r.status) +
                    "\r\nServer: loraserve\r\nContent-Type: " + r.content_type +
                    "\r\nContent-Length: " + std::to_string(r.body.size()) + "\r\n" +
                    connection_header(close, idle) + "\r\n";
  out += r.body;
  return out;
}

// Server-Sent Events ride on chunked transfer encoding, so the connection
// stays usable after the stream ends.
std::string sse_header(bool close, std::chrono::milliseconds idle) {
  return std::string("HTTP/1.1 200 OK\r\nServer: loraserve\r\nContent-Type: text/event-stream\r\n"
                     "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n") +
         connection_header(close, idle) + "\r\n";
}

std::string http_chunk(const std::string& data) {
  char size[24];
  std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
  return size + data + "\r\n";
}

bool is_parse_error(const beast::error_code& ec) {
  return ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category();
}

HttpReply transport_error(int status, const std::string& message, const std::string& type,
                          const std::string& code) {
  HttpReply r;
  r.status = status;
  r.body = error_body(message, type, "", code);
  return r;
}

}  // namespace

HttpSession::HttpSession(tcp::socket socket, std::shared_ptr<HttpSharedState> state)
    : stream_(std::move(socket)), state_(std::move(state)) {}

HttpSession::~HttpSession() {
  if (async_) {
    async_->cancel();
    state_->active_responses -= 1;
  }
  state_->connections -= 1;
}

void HttpSession::run() {
  // On the strand: every handler of this session runs there.
  asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read_request(); });
}

void HttpSession::read_request() {
  if (closed_) return;
  parser_.emplace();
  parser_->body_limit(static_cast<uint64_t>(state_->options.max_body_bytes));
  parser_->header_limit(static_cast<uint32_t>(state_->options.max_header_bytes));
  // One deadline for the idle wait, the header and the body: a client that
  // trickles bytes cannot hold the connection longer than this.
  stream_.expires_after(state_->options.read_timeout);
  bhttp::async_read_header(stream_, buffer_, *parser_,
                           [self = shared_from_this()](beast::error_code ec, size_t) {
                             self->on_header(ec);
                           });
}

void HttpSession::on_header(beast::error_code ec) {
  if (closed_) return;
  if (ec) return on_read_error(ec);
  const auto& req = parser_->get();
  auto expect = req.find(bhttp::field::expect);
  if (expect != req.end() && beast::iequals(expect->value(), "100-continue")) {
    // curl waits for this before sending a body over 1 KiB.
    auto cont = std::make_shared<std::string>("HTTP/1.1 100 Continue\r\n\r\n");
    asio::async_write(stream_, asio::buffer(*cont),
                      [self = shared_from_this(), cont](beast::error_code wec, size_t) {
                        if (wec) return self->close_now();
                        bhttp::async_read(self->stream_, self->buffer_, *self->parser_,
                                          [self](beast::error_code rec, size_t) {
                                            self->on_read(rec);
                                          });
                      });
    return;
  }
  bhttp::async_read(stream_, buffer_, *parser_,
                    [self = shared_from_this()](beast::error_code rec, size_t) {
                      self->on_read(rec);
                    });
}

void HttpSession::on_read_error(beast::error_code ec) {
  if (ec == bhttp::error::body_limit) {
    return send_reply(transport_error(413,
                                      "request body exceeds " +
                                          std::to_string(state_->options.max_body_bytes) + " bytes",
                                      "invalid_request_error", "request_too_large"),
                      true);
  }
  if (ec == bhttp::error::header_limit) {
    return send_reply(transport_error(431, "request header block is too large",
                                      "invalid_request_error", "headers_too_large"),
                      true);
  }
  // end_of_stream: the client closed between requests. partial_message: it
  // closed in the middle of one; nobody is left to answer.
  if (is_parse_error(ec) && ec != bhttp::error::end_of_stream &&
      ec != bhttp::error::partial_message) {
    return send_reply(transport_error(400, "malformed HTTP request: " + ec.message(),
                                      "invalid_request_error", "bad_request"),
                      true);
  }
  // Timeouts (the stream has closed the socket already), resets, EOF.
  close_now();
}

void HttpSession::on_read(beast::error_code ec) {
  if (closed_) return;
  if (ec) return on_read_error(ec);
  handle(parser_->release());
}

void HttpSession::handle(bhttp::request<bhttp::string_body> req) {
  stream_.expires_never();
  keep_alive_ = req.keep_alive();
  HttpRequest r;
  r.method = std::string(req.method_string());
  const std::string target(req.target());
  r.path = target.substr(0, target.find('?'));
  for (const auto& field : req) {
    std::string name(field.name_string());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    r.headers[name] = std::string(field.value());
  }
  r.body = std::move(req.body());
  HandlerResult result;
  try {
    result = state_->handler(r);
  } catch (const std::exception& e) {
    // Handlers return errors as replies; this is a bug, not the client's.
    spdlog::error("http handler for {} {} threw: {}", r.method, r.path, e.what());
    result = HandlerResult{transport_error(500, "internal error", "server_error", "internal"), {}};
  }
  if (result.async) return start_async(std::move(result.async));
  send_reply(result.reply, !keep_alive_);
}

void HttpSession::send_reply(const HttpReply& reply, bool close) {
  close_after_write_ = close;
  response_done_ = true;
  write(serialize(reply, close, state_->options.read_timeout));
}

void HttpSession::start_async(std::unique_ptr<AsyncReply> async) {
  async_ = std::move(async);
  streaming_ = async_->streaming();
  header_sent_ = false;
  response_done_ = false;
  close_after_write_ = !keep_alive_;
  response_seq_ += 1;
  state_->active_responses += 1;
  // Wakes come from the scheduler thread, one per event; one post is
  // enough until pump() has run.
  auto pending = std::make_shared<std::atomic<bool>>(false);
  wake_pending_ = pending;
  std::weak_ptr<HttpSession> weak = weak_from_this();
  auto executor = stream_.get_executor();
  async_->start([pending, weak, executor] {
    if (pending->exchange(true)) return;
    asio::post(executor, [pending, weak] {
      pending->store(false);
      if (auto self = weak.lock()) self->pump();
    });
  });
  watch_peer();
  pump();
}

void HttpSession::pump() {
  if (closed_ || !async_ || writing_ || response_done_) return;
  std::string data;
  HttpReply reply;
  const bool done = async_->poll(&data, &reply);
  if (!streaming_) {
    if (done) send_reply(reply, close_after_write_);
    return;
  }
  std::string bytes;
  if (!header_sent_) {
    bytes = sse_header(close_after_write_, state_->options.read_timeout);
    header_sent_ = true;
  }
  if (!data.empty()) bytes += http_chunk(data);
  if (done) {
    bytes += "0\r\n\r\n";
    response_done_ = true;
  }
  if (!bytes.empty()) write(std::move(bytes));
}

void HttpSession::write(std::string bytes) {
  writing_ = true;
  out_ = std::move(bytes);
  stream_.expires_after(state_->options.write_timeout);
  asio::async_write(stream_, asio::buffer(out_),
                    [self = shared_from_this()](beast::error_code ec, size_t) {
                      self->on_written(ec);
                    });
}

void HttpSession::on_written(beast::error_code ec) {
  writing_ = false;
  if (closed_) return;
  if (ec) return abort_response();  // reset, or the client stopped reading (timeout)
  stream_.expires_never();
  if (response_done_) return finish_response();
  pump();  // events that came while writing
}

void HttpSession::watch_peer() {
  const uint64_t seq = response_seq_;
  stream_.socket().async_wait(tcp::socket::wait_read,
                              [self = shared_from_this(), seq](beast::error_code ec) {
                                self->on_peer_readable(ec, seq);
                              });
}

void HttpSession::on_peer_readable(beast::error_code ec, uint64_t seq) {
  if (closed_ || seq != response_seq_ || !async_) return;  // that response is over
  if (ec == asio::error::operation_aborted) return;
  if (ec) return abort_response();
  // Peek without consuming: EOF or a reset means the client went away;
  // bytes are a pipelined request, read after this reply; nothing at all
  // was a spurious wake-up, so keep watching.
  char byte;
  beast::error_code pec;
  tcp::socket& socket = stream_.socket();
  socket.non_blocking(true, pec);  // affects this synchronous peek only
  socket.receive(asio::buffer(&byte, 1), tcp::socket::message_peek, pec);
  if (pec == asio::error::would_block || pec == asio::error::try_again) return watch_peer();
  if (pec) return abort_response();
}

void HttpSession::finish_response() {
  if (async_) {
    async_.reset();
    state_->active_responses -= 1;
  }
  response_seq_ += 1;  // a pending peer watch is now stale
  response_done_ = false;
  if (close_after_write_) return close_gracefully();
  read_request();
}

void HttpSession::abort_response() {
  if (async_) {
    async_->cancel();
    async_.reset();
    state_->active_responses -= 1;
  }
  close_now();
}

void HttpSession::close_gracefully() {
  // Half-close, then read what the client still sends until it closes too,
  // so the reply is not destroyed by a reset (e.g. an unread 413 body).
  beast::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream_.expires_after(std::chrono::seconds(2));
  discard_.resize(16 << 10);
  drain();
}

void HttpSession::drain() {
  stream_.async_read_some(asio::buffer(discard_),
                          [self = shared_from_this()](beast::error_code ec, size_t) {
                            if (ec) return self->close_now();
                            self->drain();
                          });
}

void HttpSession::close_now() {
  if (closed_) return;
  closed_ = true;
  beast::error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
  stream_.close();
}

}  // namespace loraserve::http
