// loraserve's tokenizer against Hugging Face `tokenizers` on a fixed
// multilingual sample and five tokenizer families:
// tests/data/tokenizers/hf_expected.json, written by
// tests/reference/make_hf_fixture.js with the Rust library's Node binding.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_train.h"

namespace loraserve {
namespace {

const char kFixture[] = "tests/data/tokenizers/hf_expected.json";

TEST(TokenizerVsHuggingFace, FixtureIds) {
  std::ifstream in(kFixture);
  ASSERT_TRUE(in) << kFixture << " is missing: it is committed; regenerate it with "
                  << "tests/reference/make_hf_fixture.js";
  std::stringstream ss;
  ss << in.rdbuf();
  auto fixture = nlohmann::json::parse(ss.str(), nullptr, false);
  ASSERT_FALSE(fixture.is_discarded()) << kFixture << " is not valid JSON";
  // "synth" is what `loraserve synth --preset tiny` writes; the others are
  // files committed beside the fixture.
  std::map<std::string, std::shared_ptr<const Tokenizer>> tokenizers;
  ASSERT_TRUE(fixture.contains("tokenizers")) << kFixture << ": no tokenizer list";
  for (const auto& [name, where] : fixture["tokenizers"].items()) {
    const std::string file = where.get<std::string>();
    if (file == "synth") {
      auto synth_files = train_tokenizer(1024, 1, 2, 2048);
      ASSERT_TRUE(synth_files.ok());
      auto synth = Tokenizer::from_json_text(synth_files->tokenizer_json,
                                             synth_files->tokenizer_config_json);
      ASSERT_TRUE(synth.ok()) << synth.status();
      tokenizers[name] = *synth;
    } else {
      auto loaded = Tokenizer::load(file);
      ASSERT_TRUE(loaded.ok()) << name << ": " << loaded.status();
      tokenizers[name] = *loaded;
    }
  }
  EXPECT_GE(tokenizers.size(), 5u);
  int checked = 0;
  for (const auto& c : fixture["cases"]) {
    const std::string name = c["tokenizer"].get<std::string>();
    ASSERT_TRUE(tokenizers.count(name)) << "case names an unlisted tokenizer " << name;
    const auto& tok = tokenizers[name];
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
