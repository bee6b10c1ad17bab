// Where the chat template comes from: --chat-template > chat_template.jinja
// > tokenizer_config.json (string, or the list form's "default"); bos/eos
// from tokenizer_config as strings or AddedToken dicts.
#include <gtest/gtest.h>

#include "tests/support/test_util.h"
#include "tokenizer/chat_template_source.h"

namespace loraserve {
namespace {

using testing_util::TempDir;
using testing_util::write_file;

TEST(ChatTemplateSource, ModelWithoutTemplateIsEmptyNotAnError) {
  TempDir dir;
  auto none = find_chat_template(dir.path(), "");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->text, "");
  write_file(dir.path() + "/tokenizer_config.json", R"({"bos_token": "<s>", "eos_token": "</s>"})");
  auto no_tpl = find_chat_template(dir.path(), "");
  ASSERT_TRUE(no_tpl.ok());
  EXPECT_EQ(no_tpl->text, "");
  EXPECT_EQ(no_tpl->bos_token, "<s>");
  EXPECT_EQ(no_tpl->eos_token, "</s>");
}

TEST(ChatTemplateSource, OrderOverrideThenJinjaFileThenConfig) {
  TempDir dir;
  write_file(dir.path() + "/tokenizer_config.json",
             R"({"chat_template": "from config", "bos_token": {"content": "<|begin|>", "lstrip": false},
                 "eos_token": "<|end|>"})");
  auto cfg = find_chat_template(dir.path(), "");
  ASSERT_TRUE(cfg.ok()) << cfg.status();
  EXPECT_EQ(cfg->text, "from config");
  EXPECT_EQ(cfg->bos_token, "<|begin|>");
  EXPECT_EQ(cfg->eos_token, "<|end|>");

  write_file(dir.path() + "/chat_template.jinja", "from jinja\n");
  auto jinja = find_chat_template(dir.path(), "");
  ASSERT_TRUE(jinja.ok());
  EXPECT_EQ(jinja->text, "from jinja\n");  // byte-exact: the trailing newline is the template's
  EXPECT_NE(jinja->origin.find("chat_template.jinja"), std::string::npos);

  write_file(dir.path() + "/override.jinja", "from flag");
  auto flag = find_chat_template(dir.path(), dir.path() + "/override.jinja");
  ASSERT_TRUE(flag.ok());
  EXPECT_EQ(flag->text, "from flag");
  EXPECT_EQ(flag->bos_token, "<|begin|>");  // still from tokenizer_config

  auto missing = find_chat_template(dir.path(), dir.path() + "/nope.jinja");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("--chat-template"), std::string::npos);
}

TEST(ChatTemplateSource, ListFormUsesDefault) {
  TempDir dir;
  write_file(dir.path() + "/tokenizer_config.json",
             R"({"chat_template": [{"name": "tool_use", "template": "tools"},
                                   {"name": "default", "template": "plain"}]})");
  auto t = find_chat_template(dir.path(), "");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->text, "plain");

  write_file(dir.path() + "/tokenizer_config.json",
             R"({"chat_template": [{"name": "tool_use", "template": "tools"}]})");
  auto no_default = find_chat_template(dir.path(), "");
  EXPECT_EQ(no_default.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(no_default.status().message().find("default"), std::string::npos);

  write_file(dir.path() + "/tokenizer_config.json", R"({"chat_template": 7})");
  EXPECT_EQ(find_chat_template(dir.path(), "").status().code(), StatusCode::kInvalidArgument);
  write_file(dir.path() + "/tokenizer_config.json", "{not json");
  EXPECT_EQ(find_chat_template(dir.path(), "").status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace loraserve
