#include "tokenizer/text_stream.h"

#include <algorithm>
#include <utility>

#include "tokenizer/utf8.h"

namespace loraserve {

// ---- StreamDecoder ----

StreamDecoder::StreamDecoder(std::shared_ptr<const Tokenizer> tokenizer, const DecodeOptions& opts)
    : tok_(std::move(tokenizer)), opts_(opts) {
  strip_remaining_ = opts_.continuation ? 0 : tok_->leading_strip();
  first_ = !opts_.continuation;
}

std::string StreamDecoder::push(int32_t id) {
  if (!tok_->is_valid_id(id)) return "";
  if (opts_.skip_special_tokens && tok_->is_special(id)) return "";
  pending_ += tok_->id_bytes(id, first_);
  first_ = false;
  return drain(false);
}

std::string StreamDecoder::finish() {
  std::string out = drain(true);
  pending_.clear();
  strip_remaining_ = opts_.continuation ? 0 : tok_->leading_strip();
  first_ = !opts_.continuation;
  return out;
}

std::string StreamDecoder::drain(bool final) {
  std::string out;
  const size_t used = utf8_lossy_append(pending_, !final, &out);
  pending_.erase(0, used);
  size_t skip = 0;
  while (strip_remaining_ > 0 && skip < out.size()) {
    if (out[skip] == ' ') {
      ++skip;
      --strip_remaining_;
    } else {
      strip_remaining_ = 0;
    }
  }
  if (skip > 0) out.erase(0, skip);
  return out;
}

// ---- StopStringMatcher ----

StopStringMatcher::StopStringMatcher(std::vector<std::string> stops) {
  for (std::string& s : stops) {
    if (s.empty()) continue;
    stops_.push_back(std::move(s));
  }
}

StopStringMatcher::Result StopStringMatcher::push(std::string_view delta) {
  Result r;
  if (stopped_) return r;
  held_.append(delta.data(), delta.size());
  if (stops_.empty()) {
    r.text.swap(held_);
    return r;
  }
  size_t first = std::string::npos;
  for (const std::string& s : stops_) first = std::min(first, held_.find(s));
  if (first != std::string::npos) {
    r.text = held_.substr(0, first);
    r.stopped = stopped_ = true;
    held_.clear();
    return r;
  }
  // Hold the longest suffix that is a proper prefix of some stop string.
  size_t keep = 0;
  for (const std::string& s : stops_) {
    for (size_t k = std::min(s.size() - 1, held_.size()); k > keep; --k) {
      if (held_.compare(held_.size() - k, k, s, 0, k) == 0) {
        keep = k;
        break;
      }
    }
  }
  r.text = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return r;
}

std::string StopStringMatcher::finish() {
  std::string out;
  if (!stopped_) out.swap(held_);
  held_.clear();
  return out;
}

// ---- TextStream ----

namespace {
DecodeOptions generated_text_options() {
  DecodeOptions o;
  o.skip_special_tokens = true;
  o.continuation = true;
  return o;
}
}  // namespace

TextStream::TextStream(std::shared_ptr<const Tokenizer> tokenizer,
                       std::vector<std::string> stop_strings)
    : decoder_(std::move(tokenizer), generated_text_options()), stops_(std::move(stop_strings)) {}

TextStream::Delta TextStream::push(const std::vector<int32_t>& ids) {
  Delta d;
  if (stopped_) return d;
  for (int32_t id : ids) {
    StopStringMatcher::Result r = stops_.push(decoder_.push(id));
    d.text += r.text;
    if (r.stopped) {
      stopped_ = d.stopped = true;
      break;
    }
  }
  return d;
}

std::string TextStream::finish() {
  if (stopped_) return "";
  StopStringMatcher::Result r = stops_.push(decoder_.finish());
  if (r.stopped) {
    stopped_ = true;
    return r.text;
  }
  return r.text + stops_.finish();
}

}  // namespace loraserve
