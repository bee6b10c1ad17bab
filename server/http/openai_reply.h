// GenerationReply: the AsyncReply of /v1/completions and
// /v1/chat/completions. It drains a Generation when the session wakes it
// and writes OpenAI's shapes: one JSON body at the end, or Server-Sent
// Events (`data: {chunk}` ... `data: [DONE]`), with chat's delta.role first,
// finish_reason stop|length, usage, and logprobs of the chosen tokens. An
// error after the stream has begun (deadline, the server stopping) is sent
// as a `data: {"error": ...}` event before [DONE]; before that, as the
// reply's HTTP status.
#pragma once

#include <memory>
#include <string>

#include "server/generation.h"
#include "server/http/http_types.h"
#include "server/http/openai_request.h"
#include "tokenizer/tokenizer.h"

namespace loraserve::http {

struct ReplyShape {
  ApiKind kind = ApiKind::kCompletion;
  std::string id;     // "cmpl-..." / "chatcmpl-..."
  int64_t created = 0;  // unix seconds
  std::string model;  // echoed back as the client named it
  bool stream = false;
  bool include_usage = false;
  int logprobs = -1;  // -1 = none
  bool tokens_as_ids = false;
  std::shared_ptr<const Tokenizer> tokenizer;  // token strings in logprobs; may be null
};

class GenerationReply final : public AsyncReply {
 public:
  GenerationReply(std::unique_ptr<Generation> generation, ReplyShape shape);

  bool streaming() const override { return shape_.stream; }
  void start(std::function<void()> wake) override;
  bool poll(std::string* out, HttpReply* reply) override;
  void cancel() override { generation_->cancel(); }

 private:
  std::string chunk_json(const std::string& text, const GenerationChunk* tokens,
                         const char* finish_reason);
  nlohmann::json logprobs_json(const GenerationChunk& c);
  nlohmann::json usage_json(const GenerationChunk& final_chunk) const;
  std::string final_body(const GenerationChunk& final_chunk);
  static bool failed(const GenerationChunk& c);
  static Status failure(const GenerationChunk& c);

  std::unique_ptr<Generation> generation_;
  ReplyShape shape_;
  bool role_sent_ = false;
  // Non-streamed: what has come so far.
  std::string text_;
  std::vector<int32_t> tokens_;
  std::vector<float> logprobs_;
  int64_t text_offset_ = 0;  // completions logprobs: offset of the next token's text
};

}  // namespace loraserve::http
