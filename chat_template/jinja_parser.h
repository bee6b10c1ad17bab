// Builds the syntax tree from the lexer's tokens, following jinja2's parser
// (operator precedence, tuples, tests, filters, statements). Nesting deeper
// than max_nesting fails with kInvalidArgument instead of recursing on.
#pragma once

#include <vector>

#include "common/status.h"
#include "chat_template/jinja_ast.h"
#include "chat_template/jinja_lexer.h"

namespace loraserve {
namespace jinja {

StatusOr<ParsedTemplate> parse_template(const std::vector<Token>& tokens, int max_nesting);

}  // namespace jinja
}  // namespace loraserve
