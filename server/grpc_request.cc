#include "server/grpc_request.h"

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace loraserve {

Status grpc_request_to_input(const v1::GenerateRequest& req, const ChatPrompt& chat,
                             GenerationInput* in) {
  const int prompts = (req.prompt().empty() ? 0 : 1) + (req.prompt_token_ids().empty() ? 0 : 1) +
                      (req.messages().empty() ? 0 : 1);
  if (prompts > 1) {
    return invalid_argument(
        "prompt, prompt_token_ids and messages are alternatives: send one, not both");
  }
  if (prompts == 0) {
    return invalid_argument("no prompt: send prompt_token_ids, prompt or messages");
  }
  if (!req.prompt().empty()) {
    in->has_prompt_text = true;
    in->prompt_text = req.prompt();
  } else if (!req.messages().empty()) {
    nlohmann::json messages = nlohmann::json::array();
    for (const v1::ChatMessage& m : req.messages()) {
      messages.push_back({{"role", m.role()}, {"content", m.content()}});
    }
    // Chats always open the assistant's turn: the reply is what is asked for.
    LS_RETURN_IF_ERROR(chat.apply(messages, /*add_generation_prompt=*/true, in));
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
