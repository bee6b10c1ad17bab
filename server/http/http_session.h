// HttpSession: one client connection of the HttpServer, on its own strand.
// Reads a request (header first, so `Expect: 100-continue` is answered),
// hands it to the handler, writes the reply, and reads the next one while
// the client keeps the connection alive.
//
// An asynchronous reply (a generation) is driven by wakes posted to the
// strand from the scheduler thread; nothing here ever blocks. While such a
// reply is pending, the session also waits for the socket to turn readable:
// a client that closes its end is noticed at once, and its request is
// cancelled (the scheduler frees its pages at its next step), not when the
// next token fails to write.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "server/http/http_server.h"

namespace loraserve::http {

class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(boost::asio::ip::tcp::socket socket, std::shared_ptr<HttpSharedState> state);
  ~HttpSession();  // cancels a pending async reply; counts the connection out
  void run();

 private:
  using Parser = boost::beast::http::request_parser<boost::beast::http::string_body>;

  void read_request();
  void on_header(boost::beast::error_code ec);
  void on_read(boost::beast::error_code ec);
  // A read that failed: an error reply for malformed input, else close.
  void on_read_error(boost::beast::error_code ec);
  void handle(boost::beast::http::request<boost::beast::http::string_body> req);
  void send_reply(const HttpReply& reply, bool close);
  void start_async(std::unique_ptr<AsyncReply> async);
  void pump();  // moves what the async reply has to the socket
  void write(std::string bytes);
  void on_written(boost::beast::error_code ec);
  void watch_peer();
  void on_peer_readable(boost::beast::error_code ec, uint64_t seq);
  void finish_response();
  void abort_response();  // client gone: cancel the request, close
  void close_gracefully();
  void drain();
  void close_now();

  boost::beast::tcp_stream stream_;
  boost::beast::flat_buffer buffer_;
  std::optional<Parser> parser_;
  std::shared_ptr<HttpSharedState> state_;

  // The response in progress.
  bool keep_alive_ = true;
  bool close_after_write_ = false;
  std::unique_ptr<AsyncReply> async_;
  bool streaming_ = false;
  bool header_sent_ = false;
  bool response_done_ = false;  // the last bytes are written or being written
  uint64_t response_seq_ = 0;   // tells stale peer-watch completions apart
  std::shared_ptr<std::atomic<bool>> wake_pending_;

  bool writing_ = false;
  std::string out_;  // bytes of the write in flight
  bool closed_ = false;
  std::vector<char> discard_;  // close_gracefully() reads into it
};

}  // namespace loraserve::http
