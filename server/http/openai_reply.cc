#include "server/http/openai_reply.h"

#include "server/http/error_body.h"

namespace loraserve::http {

namespace {

using nlohmann::json;

std::string dump(const json& j) {
  // Text is valid UTF-8 by construction; token strings of a single id may
  // not be, so never throw on them.
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string sse(const std::string& data) { return "data: " + data + "\n\n"; }

const char* finish_name(FinishReason r) {
  return r == FinishReason::kLength ? "length" : "stop";
}

}  // namespace

GenerationReply::GenerationReply(std::unique_ptr<Generation> generation, ReplyShape shape)
    : generation_(std::move(generation)), shape_(std::move(shape)) {}

void GenerationReply::start(std::function<void()> wake) {
  generation_->set_listener(std::move(wake));
}

bool GenerationReply::failed(const GenerationChunk& c) {
  return c.finish != FinishReason::kStop && c.finish != FinishReason::kLength;
}

Status GenerationReply::failure(const GenerationChunk& c) {
  if (c.finish == FinishReason::kCancelled) {
    return unavailable_error("the server stopped before the request finished");
  }
  if (!c.error.ok()) return c.error;
  return internal_error("the request ended without a result");
}

json GenerationReply::logprobs_json(const GenerationChunk& c) {
  std::vector<std::string> tokens;
  for (int32_t id : c.tokens) {
    if (shape_.tokens_as_ids || shape_.tokenizer == nullptr) {
      tokens.push_back("token_id:" + std::to_string(id));
    } else {
      DecodeOptions o;
      o.continuation = true;
      tokens.push_back(shape_.tokenizer->decode({id}, o));
    }
  }
  if (shape_.kind == ApiKind::kChat) {
    // loraserve knows the chosen token's logprob only: top_logprobs holds
    // that one entry when any were asked for.
    json content = json::array();
    for (size_t i = 0; i < tokens.size() && i < c.logprobs.size(); ++i) {
      json bytes = json::array();
      for (unsigned char b : tokens[i]) bytes.push_back(b);
      json entry = {{"token", tokens[i]}, {"logprob", c.logprobs[i]}, {"bytes", bytes}};
      entry["top_logprobs"] = shape_.logprobs > 0 ? json::array({entry}) : json::array();
      content.push_back(entry);
    }
    return {{"content", content}};
  }
  json out = {{"tokens", json::array()}, {"token_logprobs", json::array()},
              {"text_offset", json::array()}};
  out["top_logprobs"] = shape_.logprobs > 0 ? json::array() : json(nullptr);
  for (size_t i = 0; i < tokens.size() && i < c.logprobs.size(); ++i) {
    out["tokens"].push_back(tokens[i]);
    out["token_logprobs"].push_back(c.logprobs[i]);
    out["text_offset"].push_back(text_offset_);
    if (shape_.logprobs > 0) out["top_logprobs"].push_back({{tokens[i], c.logprobs[i]}});
    text_offset_ += static_cast<int64_t>(tokens[i].size());
  }
  return out;
}

json GenerationReply::usage_json(const GenerationChunk& c) const {
  return {{"prompt_tokens", c.prompt_tokens},
          {"completion_tokens", c.completion_tokens},
          {"total_tokens", c.prompt_tokens + c.completion_tokens}};
}

// One streamed chunk: `text` (and the logprobs of `tokens` when asked),
// with `finish_reason` on the last one.
std::string GenerationReply::chunk_json(const std::string& text, const GenerationChunk* tokens,
                                        const char* finish_reason) {
  json choice = {{"index", 0}};
  json lp = nullptr;
  if (shape_.logprobs >= 0 && tokens != nullptr) lp = logprobs_json(*tokens);
  if (shape_.kind == ApiKind::kChat) {
    choice["delta"] = finish_reason != nullptr && text.empty() ? json::object()
                                                               : json{{"content", text}};
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] = lp;
  choice["finish_reason"] = finish_reason != nullptr ? json(finish_reason) : json(nullptr);
  json chunk = {{"id", shape_.id},
                {"object", shape_.kind == ApiKind::kChat ? "chat.completion.chunk" : "text_completion"},
                {"created", shape_.created},
                {"model", shape_.model},
                {"choices", json::array({choice})}};
  return dump(chunk);
}

std::string GenerationReply::final_body(const GenerationChunk& c) {
  json choice = {{"index", 0}};
  json lp = nullptr;
  if (shape_.logprobs >= 0) {
    GenerationChunk all;
    all.tokens = tokens_;
    all.logprobs = logprobs_;
    lp = logprobs_json(all);
  }
  if (shape_.kind == ApiKind::kChat) {
    choice["message"] = {{"role", "assistant"}, {"content", text_}};
  } else {
    choice["text"] = text_;
  }
  choice["logprobs"] = lp;
  choice["finish_reason"] = finish_name(c.finish);
  json body = {{"id", shape_.id},
               {"object", shape_.kind == ApiKind::kChat ? "chat.completion" : "text_completion"},
               {"created", shape_.created},
               {"model", shape_.model},
               {"choices", json::array({choice})},
               {"usage", usage_json(c)}};
  return dump(body);
}

bool GenerationReply::poll(std::string* out, HttpReply* reply) {
  if (shape_.stream && shape_.kind == ApiKind::kChat && !role_sent_) {
    // OpenAI's first chat chunk names the role, before any content.
    json choice = {{"index", 0},
                   {"delta", {{"role", "assistant"}, {"content", ""}}},
                   {"logprobs", nullptr},
                   {"finish_reason", nullptr}};
    *out += sse(dump({{"id", shape_.id},
                      {"object", "chat.completion.chunk"},
                      {"created", shape_.created},
                      {"model", shape_.model},
                      {"choices", json::array({choice})}}));
    role_sent_ = true;
  }
  GenerationChunk c;
  while (generation_->try_next(&c)) {
    if (!shape_.stream) {
      text_ += c.text;
      tokens_.insert(tokens_.end(), c.tokens.begin(), c.tokens.end());
      logprobs_.insert(logprobs_.end(), c.logprobs.begin(), c.logprobs.end());
      if (!c.final) continue;
      if (failed(c)) {
        *reply = error_reply(failure(c));
      } else {
        reply->body = final_body(c);
      }
      return true;
    }
    if (c.final) {
      if (failed(c)) {
        *out += sse(status_error_body(failure(c)));
      } else {
        *out += sse(chunk_json(c.text, &c, finish_name(c.finish)));
        if (shape_.include_usage) {
          *out += sse(dump({{"id", shape_.id},
                            {"object", shape_.kind == ApiKind::kChat ? "chat.completion.chunk"
                                                                     : "text_completion"},
                            {"created", shape_.created},
                            {"model", shape_.model},
                            {"choices", json::array()},
                            {"usage", usage_json(c)}}));
        }
      }
      *out += "data: [DONE]\n\n";
      return true;
    }
    // Text held back (a partial UTF-8 sequence or a possible stop string)
    // is sent with a later chunk; logprobs go out with their tokens.
    if (!c.text.empty() || (shape_.logprobs >= 0 && !c.tokens.empty())) {
      *out += sse(chunk_json(c.text, &c, nullptr));
    }
  }
  return false;
}

}  // namespace loraserve::http
