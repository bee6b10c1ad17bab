// ChatPrompt, the chat rendering both transports share: the model's template
// with its bos/eos, the generation prompt, no special tokens added on
// tokenization, and INVALID_ARGUMENT for bad roles, a missing template and a
// template's raise_exception (its message kept).
#include <gtest/gtest.h>

#include "server/chat_prompt.h"
#include "tests/support/test_util.h"

namespace loraserve {
namespace {

using nlohmann::json;
using testing_util::TempDir;
using testing_util::write_file;

constexpr char kTemplate[] =
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] == 'system' and not loop.first %}"
    "{{ raise_exception('system must come first') }}{% endif %}"
    "[{{ m['role'] }}] {{ m['content'] }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}[assistant] {% endif %}";

ChatPrompt load_prompt(const TempDir& dir) {
  const json config = {{"chat_template", kTemplate}, {"bos_token", "<s>"}, {"eos_token", "</s>"}};
  write_file(dir.path() + "/tokenizer_config.json", config.dump());
  auto chat = ChatPrompt::load(dir.path(), "");
  EXPECT_TRUE(chat.ok()) << chat.status();
  return chat.ok() ? *chat : ChatPrompt();
}

const json kMessages = json::array({{{"role", "system"}, {"content", "Be terse."}},
                                    {{"role", "user"}, {"content", "Hi"}}});

TEST(ChatPrompt, RendersTheModelsTemplateWithItsTokensIntoATextPrompt) {
  TempDir dir;
  const ChatPrompt chat = load_prompt(dir);
  ASSERT_TRUE(chat.has_template());
  EXPECT_NE(chat.origin().find("tokenizer_config.json"), std::string::npos);
  auto text = chat.render(kMessages, /*add_generation_prompt=*/false);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "<s>[system] Be terse.</s>[user] Hi</s>");

  GenerationInput in;
  in.prompt_ids = {1, 2};
  ASSERT_TRUE(chat.apply(kMessages, /*add_generation_prompt=*/true, &in).ok());
  EXPECT_TRUE(in.has_prompt_text);
  EXPECT_EQ(in.prompt_text, "<s>[system] Be terse.</s>[user] Hi</s>[assistant] ");
  EXPECT_FALSE(in.add_special_tokens);  // the template wrote the BOS
  EXPECT_TRUE(in.prompt_ids.empty());
}

TEST(ChatPrompt, RaiseExceptionKeepsTheTemplatesMessage) {
  TempDir dir;
  const ChatPrompt chat = load_prompt(dir);
  const json late_system = json::array({kMessages[1], kMessages[0]});
  auto text = chat.render(late_system, true);
  ASSERT_FALSE(text.ok());
  EXPECT_EQ(text.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(text.status().message().find("system must come first"), std::string::npos)
      << text.status();
}

TEST(ChatPrompt, BadMessagesAreInvalidArgument) {
  TempDir dir;
  const ChatPrompt chat = load_prompt(dir);
  const json bad[] = {
      json::array(),
      json::array({{{"role", "wizard"}, {"content", "hi"}}}),
      json::array({{{"role", ""}, {"content", "hi"}}}),
      json::array({{{"content", "hi"}}}),
      json::array({{{"role", "user"}}}),
      json::array({{{"role", "user"}, {"content", 5}}}),
      json::array({"user: hi"}),
  };
  for (const json& messages : bad) {
    GenerationInput in;
    Status s = chat.apply(messages, true, &in);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << messages.dump();
    EXPECT_FALSE(in.has_prompt_text) << messages.dump();
  }
  auto wizard = chat.render(json::array({{{"role", "wizard"}, {"content", "hi"}}}), true);
  EXPECT_NE(wizard.status().message().find("'wizard'"), std::string::npos) << wizard.status();
}

TEST(ChatPrompt, ModelWithoutTemplateRefusesChatsNamingIt) {
  TempDir dir;
  write_file(dir.path() + "/tokenizer_config.json", R"({"bos_token": "<s>"})");
  auto chat = ChatPrompt::load(dir.path(), "");
  ASSERT_TRUE(chat.ok()) << chat.status();
  EXPECT_FALSE(chat->has_template());
  GenerationInput in;
  Status s = chat->apply(kMessages, true, &in);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("no chat template"), std::string::npos) << s;
  EXPECT_NE(s.message().find("chat_template"), std::string::npos) << s;
  EXPECT_EQ(ChatPrompt().apply(kMessages, true, &in).code(), StatusCode::kInvalidArgument);
}

TEST(ChatPrompt, UnparsableTemplateFailsToLoad) {
  TempDir dir;
  write_file(dir.path() + "/chat_template.jinja", "{% for m in messages %}never closed");
  auto chat = ChatPrompt::load(dir.path(), "");
  ASSERT_FALSE(chat.ok());
  EXPECT_NE(chat.status().message().find("chat_template.jinja"), std::string::npos)
      << chat.status();
}

TEST(ChatPrompt, TestsMayPlugInTheirOwnRenderer) {
  ChatPrompt chat(
      [](const json& messages, bool add) -> StatusOr<std::string> {
        return std::to_string(messages.size()) + (add ? "+" : "");
      },
      "test");
  GenerationInput in;
  ASSERT_TRUE(chat.apply(kMessages, true, &in).ok());
  EXPECT_EQ(in.prompt_text, "2+");
  // Roles are checked before any renderer runs.
  EXPECT_EQ(chat.apply(json::array({{{"role", "tool"}, {"content", "x"}}}), true, &in).code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace loraserve
