#include "server/http/http_server.h"

#include <spdlog/spdlog.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include "server/http/http_session.h"

namespace loraserve::http {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

struct HttpServer::Impl {
  explicit Impl(int threads) : ioc(threads), acceptor(ioc), retry(ioc) {}

  void accept() {
    acceptor.async_accept(asio::make_strand(ioc), [this](boost::system::error_code ec,
                                                         tcp::socket socket) {
      if (!acceptor.is_open()) return;
      if (ec) {
        // Out of descriptors (EMFILE) and the like: back off instead of
        // spinning; the connections that exist keep being served.
        spdlog::warn("http accept failed: {}", ec.message());
        retry.expires_after(std::chrono::milliseconds(100));
        retry.async_wait([this](boost::system::error_code wec) {
          if (!wec) accept();
        });
        return;
      }
      if (state->connections.load() >= state->options.max_connections) {
        boost::system::error_code ignored;
        socket.close(ignored);  // over the cap: refuse rather than starve the rest
      } else {
        state->connections += 1;
        std::make_shared<HttpSession>(std::move(socket), state)->run();
      }
      accept();
    });
  }

  asio::io_context ioc;
  tcp::acceptor acceptor;
  asio::steady_timer retry;
  std::shared_ptr<HttpSharedState> state;
  std::vector<std::thread> threads;
};

HttpServer::HttpServer(HttpServerOptions options, HttpHandler handler)
    : impl_(std::make_unique<Impl>(std::max(1, options.io_threads))) {
  impl_->state = std::make_shared<HttpSharedState>();
  impl_->state->options = std::move(options);
  impl_->state->handler = std::move(handler);
}

HttpServer::~HttpServer() { stop(); }

int HttpServer::active_responses() const {
  return impl_ ? impl_->state->active_responses.load() : 0;
}

Status HttpServer::start() {
  const std::string& listen = impl_->state->options.listen;
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon + 1 == listen.size()) {
    return invalid_argument("--http-listen wants HOST:PORT, got '" + listen + "'");
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string port = listen.substr(colon + 1);
  boost::system::error_code ec;
  tcp::resolver resolver(impl_->ioc);
  auto endpoints = resolver.resolve(host, port, tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || endpoints.empty()) {
    return invalid_argument("--http-listen: cannot resolve '" + listen + "': " + ec.message());
  }
  const tcp::endpoint endpoint = endpoints.begin()->endpoint();
  tcp::acceptor& a = impl_->acceptor;
  a.open(endpoint.protocol(), ec);
  if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(endpoint, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return unavailable_error("cannot listen on " + listen + ": " + ec.message());
  port_ = a.local_endpoint().port();
  impl_->accept();
  for (int i = 0; i < std::max(1, impl_->state->options.io_threads); ++i) {
    impl_->threads.emplace_back([this] { impl_->ioc.run(); });
  }
  return ok_status();
}

void HttpServer::stop() {
  if (!impl_ || impl_->threads.empty()) return;
  asio::post(impl_->ioc, [this] {
    boost::system::error_code ec;
    impl_->acceptor.close(ec);
    impl_->retry.cancel();
  });
  // Replies already ending (the scheduler has sent their last events) get a
  // moment to reach their clients before every connection is dropped.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  while (impl_->state->active_responses.load() > 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  impl_->ioc.stop();
  for (std::thread& t : impl_->threads) t.join();
  impl_->threads.clear();
  // Sessions still pending (idle keep-alive, unfinished replies) are
  // destroyed with the io_context, cancelling their requests.
  impl_.reset();
}

}  // namespace loraserve::http
