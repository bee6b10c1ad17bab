// jinja2's builtin filters (and transformers' tojson), each following the
// Python implementation in jinja2/filters.py, including its quirks: sort,
// unique, min and max ignore case by default, map/select return lazy
// generators (always true, no len()), join and string print with str().
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "chat_template/jinja_builtins.h"
#include "chat_template/jinja_text.h"

namespace loraserve {
namespace jinja {
namespace {

StatusOr<std::string> soft_str(Runtime& rt, const Value& v) { return str_of(rt, v); }


Value list_of(std::vector<Value> items, ListKind kind = ListKind::kList) {
  return Value::list(std::move(items), kind);
}

// A generator that raises `message` once something iterates it: jinja2's
// generator filters fail lazily.
Value failing_generator(const std::string& message) {
  auto gen = std::make_shared<ListData>();
  gen->kind = ListKind::kGenerator;
  gen->deferred_error = message;
  return Value::list_from(std::move(gen));
}

// The items a generator filter walks; a non-iterable becomes a failing
// generator (returned through *lazy) instead of an error now.
StatusOr<std::shared_ptr<const ListData>> generator_input(Runtime& rt, const Value& v, Value* lazy) {
  auto items = iterate_charged(rt, v);
  if (!items.ok() && items.status().code() == StatusCode::kInvalidArgument) {
    *lazy = failing_generator(items.status().message());
    return std::shared_ptr<const ListData>();
  }
  return items;
}

// jinja2's make_attrgetter: "a.b.0" looks up each part with getitem, digits
// as integers.
StatusOr<Value> get_attribute_path(Runtime& rt, const Value& item, const Value& attribute) {
  if (attribute.is_integral()) return get_item(rt, item, attribute);
  if (!attribute.is_string()) return get_item(rt, item, attribute);
  Value v = item;
  const std::string& path = attribute.as_string();
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    const bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    Value key = digits && part.size() < 18 ? Value::integer(std::stoll(part)) : Value::string(part);
    LS_ASSIGN_OR_RETURN(v, get_item(rt, v, key));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return v;
}

Value lower_if_string(const Value& v, bool case_sensitive) {
  if (case_sensitive || !v.is_string()) return v;
  return Value::string(py_lower(v.as_string()));
}

// Keys for sort/unique/min/max: the attribute (if any), lowered unless
// case_sensitive.
StatusOr<std::vector<Value>> sort_keys(Runtime& rt, const std::vector<Value>& items,
                                       const Value& attribute, bool case_sensitive) {
  std::vector<Value> keys;
  keys.reserve(items.size());
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(items.size())));
  for (const Value& item : items) {
    Value key = item;
    if (!attribute.is_undefined() && !attribute.is_none()) {
      LS_ASSIGN_OR_RETURN(key, get_attribute_path(rt, item, attribute));
    }
    keys.push_back(lower_if_string(key, case_sensitive));
  }
  return keys;
}

// Python's sorted(): stable, fails on the first unorderable pair.
Status stable_sort_by_keys(Runtime& rt, std::vector<Value>* items, const std::vector<Value>& keys, bool reverse) {
  std::vector<size_t> order(items->size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  Status error;
  int64_t cost = 0;
  auto less = [&](size_t a, size_t b) {
    if (!error.ok()) return false;
    auto r = reverse ? value_less(keys[b], keys[a], &cost) : value_less(keys[a], keys[b], &cost);
    if (!r.ok()) {
      error = r.status();
      return false;
    }
    return *r;
  };
  std::stable_sort(order.begin(), order.end(), less);
  LS_RETURN_IF_ERROR(error);
  LS_RETURN_IF_ERROR(rt.charge(cost));
  std::vector<Value> sorted;
  sorted.reserve(order.size());
  for (size_t i : order) sorted.push_back((*items)[i]);
  *items = std::move(sorted);
  return ok_status();
}

// --- filters ------------------------------------------------------------------------

StatusOr<Value> f_abs(Runtime&, const Value& v, CallArgs& args) {
  LS_RETURN_IF_ERROR(ArgBinder("abs", args, {}).status());
  if (v.is_float()) return Value::floating(std::fabs(v.as_double()));
  if (v.is_integral()) {
    if (v.as_int() == INT64_MIN) return invalid_argument("integer overflow in abs()");
    return Value::integer(std::llabs(v.as_int()));
  }
  return invalid_argument("bad operand type for abs(): '" + v.type_name() + "'");
}

StatusOr<Value> f_attr(Runtime& rt, const Value& v, CallArgs& args) {
  ArgBinder b("attr", args, {"name"});
  LS_RETURN_IF_ERROR(b.status());
  if (!b.get(0).is_string()) return Value();
  // getattr() only: unlike obj.name, |attr never falls back to obj['name'].
  return get_attribute(rt, v, b.get(0).as_string(), /*item_fallback=*/false);
}

template <std::string (*kFn)(std::string_view)>
StatusOr<Value> f_text(Runtime& rt, const Value& v, CallArgs& args) {
  LS_RETURN_IF_ERROR(ArgBinder("filter", args, {}).status());
  LS_ASSIGN_OR_RETURN(std::string s, soft_str(rt, v));
  LS_RETURN_IF_ERROR(rt.charge(text_cost(s)));
  return Value::string(kFn(s));
}

StatusOr<Value> f_center(Runtime& rt, const Value& v, CallArgs& args) {
  ArgBinder b("center", args, {"width"});
  LS_RETURN_IF_ERROR(b.status());
  LS_ASSIGN_OR_RETURN(std::string s, soft_str(rt, v));
  CallArgs method_args;
  method_args.positional.push_back(b.has(0) ? b.get(0) : Value::integer(80));
  LS_ASSIGN_OR_RETURN(Value center, get_attribute(rt, Value::string(s), "center"));
  return rt.call(center, std::move(method_args));
}

StatusOr<Value> f_length(Runtime& rt, const Value& v, CallArgs& args) {
  LS_RETURN_IF_ERROR(ArgBinder("length", args, {}).status());
  if (v.is_string()) LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(v.as_string().size() / 64)));
  LS_ASSIGN_OR_RETURN(int64_t n, value_length(v));
  return Value::integer(n);
}

StatusOr<Value> f_default(Runtime&, const Value& v, CallArgs& args) {
  ArgBinder b("default", args, {"default_value", "boolean"});
  LS_RETURN_IF_ERROR(b.status());
  const Value fallback = b.has(0) ? b.get(0) : Value::string("");
  if (v.is_undefined() || (b.get(1).truthy() && !v.truthy())) return fallback;
  return v;
}

StatusOr<Value> f_dictsort(Runtime& rt, const Value& v, CallArgs& args) {
  ArgBinder b("dictsort", args, {"case_sensitive", "by", "reverse"});
  LS_RETURN_IF_ERROR(b.status());
  if (!v.is_dict()) return invalid_argument("dictsort: expected a mapping, got " + v.type_name());
  size_t pos = 0;
  if (b.has(1)) {
    const Value& by = b.get(1);
    if (by.is_string() && by.as_string() == "value") {
      pos = 1;
    } else if (!by.is_string() || by.as_string() != "key") {
      return invalid_argument("You can only sort by either \"key\" or \"value\"");
    }
  }
  std::vector<Value> items;
  std::vector<Value> keys;
  for (const auto& [k, val] : v.as_dict().entries) {
    items.push_back(Value::list({k, val}, ListKind::kTuple));
    keys.push_back(lower_if_string(pos == 0 ? k : val, b.get(0).truthy()));
  }
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(items.size())));
  LS_RETURN_IF_ERROR(stable_sort_by_keys(rt, &items, keys, b.get(2).truthy()));
  return list_of(std::move(items));
}

StatusOr<Value> f_escape(Runtime& rt, const Value& v, CallArgs& args) {
  LS_RETURN_IF_ERROR(ArgBinder("escape", args, {}).status());
  LS_ASSIGN_OR_RETURN(std::string s, soft_str(rt, v));
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c; break;
    }
  }
  if (out.size() > rt.max_bytes()) return resource_exhausted("string too long in escape");
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(out.size() / 8)));
  return Value::string(std::move(out));
}

StatusOr<Value> f_first(Runtime& rt, const Value& v, CallArgs& args) {
  LS_RETURN_IF_ERROR(ArgBinder("first", args, {}).status());
  if (v.is_string() && !v.as_string().empty()) {
    size_t end = 0;
    utf8_next(v.as_string(), &end);
    return Value::string(v.as_string().substr(0, end));
  }
  LS_ASSIGN_OR_RETURN(auto items, iterate_charged(rt, v));
  if (items->items.empty()) return Value::undefined("No first item, sequence was empty.");
  return items->items.front();
}

StatusOr<Value> f_last(Runtime& rt, const Value& v, CallArgs& args) {
  LS_RETURN_IF_ERROR(ArgBinder("last", args, {}).status());
  if (v.is_string() && !v.as_string().empty()) {
    const std::string& s = v.as_string();
    size_t start = s.size() - 1;
    while (start > 0 && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
    return Value::string(s.substr(start));
  }
  LS_ASSIGN_OR_RETURN(auto items, iterate_charged(rt, v));
  if (items->items.empty()) return Value::undefined("No last item, sequence was empty.");
  return items->items.back();
}

// Python float(str): surrounding whitespace, underscores between digits,
// inf/nan spellings.
bool parse_python_float(const std::string& text, double* out) {
  std::string s = py_strip(text, nullptr, true, true);
  std::string clean;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_') {
      if (i == 0 || i + 1 >= s.size() || !std::isdigit(static_cast<unsigned char>(s[i - 1])) ||
          !std::isdigit(static_cast<unsigned char>(s[i + 1]))) {
        return false;
      }
      continue;
    }
    clean += s[i];
  }
  if (clean.empty()) return false;
  std::string lower = py_lower(clean);
  const size_t sign = (lower[0] == '+' || lower[0] == '-') ? 1 : 0;
  const std::string body = lower.substr(sign);
  if (body == "inf" || body == "infinity" || body == "nan") {
    *out = body == "nan" ? NAN : INFINITY;
    if (lower[0] == '-') *out = -*out;
    return true;
  }
  for (char c : body) {
    if (!(std::isdigit(static_cast<unsigned char>(c)) || c == '.' || c == 'e' || c == '+' || c == '-')) {
      return false;
    }
  }
  char* end = nullptr;
  errno = 0;
  *out = std::strtod(clean.c_str(), &end);
  return end == clean.c_str() + clean.size();
}

// Python int(str, base): whitespace, sign, underscores, optional prefix.
bool parse_python_int(const std::string& text, int64_t base, int64_t* out) {
  std::string s = py_strip(text, nullptr, true, true);
  if (s.empty()) return false;
  bool negative = false;
  size_t i = 0;
  if (s[0] == '+' || s[0] == '-') {
    negative = s[0] == '-';
    i = 1;
  }
  if (base == 0 || base == 16 || base == 8 || base == 2) {
    if (i + 1 < s.size() && s[i] == '0') {
      const char p = static_cast<char>(s[i + 1] | 0x20);
      const int64_t prefixed = p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 0;
      if (prefixed != 0 && (base == 0 || base == prefixed)) {
        base = prefixed;
        i += 2;
        if (i < s.size() && s[i] == '_') ++i;
      }
    }
    if (base == 0) base = 10;
  }
  if (base < 2 || base > 36 || i >= s.size()) return false;
  uint64_t v = 0;
  bool last_underscore = true;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '_') {
      if (last_underscore) return false;
      last_underscore = true;
      continue;
    }
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') d = (c | 0x20) - 'a' + 10;
    else return false;
    if (d >= base) return false;
    if (v > (static_cast<uint64_t>(INT64_MAX) + 1 - static_cast<uint64_t>(d)) / static_cast<uint64_t>(base)) {
      return false;
    }
    v = v * static_cast<uint64_t>(base) + static_cast<uint64_t>(d);
    last_underscore = false;
  }
  if (last_underscore) return false;
  if (!negative && v > static_cast<uint64_t>(INT64_MAX)) return false;
  *out = negative ? static_cast<int64_t>(0 - v) : static_cast<int64_t>(v);
  return true;
}

StatusOr<Value> f_float(Runtime& rt, const Value& v, CallArgs& args) {
  ArgBinder b("float", args, {"default"});
  LS_RETURN_IF_ERROR(b.status());
  const Value fallback = b.has(0) ? b.get(0) : Value::floating(0.0);
  if (v.is_undefined()) return invalid_argument(v.undefined_message());
  if (v.is_number()) return Value::floating(v.as_double());
  if (v.is_string()) LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(v.as_string().size())));
  double d;
  if (v.is_string() && parse_python_float(v.as_string(), &d)) return Value::floating(d);
  return fallback;
}

StatusOr<Value> f_int(Runtime& rt, const Value& v, CallArgs& args) {
  ArgBinder b("int", args, {"default", "base"});
  LS_RETURN_IF_ERROR(b.status());
  const Value fallback = b.has(0) ? b.get(0) : Value::integer(0);
  int64_t base = 10;
  if (b.has(1)) {
    LS_ASSIGN_OR_RETURN(base, int_arg(b.get(1), "int"));
  }
  if (v.is_undefined()) return invalid_argument(v.undefined_message());
  if (v.is_integral()) return Value::integer(v.as_int());
  if (v.is_string()) LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(v.as_string().size())));
  double d = 0;
  bool have_double = false;
  if (v.is_float()) {
    d = v.as_double();
    have_double = true;
  } else if (v.is_string()) {
    int64_t i;
    if (parse_python_int(v.as_string(), base, &i)) return Value::integer(i);
    // "42.23"|int is 42: jinja2 retries through float().
    have_double = parse_python_float(v.as_string(), &d);
  }
  if (!have_double) return fallback;
  if (std::isnan(d)) return invalid_argument("cannot convert float NaN to integer");
  if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return invalid_argument("cannot convert float to integer");
  return Value::integer(static_cast<int64_t>(d));
}

StatusOr<Value> f_format(Runtime& rt, const Value& v, CallArgs& args) {
  LS_ASSIGN_OR_RETURN(std::string fmt, soft_str(rt, v));
  Value format_args;
  if (!args.keywords.empty()) {
    if (!args.positional.empty()) {
      return invalid_argument("can't handle positional and keyword arguments at the same time");
    }
    auto d = std::make_shared<DictData>();
    for (const auto& [k, val] : args.keywords) d->set(Value::string(k), val);
    format_args = Value::dict(std::move(d));
  } else {
    format_args = Value::list(args.positional, ListKind::kTuple);
  }
  LS_ASSIGN_OR_RETURN(std::string out, percent_format(rt, fmt, format_args));
  return Value::string(std::move(out));
}

StatusOr<Value> f_indent(Runtime& rt, const Value& v, CallArgs& args) {
  ArgBinder b("indent", args, {"width", "first", "blank"});
  LS_RETURN_IF_ERROR(b.status());
  std::string indention = "    ";
  if (b.has(0)) {
    const Value& w = b.get(0);
    if (w.is_string()) {
      indention = w.as_string();
    } else {
      LS_ASSIGN_OR_RETURN(int64_t n, int_arg(w, "indent"));
      if (n > static_cast<int64_t>(rt.max_bytes())) return resource_exhausted("indent width too large");
      indention = std::string(static_cast<size_t>(std::max<int64_t>(n, 0)), ' ');
    }
  }
  // jinja2 appends "\n" to the value itself, so only strings work.
  if (v.is_undefined()) return invalid_argument(v.undefined_message());
  if (!v.is_string()) return invalid_argument("unsupported operand type(s) for +=: '" + v.type_name() + "' and 'str'");
  std::string s = v.as_string();
  s += "\n";  // jinja2's quirk so splitlines keeps a trailing empty line
  const std::vector<std::string> lines = py_splitlines(s, false);
  const long double estimate = static_cast<long double>(s.size()) +
                               static_cast<long double>(lines.size() + 1) * (indention.size() + 1);
  if (estimate > rt.max_bytes()) return resource_exhausted("string too long in indent");
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(estimate)));
  std::string out;
  if (b.get(2).truthy()) {
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i > 0) out += "\n" + indention;
      out += lines[i];
    }
  } else {
    out = lines.empty() ? "" : lines[0];
    for (size_t i = 1; i < lines.size(); ++i) {
      out += "\n";
      if (!lines[i].empty()) out += indention;
      out += lines[i];
    }
  }
  if (b.get(1).truthy()) out = indention + out;
  return Value::string(std::move(out));
}

StatusOr<Value> f_items(Runtime& rt, const Value& v, CallArgs& args) {
  LS_RETURN_IF_ERROR(ArgBinder("items", args, {}).status());
  if (v.is_undefined()) return list_of(std::vector<Value>(), ListKind::kGenerator);
  // do_items is a generator: the TypeError waits for iteration.
  if (!v.is_dict()) return failing_generator("Can only get item pairs from a mapping.");
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(v.as_dict().size())));
  std::vector<Value> items;
  for (const auto& [k, val] : v.as_dict().entries) items.push_back(Value::list({k, val}, ListKind::kTuple));
  return list_of(std::move(items), ListKind::kGenerator);
}

StatusOr<Value> f_join(Runtime& rt, const Value& v, CallArgs& args) {
  ArgBinder b("join", args, {"d", "attribute"});
  LS_RETURN_IF_ERROR(b.status());
  std::string sep;
  if (b.has(0)) {
    LS_ASSIGN_OR_RETURN(sep, soft_str(rt, b.get(0)));
  }
  LS_ASSIGN_OR_RETURN(auto items, iterate_charged(rt, v));
  std::string out;
  for (size_t i = 0; i < items->items.size(); ++i) {
    Value item = items->items[i];
    if (b.has(1) && !b.get(1).is_none()) {
      LS_ASSIGN_OR_RETURN(item, get_attribute_path(rt, item, b.get(1)));
    }
    if (i > 0) out += sep;
    LS_RETURN_IF_ERROR(append_str(item, rt.max_bytes(), &out));
    if (out.size() > rt.max_bytes()) return resource_exhausted("string too long in join");
  }
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(items->items.size() + out.size() / 16)));
  return Value::string(std::move(out));
}

StatusOr<Value> f_list(Runtime& rt, const Value& v, CallArgs& args) {
  LS_RETURN_IF_ERROR(ArgBinder("list", args, {}).status());
  LS_ASSIGN_OR_RETURN(auto items, iterate_charged(rt, v));
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(items->items.size())));
  return list_of(items->items);
}

StatusOr<Value> f_map(Runtime& rt, const Value& v, CallArgs& args) {
  // jinja2's do_map starts with `if value:`: a falsy value maps to nothing.
  if (!v.truthy()) return list_of(std::vector<Value>(), ListKind::kGenerator);
  Value lazy;
  LS_ASSIGN_OR_RETURN(auto items, generator_input(rt, v, &lazy));
  if (items == nullptr) return lazy;
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(items->items.size())));
  std::vector<Value> out;
  out.reserve(items->items.size());
  if (args.positional.empty()) {
    // map(attribute='x', default=...)
    const Value* attribute = nullptr;
    const Value* fallback = nullptr;
    for (const auto& [k, val] : args.keywords) {
      if (k == "attribute") attribute = &val;
      else if (k == "default") fallback = &val;
      else return invalid_argument("Unexpected keyword argument '" + k + "'");
    }
    if (attribute == nullptr) return invalid_argument("map requires a filter argument");
    for (const Value& item : items->items) {
      LS_ASSIGN_OR_RETURN(Value x, get_attribute_path(rt, item, *attribute));
      if (x.is_undefined() && fallback != nullptr) x = *fallback;
      out.push_back(std::move(x));
    }
    return list_of(std::move(out), ListKind::kGenerator);
  }
  if (!args.positional[0].is_string()) return invalid_argument("map: filter name must be a string");
  const std::string name = args.positional[0].as_string();
  CallArgs rest;
  rest.positional.assign(args.positional.begin() + 1, args.positional.end());
  rest.keywords = args.keywords;
  for (const Value& item : items->items) {
    LS_ASSIGN_OR_RETURN(Value x, rt.apply_filter(name, item, rest));
    out.push_back(std::move(x));
  }
  return list_of(std::move(out), ListKind::kGenerator);
}

// select / reject / selectattr / rejectattr
template <bool kSelect, bool kAttr>
StatusOr<Value> f_select(Runtime& rt, const Value& v, CallArgs& args) {
  if (!v.truthy()) return list_of(std::vector<Value>(), ListKind::kGenerator);  // `if value:`
  Value lazy;
  LS_ASSIGN_OR_RETURN(auto items, generator_input(rt, v, &lazy));
  if (items == nullptr) return lazy;
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(items->items.size())));
  size_t next = 0;
  Value attribute;
  if (kAttr) {
    if (args.positional.empty()) return invalid_argument("Missing parameter for attribute name");
    attribute = args.positional[next++];
  }
  std::string test;
  if (next < args.positional.size()) {
    if (!args.positional[next].is_string()) return invalid_argument("test name must be a string");
    test = args.positional[next++].as_string();
  }
  CallArgs test_args;
  test_args.positional.assign(args.positional.begin() + static_cast<long>(next), args.positional.end());
  test_args.keywords = args.keywords;
  std::vector<Value> out;
  for (const Value& item : items->items) {
    Value subject = item;
    if (kAttr) {
      LS_ASSIGN_OR_RETURN(subject, get_attribute_path(rt, item, attribute));
    }
    bool pass;
    if (test.empty()) {
      pass = subject.truthy();
    } else {
      LS_ASSIGN_OR_RETURN(pass, rt.apply_test(test, subject, test_args));
    }
    if (pass == kSelect) out.push_back(item);
  }
  return list_of(std::move(out), ListKind::kGenerator);
}

template <bool kMax>
StatusOr<Value> f_min_max(Runtime& rt, const Value& v, CallArgs& args) {
  ArgBinder b(kMax ? "max" : "min", args, {"case_sensitive", "attribute"});
  LS_RETURN_IF_ERROR(b.status());
  LS_ASSIGN_OR_RETURN(auto items, iterate_charged(rt, v));
  if (items->items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  LS_ASSIGN_OR_RETURN(auto keys, sort_keys(rt, items->items, b.get(1), b.get(0).truthy()));
  size_t best = 0;
  int64_t cost = 0;
  for (size_t i = 1; i < keys.size(); ++i) {
    // Python's max/min keep the first of equal items.
    LS_ASSIGN_OR_RETURN(bool better, kMax ? value_less(keys[best], keys[i], &cost)
                                          : value_less(keys[i], keys[best], &cost));
    if (better) best = i;
  }
  LS_RETURN_IF_ERROR(rt.charge(cost));
  return items->items[best];
}

StatusOr<Value> f_replace(Runtime& rt, const Value& v, CallArgs& args) {
  ArgBinder b("replace", args, {"old", "new", "count"});
  LS_RETURN_IF_ERROR(b.status());
  LS_ASSIGN_OR_RETURN(std::string s, soft_str(rt, v));
  LS_ASSIGN_OR_RETURN(std::string old, soft_str(rt, b.get(0)));
  LS_ASSIGN_OR_RETURN(std::string repl, soft_str(rt, b.get(1)));
  CallArgs method_args;
  method_args.positional = {Value::string(old), Value::string(repl)};
  if (b.has(2) && !b.get(2).is_none()) method_args.positional.push_back(b.get(2));
  LS_ASSIGN_OR_RETURN(Value replace, get_attribute(rt, Value::string(std::move(s)), "replace"));
  return rt.call(replace, std::move(method_args));
}

StatusOr<Value> f_reverse(Runtime& rt, const Value& v, CallArgs& args) {
  LS_RETURN_IF_ERROR(ArgBinder("reverse", args, {}).status());
  if (v.is_string()) {
    LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(v.as_string().size())));
    std::u32string s = utf8_decode(v.as_string());
    std::reverse(s.begin(), s.end());
    return Value::string(utf8_encode(s));
  }
  LS_ASSIGN_OR_RETURN(auto items, iterate_charged(rt, v));
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(items->items.size())));
  std::vector<Value> out(items->items.rbegin(), items->items.rend());
  return list_of(std::move(out), ListKind::kGenerator);
}

StatusOr<Value> f_round(Runtime&, const Value& v, CallArgs& args) {
  ArgBinder b("round", args, {"precision", "method"});
  LS_RETURN_IF_ERROR(b.status());
  int64_t precision = 0;
  if (b.has(0)) {
    LS_ASSIGN_OR_RETURN(precision, int_arg(b.get(0), "round"));
  }
  std::string method = "common";
  if (b.has(1)) {
    if (!b.get(1).is_string()) return invalid_argument("method must be 'common', 'ceil' or 'floor'");
    method = b.get(1).as_string();
  }
  if (method != "common" && method != "ceil" && method != "floor") {
    return invalid_argument("method must be 'common', 'ceil' or 'floor'");
  }
  if (v.is_undefined()) return invalid_argument(v.undefined_message());
  if (!v.is_number()) return invalid_argument("type " + v.type_name() + " doesn't define __round__ method");
  if (method == "common") {
    // round(int, n) stays an int in Python.
    if (v.is_integral()) {
      if (precision >= 0) return Value::integer(v.as_int());
      const double r = py_round(static_cast<double>(v.as_int()), precision);
      return Value::integer(static_cast<int64_t>(r));
    }
    return Value::floating(py_round(v.as_double(), precision));
  }
  const double scale = std::pow(10.0, static_cast<double>(precision));
  const double x = v.as_double() * scale;
  return Value::floating((method == "ceil" ? std::ceil(x) : std::floor(x)) / scale);
}

StatusOr<Value> f_string(Runtime& rt, const Value& v, CallArgs& args) {
  LS_RETURN_IF_ERROR(ArgBinder("string", args, {}).status());
  if (v.is_string()) return v;
  LS_ASSIGN_OR_RETURN(std::string s, soft_str(rt, v));
  return Value::string(std::move(s));
}

StatusOr<Value> f_sort(Runtime& rt, const Value& v, CallArgs& args) {
  ArgBinder b("sort", args, {"reverse", "case_sensitive", "attribute"});
  LS_RETURN_IF_ERROR(b.status());
  LS_ASSIGN_OR_RETURN(auto items, iterate_charged(rt, v));
  std::vector<Value> out = items->items;
  LS_ASSIGN_OR_RETURN(auto keys, sort_keys(rt, out, b.get(2), b.get(1).truthy()));
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(out.size()) * 16));
  LS_RETURN_IF_ERROR(stable_sort_by_keys(rt, &out, keys, b.get(0).truthy()));
  return list_of(std::move(out));
}

StatusOr<Value> f_sum(Runtime& rt, const Value& v, CallArgs& args) {
  ArgBinder b("sum", args, {"attribute", "start"});
  LS_RETURN_IF_ERROR(b.status());
  LS_ASSIGN_OR_RETURN(auto items, iterate_charged(rt, v));
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(items->items.size())));
  Value total = b.has(1) ? b.get(1) : Value::integer(0);
  for (const Value& item : items->items) {
    Value x = item;
    if (b.has(0) && !b.get(0).is_none()) {
      LS_ASSIGN_OR_RETURN(x, get_attribute_path(rt, item, b.get(0)));
    }
    if (!total.is_number() || !x.is_number()) {
      return invalid_argument("unsupported operand type(s) for +: '" + total.type_name() + "' and '" +
                              x.type_name() + "'");
    }
    if (total.is_integral() && x.is_integral()) {
      int64_t r;
      if (__builtin_add_overflow(total.as_int(), x.as_int(), &r)) return invalid_argument("integer overflow in sum");
      total = Value::integer(r);
    } else {
      total = Value::floating(total.as_double() + x.as_double());
    }
  }
  return total;
}

StatusOr<Value> f_tojson(Runtime& rt, const Value& v, CallArgs& args) {
  ArgBinder b("tojson", args, {"ensure_ascii", "indent", "separators", "sort_keys"});
  LS_RETURN_IF_ERROR(b.status());
  JsonOptions o;
  o.ensure_ascii = b.get(0).truthy();
  o.sort_keys = b.get(3).truthy();
  const Value& indent = b.get(1);
  if (b.has(1) && !indent.is_none()) {
    o.has_indent = true;
    o.item_separator = ",";
    if (indent.is_string()) {
      o.indent = indent.as_string();
    } else {
      LS_ASSIGN_OR_RETURN(int64_t n, int_arg(indent, "tojson indent"));
      if (n > 4096) return invalid_argument("tojson indent too large");
      o.indent = std::string(static_cast<size_t>(std::max<int64_t>(n, 0)), ' ');
    }
  }
  const Value& seps = b.get(2);
  if (b.has(2) && !seps.is_none()) {
    if (!seps.is_list() || seps.as_list().items.size() != 2 || !seps.as_list().items[0].is_string() ||
        !seps.as_list().items[1].is_string()) {
      return invalid_argument("tojson separators must be a pair of strings");
    }
    o.item_separator = seps.as_list().items[0].as_string();
    o.key_separator = seps.as_list().items[1].as_string();
  }
  LS_ASSIGN_OR_RETURN(std::string out, to_json(rt, v, o));
  return Value::string(std::move(out));
}

StatusOr<Value> f_trim(Runtime& rt, const Value& v, CallArgs& args) {
  ArgBinder b("trim", args, {"chars"});
  LS_RETURN_IF_ERROR(b.status());
  LS_ASSIGN_OR_RETURN(std::string s, soft_str(rt, v));
  const Value& chars = b.get(0);
  if (!chars.is_undefined() && !chars.is_none() && !chars.is_string()) {
    return invalid_argument("strip arg must be None or str");
  }
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(s.size() / 4)));
  return Value::string(py_strip(s, chars.is_string() ? &chars.as_string() : nullptr, true, true));
}

StatusOr<Value> f_unique(Runtime& rt, const Value& v, CallArgs& args) {
  ArgBinder b("unique", args, {"case_sensitive", "attribute"});
  LS_RETURN_IF_ERROR(b.status());
  Value lazy;
  LS_ASSIGN_OR_RETURN(auto items, generator_input(rt, v, &lazy));
  if (items == nullptr) return lazy;
  LS_ASSIGN_OR_RETURN(auto keys, sort_keys(rt, items->items, b.get(1), b.get(0).truthy()));
  std::vector<Value> out;
  std::vector<Value> seen;
  DictData seen_index;  // hashable keys, Python semantics
  for (size_t i = 0; i < keys.size(); ++i) {
    const Value& key = keys[i];
    if (key.is_list() || key.is_dict() || key.is_object()) {
      return invalid_argument("unhashable type: '" + key.type_name() + "'");
    }
    if (seen_index.find(key) != nullptr) continue;
    seen_index.set(key, Value::none());
    out.push_back(items->items[i]);
  }
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(keys.size())));
  return list_of(std::move(out), ListKind::kGenerator);
}

StatusOr<Value> f_wordcount(Runtime& rt, const Value& v, CallArgs& args) {
  LS_RETURN_IF_ERROR(ArgBinder("wordcount", args, {}).status());
  LS_ASSIGN_OR_RETURN(std::string s, soft_str(rt, v));
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(s.size())));
  // len(re.findall(r"\w+", s))
  int64_t n = 0;
  bool in_word = false;
  size_t pos = 0;
  while (pos < s.size()) {
    const char32_t c = utf8_next(s, &pos);
    const bool word = c == '_' || py_isalpha(c) || py_isdigit(c);
    if (word && !in_word) ++n;
    in_word = word;
  }
  return Value::integer(n);
}

struct FilterEntry {
  const char* name;
  FilterFn fn;
};

const FilterEntry kFilters[] = {
    {"abs", f_abs},
    {"attr", f_attr},
    {"capitalize", f_text<py_capitalize>},
    {"center", f_center},
    {"count", f_length},
    {"d", f_default},
    {"default", f_default},
    {"dictsort", f_dictsort},
    {"e", f_escape},
    {"escape", f_escape},
    {"first", f_first},
    {"float", f_float},
    {"format", f_format},
    {"indent", f_indent},
    {"int", f_int},
    {"items", f_items},
    {"join", f_join},
    {"last", f_last},
    {"length", f_length},
    {"list", f_list},
    {"lower", f_text<py_lower>},
    {"map", f_map},
    {"max", f_min_max<true>},
    {"min", f_min_max<false>},
    {"reject", f_select<false, false>},
    {"rejectattr", f_select<false, true>},
    {"replace", f_replace},
    {"reverse", f_reverse},
    {"round", f_round},
    {"safe", f_string},
    {"select", f_select<true, false>},
    {"selectattr", f_select<true, true>},
    {"sort", f_sort},
    {"string", f_string},
    {"sum", f_sum},
    {"title", f_text<jinja_title>},
    {"tojson", f_tojson},
    {"trim", f_trim},
    {"unique", f_unique},
    {"upper", f_text<py_upper>},
    {"wordcount", f_wordcount},
};

}  // namespace

FilterFn find_filter(std::string_view name) {
  for (const auto& f : kFilters) {
    if (name == f.name) return f.fn;
  }
  return nullptr;
}

}  // namespace jinja
}  // namespace loraserve
