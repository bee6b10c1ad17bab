// PEFT's module-name regular expressions (target_modules or
// exclude_modules given as a string, rank_pattern and alpha_pattern keys),
// matched as Python's re.fullmatch matches them, by PCRE2 under limits.
// Why not std::regex: the patterns come from adapter files tenants upload,
// and libstdc++'s std::regex compiles and matches recursively with no
// limits, so nested groups overflow the stack (the whole server crashes)
// and a pattern like "(((.*)*)*)*v_proj" backtracks for hours on a
// 40-character module path. PCRE2 bounds group nesting (250) and repeat
// counts (65535) at compile time and keeps its backtracking on the heap,
// and here each match gets a step budget.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"

namespace loraserve {

class ModulePattern {
 public:
  // Longer patterns are refused: PEFT's are module names and short regexes.
  static constexpr size_t kMaxPatternBytes = 1024;
  // Matching steps per path: real patterns need a few hundred on a module
  // path; beyond this the pattern is refused as pathological.
  static constexpr uint32_t kMatchLimit = 100000;

  // INVALID_ARGUMENT naming `where` for a pattern that is too long or does
  // not compile.
  static StatusOr<std::shared_ptr<const ModulePattern>> compile(const std::string& pattern,
                                                               const std::string& where);
  ~ModulePattern();
  ModulePattern(const ModulePattern&) = delete;
  ModulePattern& operator=(const ModulePattern&) = delete;

  // Whether all of `path` matches. INVALID_ARGUMENT naming the pattern when
  // matching needs more than kMatchLimit steps.
  StatusOr<bool> full_match(const std::string& path) const;

 private:
  ModulePattern() = default;
  std::string pattern_;
  std::string where_;
  void* code_ = nullptr;     // pcre2_code*
  void* context_ = nullptr;  // pcre2_match_context*
};

}  // namespace loraserve
