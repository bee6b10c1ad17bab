// The OpenAI HTTP transport of lora-bench (--api openai): each request is a
// POST /v1/completions with "stream": true on a connection of its own, read
// as Server-Sent Events over Boost.Beast on one io thread, so HTTP+SSE and
// gRPC streams are measured by the same driver and metrics. Tokens are
// counted exactly (logprobs with return_tokens_as_token_ids); the server's
// own timings are not in the OpenAI shape, so server_queue_ms stays 0.
#pragma once

#include <memory>
#include <string>

#include "clients/lora_bench/config.h"
#include "clients/lora_bench/driver.h"

namespace loraserve::bench {

class OpenAiTransport {
 public:
  explicit OpenAiTransport(const BenchConfig& cfg);
  ~OpenAiTransport();  // stops the io thread (calls still running are abandoned)

  // Resolves --http-addr; false with *error when it cannot.
  bool start(std::string* error);
  CallFactory calls();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace loraserve::bench
