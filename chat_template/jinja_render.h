// Walks a parsed template with a context of variables and produces the text,
// following jinja2's runtime rules (scoping of loops and macros, Undefined,
// Python value semantics) under hard limits on work, output and recursion.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/status.h"
#include "chat_template/jinja_ast.h"
#include "chat_template/jinja_value.h"

namespace loraserve {
namespace jinja {

struct RenderLimits {
  int max_recursion = 64;              // nested macro calls
  int max_depth = 1000;                // nested statements + expressions, all calls together
  int64_t max_loop_iterations = 1000000;
  size_t max_output_bytes = 4 << 20;   // also caps every string the template builds
  int64_t max_work = 20000000;         // expression evaluations plus bytes/elements touched
};

// `context` must be a dict; its keys are the template's variables. Errors:
// raise_exception() gives kAborted with the template's message verbatim;
// limits give kResourceExhausted; everything else kInvalidArgument with the
// template line.
StatusOr<std::string> render_template(const ParsedTemplate& t, const Value& context, const RenderLimits& limits);

}  // namespace jinja
}  // namespace loraserve
