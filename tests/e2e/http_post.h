// A minimal blocking HTTP/1.1 client for the e2e tests: one POST of a JSON
// body to the server's --http-listen on 127.0.0.1, `Connection: close`, the
// whole reply read to EOF. Enough for non-streamed OpenAI requests (the
// server sends those with a Content-Length); not a general client.
#pragma once

#include <string>

namespace loraserve::e2e {

struct HttpResult {
  int status = 0;     // 0: no reply (see error)
  std::string body;
  std::string error;  // connect/send/receive failures
};

HttpResult http_post_json(int port, const std::string& path, const std::string& body);

}  // namespace loraserve::e2e
