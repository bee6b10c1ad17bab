// HttpServer: HTTP/1.1 with keep-alive on Boost.Beast/Asio, for the OpenAI
// API and /metrics. A fixed number of io threads serves every connection
// asynchronously (no thread per request or per stream), so thousands of
// open streams cost memory, not threads. Each connection is an HttpSession
// (http_session.h) on its own strand.
//
// Defences against slow or hostile clients: a cap on connections (beyond
// it new ones are closed at once), a cap on the body (413) and on the
// header block (431), one timeout for reading a request (which also bounds
// how long an idle keep-alive connection is kept) and one for each write
// (a client that stops reading its stream is dropped and its request
// cancelled).
//
// Thread-safety: start() and stop() from one controlling thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "server/http/http_types.h"

namespace loraserve::http {

struct HttpServerOptions {
  std::string listen = "127.0.0.1:8000";  // host:port; port 0 picks a free one
  int io_threads = 2;
  int64_t max_body_bytes = 8 << 20;
  int64_t max_header_bytes = 16 << 10;
  int max_connections = 10000;
  // Reading one request, idle keep-alive wait included.
  std::chrono::milliseconds read_timeout{30000};
  // Writing one response or stream chunk to a client that does not read.
  std::chrono::milliseconds write_timeout{30000};
};

// What the sessions share; owned by the server, outlives every session
// (the io threads are joined before it goes).
struct HttpSharedState {
  HttpServerOptions options;
  HttpHandler handler;
  std::atomic<int> connections{0};
  std::atomic<int> active_responses{0};  // async replies in progress
};

class HttpServer {
 public:
  HttpServer(HttpServerOptions options, HttpHandler handler);
  ~HttpServer();  // stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds, listens and starts the io threads. UNAVAILABLE when the address
  // cannot be bound, INVALID_ARGUMENT when it does not parse.
  Status start();
  // The bound port (after start()).
  int port() const { return port_; }
  // Responses still being produced (generations in flight, admin work).
  int active_responses() const;
  // Stops accepting, closes every connection and joins the io threads.
  // Handlers' async replies are destroyed (their requests cancelled).
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace loraserve::http
