// Text out of a stream of generated token ids: incremental detokenization
// (StreamDecoder), stop strings (StopStringMatcher), and TextStream, which
// joins them the way every frontend (gRPC Generate, the HTTP API, lora-cli)
// needs: push the ids of each event, get the UTF-8 text that can be sent,
// and learn when a stop string has ended the request.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace loraserve {

// Incremental detokenization of one stream: push ids one at a time, get
// the text that became final. Every returned chunk is valid UTF-8 (an
// incomplete multi-byte sequence is held back until it completes or turns
// out invalid), and the concatenation of all push() results and finish()
// equals tokenizer.decode(all ids, same options). O(1) amortized per token.
class StreamDecoder {
 public:
  StreamDecoder(std::shared_ptr<const Tokenizer> tokenizer, const DecodeOptions& opts = {});

  // Appends one id; returns the new text (possibly empty).
  std::string push(int32_t id);
  // End of stream: returns the held-back bytes (an unfinished sequence
  // becomes U+FFFD). The decoder can be reused afterwards as a new stream.
  std::string finish();
  // Bytes held back now (an incomplete UTF-8 sequence), 0..3.
  size_t pending_bytes() const { return pending_.size(); }

 private:
  std::string drain(bool final);

  std::shared_ptr<const Tokenizer> tok_;
  DecodeOptions opts_;
  std::string pending_;
  int strip_remaining_ = 0;
  bool first_ = true;  // the next pushed token starts the text
};

// Stop strings over a stream of text deltas: holds back the tail that could
// still be the start of a stop string and cuts the text before the first
// complete stop string (which is not included). Byte-based, so a stop
// string split across tokens or deltas is found; held text is released at
// a UTF-8 character boundary.
class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stops);

  struct Result {
    std::string text;      // safe to send now
    bool stopped = false;  // a stop string completed: end the generation
  };
  // Feed a delta; after stopped, further calls return nothing.
  Result push(std::string_view delta);
  // End of generation without a stop: the held tail.
  std::string finish();

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

// One request's text: generated ids in, sendable UTF-8 out, with the
// request's stop strings applied. Special tokens are skipped and the text
// continues the prompt (no leading-space strip). Not thread-safe: one
// stream per request, driven by the thread that forwards its events.
class TextStream {
 public:
  TextStream(std::shared_ptr<const Tokenizer> tokenizer, std::vector<std::string> stop_strings);

  struct Delta {
    std::string text;      // safe to send now (valid UTF-8, never a stop string)
    bool stopped = false;  // a stop string completed inside these ids
  };
  // The ids of one event. Once a stop string completes, the remaining ids
  // and every later call add nothing: the caller ends the request.
  Delta push(const std::vector<int32_t>& ids);
  // End of generation: the held-back tail (an unfinished UTF-8 sequence
  // becomes U+FFFD; a partial stop-string prefix is released). Empty after
  // a stop.
  std::string finish();
  bool stopped() const { return stopped_; }

 private:
  StreamDecoder decoder_;
  StopStringMatcher stops_;
  bool stopped_ = false;
};

}  // namespace loraserve
