// Conversion of a JSON render context into template values. Objects keep
// their key order when given an nlohmann::ordered_json (Python's json.loads
// keeps it too, and tojson prints in that order).
#pragma once

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "chat_template/jinja_value.h"

namespace loraserve {
namespace jinja {

// Fails for strings that are not valid UTF-8 and for nesting deeper than
// kMaxValueDepth.
StatusOr<Value> value_from_json(const nlohmann::ordered_json& j);
StatusOr<Value> value_from_json(const nlohmann::json& j);

}  // namespace jinja
}  // namespace loraserve
