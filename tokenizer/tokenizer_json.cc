// Loading a tokenizer: tokenizer.json (+ tokenizer_config.json) ->
// TokenizerImpl -> Tokenizer. Every component is checked here so that
// encode/decode never meet a surprise.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>

#include "common/file_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_impl.h"

namespace loraserve::tokenizer_internal {

namespace {

using json = nlohmann::json;

const char kMetaspace[] = "\xE2\x96\x81";  // U+2581 '▁'
// Largest token id accepted (2M; real vocabularies stay below 300k): bounds
// what a malformed file can make the loader allocate.
constexpr int64_t kMaxId = int64_t{1} << 21;

std::string type_of(const json& j) {
  if (!j.is_object()) return "";
  auto it = j.find("type");
  return (it != j.end() && it->is_string()) ? it->get<std::string>() : "";
}

bool get_bool(const json& j, const char* key, bool def) {
  auto it = j.find(key);
  return (it != j.end() && it->is_boolean()) ? it->get<bool>() : def;
}

std::string get_string(const json& j, const char* key, const std::string& def) {
  auto it = j.find(key);
  return (it != j.end() && it->is_string()) ? it->get<std::string>() : def;
}

StatusOr<Pattern> parse_pattern(const json& j, const std::string& where) {
  Pattern p;
  if (j.is_object() && j.contains("String") && j["String"].is_string()) {
    p.literal = j["String"].get<std::string>();
    if (p.literal.empty()) return invalid_argument(where + ": empty String pattern");
    return p;
  }
  if (j.is_object() && j.contains("Regex") && j["Regex"].is_string()) {
    auto r = Regex::compile(j["Regex"].get<std::string>());
    if (!r.ok()) return r.status().with_context(where);
    p.regex = *r;
    return p;
  }
  return invalid_argument(where + ": pattern must be {\"String\": ...} or {\"Regex\": ...}");
}

Status parse_normalizer(const json& j, const std::string& where, std::vector<NormStep>* out) {
  if (j.is_null()) return ok_status();
  const std::string t = type_of(j);
  if (t == "Sequence") {
    if (!j.contains("normalizers") || !j["normalizers"].is_array()) {
      return invalid_argument(where + " Sequence: missing normalizers array");
    }
    for (size_t i = 0; i < j["normalizers"].size(); ++i) {
      LS_RETURN_IF_ERROR(parse_normalizer(j["normalizers"][i],
                                          where + "[" + std::to_string(i) + "]", out));
    }
    return ok_status();
  }
  NormStep s{};
  if (t == "Prepend") {
    s.kind = NormStep::kPrepend;
    s.text = get_string(j, "prepend", "");
  } else if (t == "Replace") {
    s.kind = NormStep::kReplace;
    if (!j.contains("pattern")) return invalid_argument(where + " Replace: missing pattern");
    LS_ASSIGN_OR_RETURN(s.pattern, parse_pattern(j["pattern"], where + " Replace"));
    s.text = get_string(j, "content", "");
  } else if (t == "NFC") {
    s.kind = NormStep::kNfc;
  } else if (t == "NFD") {
    s.kind = NormStep::kNfd;
  } else if (t == "NFKC") {
    s.kind = NormStep::kNfkc;
  } else if (t == "NFKD") {
    s.kind = NormStep::kNfkd;
  } else if (t == "Lowercase") {
    s.kind = NormStep::kLowercase;
  } else if (t == "Strip") {
    s.kind = NormStep::kStrip;
    s.strip_left = get_bool(j, "strip_left", true);
    s.strip_right = get_bool(j, "strip_right", true);
  } else {
    return unimplemented(where + ": normalizer type \"" + t + "\" is not supported");
  }
  out->push_back(std::move(s));
  return ok_status();
}

StatusOr<SplitBehavior> parse_behavior(const std::string& b, const std::string& where) {
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return SplitBehavior::kContiguous;
  return invalid_argument(where + ": unknown split behavior \"" + b + "\"");
}

Status parse_pre_tokenizer(const json& j, const std::string& where, std::vector<PreStep>* out) {
  if (j.is_null()) return ok_status();
  const std::string t = type_of(j);
  if (t == "Sequence") {
    if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array()) {
      return invalid_argument(where + " Sequence: missing pretokenizers array");
    }
    for (size_t i = 0; i < j["pretokenizers"].size(); ++i) {
      LS_RETURN_IF_ERROR(parse_pre_tokenizer(j["pretokenizers"][i],
                                             where + "[" + std::to_string(i) + "]", out));
    }
    return ok_status();
  }
  PreStep s{};
  if (t == "Split") {
    s.kind = PreStep::kSplit;
    if (!j.contains("pattern")) return invalid_argument(where + " Split: missing pattern");
    LS_ASSIGN_OR_RETURN(s.pattern, parse_pattern(j["pattern"], where + " Split"));
    LS_ASSIGN_OR_RETURN(s.behavior, parse_behavior(get_string(j, "behavior", "Isolated"),
                                                   where + " Split"));
    s.invert = get_bool(j, "invert", false);
  } else if (t == "ByteLevel") {
    s.kind = PreStep::kByteLevel;
    s.add_prefix_space = get_bool(j, "add_prefix_space", false);
    s.use_regex = get_bool(j, "use_regex", true);
    if (s.use_regex) {
      LS_ASSIGN_OR_RETURN(s.regex, Regex::compile(kGpt2Pattern));
    }
  } else if (t == "Metaspace") {
    s.kind = PreStep::kMetaspace;
    s.replacement = get_string(j, "replacement", kMetaspace);
    if (s.replacement.empty()) return invalid_argument(where + " Metaspace: empty replacement");
    s.split = get_bool(j, "split", true);
    std::string scheme = get_string(j, "prepend_scheme", "");
    if (scheme.empty()) {
      s.prepend = get_bool(j, "add_prefix_space", true) ? PreStep::kAlways : PreStep::kNever;
    } else if (scheme == "always") {
      s.prepend = PreStep::kAlways;
    } else if (scheme == "first") {
      s.prepend = PreStep::kFirst;
    } else if (scheme == "never") {
      s.prepend = PreStep::kNever;
    } else {
      return invalid_argument(where + " Metaspace: unknown prepend_scheme \"" + scheme + "\"");
    }
  } else if (t == "Digits") {
    // Digits is a Split on numeric characters: one by one or in runs.
    s.kind = PreStep::kSplit;
    const bool one_by_one = get_bool(j, "individual_digits", false);
    LS_ASSIGN_OR_RETURN(s.pattern.regex, Regex::compile(one_by_one ? "\\p{N}" : "\\p{N}+"));
    s.behavior = SplitBehavior::kIsolated;
  } else {
    return unimplemented(where + ": pre_tokenizer type \"" + t + "\" is not supported");
  }
  out->push_back(std::move(s));
  return ok_status();
}

// The decoder chain reduced to what each token decodes to.
struct DecoderPlan {
  struct Step {
    // kMetaspace: the replacement becomes a space, or nothing in the first
    // token when `metaspace_first` (Hugging Face's Metaspace decoder).
    enum Kind { kReplace, kByteFallback, kByteLevel, kMetaspace } kind;
    std::string from, to;
  };
  std::vector<Step> steps;
  int strip = 0;
  bool metaspace_first = false;
};

Status parse_decoder(const json& j, const std::string& where, bool* fused, DecoderPlan* plan) {
  if (j.is_null()) {
    return unimplemented(where + ": a null decoder (tokens joined by spaces) is not supported");
  }
  const std::string t = type_of(j);
  if (plan->strip > 0) {
    return unimplemented(where + ": decoder \"" + t + "\" after Strip is not supported");
  }
  if (t == "Sequence") {
    if (!j.contains("decoders") || !j["decoders"].is_array()) {
      return invalid_argument(where + " Sequence: missing decoders array");
    }
    for (size_t i = 0; i < j["decoders"].size(); ++i) {
      LS_RETURN_IF_ERROR(
          parse_decoder(j["decoders"][i], where + "[" + std::to_string(i) + "]", fused, plan));
    }
    return ok_status();
  }
  if (t == "ByteLevel") {
    plan->steps.push_back({DecoderPlan::Step::kByteLevel, "", ""});
  } else if (t == "ByteFallback") {
    plan->steps.push_back({DecoderPlan::Step::kByteFallback, "", ""});
  } else if (t == "Fuse") {
    *fused = true;
  } else if (t == "Replace") {
    if (!j.contains("pattern") || !j["pattern"].is_object() || !j["pattern"].contains("String") ||
        !j["pattern"]["String"].is_string()) {
      return unimplemented(where + ": decoder Replace supports only a String pattern");
    }
    std::string from = j["pattern"]["String"].get<std::string>();
    if (from.empty()) return invalid_argument(where + ": decoder Replace with empty pattern");
    plan->steps.push_back({DecoderPlan::Step::kReplace, from, get_string(j, "content", "")});
  } else if (t == "Strip") {
    const std::string content = get_string(j, "content", " ");
    int start = j.contains("start") && j["start"].is_number_integer() ? j["start"].get<int>() : 0;
    int stop = j.contains("stop") && j["stop"].is_number_integer() ? j["stop"].get<int>() : 0;
    if (content != " " || stop != 0 || start < 0 || start > 8) {
      return unimplemented(where + ": decoder Strip supports only content \" \", stop 0");
    }
    if (!*fused && start > 0) {
      return unimplemented(where + ": decoder Strip before Fuse (per-token strip) is not supported");
    }
    plan->strip = start;
  } else if (t == "Metaspace") {
    std::string rep = get_string(j, "replacement", kMetaspace);
    std::string scheme = get_string(j, "prepend_scheme", "");
    bool prepend = scheme.empty() ? get_bool(j, "add_prefix_space", true) : scheme != "never";
    plan->steps.push_back({DecoderPlan::Step::kMetaspace, rep, " "});
    *fused = true;
    plan->metaspace_first |= prepend;
  } else {
    return unimplemented(where + ": decoder type \"" + t + "\" is not supported");
  }
  return ok_status();
}

std::string decode_token(const DecoderPlan& plan, const std::string& token, bool first) {
  std::string s = token;
  for (const DecoderPlan::Step& st : plan.steps) {
    switch (st.kind) {
      case DecoderPlan::Step::kReplace:
      case DecoderPlan::Step::kMetaspace: {
        const bool drop = st.kind == DecoderPlan::Step::kMetaspace && first && plan.metaspace_first;
        std::string r;
        size_t pos = 0, hit;
        while ((hit = s.find(st.from, pos)) != std::string::npos) {
          r.append(s, pos, hit - pos);
          if (!drop) r += st.to;
          pos = hit + st.from.size();
        }
        r.append(s, pos, std::string::npos);
        s = std::move(r);
        break;
      }
      case DecoderPlan::Step::kByteFallback:
        if (s.size() == 6 && s.compare(0, 3, "<0x") == 0 && s[5] == '>' &&
            std::isxdigit(static_cast<unsigned char>(s[3])) &&
            std::isxdigit(static_cast<unsigned char>(s[4]))) {
          s = std::string(1, static_cast<char>(std::stoi(s.substr(3, 2), nullptr, 16)));
        }
        break;
      case DecoderPlan::Step::kByteLevel: {
        std::string b;
        if (byte_level_to_bytes(s, &b)) s = std::move(b);  // else raw bytes, as HF
        break;
      }
    }
  }
  return s;
}

Status parse_added_token(const json& t, const std::string& where, AddedToken* a) {
  if (!t.is_object() || !t.contains("content") || !t["content"].is_string()) {
    return invalid_argument(where + ": missing content");
  }
  a->content = t["content"].get<std::string>();
  a->special = get_bool(t, "special", false);
  a->lstrip = get_bool(t, "lstrip", false);
  a->rstrip = get_bool(t, "rstrip", false);
  a->single_word = get_bool(t, "single_word", false);
  a->normalized = get_bool(t, "normalized", !a->special);
  return ok_status();
}

Status parse_post_processor(const json& j, const std::string& where, TokenizerImpl* impl,
                            bool* has_template) {
  if (j.is_null()) return ok_status();
  const std::string t = type_of(j);
  if (t == "Sequence") {
    if (!j.contains("processors") || !j["processors"].is_array()) {
      return invalid_argument(where + " Sequence: missing processors array");
    }
    for (size_t i = 0; i < j["processors"].size(); ++i) {
      LS_RETURN_IF_ERROR(parse_post_processor(
          j["processors"][i], where + "[" + std::to_string(i) + "]", impl, has_template));
    }
    return ok_status();
  }
  if (t == "ByteLevel") return ok_status();  // offsets only
  if (t != "TemplateProcessing") {
    return unimplemented(where + ": post_processor type \"" + t + "\" is not supported");
  }
  if (!j.contains("single") || !j["single"].is_array()) {
    return invalid_argument(where + " TemplateProcessing: missing single template");
  }
  const json specials = j.value("special_tokens", json::object());
  bool seen_seq = false;
  for (const json& piece : j["single"]) {
    if (piece.contains("Sequence")) {
      seen_seq = true;
      continue;
    }
    if (!piece.contains("SpecialToken") || !piece["SpecialToken"].contains("id")) {
      return invalid_argument(where + " TemplateProcessing: bad template piece");
    }
    std::string name = piece["SpecialToken"]["id"].get<std::string>();
    std::vector<int32_t> ids;
    if (specials.is_object() && specials.contains(name) && specials[name].contains("ids")) {
      for (const json& id : specials[name]["ids"]) ids.push_back(id.get<int32_t>());
    } else if (impl->token_to_id.count(name)) {
      ids.push_back(impl->token_to_id[name]);
    } else {
      return invalid_argument(where + " TemplateProcessing: unknown special token \"" + name + "\"");
    }
    auto& dst = seen_seq ? impl->suffix_ids : impl->prefix_ids;
    dst.insert(dst.end(), ids.begin(), ids.end());
  }
  *has_template = true;
  return ok_status();
}

// The model section: BPE only, without the options we do not implement.
Status check_bpe_model(const json& root) {
  if (!root.is_object()) return invalid_argument("tokenizer.json: not a JSON object");
  if (!root.contains("model") || !root["model"].is_object()) {
    return invalid_argument("tokenizer.json: missing model");
  }
  const json& m = root["model"];
  std::string mtype = type_of(m);
  if (mtype.empty() && m.contains("merges")) mtype = "BPE";
  if (mtype != "BPE") {
    return unimplemented("model.type \"" + mtype + "\" is not supported (only BPE)");
  }
  if (m.contains("dropout") && m["dropout"].is_number() && m["dropout"].get<double>() > 0) {
    return unimplemented("model BPE: dropout > 0 is not supported");
  }
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (m.contains(k) && m[k].is_string() && !m[k].get<std::string>().empty()) {
      return unimplemented(std::string("model BPE: ") + k + " is not supported");
    }
  }
  return ok_status();
}

// Normalizer, pre-tokenizer and decoder; the ByteLevel pre-tokenizer and
// decoder must come together. Sets *byte_level.
Status parse_pipeline(const json& root, TokenizerImpl* impl, DecoderPlan* plan, bool* byte_level_out) {
  if (root.contains("normalizer")) {
    LS_RETURN_IF_ERROR(parse_normalizer(root["normalizer"], "normalizer", &impl->normalizers));
  }
  if (root.contains("pre_tokenizer")) {
    LS_RETURN_IF_ERROR(
        parse_pre_tokenizer(root["pre_tokenizer"], "pre_tokenizer", &impl->pre_tokenizers));
  }
  bool byte_level = false;
  for (size_t i = 0; i < impl->pre_tokenizers.size(); ++i) {
    if (impl->pre_tokenizers[i].kind == PreStep::kByteLevel) {
      if (i + 1 != impl->pre_tokenizers.size()) {
        return unimplemented("pre_tokenizer: ByteLevel must be the last pre-tokenizer");
      }
      byte_level = true;
    }
  }
  bool fused = false;
  LS_RETURN_IF_ERROR(parse_decoder(root.contains("decoder") ? root["decoder"] : json(), "decoder",
                                   &fused, plan));
  bool decoder_byte_level = false;
  for (const auto& st : plan->steps) decoder_byte_level |= st.kind == DecoderPlan::Step::kByteLevel;
  if (decoder_byte_level != byte_level) {
    return unimplemented(std::string("decoder ByteLevel without pre_tokenizer ByteLevel (or the "
                                     "reverse) is not supported"));
  }

  *byte_level_out = byte_level;
  return ok_status();
}

// model.vocab: token string -> id, and the largest id.
Status parse_vocab(const json& m, std::unordered_map<std::string, int32_t>* by_string_out,
                   int64_t* max_id_out) {
  if (!m.contains("vocab") || !m["vocab"].is_object()) {
    return invalid_argument("model BPE: missing vocab object");
  }
  int64_t max_id = -1;
  std::unordered_map<std::string, int32_t>& by_string = *by_string_out;
  for (auto it = m["vocab"].begin(); it != m["vocab"].end(); ++it) {
    if (!it.value().is_number_integer()) {
      return invalid_argument("model BPE: vocab id of \"" + it.key() + "\" is not an integer");
    }
    int64_t id = it.value().get<int64_t>();
    if (id < 0 || id > kMaxId) {
      return invalid_argument("model BPE: vocab id " + std::to_string(id) + " out of range");
    }
    max_id = std::max(max_id, id);
    by_string[it.key()] = static_cast<int32_t>(id);
  }
  *max_id_out = max_id;
  return ok_status();
}

// Added tokens of tokenizer.json, numbered as Hugging Face numbers them,
// then those of tokenizer_config.json's added_tokens_decoder not seen yet.
Status collect_added_tokens(const json& root, const json& config,
                            const std::unordered_map<std::string, int32_t>& by_string,
                            std::vector<AddedToken>* added_out) {
  std::vector<AddedToken>& added = *added_out;
  if (root.contains("added_tokens") && root["added_tokens"].is_array()) {
    for (size_t i = 0; i < root["added_tokens"].size(); ++i) {
      const json& t = root["added_tokens"][i];
      AddedToken a;
      const std::string where = "added_tokens[" + std::to_string(i) + "]";
      LS_RETURN_IF_ERROR(parse_added_token(t, where, &a));
      if (!t.contains("id") || !t["id"].is_number_integer() || t["id"].get<int64_t>() < 0 ||
          t["id"].get<int64_t>() > kMaxId) {
        return invalid_argument(where + ": bad id");
      }
      // Hugging Face ignores the written id (it only warns) and gives the
      // token its id in the model vocab, or the next id after the model
      // vocab and the tokens added so far: do the same, or prompts would
      // map to other ids than transformers gives the model.
      if (a.content.empty()) continue;
      auto same = std::find_if(added.begin(), added.end(),
                               [&](const AddedToken& b) { return b.content == a.content; });
      if (same != added.end()) continue;
      auto in_model = by_string.find(a.content);
      if (in_model != by_string.end()) {
        a.id = in_model->second;
      } else {
        const int64_t model_size = static_cast<int64_t>(by_string.size());
        int64_t max_added = -1;
        for (const AddedToken& b : added) max_added = std::max<int64_t>(max_added, b.id);
        int64_t id = max_added < 0                                     ? model_size
                     : (max_added >= model_size || model_size == 0) ? max_added + 1
                                                                      : model_size;
        if (id > kMaxId) return invalid_argument(where + ": too many added tokens");
        a.id = static_cast<int32_t>(id);
      }
      added.push_back(std::move(a));
    }
  }
  if (config.is_object() && config.contains("added_tokens_decoder") &&
      config["added_tokens_decoder"].is_object()) {
    std::set<int32_t> have;
    for (const AddedToken& a : added) have.insert(a.id);
    for (auto it = config["added_tokens_decoder"].begin();
         it != config["added_tokens_decoder"].end(); ++it) {
      AddedToken a;
      char* end = nullptr;
      long id = std::strtol(it.key().c_str(), &end, 10);
      if (end == it.key().c_str() || *end != 0 || id < 0 || id > kMaxId) {
        return invalid_argument("tokenizer_config.json added_tokens_decoder: bad id \"" +
                                it.key() + "\"");
      }
      LS_RETURN_IF_ERROR(parse_added_token(it.value(), "tokenizer_config.json added_tokens_decoder",
                                           &a));
      a.id = static_cast<int32_t>(id);
      if (!have.count(a.id)) added.push_back(std::move(a));
    }
  }
  return ok_status();
}

// Per-id tables (token string, validity) and the BPE vocabulary keyed by
// the bytes each token stands for.
void build_id_tables(const std::unordered_map<std::string, int32_t>& by_string,
                     const std::vector<AddedToken>& added, int64_t max_id, bool byte_level,
                     TokenizerImpl* impl) {
  BpeModel& bpe = impl->model;
  for (const AddedToken& a : added) max_id = std::max<int64_t>(max_id, a.id);
  const size_t n = static_cast<size_t>(max_id + 1);
  impl->id_token.assign(n, "");
  impl->id_bytes.assign(n, "");
  impl->id_valid.assign(n, 0);
  impl->id_special.assign(n, 0);
  for (const auto& [tok, id] : by_string) {
    impl->id_token[static_cast<size_t>(id)] = tok;
    impl->id_valid[static_cast<size_t>(id)] = 1;
    impl->token_to_id[tok] = id;
    std::string key = tok;
    if (byte_level) {
      std::string b;
      if (byte_level_to_bytes(tok, &b)) key = std::move(b);
    }
    bpe.vocab.emplace(std::move(key), id);
    if (tok.size() == 6 && tok.compare(0, 3, "<0x") == 0 && tok[5] == '>' &&
        std::isxdigit(static_cast<unsigned char>(tok[3])) &&
        std::isxdigit(static_cast<unsigned char>(tok[4]))) {
      bpe.byte_ids[std::stoi(tok.substr(3, 2), nullptr, 16)] = id;
    }
  }
}

Status parse_unk_token(const json& m, const std::unordered_map<std::string, int32_t>& by_string,
                       BpeModel* bpe) {
  if (m.contains("unk_token") && m["unk_token"].is_string()) {
    auto it = by_string.find(m["unk_token"].get<std::string>());
    if (it == by_string.end()) {
      return invalid_argument("model BPE: unk_token \"" + m["unk_token"].get<std::string>() +
                              "\" is not in the vocab");
    }
    bpe->unk_id = it->second;
  }
  return ok_status();
}

// model.merges ("a b" strings or [a, b] pairs): rank and merged id per pair.
Status parse_merges(const json& m, const std::unordered_map<std::string, int32_t>& by_string,
                    BpeModel* bpe) {
  if (!m.contains("merges") || !m["merges"].is_array()) {
    return invalid_argument("model BPE: missing merges array");
  }
  const json& merges = m["merges"];
  bpe->merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& mj = merges[i];
    std::string a, b;
    if (mj.is_string()) {
      const std::string s = mj.get<std::string>();
      size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
        return invalid_argument("model BPE: merges[" + std::to_string(i) + "] \"" + s +
                                "\" is not two tokens separated by one space");
      }
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (mj.is_array() && mj.size() == 2 && mj[0].is_string() && mj[1].is_string()) {
      a = mj[0].get<std::string>();
      b = mj[1].get<std::string>();
    } else {
      return invalid_argument("model BPE: merges[" + std::to_string(i) + "] is malformed");
    }
    auto ia = by_string.find(a), ib = by_string.find(b), iab = by_string.find(a + b);
    if (ia == by_string.end() || ib == by_string.end() || iab == by_string.end()) {
      return invalid_argument("model BPE: merges[" + std::to_string(i) + "] (\"" + a + "\", \"" +
                              b + "\") uses a token missing from the vocab");
    }
    const uint64_t key = (static_cast<uint64_t>(static_cast<uint32_t>(ia->second)) << 32) |
                         static_cast<uint32_t>(ib->second);
    bpe->merges[key] = {static_cast<int32_t>(i), iab->second};
  }
  return ok_status();
}

// Added tokens take their ids over, and the encoder's match index.
void index_added_tokens(std::vector<AddedToken> added, TokenizerImpl* impl) {
  for (AddedToken& a : added) {
    const size_t id = static_cast<size_t>(a.id);
    impl->id_token[id] = a.content;
    impl->id_valid[id] = 1;
    impl->id_special[id] = a.special ? 1 : 0;
    impl->token_to_id[a.content] = a.id;
  }
  std::set<size_t> lengths;
  for (size_t i = 0; i < added.size(); ++i) {
    if (added[i].content.empty()) continue;
    impl->added_by_content[added[i].content] = i;
    lengths.insert(added[i].content.size());
    impl->added_first_byte[static_cast<uint8_t>(added[i].content[0])] = true;
  }
  impl->added_lengths.assign(lengths.rbegin(), lengths.rend());
  impl->added = std::move(added);
}

// The bytes each id decodes to (and as a text's first token under Metaspace).
void build_decoded_bytes(const DecoderPlan& plan, TokenizerImpl* impl) {
  const size_t n = impl->id_valid.size();
  for (size_t id = 0; id < n; ++id) {
    if (impl->id_valid[id]) impl->id_bytes[id] = decode_token(plan, impl->id_token[id], false);
  }
  if (plan.metaspace_first) {
    impl->id_bytes_first.assign(n, "");
    for (size_t id = 0; id < n; ++id) {
      if (impl->id_valid[id]) impl->id_bytes_first[id] = decode_token(plan, impl->id_token[id], true);
    }
  }
  impl->leading_strip = plan.strip;
}

// SentencePiece word split is exact when no token has '▁' after another character.
void detect_metaspace_split(const std::unordered_map<std::string, int32_t>& by_string,
                            TokenizerImpl* impl) {
  {
    bool ok = true;
    bool has_meta = false;
    for (const NormStep& s : impl->normalizers) {
      has_meta |= s.kind == NormStep::kReplace && s.text == kMetaspace;
    }
    for (const PreStep& s : impl->pre_tokenizers) {
      has_meta |= s.kind == PreStep::kMetaspace && s.replacement == kMetaspace;
    }
    for (const auto& [tok, id] : by_string) {
      for (size_t p = tok.find(kMetaspace, 1); p != std::string::npos;
           p = tok.find(kMetaspace, p + 1)) {
        if (p < 3 || tok.compare(p - 3, 3, kMetaspace) != 0) {
          ok = false;
          break;
        }
      }
      if (!ok) break;
    }
    impl->split_before_metaspace = ok && has_meta;
  }
}

// The ids encode(add_special_tokens) adds: the post-processor's template,
// then tokenizer_config.json's bos/eos and add_bos_token/add_eos_token.
Status parse_special_tokens(const json& root, const json& config, TokenizerImpl* impl) {
  bool has_template = false;
  if (root.contains("post_processor")) {
    LS_RETURN_IF_ERROR(
        parse_post_processor(root["post_processor"], "post_processor", impl, &has_template));
  }
  auto lookup = [&](const char* key) -> StatusOr<std::optional<int32_t>> {
    if (!config.is_object() || !config.contains(key)) return std::optional<int32_t>();
    auto content = token_content(config[key]);
    if (!content) return std::optional<int32_t>();
    auto it = impl->token_to_id.find(*content);
    if (it == impl->token_to_id.end()) {
      return invalid_argument(std::string("tokenizer_config.json: ") + key + " \"" + *content +
                              "\" is not in the vocabulary");
    }
    return std::optional<int32_t>(it->second);
  };
  LS_ASSIGN_OR_RETURN(impl->bos, lookup("bos_token"));
  LS_ASSIGN_OR_RETURN(impl->eos, lookup("eos_token"));
  if (!impl->bos && !impl->prefix_ids.empty()) impl->bos = impl->prefix_ids.front();
  if (!impl->eos && !impl->suffix_ids.empty()) impl->eos = impl->suffix_ids.back();
  if (config.is_object() && config.contains("add_bos_token") && config["add_bos_token"].is_boolean()) {
    impl->prefix_ids.clear();
    if (config["add_bos_token"].get<bool>()) {
      if (!impl->bos) return invalid_argument("tokenizer_config.json: add_bos_token without bos_token");
      impl->prefix_ids.push_back(*impl->bos);
    }
  }
  if (config.is_object() && config.contains("add_eos_token") && config["add_eos_token"].is_boolean()) {
    impl->suffix_ids.clear();
    if (config["add_eos_token"].get<bool>()) {
      if (!impl->eos) return invalid_argument("tokenizer_config.json: add_eos_token without eos_token");
      impl->suffix_ids.push_back(*impl->eos);
    }
  }
  return ok_status();
}

Status parse_all(const json& root, const json& config, TokenizerImpl* impl) {
  LS_RETURN_IF_ERROR(check_bpe_model(root));
  const json& m = root["model"];
  DecoderPlan plan;
  bool byte_level = false;
  LS_RETURN_IF_ERROR(parse_pipeline(root, impl, &plan, &byte_level));
  BpeModel& bpe = impl->model;
  bpe.byte_level = byte_level;
  bpe.byte_fallback = get_bool(m, "byte_fallback", false);
  bpe.fuse_unk = get_bool(m, "fuse_unk", false);
  bpe.ignore_merges = get_bool(m, "ignore_merges", false);
  std::unordered_map<std::string, int32_t> by_string;
  int64_t max_id = -1;
  LS_RETURN_IF_ERROR(parse_vocab(m, &by_string, &max_id));
  std::vector<AddedToken> added;
  LS_RETURN_IF_ERROR(collect_added_tokens(root, config, by_string, &added));
  build_id_tables(by_string, added, max_id, byte_level, impl);
  LS_RETURN_IF_ERROR(parse_unk_token(m, by_string, &bpe));
  LS_RETURN_IF_ERROR(parse_merges(m, by_string, &bpe));
  index_added_tokens(std::move(added), impl);
  build_decoded_bytes(plan, impl);
  impl->leading_strip = plan.strip;
  if (!byte_level) detect_metaspace_split(by_string, impl);
  return parse_special_tokens(root, config, impl);
}

}  // namespace

std::optional<std::string> token_content(const nlohmann::json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) {
    return j["content"].get<std::string>();
  }
  return std::nullopt;
}

StatusOr<std::unique_ptr<TokenizerImpl>> parse_tokenizer(std::string_view tokenizer_json,
                                                         std::string_view config_json) {
  json root = json::parse(tokenizer_json.begin(), tokenizer_json.end(), nullptr, false);
  if (root.is_discarded()) return invalid_argument("tokenizer.json: not valid JSON");
  json config;
  if (!config_json.empty()) {
    config = json::parse(config_json.begin(), config_json.end(), nullptr, false);
    if (config.is_discarded()) return invalid_argument("tokenizer_config.json: not valid JSON");
  }
  auto impl = std::make_unique<TokenizerImpl>();
  try {
    LS_RETURN_IF_ERROR(parse_all(root, config, impl.get()));
  } catch (const std::exception& e) {
    return invalid_argument(std::string("tokenizer.json: unexpected structure: ") + e.what());
  }
  return impl;
}

}  // namespace loraserve::tokenizer_internal

namespace loraserve {

StatusOr<std::shared_ptr<const Tokenizer>> Tokenizer::from_json_text(
    std::string_view tokenizer_json, std::string_view tokenizer_config_json) {
  auto impl = tokenizer_internal::parse_tokenizer(tokenizer_json, tokenizer_config_json);
  if (!impl.ok()) return impl.status();
  return std::shared_ptr<const Tokenizer>(new Tokenizer(std::move(impl).value()));
}

StatusOr<std::shared_ptr<const Tokenizer>> Tokenizer::load(const std::string& path) {
  LS_ASSIGN_OR_RETURN(std::string text, read_file(path));
  std::string config;
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  if (file_exists(dir + "/tokenizer_config.json")) {
    LS_ASSIGN_OR_RETURN(config, read_file(dir + "/tokenizer_config.json"));
  }
  auto tok = from_json_text(text, config);
  if (!tok.ok()) return tok.status().with_context(path);
  return tok;
}

StatusOr<std::shared_ptr<const Tokenizer>> Tokenizer::load_dir(const std::string& model_dir) {
  return load(model_dir + "/tokenizer.json");
}

}  // namespace loraserve
