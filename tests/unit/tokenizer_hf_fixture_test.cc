// loraserve's tokenizer against Hugging Face `tokenizers` on a fixed
// multilingual sample: tests/data/tokenizers/hf_expected.json, written by
// tests/reference/make_hf_fixture.py where `tokenizers` is installed.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "engine/tokenizer.h"
#include "engine/tokenizer_synth.h"

namespace loraserve {
namespace {

const char kFixture[] = "tests/data/tokenizers/hf_expected.json";

TEST(TokenizerVsHuggingFace, FixtureIds) {
  std::ifstream in(kFixture);
  if (!in) {
    GTEST_SKIP() << kFixture << " is absent: generate it with tests/reference/make_hf_fixture.py "
                 << "where Hugging Face tokenizers is installed (the GPU machine image)";
  }
  std::stringstream ss;
  ss << in.rdbuf();
  auto fixture = nlohmann::json::parse(ss.str(), nullptr, false);
  ASSERT_FALSE(fixture.is_discarded()) << kFixture << " is not valid JSON";
  auto synth_files = synth_tokenizer(1024, 1, 2, 2048);
  ASSERT_TRUE(synth_files.ok());
  auto synth = Tokenizer::from_json_text(synth_files->tokenizer_json,
                                         synth_files->tokenizer_config_json);
  auto sp = Tokenizer::load("tests/data/tokenizers/sp_bpe/tokenizer.json");
  ASSERT_TRUE(synth.ok()) << synth.status();
  ASSERT_TRUE(sp.ok()) << sp.status();
  int checked = 0;
  for (const auto& c : fixture["cases"]) {
    const std::string name = c["tokenizer"].get<std::string>();
    const auto& tok = name == "synth_tiny" ? *synth : *sp;
    ASSERT_TRUE(name == "synth_tiny" || name == "sp_bpe") << name;
    const std::string text = c["text"].get<std::string>();
    auto ids = tok->encode(text, false);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(*ids, c["ids"].get<std::vector<int32_t>>()) << name << ": " << text;
    auto ids_special = tok->encode(text, true);
    ASSERT_TRUE(ids_special.ok());
    EXPECT_EQ(*ids_special, c["ids_special"].get<std::vector<int32_t>>()) << name << ": " << text;
    if (c.contains("decoded")) {
      EXPECT_EQ(tok->decode(c["ids"].get<std::vector<int32_t>>()), c["decoded"].get<std::string>())
          << name << ": " << text;
    }
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

}  // namespace
}  // namespace loraserve
