// Tokenizer: hand-checked encodings on tiny vocabularies, round trips on
// both families, added tokens, specials, refusals of unsupported files.
#include <gtest/gtest.h>

#include <random>

#include "tokenizer/text_stream.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "tokenizer/tokenizer_train.h"
#include "tokenizer_test_util.h"

namespace loraserve {
namespace {

using testing_tok::json;
using testing_tok::kMeta;

std::shared_ptr<const Tokenizer> make(const json& j, const std::string& config = "") {
  auto t = Tokenizer::from_json_text(j.dump(), config);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *t : nullptr;
}

std::vector<int32_t> enc(const Tokenizer& t, const std::string& s, bool special = false) {
  auto ids = t.encode(s, special);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : std::vector<int32_t>{};
}

std::shared_ptr<const Tokenizer> tiny_byte_level(bool llama3 = false) {
  return make(testing_tok::byte_level_json(
      {{"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {" ", "w"}, {"o", "r"}}, llama3));
}

std::shared_ptr<const Tokenizer> tiny_sp(bool metaspace = false) {
  std::vector<std::string> chars = {kMeta, "h", "e", "l", "o", "w", "r", "d"};
  const std::string m = kMeta;
  return make(testing_tok::sentencepiece_json(
                  chars,
                  {{m, "h"}, {"l", "l"}, {m + "h", "e"}, {m + "he", "ll"}, {m + "hell", "o"},
                   {m, "w"}, {"o", "r"}, {m, m}},
                  metaspace),
              testing_tok::sp_config());
}

std::shared_ptr<const Tokenizer> synth_tiny() {
  auto files = train_tokenizer(1024, 1, 2, 2048);
  EXPECT_TRUE(files.ok()) << files.status();
  auto t = Tokenizer::from_json_text(files->tokenizer_json, files->tokenizer_config_json);
  EXPECT_TRUE(t.ok()) << t.status();
  return *t;
}

const std::vector<std::string>& samples() {
  static const std::vector<std::string> s = {
      "",
      "hello world",
      "Hello, World! It's 2024: numbers 12345 and 3.14159.",
      "  leading and trailing spaces  ",
      "tabs\tand\nnewlines\r\n\n  mixed \t whitespace\u00a0nbsp",
      "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e, na\u00efve fa\u00e7ade, \u00c5ngstr\u00f6m, stra\u00dfe",
      "\u4e2d\u6587\u6d4b\u8bd5\uff0c\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3002\ud55c\uad6d\uc5b4",
      "emoji \U0001F600\U0001F44D\U0001F3FD \U0001F468\u200D\U0001F469\u200D\U0001F467 flags \U0001F1EB\U0001F1F7",
      "\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd \u041f\u0440\u0438\u0432\u0435\u0442 \u0928\u092e\u0938\u094d\u0924\u0947",
      "e\u0301 combining, zero\u200bwidth, \xef\xbf\xbd replacement char, \x7f del, \x01 ctrl",
      "code: for (int i = 0; i < n; ++i) { x[i] += y[i] * 2; }",
      " ",
      "\n",
      "a",
      "\u2581 metaspace char itself \u2581\u2581",
  };
  return s;
}

// ---------- hand-checked encodings ----------

TEST(TokenizerByteLevel, HandCheckedMerges) {
  auto t = tiny_byte_level();
  // ids: bytes 0..255; he 256, ll 257, hell 258, hello 259, " w" 260, or 261.
  EXPECT_EQ(enc(*t, "hello world"), (std::vector<int32_t>{259, 260, 261, 'l', 'd'}));
  EXPECT_EQ(enc(*t, "hell"), (std::vector<int32_t>{258}));
  EXPECT_EQ(enc(*t, "shell"), (std::vector<int32_t>{'s', 258}));
  // GPT-2 regex: "'s" is its own pre-token; digits split from letters.
  EXPECT_EQ(enc(*t, "he's"), (std::vector<int32_t>{256, '\'', 's'}));
  EXPECT_EQ(t->decode(enc(*t, "hello world")), "hello world");
}

TEST(TokenizerByteLevel, Llama3SplitAndIgnoreMerges) {
  auto t = tiny_byte_level(true);
  EXPECT_EQ(enc(*t, "hello world"), (std::vector<int32_t>{259, 260, 261, 'l', 'd'}));
  // \p{N}{1,3}: 12345 -> "123", "45" (no digit merges, so bytes).
  EXPECT_EQ(enc(*t, "12345"), (std::vector<int32_t>{'1', '2', '3', '4', '5'}));
  for (const std::string& s : samples()) EXPECT_EQ(t->decode(enc(*t, s)), s);
}

TEST(TokenizerByteLevel, SpecialAndAddedTokens) {
  auto t = tiny_byte_level();
  EXPECT_EQ(t->bos_id(), 300);
  EXPECT_EQ(enc(*t, "hell", true), (std::vector<int32_t>{300, 258}));
  // Specials are split before the model, anywhere in the text.
  EXPECT_EQ(enc(*t, "hell</s>hell"), (std::vector<int32_t>{258, 301, 258}));
  // lstrip/rstrip eat the spaces beside "<|tool|>".
  EXPECT_EQ(enc(*t, "hell  <|tool|>  hell"), (std::vector<int32_t>{258, 302, 258}));
  EXPECT_EQ(t->decode({258, 301, 258}), "hell</s>hell");
  DecodeOptions skip;
  skip.skip_special_tokens = true;
  EXPECT_EQ(t->decode({300, 258, 301, 302}, skip), "hell<|tool|>");
  EXPECT_TRUE(t->is_special(300));
  EXPECT_FALSE(t->is_special(302));
  EXPECT_EQ(t->vocab_size(), 303);
}

TEST(TokenizerSentencePiece, HandCheckedMergesAndByteFallback) {
  auto t = tiny_sp();
  auto id = [&](const std::string& s) { return *t->token_to_id(s); };
  const std::string m = kMeta;
  EXPECT_EQ(enc(*t, "hello world"),
            (std::vector<int32_t>{id(m + "hello"), id(m + "w"), id("or"), id("l"), id("d")}));
  // 'é' is not in the vocabulary: byte fallback <0xC3><0xA9>.
  EXPECT_EQ(enc(*t, "\u00e9"), (std::vector<int32_t>{id(m), 3 + 0xC3, 3 + 0xA9}));
  // "▁h▁▁h": both (▁,h) pairs outrank (▁,▁), so the middle '▁' stays alone.
  EXPECT_EQ(enc(*t, "h  h"), (std::vector<int32_t>{id(m + "h"), id(m), id(m + "h")}));
  // Three spaces: (▁,▁) merges once the (▁,h) pair is taken.
  EXPECT_EQ(enc(*t, "h   h"), (std::vector<int32_t>{id(m + "h"), id(m + m), id(m + "h")}));
  // add_bos_token from tokenizer_config.json.
  EXPECT_EQ(enc(*t, "hell", true), (std::vector<int32_t>{1, id(m + "hell")}));
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_EQ(t->eos_id(), 2);
  // The decoder strips the one leading space the normalizer added.
  EXPECT_EQ(t->decode(enc(*t, "hello world")), "hello world");
  DecodeOptions cont;
  cont.continuation = true;
  EXPECT_EQ(t->decode(enc(*t, "hello world"), cont), " hello world");
  // Specials split before the model; each following segment gets its own '▁'.
  EXPECT_EQ(enc(*t, "hell</s>hell"),
            (std::vector<int32_t>{id(m + "hell"), 2, id(m + "hell")}));
}

// SentencePiece cannot tell '▁' in the input from a space (HF neither).
bool has_meta(const std::string& s) { return s.find(kMeta) != std::string::npos; }

TEST(TokenizerSentencePiece, MetaspacePreTokenizerMatchesNormalizerForm) {
  auto a = tiny_sp(false), b = tiny_sp(true);
  for (const std::string& s : samples()) {
    // Metaspace does not prepend '▁' to text that starts with a space (as
    // HF), so such texts lose that space in a round trip; skip them here.
    if (has_meta(s) || (!s.empty() && s[0] == ' ')) continue;
    EXPECT_EQ(enc(*a, s), enc(*b, s)) << s;
      EXPECT_EQ(b->decode(enc(*b, s)), s) << s;
  }
}

// Hugging Face's Metaspace decoder drops every '▁' of the first token (not
// just one space), so "▁▁" + "▁hell" decodes to " hell"; later tokens keep
// theirs. Streams must agree with the whole decode.
TEST(TokenizerSentencePiece, MetaspaceDecoderDropsFirstTokensReplacements) {
  json j = testing_tok::sentencepiece_json(
      {kMeta, "h", "e", "l", "o", "w"},
      {{kMeta, "h"}, {"l", "l"}, {std::string(kMeta) + "h", "e"},
       {std::string(kMeta) + "he", "ll"}, {kMeta, kMeta}},
      true);
  j["decoder"] = {{"type", "Metaspace"}, {"replacement", kMeta}, {"prepend_scheme", "first"},
                  {"split", false}};
  auto t = make(j, testing_tok::sp_config());
  const std::string m = kMeta;
  const int32_t mm = *t->token_to_id(m + m), mhell = *t->token_to_id(m + "hell"),
                mw = *t->token_to_id(m), w = *t->token_to_id("w");
  EXPECT_EQ(t->decode({mm, mhell}), " hell");
  EXPECT_EQ(t->decode({mhell, mw, w}), "hell w");
  EXPECT_EQ(t->decode({1, mhell}), "<s> hell");  // the special is the first token
  DecodeOptions cont;
  cont.continuation = true;
  EXPECT_EQ(t->decode({mm, mhell}, cont), "   hell");
  StreamDecoder sd(t);
  std::string streamed;
  for (int32_t id : {mm, mhell, mw, w}) streamed += sd.push(id);
  streamed += sd.finish();
  EXPECT_EQ(streamed, t->decode({mm, mhell, mw, w}));
  EXPECT_EQ(sd.push(mhell) + sd.finish(), "hell");  // finish() starts a new text
}

// Hugging Face ignores the ids written on added tokens: one in the model
// vocab gets its vocab id, the others ids after the vocab in file order.
TEST(TokenizerByteLevel, AddedTokenIdsAsHuggingFaceAssignsThem) {
  json j = testing_tok::byte_level_json({{"h", "e"}});
  j["added_tokens"] = json::array(
      {{{"id", 7}, {"content", "<a>"}, {"special", true}, {"normalized", false}},
       {{"id", 3}, {"content", "he"}, {"special", true}, {"normalized", false}},
       {{"id", 9}, {"content", "<b>"}, {"special", true}, {"normalized", false}}});
  j["post_processor"] = nullptr;
  auto t = make(j);
  const int32_t vocab = 300;  // byte_level_json fills the model vocab to 300
  EXPECT_EQ(t->token_to_id("<a>"), vocab);
  EXPECT_EQ(t->token_to_id("<b>"), vocab + 1);
  EXPECT_EQ(t->token_to_id(testing_tok::bl("he")), 256);
  EXPECT_EQ(enc(*t, "x<b>he<a>"), (std::vector<int32_t>{'x', vocab + 1, 256, vocab}));
  EXPECT_TRUE(t->is_special(256));
}

// ---------- round trips ----------

TEST(TokenizerRoundTrip, AllFamilies) {
  std::vector<std::pair<std::string, std::shared_ptr<const Tokenizer>>> toks = {
      {"byte_level", tiny_byte_level()}, {"llama3_split", tiny_byte_level(true)},
      {"sentencepiece", tiny_sp()},      {"metaspace", tiny_sp(true)},
      {"synth_tiny", synth_tiny()}};
  for (auto& [name, t] : toks) {
    for (const std::string& s : samples()) {
      if (name == "metaspace" && !s.empty() && s[0] == ' ') continue;
      if ((name == "sentencepiece" || name == "metaspace") && has_meta(s)) continue;
      auto ids = enc(*t, s);
      EXPECT_EQ(t->decode(ids), s) << name << ": " << s;
      for (int32_t id : ids) EXPECT_TRUE(t->is_valid_id(id)) << name;
    }
  }
}

TEST(TokenizerRoundTrip, RandomUnicodeStrings) {
  std::mt19937 rng(7);
  auto t1 = synth_tiny();
  auto t2 = tiny_sp();
  const std::vector<uint32_t> pool = {'a', 'Z', ' ', ' ', '\n', '\t', '0', '\'', '.', 0xE9, 0x2582,
                                      0x4E2D, 0x3042, 0x1F600, 0x10FFFF, 0xFFFD, 0x200D, 0x7F};
  for (int iter = 0; iter < 300; ++iter) {
    std::string s;
    const int len = static_cast<int>(rng() % 24);
    for (int k = 0; k < len; ++k) {
      uint32_t cp = pool[rng() % pool.size()];
      if (cp < 0x80) {
        s.push_back(static_cast<char>(cp));
      } else if (cp < 0x800) {
        s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
      } else if (cp < 0x10000) {
        s.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
      } else {
        s.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        s.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
      }
    }
    EXPECT_EQ(t1->decode(enc(*t1, s)), s);
    EXPECT_EQ(t2->decode(enc(*t2, s)), s);
  }
}

TEST(TokenizerUtf8, InvalidInputRefusedAndInvalidIdsRepaired) {
  auto t = synth_tiny();
  for (const std::string bad : {"\xC3", "ab\xFF", "\xED\xA0\x80", "\xF0\x9F\x98", "\xC0\xAF"}) {
    auto ids = t->encode(bad);
    EXPECT_FALSE(ids.ok());
    EXPECT_EQ(ids.status().code(), StatusCode::kInvalidArgument);
  }
  // Byte tokens that do not form UTF-8 decode to U+FFFD (maximal subparts).
  auto byte_id = [&](uint8_t b) { return enc(*t, std::string(1, static_cast<char>(b)))[0]; };
  const int32_t a = byte_id('a');
  auto e2 = t->token_to_id(testing_tok::bl("\xE2"));
  auto x82 = t->token_to_id(testing_tok::bl("\x82"));
  ASSERT_TRUE(e2 && x82);
  EXPECT_EQ(t->decode({*e2, *x82, a}), "\xEF\xBF\xBD" "a");
  EXPECT_EQ(t->decode({*x82, *x82}), "\xEF\xBF\xBD\xEF\xBF\xBD");
  auto sp = tiny_sp();
  EXPECT_EQ(sp->decode({3 + 0xE2, 3 + 0x82}), "\xEF\xBF\xBD");
  EXPECT_EQ(sp->decode({3 + 0xE2, 3 + 0x82, 3 + 0xAC}), "\xE2\x82\xAC");
  EXPECT_EQ(utf8_lossy("a\xF0\x9F\x98" "b"), "a\xEF\xBF\xBD" "b");
}

// ---------- synth tokenizer ----------

TEST(SynthTokenizer, ExactVocabularyAndLayout) {
  auto t = synth_tiny();
  EXPECT_EQ(t->vocab_size(), 1024);
  for (int32_t id = 0; id < 1024; ++id) EXPECT_TRUE(t->is_valid_id(id)) << id;
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_EQ(t->eos_id(), 2);
  EXPECT_EQ(t->id_to_token(0), "<unk>");
  EXPECT_EQ(t->id_to_token(1), "<s>");
  EXPECT_EQ(t->id_to_token(2), "</s>");
  // Merges were learned: common words are single tokens.
  EXPECT_EQ(enc(*t, " the").size(), 1u);
  EXPECT_EQ(enc(*t, "The morning train").size(), 3u);
  auto ids = enc(*t, "hello", true);
  EXPECT_EQ(ids.front(), 1);
  const std::string& corpus = tokenizer_training_corpus();
  EXPECT_LT(enc(*t, corpus).size(), corpus.size() / 3);
  // Deterministic, and other vocabulary sizes fill exactly.
  EXPECT_EQ(train_tokenizer(1024, 1, 2, 2048)->tokenizer_json,
            train_tokenizer(1024, 1, 2, 2048)->tokenizer_json);
  auto big = train_tokenizer(5000, 4000, 4001, 8192);
  ASSERT_TRUE(big.ok());
  auto tb = Tokenizer::from_json_text(big->tokenizer_json, big->tokenizer_config_json);
  ASSERT_TRUE(tb.ok()) << tb.status();
  EXPECT_EQ((*tb)->vocab_size(), 5000);
  EXPECT_EQ((*tb)->bos_id(), 4000);
  EXPECT_EQ((*tb)->decode(*(*tb)->encode(corpus)), corpus);
}

// ---------- refusals ----------

void expect_refused(const json& j, StatusCode code, const std::string& component) {
  auto t = Tokenizer::from_json_text(j.dump());
  ASSERT_FALSE(t.ok()) << component;
  EXPECT_EQ(t.status().code(), code) << t.status();
  EXPECT_NE(t.status().message().find(component), std::string::npos) << t.status();
}

TEST(TokenizerLoad, RefusesUnsupportedComponents) {
  json base = testing_tok::byte_level_json({{"h", "e"}});
  json j = base;
  j["model"]["type"] = "WordPiece";
  expect_refused(j, StatusCode::kUnimplemented, "WordPiece");
  j = base;
  j["model"]["type"] = "Unigram";
  expect_refused(j, StatusCode::kUnimplemented, "Unigram");
  j = base;
  j["normalizer"] = {{"type", "BertNormalizer"}};
  expect_refused(j, StatusCode::kUnimplemented, "BertNormalizer");
  j = base;
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers", json::array({{{"type", "Whitespace"}}})}};
  expect_refused(j, StatusCode::kUnimplemented, "Whitespace");
  j = base;
  j["decoder"] = {{"type", "WordPiece"}};
  expect_refused(j, StatusCode::kUnimplemented, "WordPiece");
  j = base;
  j["post_processor"] = {{"type", "BertProcessing"}};
  expect_refused(j, StatusCode::kUnimplemented, "BertProcessing");
  j = base;
  j["model"]["merges"].push_back("q zz");
  expect_refused(j, StatusCode::kInvalidArgument, "merges[1]");
  j = base;
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  expect_refused(j, StatusCode::kInvalidArgument, "regex");
  j = base;
  j["model"]["dropout"] = 0.1;
  expect_refused(j, StatusCode::kUnimplemented, "dropout");
  j = base;
  j.erase("model");
  expect_refused(j, StatusCode::kInvalidArgument, "model");
  auto bad = Tokenizer::from_json_text("{not json");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  auto missing = Tokenizer::load("/nonexistent/tokenizer.json");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

// ---------- stop strings ----------

TEST(StopStringMatcher, CutsAcrossDeltas) {
  StopStringMatcher m({"STOP", "\n\n"});
  std::string out;
  for (const char* d : {"Hello S", "T", "O", "x and ST", "OP more"}) {
    auto r = m.push(d);
    out += r.text;
    if (r.stopped) break;
  }
  EXPECT_EQ(out, "Hello STOx and ");
  StopStringMatcher n({"abc"});
  EXPECT_EQ(n.push("xxab").text, "xx");
  EXPECT_EQ(n.finish(), "ab");
}

}  // namespace
}  // namespace loraserve
