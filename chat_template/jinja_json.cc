// JSON in (the render context) and JSON out (transformers' tojson filter,
// which is json.dumps with ensure_ascii=False).
#include "chat_template/jinja_json.h"

#include <algorithm>
#include <cmath>

#include "chat_template/jinja_builtins.h"
#include "chat_template/jinja_text.h"

namespace loraserve {
namespace jinja {
namespace {

template <typename Json>
StatusOr<Value> convert(const Json& j, int depth) {
  if (depth > kMaxValueDepth) return invalid_argument("chat template context is nested too deeply");
  switch (j.type()) {
    case nlohmann::json::value_t::null: return Value::none();
    case nlohmann::json::value_t::boolean: return Value::boolean(j.template get<bool>());
    case nlohmann::json::value_t::number_integer:
      return Value::integer(j.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      const uint64_t u = j.template get<uint64_t>();
      // Python ints are unbounded; ours are int64, so larger ones become floats.
      if (u > static_cast<uint64_t>(INT64_MAX)) return Value::floating(static_cast<double>(u));
      return Value::integer(static_cast<int64_t>(u));
    }
    case nlohmann::json::value_t::number_float: return Value::floating(j.template get<double>());
    case nlohmann::json::value_t::string: {
      const auto& s = j.template get_ref<const std::string&>();
      if (!utf8_is_valid(s)) return invalid_argument("chat template context has a string that is not valid UTF-8");
      return Value::string(s);
    }
    case nlohmann::json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& item : j) {
        LS_ASSIGN_OR_RETURN(Value v, convert(item, depth + 1));
        items.push_back(std::move(v));
      }
      return Value::list(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      auto d = std::make_shared<DictData>();
      for (auto it = j.begin(); it != j.end(); ++it) {
        if (!utf8_is_valid(it.key())) return invalid_argument("chat template context has a key that is not valid UTF-8");
        LS_ASSIGN_OR_RETURN(Value v, convert(it.value(), depth + 1));
        d->set(Value::string(it.key()), std::move(v));
      }
      return Value::dict(std::move(d));
    }
    case nlohmann::json::value_t::binary:
    case nlohmann::json::value_t::discarded:
      break;
  }
  return invalid_argument("chat template context holds a value JSON cannot express");
}

// json.dumps turns keys into strings this way.
StatusOr<std::string> json_key(const Value& k) {
  switch (k.type()) {
    case Value::Type::kString: return k.as_string();
    case Value::Type::kInt: return std::to_string(k.as_int());
    case Value::Type::kFloat: {
      const double d = k.as_double();
      if (std::isnan(d)) return std::string("NaN");
      if (std::isinf(d)) return std::string(d > 0 ? "Infinity" : "-Infinity");
      return py_float_repr(d);
    }
    case Value::Type::kBool: return std::string(k.as_bool() ? "true" : "false");
    case Value::Type::kNone: return std::string("null");
    default:
      return invalid_argument("keys must be str, int, float, bool or None, not " + k.type_name());
  }
}

class JsonWriter {
 public:
  JsonWriter(Runtime& rt, const JsonOptions& o) : rt_(rt), o_(o) {}

  Status write(const Value& v, int level) {
    if (level > 2 * kMaxValueDepth) return invalid_argument("value nested too deeply for tojson");
    if (out_.size() > rt_.max_bytes()) return resource_exhausted("tojson output too long");
    switch (v.type()) {
      case Value::Type::kNone: out_ += "null"; return ok_status();
      case Value::Type::kBool: out_ += v.as_bool() ? "true" : "false"; return ok_status();
      case Value::Type::kInt: out_ += std::to_string(v.as_int()); return ok_status();
      case Value::Type::kFloat: {
        const double d = v.as_double();
        if (std::isnan(d)) {
          out_ += "NaN";
        } else if (std::isinf(d)) {
          out_ += d > 0 ? "Infinity" : "-Infinity";
        } else {
          out_ += py_float_repr(d);
        }
        return ok_status();
      }
      case Value::Type::kString:
        LS_RETURN_IF_ERROR(rt_.charge(static_cast<int64_t>(v.as_string().size() / 4)));
        json_escape_string(v.as_string(), o_.ensure_ascii, &out_);
        return ok_status();
      case Value::Type::kList: {
        const ListData& l = v.as_list();
        if (l.kind != ListKind::kList && l.kind != ListKind::kTuple) break;
        if (l.items.empty()) {
          out_ += "[]";
          return ok_status();
        }
        LS_RETURN_IF_ERROR(rt_.charge(static_cast<int64_t>(l.items.size())));
        out_ += '[';
        for (size_t i = 0; i < l.items.size(); ++i) {
          out_ += i == 0 ? "" : o_.item_separator;
          LS_RETURN_IF_ERROR(newline(level + 1));
          LS_RETURN_IF_ERROR(write(l.items[i], level + 1));
        }
        LS_RETURN_IF_ERROR(newline(level));
        out_ += ']';
        return ok_status();
      }
      case Value::Type::kDict: {
        const DictData& d = v.as_dict();
        if (d.size() == 0) {
          out_ += "{}";
          return ok_status();
        }
        LS_RETURN_IF_ERROR(rt_.charge(static_cast<int64_t>(d.size())));
        std::vector<std::pair<std::string, const Value*>> entries;
        entries.reserve(d.size());
        for (const auto& [k, val] : d.entries) {
          LS_ASSIGN_OR_RETURN(std::string key, json_key(k));
          entries.emplace_back(std::move(key), &val);
        }
        if (o_.sort_keys) {
          std::stable_sort(entries.begin(), entries.end(),
                           [](const auto& a, const auto& b) { return a.first < b.first; });
        }
        out_ += '{';
        bool first = true;
        for (const auto& [key, val] : entries) {
          if (!first) out_ += o_.item_separator;
          first = false;
          LS_RETURN_IF_ERROR(newline(level + 1));
          json_escape_string(key, o_.ensure_ascii, &out_);
          out_ += o_.key_separator;
          LS_RETURN_IF_ERROR(write(*val, level + 1));
        }
        LS_RETURN_IF_ERROR(newline(level));
        out_ += '}';
        return ok_status();
      }
      default:
        break;
    }
    return invalid_argument("Object of type " + v.type_name() + " is not JSON serializable");
  }

  std::string& out() { return out_; }

 private:
  Status newline(int level) {
    if (!o_.has_indent) return ok_status();
    if (out_.size() + 1 + static_cast<size_t>(level) * o_.indent.size() > rt_.max_bytes()) {
      return resource_exhausted("tojson output too long");
    }
    out_ += '\n';
    for (int i = 0; i < level; ++i) out_ += o_.indent;
    return ok_status();
  }

  Runtime& rt_;
  const JsonOptions& o_;
  std::string out_;
};

}  // namespace

StatusOr<Value> value_from_json(const nlohmann::ordered_json& j) { return convert(j, 0); }
StatusOr<Value> value_from_json(const nlohmann::json& j) { return convert(j, 0); }

StatusOr<std::string> to_json(Runtime& rt, const Value& v, const JsonOptions& options) {
  JsonWriter w(rt, options);
  LS_RETURN_IF_ERROR(w.write(v, 0));
  if (w.out().size() > rt.max_bytes()) return resource_exhausted("tojson output too long");
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(w.out().size() / 16)));
  return std::move(w.out());
}

}  // namespace jinja
}  // namespace loraserve
