#include "server/http/error_body.h"

#include <cctype>
#include <nlohmann/json.hpp>

#include "server/http_status.h"

namespace loraserve::http {

std::string error_body(const std::string& message, const std::string& type,
                       const std::string& param, const std::string& code) {
  nlohmann::json e = {{"message", message},
                      {"type", type},
                      {"param", param.empty() ? nlohmann::json(nullptr) : nlohmann::json(param)},
                      {"code", code.empty() ? nlohmann::json(nullptr) : nlohmann::json(code)}};
  // Messages may quote client input: never fail on bad UTF-8 there.
  return nlohmann::json({{"error", e}}).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string status_error_body(const Status& status, const std::string& param) {
  std::string code = status_code_name(status.code());
  for (char& c : code) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return error_body(status.message(), to_http(status.code()).error_type, param, code);
}

HttpReply error_reply(const Status& status, const std::string& param) {
  HttpReply r;
  r.status = to_http(status.code()).http_status;
  r.body = status_error_body(status, param);
  return r;
}

}  // namespace loraserve::http
