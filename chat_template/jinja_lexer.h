// Splits a Jinja template into text and tag tokens exactly as jinja2's lexer
// does with trim_blocks=True and lstrip_blocks=True (transformers' settings):
// newline normalization, dropping one trailing newline, `{%-`/`-%}`
// whitespace control, `+` overrides, comments and {% raw %} blocks.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace loraserve {
namespace jinja {

enum class TokenType : uint8_t {
  kData,           // template text, already whitespace-controlled
  kVariableBegin,  // {{
  kVariableEnd,    // }}
  kBlockBegin,     // {%
  kBlockEnd,       // %}
  kName,
  kString,         // text holds the decoded value
  kInteger,
  kFloat,
  kOperator,       // text holds the operator ("+", "//", "(", ...)
  kEof,
};

struct Token {
  TokenType type = TokenType::kEof;
  int line = 1;
  std::string text;
  int64_t int_value = 0;
  double float_value = 0;
};

// Tokens end with one kEof. Errors are kInvalidArgument with the line.
StatusOr<std::vector<Token>> tokenize(std::string_view source);

}  // namespace jinja
}  // namespace loraserve
