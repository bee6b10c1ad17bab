#include "clients/lora_bench/progress.h"

#include <unistd.h>

#include <cstdio>

namespace loraserve::bench {

ProgressLine::ProgressLine(bool enabled, Clock::time_point start)
    : tty_(isatty(STDERR_FILENO) != 0), start_(start), last_(start) {
  enabled_ = enabled || tty_;
}

void ProgressLine::update(Clock::time_point now, const ProgressSnapshot& s) {
  if (!enabled_ || now - last_ < std::chrono::seconds(1)) return;
  print(now, s);
}

void ProgressLine::finish(Clock::time_point now, const ProgressSnapshot& s) {
  if (!enabled_) return;
  print(now, s);
  if (tty_) std::fputc('\n', stderr);
}

void ProgressLine::print(Clock::time_point now, const ProgressSnapshot& s) {
  const double dt = std::chrono::duration<double>(now - last_).count();
  const double tok_s = dt > 0 ? static_cast<double>(s.tokens - last_tokens_) / dt : 0.0;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  std::fprintf(stderr, "%s[%7.1fs] done %llu  in-flight %llu  errors %llu  tok/s %.1f%s",
               tty_ ? "\r" : "", elapsed, static_cast<unsigned long long>(s.done),
               static_cast<unsigned long long>(s.in_flight),
               static_cast<unsigned long long>(s.errors), tok_s, tty_ ? "\033[K" : "\n");
  std::fflush(stderr);
  last_ = now;
  last_tokens_ = s.tokens;
}

}  // namespace loraserve::bench
