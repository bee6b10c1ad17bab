// Globals of transformers' Jinja environment (range, namespace, dict,
// joiner, raise_exception, strftime_now) and the small helpers every
// builtin shares (argument binding, str()).
#include <algorithm>
#include <ctime>

#include "chat_template/jinja_builtins.h"

namespace loraserve {
namespace jinja {

// --- shared helpers ----------------------------------------------------------------

ArgBinder::ArgBinder(const char* function, CallArgs& args, std::initializer_list<const char*> params)
    : bound_(params.size(), nullptr) {
  if (args.positional.size() > params.size()) {
    status_ = invalid_argument(std::string(function) + "() takes at most " +
                               std::to_string(params.size()) + " argument(s) (" +
                               std::to_string(args.positional.size()) + " given)");
    return;
  }
  for (size_t i = 0; i < args.positional.size(); ++i) bound_[i] = &args.positional[i];
  for (const auto& [key, value] : args.keywords) {
    size_t index = 0;
    for (const char* p : params) {
      if (key == p) break;
      ++index;
    }
    if (index == params.size()) {
      status_ = invalid_argument(std::string(function) + "() got an unexpected keyword argument '" +
                                 key + "'");
      return;
    }
    if (bound_[index] != nullptr) {
      status_ = invalid_argument(std::string(function) + "() got multiple values for argument '" +
                                 key + "'");
      return;
    }
    bound_[index] = &value;
  }
}

const Value& ArgBinder::get(size_t i) const {
  static const Value kUndefined{};
  return has(i) ? *bound_[i] : kUndefined;
}

StatusOr<std::string> str_of(Runtime& rt, const Value& v) {
  if (v.is_string()) {
    LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(v.as_string().size() / 64)));
    return v.as_string();
  }
  std::string out;
  LS_RETURN_IF_ERROR(append_str(v, rt.max_bytes(), &out));
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(out.size() / 4)));
  return out;
}

int64_t text_cost(std::string_view s) {
  const bool ascii = std::all_of(s.begin(), s.end(), [](char c) { return (c & 0x80) == 0; });
  return static_cast<int64_t>(ascii ? s.size() / 4 : s.size());
}

StatusOr<std::shared_ptr<const ListData>> iterate_charged(Runtime& rt, const Value& v) {
  // A string iterates as one new value per code point.
  if (v.is_string()) LS_RETURN_IF_ERROR(rt.charge(4 * static_cast<int64_t>(v.as_string().size())));
  LS_ASSIGN_OR_RETURN(auto items, iterate(v));
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(items->items.size())));
  return items;
}

StatusOr<int64_t> int_arg(const Value& v, const char* what) {
  if (v.is_integral()) return v.as_int();
  if (v.is_undefined()) return invalid_argument(v.undefined_message());
  return invalid_argument(std::string(what) + ": '" + v.type_name() +
                          "' object cannot be interpreted as an integer");
}

Status template_raised(const std::string& message) {
  return Status(StatusCode::kAborted, message);
}

bool is_template_raise(const Status& s) { return s.code() == StatusCode::kAborted; }

// --- globals ------------------------------------------------------------------------

namespace {

// jinja2's sandbox refuses ranges longer than this (MAX_RANGE), so
// transformers does too: range(100000000) fails at once instead of looping.
constexpr int64_t kMaxRange = 100000;

StatusOr<Value> global_range(Runtime& rt, CallArgs& args) {
  if (!args.keywords.empty()) return invalid_argument("range() takes no keyword arguments");
  const size_t n = args.positional.size();
  if (n < 1 || n > 3) {
    return invalid_argument("range expected at most 3 arguments, got " + std::to_string(n));
  }
  int64_t start = 0;
  int64_t stop = 0;
  int64_t step = 1;
  if (n == 1) {
    LS_ASSIGN_OR_RETURN(stop, int_arg(args.positional[0], "range()"));
  } else {
    LS_ASSIGN_OR_RETURN(start, int_arg(args.positional[0], "range()"));
    LS_ASSIGN_OR_RETURN(stop, int_arg(args.positional[1], "range()"));
    if (n == 3) {
      LS_ASSIGN_OR_RETURN(step, int_arg(args.positional[2], "range()"));
    }
  }
  if (step == 0) return invalid_argument("range() arg 3 must not be zero");
  // Length without overflow, as Python computes it.
  long double span = step > 0 ? static_cast<long double>(stop) - start
                              : static_cast<long double>(start) - stop;
  const long double mag = step > 0 ? static_cast<long double>(step) : -static_cast<long double>(step);
  const long double len = span <= 0 ? 0 : (span + mag - 1) / mag;
  if (len > kMaxRange) {
    return resource_exhausted(
        "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
  }
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(len)));
  return Value::range(start, stop, step);
}

// Adds dict(...)-style arguments (one mapping or iterable of pairs, then
// keywords) to *d.
Status collect_dict_args(Runtime& rt, const char* function, const CallArgs& args, DictData* d) {
  if (args.positional.size() > 1) {
    return invalid_argument(std::string(function) + " expected at most 1 argument, got " +
                            std::to_string(args.positional.size()));
  }
  if (args.positional.size() == 1) {
    const Value& src = args.positional[0];
    if (src.is_dict()) {
      for (const auto& [k, v] : src.as_dict().entries) d->set(k, v);
    } else if (src.is_namespace()) {
      for (const auto& [k, v] : src.as_object().attrs) d->set(Value::string(k), v);
    } else {
      LS_ASSIGN_OR_RETURN(auto items, iterate_charged(rt, src));
      for (const Value& pair : items->items) {
        if (!pair.is_list() || pair.as_list().items.size() != 2) {
          return invalid_argument(std::string(function) +
                                  ": dictionary update sequence element has wrong length");
        }
        d->set(pair.as_list().items[0], pair.as_list().items[1]);
      }
    }
  }
  for (const auto& [k, v] : args.keywords) d->set(Value::string(k), v);
  if (d->depth > kMaxValueDepth) return invalid_argument("value nested too deeply");
  return ok_status();
}

StatusOr<Value> global_dict(Runtime& rt, CallArgs& args) {
  auto d = std::make_shared<DictData>();
  LS_RETURN_IF_ERROR(collect_dict_args(rt, "dict", args, d.get()));
  return Value::dict(std::move(d));
}

StatusOr<Value> global_namespace(Runtime& rt, CallArgs& args) {
  DictData init;
  LS_RETURN_IF_ERROR(collect_dict_args(rt, "namespace", args, &init));
  auto ns = std::make_shared<ObjectData>();
  ns->kind = ObjectKind::kNamespace;
  for (const auto& [k, v] : init.entries) {
    // Namespace(**kwargs) keys are strings; a dict argument may hold others.
    std::string key;
    if (k.is_string()) {
      key = k.as_string();
    } else {
      LS_ASSIGN_OR_RETURN(key, str_of(rt, k));
    }
    ns->set_attr(key, v);
  }
  rt.track_object(ns);
  return Value::object(std::move(ns));
}

StatusOr<Value> global_raise_exception(Runtime& rt, CallArgs& args) {
  ArgBinder b("raise_exception", args, {"message"});
  LS_RETURN_IF_ERROR(b.status());
  if (!b.has(0)) return invalid_argument("raise_exception() missing 1 required positional argument: 'message'");
  LS_ASSIGN_OR_RETURN(std::string message, str_of(rt, b.get(0)));
  return template_raised(message);
}

StatusOr<Value> global_strftime_now(Runtime& rt, CallArgs& args) {
  ArgBinder b("strftime_now", args, {"format"});
  LS_RETURN_IF_ERROR(b.status());
  if (!b.get(0).is_string()) return invalid_argument("strftime_now() argument must be str");
  const std::string& format = b.get(0).as_string();
  if (format.size() > 4096) return invalid_argument("strftime_now() format too long");
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  // A trailing space tells an empty result from a too-small buffer.
  const std::string fmt = format + " ";
  std::vector<char> buf(256 + format.size() * 8);
  const size_t n = std::strftime(buf.data(), buf.size(), fmt.c_str(), &local);
  if (n == 0) return invalid_argument("strftime_now(): result too long");
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(n)));
  return Value::string(std::string(buf.data(), n - 1));
}

StatusOr<Value> global_joiner(Runtime&, CallArgs& args) {
  ArgBinder b("joiner", args, {"sep"});
  LS_RETURN_IF_ERROR(b.status());
  const std::string sep = b.has(0) && b.get(0).is_string() ? b.get(0).as_string() : ", ";
  auto used = std::make_shared<bool>(false);
  auto fn = std::make_shared<Callable>();
  fn->name = "joiner";
  fn->fn = [sep, used](Runtime&, CallArgs&) -> StatusOr<Value> {
    if (!*used) {
      *used = true;
      return Value::string("");
    }
    return Value::string(sep);
  };
  return Value::callable(std::move(fn));
}

Value make_builtin(const char* name, StatusOr<Value> (*fn)(Runtime&, CallArgs&)) {
  auto c = std::make_shared<Callable>();
  c->name = name;
  c->fn = fn;
  return Value::callable(std::move(c));
}

}  // namespace

Value find_global(const std::string& name) {
  static const std::vector<std::pair<std::string, Value>> kGlobals = {
      {"range", make_builtin("range", global_range)},
      {"dict", make_builtin("dict", global_dict)},
      {"namespace", make_builtin("namespace", global_namespace)},
      {"joiner", make_builtin("joiner", global_joiner)},
      {"raise_exception", make_builtin("raise_exception", global_raise_exception)},
      {"strftime_now", make_builtin("strftime_now", global_strftime_now)},
  };
  for (const auto& [n, v] : kGlobals) {
    if (n == name) return v;
  }
  return Value();
}

}  // namespace jinja
}  // namespace loraserve
