// The body of every HTTP error loraserve sends, in OpenAI's shape:
// {"error": {"message", "type", "param", "code"}}. Used by the OpenAI
// handlers and by the HTTP session for transport errors (413, 431, 400).
#pragma once

#include <string>

#include "common/status.h"
#include "server/http/http_types.h"

namespace loraserve::http {

// `param` "" = null. `code`: a short machine-readable name.
std::string error_body(const std::string& message, const std::string& type,
                       const std::string& param, const std::string& code);

// The body for `status` (type and code from http_status.h).
std::string status_error_body(const Status& status, const std::string& param = "");

// A whole reply for `status` (its HTTP code and type from http_status.h).
HttpReply error_reply(const Status& status, const std::string& param = "");

}  // namespace loraserve::http
