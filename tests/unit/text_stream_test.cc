// TextStream: generated ids in events of any size -> the text a frontend
// sends. Checked against the one-shot decode (skip special tokens,
// continuation) cut before the first stop string, found by plain search.
#include <gtest/gtest.h>

#include <random>

#include "tokenizer/text_stream.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_train.h"
#include "tokenizer/utf8.h"

namespace loraserve {
namespace {

std::shared_ptr<const Tokenizer> trained() {
  auto files = train_tokenizer(1024, 1, 2, 2048);
  EXPECT_TRUE(files.ok());
  auto t = Tokenizer::from_json_text(files->tokenizer_json, files->tokenizer_config_json);
  EXPECT_TRUE(t.ok());
  return *t;
}

std::string full_text(const Tokenizer& t, const std::vector<int32_t>& ids) {
  DecodeOptions o;
  o.skip_special_tokens = true;
  o.continuation = true;
  return t.decode(ids, o);
}

struct Streamed {
  std::string text;
  bool stopped = false;
  size_t stop_event = 0;  // index of the event whose push reported the stop
};

// Feeds `ids` in events of the given sizes (cycled), then finish().
Streamed stream_all(const std::shared_ptr<const Tokenizer>& t, const std::vector<int32_t>& ids,
                    const std::vector<std::string>& stops, const std::vector<size_t>& sizes) {
  TextStream s(t, stops);
  Streamed out;
  size_t i = 0, event = 0;
  while (i < ids.size()) {
    const size_t n = std::min(sizes[event % sizes.size()], ids.size() - i);
    std::vector<int32_t> chunk(ids.begin() + static_cast<long>(i),
                               ids.begin() + static_cast<long>(i + n));
    TextStream::Delta d = s.push(chunk);
    EXPECT_TRUE(utf8_valid(d.text)) << "delta is not valid UTF-8";
    out.text += d.text;
    if (d.stopped) {
      out.stopped = true;
      out.stop_event = event;
      // Further ids add nothing once stopped.
      EXPECT_EQ(s.push(ids).text, "");
      break;
    }
    i += n;
    ++event;
  }
  const std::string tail = s.finish();
  EXPECT_TRUE(utf8_valid(tail));
  if (out.stopped) {
    EXPECT_EQ(tail, "");
  }
  out.text += tail;
  out.stopped = out.stopped || s.stopped();
  return out;
}

TEST(TextStream, WithoutStopsEqualsOneShotDecode) {
  auto t = trained();
  const std::string text = "The quick brown fox, caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x99\x82 end.";
  auto ids = t->encode(text);
  ASSERT_TRUE(ids.ok());
  for (size_t size : {1, 2, 3, 7, 100}) {
    Streamed s = stream_all(t, *ids, {}, {size});
    EXPECT_FALSE(s.stopped);
    EXPECT_EQ(s.text, full_text(*t, *ids)) << "event size " << size;
    EXPECT_EQ(s.text, text);
  }
}

TEST(TextStream, StopStringAcrossTokensCutsBeforeIt) {
  auto t = trained();
  auto ids = t->encode("Once upon a time there was a little house by the sea.");
  ASSERT_TRUE(ids.ok());
  for (size_t size : {1, 2, 5}) {
    Streamed s = stream_all(t, *ids, {"little house", "zzz"}, {size});
    EXPECT_TRUE(s.stopped);
    EXPECT_EQ(s.text, "Once upon a time there was a ");
  }
}

TEST(TextStream, HeldPrefixOfAStopIsReleasedAtTheEnd) {
  auto t = trained();
  auto ids = t->encode("and so it goes to the en");
  ASSERT_TRUE(ids.ok());
  Streamed s = stream_all(t, *ids, {"the end"}, {1});
  EXPECT_FALSE(s.stopped);
  EXPECT_EQ(s.text, "and so it goes to the en");
}

TEST(TextStream, SpecialTokensAreSkipped) {
  auto t = trained();
  auto ids = t->encode("hello world");
  ASSERT_TRUE(ids.ok());
  std::vector<int32_t> with_eos = *ids;
  with_eos.push_back(*t->eos_id());
  Streamed s = stream_all(t, with_eos, {}, {1});
  EXPECT_EQ(s.text, "hello world");
}

// Random id streams and stop strings taken from their own decoded text:
// the streamed text equals the decode cut at the earliest stop occurrence.
TEST(TextStream, RandomStreamsMatchDecodeCutAtFirstStop) {
  auto t = trained();
  std::mt19937 rng(7);
  int stopped = 0;
  for (int iter = 0; iter < 300; ++iter) {
    std::vector<int32_t> ids;
    const int len = 1 + static_cast<int>(rng() % 40);
    for (int k = 0; k < len; ++k) ids.push_back(static_cast<int32_t>(rng() % t->vocab_size()));
    const std::string whole = full_text(*t, ids);
    std::vector<std::string> stops = {"\x01never\x02"};
    if (whole.size() > 4 && rng() % 4 != 0) {
      // Stop strings arrive as valid UTF-8 (proto3 strings, JSON).
      const std::string st = whole.substr(rng() % (whole.size() - 3), 1 + rng() % 3);
      if (utf8_valid(st)) stops.push_back(st);
    }
    size_t cut = std::string::npos;
    for (const std::string& st : stops) cut = std::min(cut, whole.find(st));
    const std::string want = cut == std::string::npos ? whole : whole.substr(0, cut);
    Streamed s = stream_all(t, ids, stops, {1 + rng() % 4, 1 + rng() % 4});
    EXPECT_EQ(s.text, want) << "iteration " << iter;
    EXPECT_EQ(s.stopped, cut != std::string::npos) << "iteration " << iter;
    stopped += s.stopped;
  }
  EXPECT_GT(stopped, 50);
}

}  // namespace
}  // namespace loraserve
