// The OpenAI request bodies as loraserve reads them (server/http/
// openai_request): every accepted form of a field, and each refusal naming
// its field; the Status -> HTTP table; RequestStream's listener.
#include "server/http/openai_request.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "scheduler/request.h"
#include "server/http/error_body.h"
#include "server/http_status.h"

namespace loraserve::http {
namespace {

using nlohmann::json;

OpenAiRequest completion(const json& body) {
  OpenAiRequest r;
  RequestError e;
  EXPECT_TRUE(parse_completion_request(body, &r, &e)) << e.status.to_string();
  return r;
}

RequestError completion_error(const json& body) {
  OpenAiRequest r;
  RequestError e;
  EXPECT_FALSE(parse_completion_request(body, &r, &e)) << body.dump();
  return e;
}

TEST(OpenAiRequest, PromptForms) {
  OpenAiRequest r = completion({{"prompt", "hello"}});
  EXPECT_TRUE(r.input.has_prompt_text);
  EXPECT_EQ(r.input.prompt_text, "hello");
  EXPECT_TRUE(r.input.add_special_tokens);
  r = completion({{"prompt", {"hello"}}});
  EXPECT_EQ(r.input.prompt_text, "hello");
  r = completion({{"prompt", {1, 2, 3}}});
  EXPECT_FALSE(r.input.has_prompt_text);
  EXPECT_EQ(r.input.prompt_ids, (std::vector<int32_t>{1, 2, 3}));
  r = completion({{"prompt", {{4, 5}}}});
  EXPECT_EQ(r.input.prompt_ids, (std::vector<int32_t>{4, 5}));
}

TEST(OpenAiRequest, DefaultsFollowOpenAi) {
  OpenAiRequest r = completion({{"prompt", "x"}});
  EXPECT_EQ(r.input.max_new_tokens, 16);
  EXPECT_FLOAT_EQ(r.input.sampling.temperature, 1.0f);
  EXPECT_FLOAT_EQ(r.input.sampling.top_p, 1.0f);
  EXPECT_FALSE(r.stream);
  EXPECT_EQ(r.logprobs, -1);
  EXPECT_TRUE(r.model.empty());
}

TEST(OpenAiRequest, SamplingStopsAndStreaming) {
  OpenAiRequest r = completion({{"model", "m"}, {"prompt", "x"}, {"max_tokens", 7},
                                {"temperature", 0}, {"top_p", 0.5}, {"top_k", -1}, {"seed", 9},
                                {"stop", {"a", "bc"}}, {"stream", true},
                                {"stream_options", {{"include_usage", true}}}, {"logprobs", 0},
                                {"user", "u"}, {"ignore_eos", true}, {"stop_token_ids", {2}},
                                {"n", 1}, {"echo", false}, {"presence_penalty", 0}});
  EXPECT_EQ(r.model, "m");
  EXPECT_EQ(r.input.max_new_tokens, 7);
  EXPECT_FLOAT_EQ(r.input.sampling.temperature, 0.0f);
  EXPECT_FLOAT_EQ(r.input.sampling.top_p, 0.5f);
  EXPECT_EQ(r.input.sampling.top_k, 0);
  EXPECT_EQ(r.input.sampling.seed, 9u);
  EXPECT_EQ(r.input.stop, (std::vector<std::string>{"a", "bc"}));
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.logprobs, 0);
  EXPECT_TRUE(r.input.ignore_eos);
  EXPECT_EQ(r.input.stop_token_ids, (std::vector<int32_t>{2}));
  EXPECT_EQ(completion({{"prompt", "x"}, {"stop", "z"}}).input.stop,
            (std::vector<std::string>{"z"}));
}

TEST(OpenAiRequest, RefusalsNameTheirField) {
  const std::pair<json, std::string> cases[] = {
      {json::array({1}), ""},
      {{{"prompt", 5}}, "prompt"},
      {{{"prompt", json::array()}}, "prompt"},
      {{{"prompt", {"a", "b"}}}, "prompt"},
      {{{"prompt", {1, -2}}}, "prompt"},
      {{{"prompt", {1, 4294967296ll}}}, "prompt"},
      {{{"prompt", "x"}, {"n", 2}}, "n"},
      {{{"prompt", "x"}, {"echo", true}}, "echo"},
      {{{"prompt", "x"}, {"max_tokens", 0}}, "max_tokens"},
      {{{"prompt", "x"}, {"max_tokens", 1.5}}, "max_tokens"},
      {{{"prompt", "x"}, {"temperature", "hot"}}, "temperature"},
      {{{"prompt", "x"}, {"temperature", 2.5}}, "temperature"},
      {{{"prompt", "x"}, {"top_p", 0}}, "top_p"},
      {{{"prompt", "x"}, {"top_k", -2}}, "top_k"},
      {{{"prompt", "x"}, {"stop", {"a", 1}}}, "stop"},
      {{{"prompt", "x"}, {"stream", 1}}, "stream"},
      {{{"prompt", "x"}, {"stream_options", {{"include_usage", true}}}}, "stream_options"},
      {{{"prompt", "x"}, {"logprobs", 21}}, "logprobs"},
      {{{"prompt", "x"}, {"frequency_penalty", 0.5}}, "frequency_penalty"},
      {{{"prompt", "x"}, {"model", 3}}, "model"},
  };
  for (const auto& [body, param] : cases) {
    RequestError e = completion_error(body);
    EXPECT_EQ(e.status.code(), StatusCode::kInvalidArgument) << body.dump();
    EXPECT_EQ(e.param, param) << body.dump();
  }
}

TEST(OpenAiRequest, ChatNormalisesContentAndValidatesRoles) {
  OpenAiRequest r;
  RequestError e;
  json body = {{"messages",
                {{{"role", "system"}, {"content", "be brief"}},
                 {{"role", "user"},
                  {"content", {{{"type", "text"}, {"text", "a"}}, {{"type", "text"}, {"text", "b"}}}}},
                 {{"role", "assistant"}, {"content", nullptr}}}}};
  ASSERT_TRUE(parse_chat_request(body, &r, &e)) << e.status.to_string();
  EXPECT_EQ(r.messages[1]["content"], "ab");
  EXPECT_EQ(r.messages[2]["content"], "");
  EXPECT_TRUE(r.input.max_new_tokens_to_context);  // no max_tokens: until the context ends
  EXPECT_TRUE(r.add_generation_prompt);
  body = {{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"max_completion_tokens", 3},
          {"logprobs", true}, {"top_logprobs", 2}};
  ASSERT_TRUE(parse_chat_request(body, &r, &e));
  EXPECT_EQ(r.input.max_new_tokens, 3);
  EXPECT_EQ(r.logprobs, 2);
  const std::pair<json, std::string> bad[] = {
      {{{"messages", json::array()}}, "messages"},
      {{{"messages", {{{"role", "tool"}, {"content", "x"}}}}}, "messages[0].role"},
      {{{"messages", {{{"role", "user"}}}}}, "messages[0].content"},
      {{{"messages", {{{"role", "user"}, {"content", {{{"type", "image_url"}}}}}}}},
       "messages[0].content"},
      {{{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"top_logprobs", 1}}, "top_logprobs"},
  };
  for (const auto& [b, param] : bad) {
    OpenAiRequest rr;
    RequestError ee;
    EXPECT_FALSE(parse_chat_request(b, &rr, &ee)) << b.dump();
    EXPECT_EQ(ee.param, param) << b.dump();
  }
}

TEST(HttpStatusMapping, EveryCodeHasItsHttpStatusAndType) {
  EXPECT_EQ(to_http(StatusCode::kInvalidArgument).http_status, 400);
  EXPECT_EQ(to_http(StatusCode::kUnauthenticated).http_status, 401);
  EXPECT_EQ(to_http(StatusCode::kPermissionDenied).http_status, 403);
  EXPECT_EQ(to_http(StatusCode::kNotFound).http_status, 404);
  EXPECT_EQ(to_http(StatusCode::kAlreadyExists).http_status, 409);
  EXPECT_EQ(to_http(StatusCode::kFailedPrecondition).http_status, 409);
  EXPECT_EQ(to_http(StatusCode::kResourceExhausted).http_status, 429);
  EXPECT_EQ(to_http(StatusCode::kUnavailable).http_status, 503);
  EXPECT_EQ(to_http(StatusCode::kDeadlineExceeded).http_status, 504);
  EXPECT_EQ(to_http(StatusCode::kInternal).http_status, 500);
  EXPECT_STREQ(to_http(StatusCode::kResourceExhausted).error_type, "rate_limit_error");
  const HttpReply r = error_reply(not_found("adapter 'x' is not loaded"), "model");
  EXPECT_EQ(r.status, 404);
  const json j = json::parse(r.body);
  EXPECT_EQ(j["error"]["message"], "adapter 'x' is not loaded");
  EXPECT_EQ(j["error"]["type"], "not_found_error");
  EXPECT_EQ(j["error"]["param"], "model");
  EXPECT_EQ(j["error"]["code"], "not_found");
  EXPECT_TRUE(json::parse(error_reply(internal_error("x")).body)["error"]["param"].is_null());
}

TEST(RequestStreamListener, CalledAfterEveryPushAndAtOnceForQueuedEvents) {
  RequestStream s;
  s.push(RequestEvent{});
  std::atomic<int> calls{0};
  s.set_listener([&] { calls += 1; });
  EXPECT_EQ(calls.load(), 1);  // an event was already waiting
  std::thread producer([&] {
    for (int i = 0; i < 100; ++i) s.push(RequestEvent{});
  });
  producer.join();
  EXPECT_EQ(calls.load(), 101);
  RequestEvent e;
  int popped = 0;
  while (s.try_pop(&e)) popped += 1;
  EXPECT_EQ(popped, 101);
  EXPECT_FALSE(s.try_pop(&e));
  s.set_listener({});
  s.push(RequestEvent{});
  EXPECT_EQ(calls.load(), 101);
}

}  // namespace
}  // namespace loraserve::http
