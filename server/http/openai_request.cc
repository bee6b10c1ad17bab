#include "server/http/openai_request.h"

#include <limits>
#include <random>

#include "server/chat_prompt.h"

namespace loraserve::http {

namespace {

using nlohmann::json;

// Typed, range-checked access to the optional fields of a request body. A
// getter returns false (with *error set) when the field is present with the
// wrong type or out of range; absent and null leave *out unchanged.
class Fields {
 public:
  Fields(const json& body, RequestError* error) : body_(body), error_(error) {}

  bool fail(const std::string& param, const std::string& message) {
    error_->status = invalid_argument(message);
    error_->param = param;
    return false;
  }
  const json* find(const char* name) const {
    auto it = body_.find(name);
    return it == body_.end() || it->is_null() ? nullptr : &*it;
  }
  bool get_bool(const char* name, bool* out) {
    const json* v = find(name);
    if (v == nullptr) return true;
    if (!v->is_boolean()) return fail(name, std::string("'") + name + "' must be a boolean");
    *out = v->get<bool>();
    return true;
  }
  bool get_int(const char* name, int64_t lo, int64_t hi, int64_t* out) {
    const json* v = find(name);
    if (v == nullptr) return true;
    if (!v->is_number_integer()) return fail(name, std::string("'") + name + "' must be an integer");
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi)) {
      return fail(name, range_message(name, lo, hi));
    }
    const int64_t x = v->get<int64_t>();
    if (x < lo || x > hi) return fail(name, range_message(name, lo, hi));
    *out = x;
    return true;
  }
  bool get_number(const char* name, double lo, double hi, double* out) {
    const json* v = find(name);
    if (v == nullptr) return true;
    if (!v->is_number()) return fail(name, std::string("'") + name + "' must be a number");
    const double x = v->get<double>();
    if (!(x >= lo && x <= hi)) {
      return fail(name, std::string("'") + name + "' must be in [" + fmt(lo) + ", " + fmt(hi) + "]");
    }
    *out = x;
    return true;
  }
  // Fields loraserve cannot honour: accepted only at their neutral value.
  bool require_neutral(const char* name, const json& neutral, const std::string& why) {
    const json* v = find(name);
    if (v == nullptr || *v == neutral) return true;
    return fail(name, std::string("'") + name + "' " + why);
  }

 private:
  static std::string fmt(double x) {
    std::string s = std::to_string(x);
    while (s.size() > 1 && s.back() == '0') s.pop_back();
    if (!s.empty() && s.back() == '.') s.pop_back();
    return s;
  }
  static std::string range_message(const char* name, int64_t lo, int64_t hi) {
    return std::string("'") + name + "' must be in [" + std::to_string(lo) + ", " +
           std::to_string(hi) + "]";
  }
  const json& body_;
  RequestError* error_;
};

bool token_ids(const json& array, std::vector<int32_t>* out) {
  for (const json& t : array) {
    if (!t.is_number_integer()) return false;
    if (t.is_number_unsigned() ? t.get<uint64_t>() > static_cast<uint64_t>(INT32_MAX)
                               : (t.get<int64_t>() < 0 || t.get<int64_t>() > INT32_MAX)) {
      return false;
    }
    out->push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  return true;
}

// Everything the two endpoints share: model, sampling, stops, streaming.
bool parse_common(const json& body, Fields& f, OpenAiRequest* out) {
  if (!body.is_object()) return f.fail("", "the request body must be a JSON object");
  if (const json* m = f.find("model")) {
    if (!m->is_string()) return f.fail("model", "'model' must be a string");
    out->model = m->get<std::string>();
  }
  if (!f.require_neutral("n", 1, "must be 1: loraserve returns one choice per request")) return false;
  if (!f.require_neutral("best_of", 1, "must be 1: best_of is not supported")) return false;
  if (!f.require_neutral("presence_penalty", 0, "is not supported (send 0 or leave it out)") ||
      !f.require_neutral("frequency_penalty", 0, "is not supported (send 0 or leave it out)") ||
      !f.require_neutral("logit_bias", json::object(), "is not supported")) {
    return false;
  }
  if (const json* u = f.find("user")) {
    if (!u->is_string()) return f.fail("user", "'user' must be a string");
  }
  GenerationInput& in = out->input;
  // OpenAI's default temperature is 1; send 0 for greedy decoding.
  double temperature = 1.0, top_p = 1.0;
  if (!f.get_number("temperature", 0.0, 2.0, &temperature)) return false;
  if (!f.get_number("top_p", 0.0, 1.0, &top_p)) return false;
  if (top_p == 0) return f.fail("top_p", "'top_p' must be greater than 0");
  int64_t top_k = 0;
  if (!f.get_int("top_k", -1, INT32_MAX, &top_k)) return false;  // vLLM: -1 = off
  in.sampling.temperature = static_cast<float>(temperature);
  in.sampling.top_p = static_cast<float>(top_p);
  in.sampling.top_k = top_k < 0 ? 0 : static_cast<int32_t>(top_k);
  int64_t seed = 0;
  if (f.find("seed") != nullptr) {
    if (!f.get_int("seed", std::numeric_limits<int64_t>::min(),
                   std::numeric_limits<int64_t>::max(), &seed)) {
      return false;
    }
    in.sampling.seed = static_cast<uint64_t>(seed);
  } else {
    // No seed: each request samples differently, as OpenAI's do.
    static thread_local std::mt19937_64 rng{std::random_device{}()};
    in.sampling.seed = rng();
  }
  if (const json* s = f.find("stop")) {
    if (s->is_string()) {
      in.stop.push_back(s->get<std::string>());
    } else if (s->is_array()) {
      for (const json& x : *s) {
        if (!x.is_string()) return f.fail("stop", "'stop' must be a string or a list of strings");
        in.stop.push_back(x.get<std::string>());
      }
    } else {
      return f.fail("stop", "'stop' must be a string or a list of strings");
    }
    if (in.stop.size() > 16) return f.fail("stop", "at most 16 stop strings");
    for (const std::string& x : in.stop) {
      if (x.empty()) return f.fail("stop", "stop strings must not be empty");
    }
  }
  if (const json* s = f.find("stop_token_ids")) {
    if (!s->is_array() || !token_ids(*s, &in.stop_token_ids)) {
      return f.fail("stop_token_ids", "'stop_token_ids' must be a list of token ids");
    }
  }
  if (!f.get_bool("ignore_eos", &in.ignore_eos)) return false;
  if (!f.get_bool("stream", &out->stream)) return false;
  if (const json* so = f.find("stream_options")) {
    if (!so->is_object()) return f.fail("stream_options", "'stream_options' must be an object");
    if (!out->stream) return f.fail("stream_options", "'stream_options' needs 'stream': true");
    auto iu = so->find("include_usage");
    if (iu != so->end() && !iu->is_null()) {
      if (!iu->is_boolean()) {
        return f.fail("stream_options.include_usage", "'include_usage' must be a boolean");
      }
      out->include_usage = iu->get<bool>();
    }
  }
  if (!f.get_bool("return_tokens_as_token_ids", &out->tokens_as_ids)) return false;
  return true;
}

// The prompt of a completion: text, token ids, or a one-element list of
// either.
bool parse_prompt(Fields& f, GenerationInput* in) {
  const json* p = f.find("prompt");
  if (p == nullptr) return f.fail("prompt", "'prompt' is required");
  const char* kShape = "'prompt' must be a string, a list of token ids, or a one-element list of either";
  if (p->is_array() && p->size() == 1 && (p->at(0).is_string() || p->at(0).is_array())) {
    p = &p->at(0);
  } else if (p->is_array() && !p->empty() && (p->at(0).is_string() || p->at(0).is_array())) {
    return f.fail("prompt", "only one prompt per request: send a list of " +
                                std::to_string(p->size()) + " prompts as separate requests");
  }
  if (p->is_string()) {
    in->has_prompt_text = true;
    in->prompt_text = p->get<std::string>();
    if (in->prompt_text.empty()) return f.fail("prompt", "'prompt' is empty");
    return true;
  }
  if (!p->is_array()) return f.fail("prompt", kShape);
  if (p->empty()) return f.fail("prompt", "'prompt' is empty");
  if (!token_ids(*p, &in->prompt_ids)) {
    return f.fail("prompt", std::string(kShape) + " (token ids are integers in [0, 2^31))");
  }
  return true;
}

// Chat content: a string, or a list of {type: "text", text} parts joined.
bool content_text(const json& content, size_t index, Fields& f, std::string* out) {
  const std::string param = "messages[" + std::to_string(index) + "].content";
  if (content.is_null()) return true;  // an assistant turn without text
  if (content.is_string()) {
    *out = content.get<std::string>();
    return true;
  }
  if (!content.is_array()) return f.fail(param, "'content' must be a string or a list of parts");
  for (const json& part : content) {
    if (!part.is_object()) return f.fail(param, "each content part must be an object");
    auto type = part.find("type");
    if (type == part.end() || !type->is_string()) {
      return f.fail(param, "each content part needs a 'type'");
    }
    if (*type != "text") {
      return f.fail(param, "content parts of type '" + type->get<std::string>() +
                               "' are not supported; only 'text'");
    }
    auto text = part.find("text");
    if (text == part.end() || !text->is_string()) {
      return f.fail(param, "a text part needs 'text' as a string");
    }
    *out += text->get<std::string>();
  }
  return true;
}

}  // namespace

bool parse_completion_request(const json& body, OpenAiRequest* out, RequestError* error) {
  Fields f(body, error);
  out->kind = ApiKind::kCompletion;
  if (!parse_common(body, f, out)) return false;
  if (!f.require_neutral("echo", false, "is not supported yet (send false or leave it out)") ||
      !f.require_neutral("suffix", "", "is not supported")) {
    return false;
  }
  if (!parse_prompt(f, &out->input)) return false;
  int64_t max_tokens = 16;  // OpenAI's default for completions
  if (!f.get_int("max_tokens", 1, INT32_MAX, &max_tokens)) return false;
  out->input.max_new_tokens = static_cast<int32_t>(max_tokens);
  int64_t logprobs = -1;
  if (!f.get_int("logprobs", 0, 20, &logprobs)) return false;
  out->logprobs = static_cast<int>(logprobs);
  return true;
}

bool parse_chat_request(const json& body, OpenAiRequest* out, RequestError* error) {
  Fields f(body, error);
  out->kind = ApiKind::kChat;
  if (!parse_common(body, f, out)) return false;
  const json* messages = f.find("messages");
  if (messages == nullptr) return f.fail("messages", "'messages' is required");
  if (!messages->is_array() || messages->empty()) {
    return f.fail("messages", "'messages' must be a non-empty list");
  }
  out->messages = json::array();
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& m = messages->at(i);
    const std::string param = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return f.fail(param, "each message must be an object");
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) return f.fail(param + ".role", "'role' is required");
    const std::string r = role->get<std::string>();
    if (!is_chat_role(r)) {
      return f.fail(param + ".role", "role '" + r + "' is not supported (system, user, assistant)");
    }
    auto content = m.find("content");
    if (content == m.end()) return f.fail(param + ".content", "'content' is required");
    std::string text;
    if (!content_text(*content, i, f, &text)) return false;
    out->messages.push_back({{"role", r}, {"content", text}});
  }
  if (!f.get_bool("add_generation_prompt", &out->add_generation_prompt)) return false;
  // max_completion_tokens is the newer name; absent: until the context ends.
  int64_t max_tokens = 0;
  if (!f.get_int("max_tokens", 1, INT32_MAX, &max_tokens)) return false;
  if (!f.get_int("max_completion_tokens", 1, INT32_MAX, &max_tokens)) return false;
  out->input.max_new_tokens = static_cast<int32_t>(max_tokens);
  out->input.max_new_tokens_to_context = max_tokens == 0;
  bool logprobs = false;
  if (!f.get_bool("logprobs", &logprobs)) return false;
  int64_t top = 0;
  if (!f.get_int("top_logprobs", 0, 20, &top)) return false;
  if (top > 0 && !logprobs) return f.fail("top_logprobs", "'top_logprobs' needs 'logprobs': true");
  out->logprobs = logprobs ? static_cast<int>(top) : -1;
  return true;
}

}  // namespace loraserve::http
