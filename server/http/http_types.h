// What the HTTP server hands a handler and what it takes back: plain
// structs, so handlers (the OpenAI API) know nothing of Boost.Beast and are
// unit-tested without a socket.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

namespace loraserve::http {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // the target without its query string
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;

  // The header's value, or nullptr.
  const std::string* header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? nullptr : &it->second;
  }
};

struct HttpReply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

// A response that is not ready when the handler returns: a generation (the
// whole body once it ends, or a stream of Server-Sent Events), or work
// moved off the io threads. The session calls start() once, then poll()
// on its own strand after every wake, until poll() says it is done.
class AsyncReply {
 public:
  virtual ~AsyncReply() = default;
  // True: the body is an event stream, sent chunk by chunk as it comes.
  virtual bool streaming() const = 0;
  // Starts the work; `wake` may be called from any thread, any number of
  // times (the session coalesces), whenever poll() may have news.
  virtual void start(std::function<void()> wake) = 0;
  // Streaming: appends the bytes that can be sent now to *out. Otherwise:
  // sets *reply once done. Returns true when the response is complete.
  virtual bool poll(std::string* out, HttpReply* reply) = 0;
  // The client went away before the end: stop the work, free what it holds.
  virtual void cancel() = 0;
};

struct HandlerResult {
  HttpReply reply;                    // used when `async` is null
  std::unique_ptr<AsyncReply> async;  // takes over the response
};

// Called on an io thread for every complete request; must not block long.
using HttpHandler = std::function<HandlerResult(const HttpRequest&)>;

}  // namespace loraserve::http
