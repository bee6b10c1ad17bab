// Reading a scheduler RequestStream to its end in tests.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <vector>

#include "scheduler/request.h"

namespace loraserve::testing_util {

// Collects a stream to its final event, appending every token to *tokens
// (when given). A stream quiet for `stall` fails the test and returns the
// empty event.
inline RequestEvent drain_stream(RequestStream& s, std::vector<int32_t>* tokens,
                                 std::chrono::milliseconds stall) {
  for (;;) {
    RequestEvent e;
    if (!s.pop(&e, stall)) {
      ADD_FAILURE() << "stream stalled";
      return e;
    }
    if (tokens != nullptr) tokens->insert(tokens->end(), e.tokens.begin(), e.tokens.end());
    if (e.final) return e;
  }
}

}  // namespace loraserve::testing_util
