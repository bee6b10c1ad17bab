#include "server/grpc_request.h"

#include <cstdint>
#include <string>

namespace loraserve {

Status grpc_request_to_input(const v1::GenerateRequest& req, GenerationInput* in) {
  if (!req.prompt().empty() && !req.prompt_token_ids().empty()) {
    return invalid_argument("send either prompt or prompt_token_ids, not both");
  }
  if (!req.prompt().empty()) {
    in->has_prompt_text = true;
    in->prompt_text = req.prompt();
  } else if (req.prompt_token_ids().empty()) {
    return invalid_argument("prompt_token_ids is empty");
  }
  for (uint32_t id : req.prompt_token_ids()) {
    if (id > static_cast<uint32_t>(INT32_MAX)) {
      return invalid_argument("prompt token id " + std::to_string(id) + " is out of range");
    }
    in->prompt_ids.push_back(static_cast<int32_t>(id));
  }
  const v1::SamplingParams& s = req.sampling();
  if (s.max_new_tokens() > static_cast<uint32_t>(INT32_MAX) ||
      s.top_k() > static_cast<uint32_t>(INT32_MAX)) {
    return invalid_argument("max_new_tokens or top_k is out of range");
  }
  in->request_id = req.request_id();
  in->adapter_id = req.adapter_id();
  in->max_new_tokens = static_cast<int32_t>(s.max_new_tokens());
  in->sampling.temperature = s.temperature();
  in->sampling.top_p = s.top_p();
  in->sampling.top_k = static_cast<int32_t>(s.top_k());
  in->sampling.seed = s.seed();
  in->stop.assign(s.stop().begin(), s.stop().end());
  for (uint32_t id : s.stop_token_ids()) in->stop_token_ids.push_back(static_cast<int32_t>(id));
  in->ignore_eos = s.ignore_eos();
  return ok_status();
}

}  // namespace loraserve
