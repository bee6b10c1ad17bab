// The live progress line on stderr: at most once a second, only when enabled
// (stderr is a tty, or --progress). On a tty it rewrites one line with '\r';
// otherwise it prints one line per update. Dispatch thread only.
#pragma once

#include <cstdint>

#include "clients/lora_bench/metrics.h"

namespace loraserve::bench {

struct ProgressSnapshot {
  uint64_t done = 0;       // finished, any status
  uint64_t in_flight = 0;
  uint64_t errors = 0;
  uint64_t tokens = 0;     // output tokens received so far
};

class ProgressLine {
 public:
  ProgressLine(bool enabled, Clock::time_point start);
  // Prints if a second has passed since the last line.
  void update(Clock::time_point now, const ProgressSnapshot& s);
  // Ends the line (a final update, then a newline on a tty).
  void finish(Clock::time_point now, const ProgressSnapshot& s);

 private:
  void print(Clock::time_point now, const ProgressSnapshot& s);

  bool enabled_;
  bool tty_;
  Clock::time_point start_, last_;
  uint64_t last_tokens_ = 0;
};

}  // namespace loraserve::bench
