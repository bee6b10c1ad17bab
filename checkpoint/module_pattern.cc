#include "checkpoint/module_pattern.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

namespace loraserve {

StatusOr<std::shared_ptr<const ModulePattern>> ModulePattern::compile(const std::string& pattern,
                                                                     const std::string& where) {
  if (pattern.size() > kMaxPatternBytes) {
    return invalid_argument(where + " is a regular expression of " +
                            std::to_string(pattern.size()) + " bytes, beyond the " +
                            std::to_string(kMaxPatternBytes) + " accepted");
  }
  int err = 0;
  PCRE2_SIZE err_off = 0;
  // UTF: the JSON string is valid UTF-8, and "." should step over a whole
  // character as Python's re does on str.
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF, &err, &err_off, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof(buf));
    return invalid_argument(where + " \"" + pattern + "\" is not a valid regular expression (at " +
                            std::to_string(err_off) + ": " + reinterpret_cast<char*>(buf) + ")");
  }
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  if (context == nullptr) {
    pcre2_code_free(code);
    return resource_exhausted("out of memory compiling " + where);
  }
  pcre2_set_match_limit(context, kMatchLimit);
  pcre2_set_depth_limit(context, kMatchLimit);
  std::shared_ptr<ModulePattern> p(new ModulePattern());
  p->pattern_ = pattern;
  p->where_ = where;
  p->code_ = code;
  p->context_ = context;
  return std::shared_ptr<const ModulePattern>(std::move(p));
}

ModulePattern::~ModulePattern() {
  if (context_ != nullptr) pcre2_match_context_free(static_cast<pcre2_match_context*>(context_));
  if (code_ != nullptr) pcre2_code_free(static_cast<pcre2_code*>(code_));
}

StatusOr<bool> ModulePattern::full_match(const std::string& path) const {
  auto* code = static_cast<pcre2_code*>(code_);
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
  if (md == nullptr) return resource_exhausted("out of memory matching " + where_);
  const int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(path.data()), path.size(), 0,
                             PCRE2_ANCHORED | PCRE2_ENDANCHORED, md,
                             static_cast<pcre2_match_context*>(context_));
  pcre2_match_data_free(md);
  if (rc >= 0) return true;
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
      rc == PCRE2_ERROR_HEAPLIMIT) {
    return invalid_argument(where_ + " \"" + pattern_ + "\" needs more than " +
                            std::to_string(kMatchLimit) + " steps to match module " + path +
                            " (catastrophic backtracking); simplify it");
  }
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(rc, buf, sizeof(buf));
  return invalid_argument(where_ + " \"" + pattern_ + "\" cannot be matched against " + path +
                          ": " + reinterpret_cast<char*>(buf));
}

}  // namespace loraserve
