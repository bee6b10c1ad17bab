// StreamDecoder: every delta is valid UTF-8 and the deltas concatenate to
// the one-shot decode, for random id sequences on both families.
#include <gtest/gtest.h>

#include <random>

#include "tokenizer/text_stream.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "tokenizer/tokenizer_train.h"
#include "tokenizer_test_util.h"

namespace loraserve {
namespace {

using testing_tok::kMeta;

void check_stream(const std::shared_ptr<const Tokenizer>& t, const std::vector<int32_t>& ids,
                  const DecodeOptions& opts) {
  StreamDecoder dec(t, opts);
  std::string all;
  for (int32_t id : ids) {
    std::string d = dec.push(id);
    ASSERT_TRUE(utf8_valid(d));
    all += d;
  }
  std::string tail = dec.finish();
  ASSERT_TRUE(utf8_valid(tail));
  all += tail;
  ASSERT_EQ(all, t->decode(ids, opts));
}

std::vector<std::shared_ptr<const Tokenizer>> tokenizers() {
  auto files = train_tokenizer(1024, 1, 2, 2048);
  auto a = Tokenizer::from_json_text(files->tokenizer_json, files->tokenizer_config_json);
  const std::string m = kMeta;
  auto b = Tokenizer::from_json_text(
      testing_tok::sentencepiece_json({kMeta, "h", "e", "l", "o"},
                                      {{m, "h"}, {"l", "l"}, {m + "h", "e"}, {m, m}})
          .dump(),
      testing_tok::sp_config());
  EXPECT_TRUE(a.ok() && b.ok());
  return {*a, *b};
}

TEST(StreamDecoder, RandomIdsConcatenateToDecode) {
  std::mt19937 rng(11);
  for (const auto& t : tokenizers()) {
    for (int iter = 0; iter < 400; ++iter) {
      std::vector<int32_t> ids;
      const int len = static_cast<int>(rng() % 30);
      for (int k = 0; k < len; ++k) ids.push_back(static_cast<int32_t>(rng() % t->vocab_size()));
      for (int mode = 0; mode < 4; ++mode) {
        DecodeOptions o;
        o.skip_special_tokens = mode & 1;
        o.continuation = mode & 2;
        check_stream(t, ids, o);
      }
    }
  }
}

TEST(StreamDecoder, MultilingualTextStreams) {
  const std::string text =
      " leading space, caf\u00e9, \u4e2d\u6587, \U0001F600\U0001F44D\U0001F3FD, "
      "\u041f\u0440\u0438\u0432\u0435\u0442\n\n  end";
  for (const auto& t : tokenizers()) {
    auto ids = t->encode(text, true);
    ASSERT_TRUE(ids.ok());
    for (bool skip : {false, true}) {
      DecodeOptions o;
      o.skip_special_tokens = skip;
      check_stream(t, *ids, o);
    }
    DecodeOptions o;
    o.skip_special_tokens = true;
    EXPECT_EQ(t->decode(*ids, o), text);
    // An emoji split over byte tokens is held back until complete.
    StreamDecoder dec(t, o);
    size_t max_pending = 0;
    for (int32_t id : *ids) {
      (void)dec.push(id);
      max_pending = std::max(max_pending, dec.pending_bytes());
    }
    EXPECT_LE(max_pending, 3u);
  }
}

TEST(StreamDecoder, SentencePieceLeadingSpaceStripped) {
  auto t = tokenizers()[1];
  auto ids = t->encode("hello");
  ASSERT_TRUE(ids.ok());
  StreamDecoder dec(t);
  std::string first = dec.push((*ids)[0]);
  EXPECT_EQ(first.substr(0, 1), "h");
  // A lone byte token <0xE2> is held, then repaired at finish.
  StreamDecoder d2(t);
  EXPECT_EQ(d2.push(3 + 0xE2), "");
  EXPECT_EQ(d2.pending_bytes(), 1u);
  EXPECT_EQ(d2.finish(), "\xEF\xBF\xBD");
}

}  // namespace
}  // namespace loraserve
