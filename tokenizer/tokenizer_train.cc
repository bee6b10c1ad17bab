// Deterministic byte-level BPE trainer for `loraserve synth`.
#include "tokenizer/tokenizer_train.h"

#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <set>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer_impl.h"

namespace loraserve {

// ChatML after the tokenizer's BOS, for the Llama-shaped synth models (which
// add one): the demo and the tests can chat.
const char kLlamaChatMlTemplate[] =
    "{{ bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

namespace {

// Original prose written for this file: plain English with digits,
// punctuation and line breaks, so that common words become single tokens.
const char kCorpus[] = R"(The morning train left the station at 7:15, as it did every day of the week.
People read their newspapers, drank coffee from paper cups, and looked out of the window at the
fields, the rivers and the small towns that passed by. Nobody spoke much; it was too early for that.
A child asked her mother why the sky was blue, and the mother said that light from the sun is
scattered by the air, and blue light is scattered more than red light. The child thought about it
for a while and then asked why the sun was yellow.

In the kitchen, the bread was rising slowly under a clean towel. The recipe said to wait for two
hours, but the baker knew that the dough would tell her when it was ready. She pressed it gently
with one finger; the mark filled back in, slowly. "Not yet," she said to nobody in particular.
Flour, water, salt and yeast: four simple things, and yet there are a thousand ways to get it wrong.

The city library opened at nine o'clock. The first visitors were students with heavy bags, an old
man who came every morning to read the same three newspapers, and a woman looking for a book about
gardens. The librarian helped her find it on the second floor, between a history of the river and
a guide to the birds of the northern hills. "You can keep it for three weeks," he said, "and you
can renew it online if you need more time."

Numbers are everywhere in daily life. A loaf of bread costs 3.50, a train ticket costs 12.80, and
a good pair of shoes might cost 89 or 120. The year has 365 days, or 366 in a leap year; a day has
24 hours, an hour has 60 minutes, and a minute has 60 seconds. In 2024 there were 29 days in
February. Count to 10, then to 100, then to 1000, and you will see how quickly numbers grow.

When the weather is good, the park is full of people. Some of them walk their dogs, some of them
run, and some of them simply sit on the grass and talk with their friends. In the afternoon the
wind comes from the west, and the trees move their branches as if they were waving to each other.
Later, when the sun goes down, the lights of the city come on one by one, and the park is quiet
again.

Learning a new language takes time and patience. You learn the words for the things around you:
table, chair, window, door, water, bread, friend. Then you learn how to put the words together,
how to ask a question, how to say what you want and what you do not want. After some months you
can read a short story, and after some years you may even dream in the new language.

The old bridge over the river was built more than two hundred years ago. It has seven stone arches,
and in the middle there is a small house where the bridge keeper used to live. Today nobody lives
there, but in the summer the house is open to visitors, who can climb the narrow stairs and look
down at the water moving under the arches.

Computers follow instructions very quickly, but they only do what they are told. A program is a list
of instructions, written in a language that the computer can understand. If the instructions are
wrong, the result will be wrong too, no matter how fast the computer is. Good programmers test their
work carefully, they read error messages, and they ask for help when they are stuck.

"Where are you going?" asked the fox.
"To the market," said the rabbit, "to buy carrots, apples and a little bit of cheese."
"May I come with you?" asked the fox, smiling.
"No, thank you," said the rabbit, and it ran very fast all the way to the market and back home.

Every evening the family had dinner together at the long wooden table. They talked about their day:
what they had learned at school, what had happened at work, who they had met in the street. The
youngest son always wanted to tell the longest stories, and everybody listened, even when the stories
did not have an ending.
)";

using json = nlohmann::ordered_json;

}  // namespace

const std::string& tokenizer_training_corpus() {
  static const std::string corpus(kCorpus);
  return corpus;
}

const char kChatMlTemplate[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

namespace {

// Qwen2's pre-tokenizer regex (tokenizer.json of Qwen2, Qwen2.5 and Qwen3).
const char kQwen2Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

}  // namespace

StatusOr<TrainedTokenizerFiles> train_tokenizer(int64_t vocab_size, int64_t bos_id, int64_t eos_id,
                                              int64_t model_max_length) {
  TokenizerTrainOptions o;
  o.vocab_size = vocab_size;
  o.bos_id = bos_id;
  o.eos_id = eos_id;
  o.model_max_length = model_max_length;
  return train_tokenizer(o);
}

StatusOr<TrainedTokenizerFiles> train_tokenizer(const TokenizerTrainOptions& options) {
  const int64_t vocab_size = options.vocab_size, bos_id = options.bos_id, eos_id = options.eos_id;
  const bool chatml = options.style == TokenizerStyle::kChatMl;
  if (vocab_size < 259 || vocab_size > (1 << 24)) {
    return invalid_argument("synth tokenizer: vocab_size " + std::to_string(vocab_size) +
                            " must be in [259, 2^24]");
  }
  if (bos_id < 0 || bos_id >= vocab_size || eos_id < 0 || eos_id >= vocab_size || bos_id == eos_id) {
    return invalid_argument("synth tokenizer: bos/eos ids must be distinct ids below vocab_size");
  }
  if (chatml && (eos_id - 1 == bos_id || eos_id == 0)) {
    return invalid_argument(
        "synth tokenizer: ChatML puts <|im_start|> at eos_id - 1, which must be free");
  }
  const size_t n = static_cast<size_t>(vocab_size);
  std::vector<std::string> special(n);  // non-empty: an added special token
  if (chatml) {
    special[static_cast<size_t>(bos_id)] = "<|endoftext|>";
    special[static_cast<size_t>(eos_id - 1)] = "<|im_start|>";
    special[static_cast<size_t>(eos_id)] = "<|im_end|>";
  } else {
    special[static_cast<size_t>(bos_id)] = "<s>";
    special[static_cast<size_t>(eos_id)] = "</s>";
    size_t next = 0;
    while (next < n && !special[next].empty()) ++next;
    special[next] = "<unk>";
  }
  std::vector<std::string> tok_bytes(n);  // model tokens: raw bytes
  std::vector<uint8_t> used(n, 0);
  for (size_t i = 0; i < n; ++i) used[i] = !special[i].empty();
  size_t cursor = 0;
  auto alloc = [&]() -> int64_t {
    while (cursor < n && used[cursor]) ++cursor;
    if (cursor >= n) return -1;
    used[cursor] = 1;
    return static_cast<int64_t>(cursor);
  };
  std::map<std::string, int32_t> by_bytes;
  int32_t byte_id[256];
  for (int b = 0; b < 256; ++b) {
    int64_t id = alloc();
    if (id < 0) return invalid_argument("synth tokenizer: vocab_size too small for 256 bytes");
    tok_bytes[static_cast<size_t>(id)] = std::string(1, static_cast<char>(b));
    byte_id[b] = static_cast<int32_t>(id);
    by_bytes[tok_bytes[static_cast<size_t>(id)]] = static_cast<int32_t>(id);
  }
  // Pre-tokenize the corpus with the GPT-2 regex; count words.
  LS_ASSIGN_OR_RETURN(auto regex, tokenizer_internal::Regex::compile(
                                      chatml ? kQwen2Pattern : tokenizer_internal::kGpt2Pattern));
  std::map<std::string, int64_t> word_count;
  const std::string& corpus = tokenizer_training_corpus();
  regex->for_each_match(corpus, [&](size_t b, size_t e) { ++word_count[corpus.substr(b, e - b)]; });
  struct Word {
    std::vector<int32_t> syms;
    int64_t count;
  };
  std::vector<Word> words;
  for (const auto& [w, c] : word_count) {
    Word wd{{}, c};
    for (char ch : w) wd.syms.push_back(byte_id[static_cast<uint8_t>(ch)]);
    words.push_back(std::move(wd));
  }
  std::vector<std::pair<int32_t, int32_t>> merges;
  while (true) {
    std::map<std::pair<int32_t, int32_t>, int64_t> pairs;
    for (const Word& w : words) {
      for (size_t k = 0; k + 1 < w.syms.size(); ++k) pairs[{w.syms[k], w.syms[k + 1]}] += w.count;
    }
    if (pairs.empty()) break;
    auto best = pairs.begin();
    for (auto it = pairs.begin(); it != pairs.end(); ++it) {
      if (it->second > best->second) best = it;  // ties: the lowest id pair (map order)
    }
    const auto [a, b] = best->first;
    const std::string merged = tok_bytes[static_cast<size_t>(a)] + tok_bytes[static_cast<size_t>(b)];
    int32_t id;
    auto found = by_bytes.find(merged);
    if (found != by_bytes.end()) {
      id = found->second;
    } else {
      int64_t nid = alloc();
      if (nid < 0) break;  // vocabulary full
      id = static_cast<int32_t>(nid);
      tok_bytes[static_cast<size_t>(id)] = merged;
      by_bytes[merged] = id;
    }
    merges.emplace_back(a, b);
    for (Word& w : words) {
      std::vector<int32_t> out;
      out.reserve(w.syms.size());
      for (size_t k = 0; k < w.syms.size(); ++k) {
        if (k + 1 < w.syms.size() && w.syms[k] == a && w.syms[k + 1] == b) {
          out.push_back(id);
          ++k;
        } else {
          out.push_back(w.syms[k]);
        }
      }
      w.syms.swap(out);
    }
  }
  // Fill what is left with reserved specials.
  int reserved = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!used[i]) {
      used[i] = 1;
      special[i] = "<|reserved_" + std::to_string(reserved++) + "|>";
    }
  }

  json added = json::array();
  for (size_t i = 0; i < n; ++i) {
    if (special[i].empty()) continue;
    added.push_back({{"id", i}, {"content", special[i]}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", true}});
  }
  json vocab = json::object();
  for (size_t i = 0; i < n; ++i) {
    // Specials are in the model vocab too (as in Llama's files; Qwen's list
    // them in added_tokens only, which loads the same): Hugging Face gives
    // an added token missing from the vocab an id after it.
    vocab[special[i].empty() ? tokenizer_internal::bytes_to_byte_level(tok_bytes[i]) : special[i]] = i;
  }
  json merge_list = json::array();
  for (const auto& [a, b] : merges) {
    merge_list.push_back(tokenizer_internal::bytes_to_byte_level(tok_bytes[static_cast<size_t>(a)]) +
                         " " +
                         tokenizer_internal::bytes_to_byte_level(tok_bytes[static_cast<size_t>(b)]));
  }
  json model = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", false},
                {"vocab", vocab},
                {"merges", merge_list}};
  json root;
  json config;
  if (chatml) {
    // As Qwen2's files: no BOS anywhere, ByteLevel without prefix spaces.
    model["continuing_subword_prefix"] = "";
    model["end_of_word_suffix"] = "";
    const json byte_level = {{"type", "ByteLevel"},
                             {"add_prefix_space", false},
                             {"trim_offsets", false},
                             {"use_regex", false}};
    root = {{"version", "1.0"},
            {"truncation", nullptr},
            {"padding", nullptr},
            {"added_tokens", added},
            {"normalizer", {{"type", "NFC"}}},
            {"pre_tokenizer",
             {{"type", "Sequence"},
              {"pretokenizers", json::array({{{"type", "Split"},
                                              {"pattern", {{"Regex", kQwen2Pattern}}},
                                              {"behavior", "Isolated"},
                                              {"invert", false}},
                                             byte_level})}}},
            {"post_processor", byte_level},
            {"decoder", byte_level},
            {"model", model}};
    json decoder = json::object();
    for (const json& t : added) {
      json entry = t;
      entry.erase("id");
      decoder[std::to_string(t["id"].get<size_t>())] = entry;
    }
    config = {{"add_prefix_space", false},
              {"added_tokens_decoder", decoder},
              {"additional_special_tokens", json::array({"<|im_start|>", "<|im_end|>"})},
              {"bos_token", nullptr},
              {"chat_template", kChatMlTemplate},
              {"clean_up_tokenization_spaces", false},
              {"eos_token", "<|im_end|>"},
              {"errors", "replace"},
              {"model_max_length", options.model_max_length},
              {"pad_token", "<|endoftext|>"},
              {"split_special_tokens", false},
              {"tokenizer_class", "Qwen2Tokenizer"},
              {"unk_token", nullptr}};
  } else {
    const std::string bos = special[static_cast<size_t>(bos_id)];
    root = {{"version", "1.0"},
            {"truncation", nullptr},
            {"padding", nullptr},
            {"added_tokens", added},
            {"normalizer", nullptr},
            {"pre_tokenizer",
             {{"type", "ByteLevel"},
              {"add_prefix_space", false},
              {"trim_offsets", true},
              {"use_regex", true}}},
            {"post_processor",
             {{"type", "TemplateProcessing"},
              {"single", json::array({{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
                                      {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
              {"pair", json::array({{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
                                    {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                    {{"SpecialToken", {{"id", bos}, {"type_id", 1}}}},
                                    {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}})},
              {"special_tokens",
               {{bos,
                 {{"id", bos}, {"ids", json::array({bos_id})}, {"tokens", json::array({bos})}}}}}}},
            {"decoder",
             {{"type", "ByteLevel"},
              {"add_prefix_space", true},
              {"trim_offsets", true},
              {"use_regex", true}}},
            {"model", model}};
    config = {{"add_bos_token", true},
              {"add_eos_token", false},
              {"bos_token", "<s>"},
              {"eos_token", "</s>"},
              {"unk_token", "<unk>"},
              {"clean_up_tokenization_spaces", false},
              {"model_max_length", options.model_max_length},
              {"tokenizer_class", "PreTrainedTokenizerFast"},
              {"chat_template", kLlamaChatMlTemplate}};
  }
  TrainedTokenizerFiles files;
  files.tokenizer_json = root.dump(1) + "\n";
  files.tokenizer_config_json = config.dump(2) + "\n";
  return files;
}

Status write_trained_tokenizer(const std::string& dir, int64_t vocab_size, int64_t bos_id,
                             int64_t eos_id, int64_t model_max_length) {
  TokenizerTrainOptions o;
  o.vocab_size = vocab_size;
  o.bos_id = bos_id;
  o.eos_id = eos_id;
  o.model_max_length = model_max_length;
  return write_trained_tokenizer(dir, o);
}

Status write_trained_tokenizer(const std::string& dir, const TokenizerTrainOptions& options) {
  LS_ASSIGN_OR_RETURN(TrainedTokenizerFiles files, train_tokenizer(options));
  for (const auto& [name, text] : {std::pair<std::string, const std::string*>{"tokenizer.json", &files.tokenizer_json},
                                   {"tokenizer_config.json", &files.tokenizer_config_json}}) {
    const std::string path = dir + "/" + name;
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) return internal_error("cannot create " + path);
    out << *text;
    out.close();
    if (!out) return internal_error("cannot write " + path);
  }
  return ok_status();
}

}  // namespace loraserve
