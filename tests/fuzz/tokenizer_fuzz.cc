// libFuzzer target for the tokenizer.json reader, the encoder and the
// stream decoder. The first input byte picks the mode:
//   even: the rest is a tokenizer.json; if it loads, encode/decode probes.
//   odd:  the rest is text (any bytes) for two fixed tokenizers (synth
//         byte-level, SentencePiece-style) plus id streams from the bytes.
// Checks: no crash, no hang, encode refuses invalid UTF-8, round trip for
// byte-level, stream deltas valid UTF-8 and equal to the one-shot decode.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "tokenizer/text_stream.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "tokenizer/tokenizer_train.h"

using namespace loraserve;

namespace {

const char kSpJson[] = R"({"model":{"type":"BPE","byte_fallback":true,"unk_token":"<unk>",
"vocab":{"<unk>":0,"<s>":1,"</s>":2,"<0xC3>":3,"<0xA9>":4,"<0xE2>":5,"<0x82>":6,"<0xAC>":7,
"<0x20>":8,"▁":9,"a":10,"b":11,"▁a":12,"ab":13,"▁ab":14,"▁▁":15},
"merges":["▁ a","a b","▁a b","▁ ▁"]},
"added_tokens":[{"id":1,"content":"<s>","special":true},{"id":2,"content":"</s>","special":true}],
"normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},
{"type":"Replace","pattern":{"String":" "},"content":"▁"}]},
"decoder":{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},
{"type":"ByteFallback"},{"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]}})";

void check_stream(const std::shared_ptr<const Tokenizer>& t, const std::vector<int32_t>& ids,
                  bool skip) {
  DecodeOptions o;
  o.skip_special_tokens = skip;
  StreamDecoder d(t, o);
  std::string all;
  for (int32_t id : ids) {
    std::string s = d.push(id);
    if (!utf8_valid(s)) std::abort();
    all += s;
  }
  all += d.finish();
  if (all != t->decode(ids, o)) std::abort();
}

void probe(const std::shared_ptr<const Tokenizer>& t, const std::string& text, bool exact) {
  auto ids = t->encode(text, true);
  if (!utf8_valid(text)) {
    if (ids.ok()) std::abort();
    return;
  }
  if (!ids.ok()) std::abort();
  auto plain = t->encode(text, false);
  if (!plain.ok()) std::abort();
  if (exact && t->decode(*plain) != text) std::abort();
  check_stream(t, *ids, false);
  check_stream(t, *ids, true);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static std::shared_ptr<const Tokenizer> synth = [] {
    auto f = train_tokenizer(1024, 1, 2, 2048);
    return *Tokenizer::from_json_text(f->tokenizer_json, f->tokenizer_config_json);
  }();
  static std::shared_ptr<const Tokenizer> sp = *Tokenizer::from_json_text(kSpJson);
  if (size == 0) return 0;
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if ((data[0] & 1) == 0) {
    auto t = Tokenizer::from_json_text(rest);
    if (!t.ok()) return 0;
    probe(*t, "Hello world, caf\u00e9 \u4e2d\u6587 \U0001F600  <s> x", false);
    std::vector<int32_t> ids;
    for (int32_t i = -1; i < std::min<int32_t>((*t)->vocab_size() + 1, 300); ++i) ids.push_back(i);
    check_stream(*t, ids, false);
    return 0;
  }
  probe(synth, rest, true);
  probe(sp, rest, false);
  std::vector<int32_t> ids;
  for (size_t i = 0; i + 1 < rest.size(); i += 2) {
    ids.push_back(static_cast<int32_t>((static_cast<uint8_t>(rest[i]) << 8 | static_cast<uint8_t>(rest[i + 1])) % 1100));
  }
  check_stream(synth, ids, false);
  check_stream(sp, ids, true);
  return 0;
}
