// Chats over gRPC (GenerateRequest.messages) on the real server: it renders
// the model's chat template exactly as its HTTP /v1/chat/completions does,
// so one chat gives the same greedy tokens over both transports, and the
// same as a plain request whose ids are the text `loraserve chat-template`
// renders, tokenized without special tokens (the synth template writes the
// BOS itself: no second one). Then the refusals: prompt and messages
// together or neither, bad roles, a template that raises, no template.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/e2e/e2e_util.h"
#include "tests/e2e/http_post.h"
#include "tokenizer/tokenizer.h"

namespace loraserve::e2e {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

using Chat = std::vector<std::pair<std::string, std::string>>;  // (role, content)

const Chat kChat = {{"system", "You are terse."}, {"user", "Say hello twice, caf\xc3\xa9."}};
constexpr int kMaxNew = 8;

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

v1::GenerateRequest chat_request(const std::string& adapter, const Chat& chat, int n) {
  v1::GenerateRequest req;
  req.set_adapter_id(adapter);
  for (const auto& [role, content] : chat) {
    v1::ChatMessage* m = req.add_messages();
    m->set_role(role);
    m->set_content(content);
  }
  req.mutable_sampling()->set_max_new_tokens(static_cast<uint32_t>(n));
  req.mutable_sampling()->set_ignore_eos(true);
  return req;
}

json messages_json(const Chat& chat) {
  json out = json::array();
  for (const auto& [role, content] : chat) out.push_back({{"role", role}, {"content", content}});
  return out;
}

// The ids an HTTP chat reply chose (logprobs with return_tokens_as_token_ids).
std::vector<uint32_t> reply_ids(const json& reply) {
  std::vector<uint32_t> ids;
  for (const json& entry : reply["choices"][0]["logprobs"]["content"]) {
    const std::string token = entry["token"].get<std::string>();  // "token_id:N"
    ids.push_back(static_cast<uint32_t>(std::stoul(token.substr(token.find(':') + 1))));
  }
  return ids;
}

std::string joined(const StreamResult& r) {
  std::string s;
  for (const std::string& d : r.text_deltas) s += d;
  return s;
}

class ChatOverGrpc : public ServerSuite {
 protected:
  static std::string http_port_file() { return synth_data().root + "/chat-test-http-port"; }

  static void SetUpTestSuite() {
    ServerOptions o = default_server_options(64);
    fs::remove(http_port_file());
    o.extra_args.insert(o.extra_args.end(), {"--http-listen", "127.0.0.1:0", "--http-port-file",
                                             http_port_file()});
    start_suite_server(o);
  }
  static void TearDownTestSuite() { stop_suite_server(); }

  void SetUp() override {
    ServerSuite::SetUp();
    // HTTP starts after gRPC's port file is written: wait for its own.
    ASSERT_TRUE(wait_until([] { return !read_file(http_port_file()).empty(); },
                           std::chrono::seconds(20)));
    http_port_ = std::stoi(read_file(http_port_file()));
  }

  // The same chat over HTTP, greedy; the reply's JSON.
  json http_chat(const std::string& model, const Chat& chat, int n) {
    const json body = {{"model", model},           {"messages", messages_json(chat)},
                       {"max_tokens", n},          {"temperature", 0},
                       {"ignore_eos", true},       {"logprobs", true},
                       {"return_tokens_as_token_ids", true}};
    HttpResult r = http_post_json(http_port_, "/v1/chat/completions", body.dump());
    EXPECT_EQ(r.status, 200) << r.error << r.body;
    return r.status == 200 ? json::parse(r.body) : json();
  }

  // What `loraserve chat-template` renders for `chat` with the model's own
  // template and tokens (tokenizer_config.json), the assistant's turn opened.
  static std::string rendered_by_cli(const Chat& chat) {
    const fs::path dir = fs::path(synth_data().root) / "chat-test-cli";
    fs::create_directories(dir);
    std::ifstream in(fs::path(synth_data().model) / "tokenizer_config.json");
    const json config = json::parse(in);
    write_text(dir / "template.jinja", config["chat_template"].get<std::string>());
    const json ctx = {{"messages", messages_json(chat)},
                      {"add_generation_prompt", true},
                      {"bos_token", config["bos_token"]},
                      {"eos_token", config["eos_token"]}};
    write_text(dir / "context.json", ctx.dump());
    std::string out, err;
    const int status = run_process({loraserve_bin(), "chat-template", "--template",
                                    (dir / "template.jinja").string(), "--context",
                                    (dir / "context.json").string()},
                                   &out, &err);
    EXPECT_EQ(status, 0) << err;
    return out;
  }

  int http_port_ = 0;
};

TEST_F(ChatOverGrpc, EqualsHttpChatAndThePlainRenderedPrompt) {
  const std::string rendered = rendered_by_cli(kChat);
  ASSERT_FALSE(rendered.empty());
  auto tok = Tokenizer::load_dir(synth_data().model);
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto ids = (*tok)->encode(rendered, /*add_special_tokens=*/false);
  ASSERT_TRUE(ids.ok()) << ids.status();
  // The template wrote the BOS: exactly one, at the start.
  ASSERT_GE(ids->size(), 2u);
  const int32_t bos = (*ids)[0];
  EXPECT_NE((*ids)[1], bos);
  const std::vector<uint32_t> prompt(ids->begin(), ids->end());

  ASSERT_TRUE(load_adapter(stub(), "chat-a1", SynthData::adapter_name(1)).ok());
  for (const std::string adapter : {"", "chat-a1"}) {
    SCOPED_TRACE("adapter '" + adapter + "'");
    const StreamResult by_chat = run_generate(stub(), chat_request(adapter, kChat, kMaxNew));
    ASSERT_TRUE(by_chat.status.ok()) << describe(by_chat.status);
    ASSERT_TRUE(by_chat.got_final);
    EXPECT_EQ(by_chat.tokens.size(), static_cast<size_t>(kMaxNew));
    // No second BOS: the prompt is the rendered text's ids, no more.
    EXPECT_EQ(by_chat.final_msg.usage().prompt_tokens(), prompt.size());

    const StreamResult by_ids = run_generate(stub(), make_request(adapter, prompt, kMaxNew));
    ASSERT_TRUE(by_ids.status.ok()) << describe(by_ids.status);
    EXPECT_EQ(by_chat.tokens, by_ids.tokens);
    ASSERT_EQ(by_chat.logprobs.size(), by_ids.logprobs.size());
    for (size_t i = 0; i < by_chat.logprobs.size(); ++i) {
      EXPECT_NEAR(by_chat.logprobs[i], by_ids.logprobs[i], kLogprobTol);
    }

    const json reply = http_chat(adapter.empty() ? "model" : adapter, kChat, kMaxNew);
    ASSERT_FALSE(reply.is_null());
    EXPECT_EQ(reply_ids(reply), by_chat.tokens);
    EXPECT_EQ(reply["choices"][0]["message"]["content"].get<std::string>(), joined(by_chat));
    EXPECT_EQ(reply["usage"]["prompt_tokens"].get<uint32_t>(),
              by_chat.final_msg.usage().prompt_tokens());
  }
  EXPECT_TRUE(unload_adapter(stub(), "chat-a1").ok());
}

TEST_F(ChatOverGrpc, BadChatRequestsAreInvalidArgument) {
  v1::GenerateRequest both = chat_request("", kChat, 4);
  both.set_prompt("hello");
  EXPECT_TRUE(has_code(run_generate(stub(), both).status, grpc::StatusCode::INVALID_ARGUMENT,
                       "messages"));
  both = chat_request("", kChat, 4);
  both.add_prompt_token_ids(5);
  EXPECT_TRUE(has_code(run_generate(stub(), both).status, grpc::StatusCode::INVALID_ARGUMENT,
                       "not both"));
  v1::GenerateRequest neither;
  neither.mutable_sampling()->set_max_new_tokens(4);
  EXPECT_TRUE(has_code(run_generate(stub(), neither).status, grpc::StatusCode::INVALID_ARGUMENT,
                       "messages"));
  EXPECT_TRUE(has_code(run_generate(stub(), chat_request("", {{"wizard", "hi"}}, 4)).status,
                       grpc::StatusCode::INVALID_ARGUMENT, "wizard"));
  EXPECT_TRUE(has_code(run_generate(stub(), chat_request("", {{"", "hi"}}, 4)).status,
                       grpc::StatusCode::INVALID_ARGUMENT, "role"));
  // Chats go through adapter resolution like any request.
  EXPECT_TRUE(has_code(run_generate(stub(), chat_request("no-such-adapter", kChat, 4)).status,
                       grpc::StatusCode::NOT_FOUND, "no-such-adapter"));
}

// A server of its own on `model` with extra flags; the test fails when it
// cannot start.
std::unique_ptr<ServerProcess> start_server(const std::string& model,
                                            std::vector<std::string> extra) {
  ServerOptions o = default_server_options(32);
  o.model = model;
  o.extra_args.insert(o.extra_args.end(), extra.begin(), extra.end());
  std::string error;
  auto server = ServerProcess::start(o, &error);
  EXPECT_NE(server, nullptr) << error;
  return server;
}

TEST(ChatTemplateErrors, RaiseExceptionIsInvalidArgumentWithTheTemplatesMessage) {
  const fs::path dir = fs::path(synth_data().root) / "chat-test-raise";
  fs::create_directories(dir);
  write_text(dir / "strict.jinja",
             "{%- for m in messages %}{%- if m['role'] == 'system' %}"
             "{{ raise_exception('System role not supported by this template') }}"
             "{%- endif %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{%- endfor %}"
             "{%- if add_generation_prompt %}assistant: {% endif %}");
  auto server =
      start_server(synth_data().model, {"--chat-template", (dir / "strict.jinja").string()});
  ASSERT_NE(server, nullptr);
  auto stub = server->stub();
  EXPECT_TRUE(has_code(run_generate(stub.get(), chat_request("", kChat, 4)).status,
                       grpc::StatusCode::INVALID_ARGUMENT,
                       "System role not supported by this template"));
  // Without the system turn the same template renders and the chat runs.
  const StreamResult ok = run_generate(stub.get(), chat_request("", {kChat[1]}, 4));
  EXPECT_TRUE(ok.status.ok()) << describe(ok.status);
  EXPECT_EQ(ok.tokens.size(), 4u);
}

TEST(ChatTemplateErrors, NoTemplateIsInvalidArgumentNamingIt) {
  // The synth model, its tokenizer_config.json without chat_template.
  const fs::path model = fs::path(synth_data().root) / "chat-test-no-template";
  fs::remove_all(model);
  fs::copy(synth_data().model, model, fs::copy_options::recursive);
  std::ifstream in(model / "tokenizer_config.json");
  json config = json::parse(in);
  in.close();
  config.erase("chat_template");
  write_text(model / "tokenizer_config.json", config.dump(2));
  fs::remove(model / "chat_template.jinja");
  auto server = start_server(model.string(), {});
  ASSERT_NE(server, nullptr);
  auto stub = server->stub();
  EXPECT_TRUE(has_code(run_generate(stub.get(), chat_request("", kChat, 4)).status,
                       grpc::StatusCode::INVALID_ARGUMENT, "no chat template"));
  // Plain prompts still work.
  const StreamResult ok = run_generate(stub.get(), make_request("", {1, 5, 9}, 2));
  EXPECT_TRUE(ok.status.ok()) << describe(ok.status);
}

}  // namespace
}  // namespace loraserve::e2e
