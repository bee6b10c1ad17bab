// What jinja2's compiler decides before a template runs, computed once at
// parse time:
//   - unknown filters and tests: a syntax error, except inside {% if %} and
//     conditional expressions, where jinja2 waits until they run;
//   - constant expressions: jinja2 folds expressions made of literals, which
//     the renderer must imitate (see Renderer::eval_top);
//   - frame locals: the names each frame owns from its start (jinja_ast.h).
#pragma once

#include "common/status.h"
#include "chat_template/jinja_ast.h"

namespace loraserve {
namespace jinja {

Status analyze_template(ParsedTemplate* t);

}  // namespace jinja
}  // namespace loraserve
