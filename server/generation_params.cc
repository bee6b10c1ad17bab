#include "server/generation_params.h"

namespace loraserve {

Status to_generation_params(const GenerationInput& in, const Tokenizer* tokenizer,
                            GenerationParams* p) {
  if (!in.stop.empty() && tokenizer == nullptr) {
    return failed_precondition("stop strings need the model's tokenizer.json, which this "
                               "server has not loaded; use stop_token_ids");
  }
  for (const std::string& stop : in.stop) {
    if (stop.empty()) return invalid_argument("stop strings must not be empty");
  }
  if (in.has_prompt_text) {
    if (!in.prompt_ids.empty()) return invalid_argument("send either a text prompt or token ids");
    if (tokenizer == nullptr) {
      return failed_precondition("text prompts need the model's tokenizer.json, which this "
                                 "server has not loaded; send token ids");
    }
    LS_ASSIGN_OR_RETURN(p->prompt, tokenizer->encode(in.prompt_text, in.add_special_tokens));
    if (p->prompt.empty()) return invalid_argument("prompt encodes to no tokens");
  } else {
    if (in.prompt_ids.empty()) return invalid_argument("the prompt is empty");
    p->prompt = in.prompt_ids;
  }
  if (in.max_new_tokens < 0) return invalid_argument("max_new_tokens must not be negative");
  p->max_new_tokens = in.max_new_tokens;
  p->sampling = in.sampling;
  p->stop_token_ids = in.stop_token_ids;
  p->ignore_eos = in.ignore_eos;
  p->deadline = in.deadline;
  return ok_status();
}

}  // namespace loraserve
