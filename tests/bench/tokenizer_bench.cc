// Tokenizer throughput on one core: encode MB/s of English text (words of
// the synth corpus in a seeded random order, ~8 MB, in 4 KB requests) for
//   byte-level: the `loraserve synth` tokenizer (GPT-2 regex + ByteLevel BPE)
//   sentencepiece: tests/data/tokenizers/sp_bpe (Llama-2-style, byte fallback)
// plus decode and StreamDecoder rates. Usage:
//   tokenizer_bench [--mb 8] [--tokenizer extra/tokenizer.json ...]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "tokenizer/text_stream.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_train.h"

using namespace loraserve;

namespace {

std::string make_text(size_t bytes) {
  const std::string& corpus = tokenizer_training_corpus();
  std::vector<std::string> words;
  size_t start = 0;
  for (size_t i = 0; i <= corpus.size(); ++i) {
    if (i == corpus.size() || corpus[i] == ' ' || corpus[i] == '\n') {
      if (i > start) words.push_back(corpus.substr(start, i - start));
      start = i + 1;
    }
  }
  std::mt19937 rng(1234);
  std::string out;
  out.reserve(bytes + 64);
  int n = 0;
  while (out.size() < bytes) {
    out += words[rng() % words.size()];
    out += (++n % 17 == 0) ? '\n' : ' ';
  }
  return out;
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void bench(const char* name, const std::shared_ptr<const Tokenizer>& tok, const std::string& text) {
  const size_t chunk = 4096;
  std::vector<int32_t> all;
  double t0 = now_s();
  for (size_t off = 0; off < text.size(); off += chunk) {
    auto ids = tok->encode(std::string_view(text).substr(off, chunk));
    if (!ids.ok()) {
      std::fprintf(stderr, "%s: %s\n", name, ids.status().to_string().c_str());
      std::exit(1);
    }
    all.insert(all.end(), ids->begin(), ids->end());
  }
  double t1 = now_s();
  std::string dec = tok->decode(all);
  double t2 = now_s();
  StreamDecoder sd(tok);
  size_t streamed = 0;
  for (int32_t id : all) streamed += sd.push(id).size();
  streamed += sd.finish().size();
  double t3 = now_s();
  const double mb = static_cast<double>(text.size()) / 1e6;
  // Round trip on one request (chunking adds SentencePiece's '▁' per request).
  const std::string head = text.substr(0, 65536);
  auto head_ids = tok->encode(head);
  const bool roundtrip = head_ids.ok() && tok->decode(*head_ids) == head;
  std::printf("%-14s vocab %6d  encode %7.2f MB/s (%.2f bytes/token, %zu tokens)  "
              "decode %7.1f MB/s  stream %6.2f M tokens/s  roundtrip %s\n",
              name, tok->vocab_size(), mb / (t1 - t0),
              static_cast<double>(text.size()) / static_cast<double>(all.size()), all.size(),
              static_cast<double>(dec.size()) / 1e6 / (t2 - t1),
              static_cast<double>(all.size()) / 1e6 / (t3 - t2),
              (roundtrip && streamed == dec.size()) ? "ok" : "MISMATCH");
}

}  // namespace

int main(int argc, char** argv) {
  double mb = 8;
  std::vector<std::string> extra;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--mb") && i + 1 < argc) mb = std::atof(argv[++i]);
    else if (!std::strcmp(argv[i], "--tokenizer") && i + 1 < argc) extra.push_back(argv[++i]);
  }
  const std::string text = make_text(static_cast<size_t>(mb * 1e6));
  std::printf("text: %.1f MB of English (synth corpus words, seeded order), 4 KB requests, 1 thread\n",
              static_cast<double>(text.size()) / 1e6);
  // Worst case for the word cache: random lowercase words, nearly all distinct.
  std::mt19937 rng(99);
  std::string random_words;
  while (random_words.size() < text.size() / 4) {
    const int len = 3 + static_cast<int>(rng() % 8);
    for (int k = 0; k < len; ++k) random_words.push_back(static_cast<char>('a' + rng() % 26));
    random_words.push_back(' ');
  }
  auto files = train_tokenizer(1024, 1, 2, 2048);
  auto synth = Tokenizer::from_json_text(files->tokenizer_json, files->tokenizer_config_json);
  if (synth.ok()) bench("byte-level", *synth, text);
  if (synth.ok()) bench("bl-random-words", *synth, random_words);
  auto sp = Tokenizer::load(std::string(LORASERVE_SOURCE_DIR) + "/tests/data/tokenizers/sp_bpe/tokenizer.json");
  if (sp.ok()) bench("sentencepiece", *sp, text);
  else std::fprintf(stderr, "sentencepiece fixture: %s\n", sp.status().to_string().c_str());
  for (const std::string& p : extra) {
    auto t = Tokenizer::load(p);
    if (t.ok()) bench(p.c_str(), *t, text);
    else std::fprintf(stderr, "%s\n", t.status().to_string().c_str());
  }
  return 0;
}
