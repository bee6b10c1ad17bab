// obj.attr, obj[key] and obj[a:b:c] as jinja2's ImmutableSandboxedEnvironment
// resolves them, and the Python methods templates call on str, dict, list
// and loop objects (message.content.strip(), tool.get('x'), loop.cycle()).
#include <algorithm>

#include "chat_template/jinja_builtins.h"
#include "chat_template/jinja_text.h"

namespace loraserve {
namespace jinja {
namespace {

// jinja2's object_type_repr, used in Undefined messages.
std::string object_type_repr(const Value& obj) {
  if (obj.is_none()) return "None";
  return obj.type_name() + " object";
}

Value missing_attribute(const Value& obj, const std::string& name) {
  return Value::undefined("'" + object_type_repr(obj) + "' has no attribute " + py_repr_string(name));
}

Value missing_element(Runtime& rt, const Value& obj, const Value& key) {
  std::string key_repr;
  if (!append_repr(key, rt.max_bytes(), &key_repr).ok()) key_repr = "...";
  return Value::undefined(object_type_repr(obj) + " has no element " + key_repr);
}

Value unsafe_attribute(const Value& obj, const std::string& name) {
  return Value::undefined("access to attribute '" + name + "' of '" + obj.type_name() +
                          "' object is unsafe.");
}

using MethodFn = StatusOr<Value> (*)(Runtime&, const Value& self, CallArgs& args);

Value bind_method(const Value& self, const std::string& name, MethodFn fn) {
  auto c = std::make_shared<Callable>();
  c->name = name;
  c->fn = [self, fn](Runtime& rt, CallArgs& args) { return fn(rt, self, args); };
  return Value::callable(std::move(c));
}

Status no_args(const char* name, CallArgs& args) {
  ArgBinder b(name, args, {});
  return b.status();
}

StatusOr<const std::string*> optional_str(const Value& v, const char* what) {
  if (v.is_undefined() || v.is_none()) return static_cast<const std::string*>(nullptr);
  if (!v.is_string()) return invalid_argument(std::string(what) + " arg must be None or str");
  return &v.as_string();
}

StatusOr<const std::string*> required_str(const Value& v, const char* what) {
  if (!v.is_string()) {
    return invalid_argument(std::string(what) + "() argument must be str, not " + v.type_name());
  }
  return &v.as_string();
}

Value string_list(std::vector<std::string> parts, ListKind kind = ListKind::kList) {
  std::vector<Value> items;
  items.reserve(parts.size());
  for (auto& p : parts) items.push_back(Value::string(std::move(p)));
  return Value::list(std::move(items), kind);
}

// --- str methods ----------------------------------------------------------------

template <bool kLeft, bool kRight>
StatusOr<Value> str_strip(Runtime& rt, const Value& self, CallArgs& args) {
  ArgBinder b("strip", args, {"chars"});
  LS_RETURN_IF_ERROR(b.status());
  LS_ASSIGN_OR_RETURN(const std::string* chars, optional_str(b.get(0), "strip"));
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(self.as_string().size() / 32 + (chars ? chars->size() : 0))));
  return Value::string(py_strip(self.as_string(), chars, kLeft, kRight));
}

// startswith/endswith(prefix or tuple of prefixes)
template <bool kStart>
StatusOr<Value> str_affix(Runtime& rt, const Value& self, CallArgs& args) {
  ArgBinder b(kStart ? "startswith" : "endswith", args, {"prefix", "start", "end"});
  LS_RETURN_IF_ERROR(b.status());
  std::string bounded;
  const std::string* subject = &self.as_string();
  if (b.has(1) || b.has(2)) {
    LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(self.as_string().size() / 8)));
    std::u32string text = utf8_decode(self.as_string());
    int64_t n = static_cast<int64_t>(text.size());
    int64_t start = 0;
    int64_t end = n;
    if (b.has(1) && !b.get(1).is_none()) {
      LS_ASSIGN_OR_RETURN(start, int_arg(b.get(1), "slice indices"));
    }
    if (b.has(2) && !b.get(2).is_none()) {
      LS_ASSIGN_OR_RETURN(end, int_arg(b.get(2), "slice indices"));
    }
    if (start < 0) start = std::max<int64_t>(0, start + n);
    if (end < 0) end = std::max<int64_t>(0, end + n);
    end = std::min(end, n);
    if (start > n) return Value::boolean(false);
    text = start < end ? text.substr(static_cast<size_t>(start), static_cast<size_t>(end - start))
                       : std::u32string();
    bounded = utf8_encode(text);
    subject = &bounded;
  }
  const std::string& s = *subject;
  std::vector<const Value*> candidates;
  const Value& prefix = b.get(0);
  if (prefix.is_list() && prefix.as_list().kind == ListKind::kTuple) {
    for (const Value& p : prefix.as_list().items) candidates.push_back(&p);
  } else {
    candidates.push_back(&prefix);
  }
  for (const Value* p : candidates) {
    if (!p->is_string()) {
      return invalid_argument(std::string(kStart ? "startswith" : "endswith") +
                              " first arg must be str or a tuple of str, not " + p->type_name());
    }
    const std::string& a = p->as_string();
    if (a.size() > s.size()) continue;
    if (kStart ? s.compare(0, a.size(), a) == 0 : s.compare(s.size() - a.size(), a.size(), a) == 0) {
      return Value::boolean(true);
    }
  }
  return Value::boolean(false);
}

template <bool kReverse>
StatusOr<Value> str_split(Runtime& rt, const Value& self, CallArgs& args) {
  ArgBinder b("split", args, {"sep", "maxsplit"});
  LS_RETURN_IF_ERROR(b.status());
  LS_ASSIGN_OR_RETURN(const std::string* sep, optional_str(b.get(0), "split"));
  if (sep != nullptr && sep->empty()) return invalid_argument("empty separator");
  int64_t maxsplit = -1;
  if (b.has(1)) {
    LS_ASSIGN_OR_RETURN(maxsplit, int_arg(b.get(1), "split"));
  }
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(self.as_string().size() / (sep ? 8 : 2))));
  std::vector<std::string> parts = kReverse ? py_rsplit(self.as_string(), sep, maxsplit)
                                            : py_split(self.as_string(), sep, maxsplit);
  LS_RETURN_IF_ERROR(rt.charge(4 * static_cast<int64_t>(parts.size())));
  return string_list(std::move(parts));
}

StatusOr<Value> str_splitlines(Runtime& rt, const Value& self, CallArgs& args) {
  ArgBinder b("splitlines", args, {"keepends"});
  LS_RETURN_IF_ERROR(b.status());
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(self.as_string().size())));
  return string_list(py_splitlines(self.as_string(), b.get(0).truthy()));
}

template <std::string (*kFn)(std::string_view)>
StatusOr<Value> str_case(Runtime& rt, const Value& self, CallArgs& args) {
  LS_RETURN_IF_ERROR(no_args("str method", args));
  LS_RETURN_IF_ERROR(rt.charge(text_cost(self.as_string())));
  return Value::string(kFn(self.as_string()));
}

StatusOr<Value> str_replace(Runtime& rt, const Value& self, CallArgs& args) {
  ArgBinder b("replace", args, {"old", "new", "count"});
  LS_RETURN_IF_ERROR(b.status());
  LS_ASSIGN_OR_RETURN(const std::string* old, required_str(b.get(0), "replace"));
  LS_ASSIGN_OR_RETURN(const std::string* repl, required_str(b.get(1), "replace"));
  int64_t count = -1;
  if (b.has(2)) {
    LS_ASSIGN_OR_RETURN(count, int_arg(b.get(2), "replace"));
  }
  // Bound the result before building it: occurrences * growth.
  const size_t n = self.as_string().size();
  const int64_t hits = old->empty() ? static_cast<int64_t>(utf8_length(self.as_string())) + 1
                                    : py_count(self.as_string(), *old);
  const int64_t used = count < 0 ? hits : std::min(hits, count);
  const long double size = static_cast<long double>(n) +
                           static_cast<long double>(used) * (static_cast<long double>(repl->size()) - old->size());
  if (size > rt.max_bytes()) return resource_exhausted("string too long in replace()");
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(size / 8 + n / 8) + 2 * used));
  return Value::string(py_replace(self.as_string(), *old, *repl, count));
}

StatusOr<Value> str_format(Runtime& rt, const Value& self, CallArgs& args) {
  LS_ASSIGN_OR_RETURN(std::string out, brace_format(rt, self.as_string(), args));
  return Value::string(std::move(out));
}

StatusOr<Value> str_count(Runtime& rt, const Value& self, CallArgs& args) {
  ArgBinder b("count", args, {"sub"});
  LS_RETURN_IF_ERROR(b.status());
  LS_ASSIGN_OR_RETURN(const std::string* sub, required_str(b.get(0), "count"));
  const int64_t hits = py_count(self.as_string(), *sub);
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(self.as_string().size() / 16) + hits));
  return Value::integer(hits);
}

template <bool kReverse, bool kRaise>
StatusOr<Value> str_find(Runtime& rt, const Value& self, CallArgs& args) {
  ArgBinder b("find", args, {"sub"});
  LS_RETURN_IF_ERROR(b.status());
  LS_ASSIGN_OR_RETURN(const std::string* sub, required_str(b.get(0), "find"));
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(self.as_string().size() / 16)));
  const int64_t at = py_find(self.as_string(), *sub, kReverse);
  if (kRaise && at < 0) return invalid_argument("substring not found");
  return Value::integer(at);
}

StatusOr<Value> str_join(Runtime& rt, const Value& self, CallArgs& args) {
  ArgBinder b("join", args, {"iterable"});
  LS_RETURN_IF_ERROR(b.status());
  LS_ASSIGN_OR_RETURN(auto items, iterate_charged(rt, b.get(0)));
  std::string out;
  for (size_t i = 0; i < items->items.size(); ++i) {
    const Value& item = items->items[i];
    if (!item.is_string()) {
      return invalid_argument("sequence item " + std::to_string(i) + ": expected str instance, " +
                              item.type_name() + " found");
    }
    if (i > 0) out += self.as_string();
    out += item.as_string();
    if (out.size() > rt.max_bytes()) return resource_exhausted("string too long in join()");
  }
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(out.size() / 16 + items->items.size())));
  return Value::string(std::move(out));
}

template <bool (*kPred)(char32_t)>
StatusOr<Value> str_is(Runtime& rt, const Value& self, CallArgs& args) {
  LS_RETURN_IF_ERROR(no_args("str method", args));
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(self.as_string().size())));
  const std::u32string s = utf8_decode(self.as_string());
  if (s.empty()) return Value::boolean(false);
  for (char32_t c : s) {
    if (!kPred(c)) return Value::boolean(false);
  }
  return Value::boolean(true);
}

bool is_alnum(char32_t c) { return py_isalpha(c) || py_isdigit(c); }

// islower/isupper: at least one cased character and none of the other case.
template <bool kLower>
StatusOr<Value> str_is_case(Runtime& rt, const Value& self, CallArgs& args) {
  LS_RETURN_IF_ERROR(no_args("str method", args));
  LS_RETURN_IF_ERROR(rt.charge(2 * text_cost(self.as_string())));
  const std::string& s = self.as_string();
  const std::string other = kLower ? py_upper(s) : py_lower(s);
  const std::string same = kLower ? py_lower(s) : py_upper(s);
  return Value::boolean(same == s && other != s);
}

// center / ljust / rjust
template <int kAlign>
StatusOr<Value> str_pad(Runtime& rt, const Value& self, CallArgs& args) {
  ArgBinder b("ljust", args, {"width", "fillchar"});
  LS_RETURN_IF_ERROR(b.status());
  LS_ASSIGN_OR_RETURN(int64_t width, int_arg(b.get(0), "width"));
  std::string fill = " ";
  if (b.has(1)) {
    if (!b.get(1).is_string() || utf8_length(b.get(1).as_string()) != 1) {
      return invalid_argument("The fill character must be exactly one character long");
    }
    fill = b.get(1).as_string();
  }
  const std::string& s = self.as_string();
  const int64_t len = static_cast<int64_t>(utf8_length(s));
  if (width <= len) return self;
  if (static_cast<uint64_t>(width) * fill.size() > rt.max_bytes()) {
    return resource_exhausted("string too long in padding");
  }
  LS_RETURN_IF_ERROR(rt.charge(width / 2));
  const int64_t total = width - len;
  int64_t left = 0;
  if (kAlign == 0) {
    // CPython's center puts the odd extra space on the left when the
    // width is odd and the padding is odd.
    left = total / 2 + (total & width & 1);
  } else if (kAlign > 0) {
    left = total;
  }
  std::string out;
  out.reserve(s.size() + static_cast<size_t>(total) * fill.size());
  for (int64_t i = 0; i < left; ++i) out.append(fill);
  out.append(s);
  for (int64_t i = 0; i < total - left; ++i) out.append(fill);
  return Value::string(std::move(out));
}

StatusOr<Value> str_zfill(Runtime& rt, const Value& self, CallArgs& args) {
  ArgBinder b("zfill", args, {"width"});
  LS_RETURN_IF_ERROR(b.status());
  LS_ASSIGN_OR_RETURN(int64_t width, int_arg(b.get(0), "width"));
  const std::string& s = self.as_string();
  const int64_t len = static_cast<int64_t>(utf8_length(s));
  if (width <= len) return self;
  if (static_cast<uint64_t>(width) > rt.max_bytes()) return resource_exhausted("string too long in zfill()");
  LS_RETURN_IF_ERROR(rt.charge(width / 2));
  const size_t sign = (!s.empty() && (s[0] == '+' || s[0] == '-')) ? 1 : 0;
  return Value::string(s.substr(0, sign) + std::string(static_cast<size_t>(width - len), '0') + s.substr(sign));
}

template <bool kReverse>
StatusOr<Value> str_partition(Runtime& rt, const Value& self, CallArgs& args) {
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(self.as_string().size() / 4)));
  ArgBinder b("partition", args, {"sep"});
  LS_RETURN_IF_ERROR(b.status());
  LS_ASSIGN_OR_RETURN(const std::string* sep, required_str(b.get(0), "partition"));
  if (sep->empty()) return invalid_argument("empty separator");
  const std::string& s = self.as_string();
  const size_t at = kReverse ? s.rfind(*sep) : s.find(*sep);
  if (at == std::string::npos) {
    return kReverse ? string_list({"", "", s}, ListKind::kTuple) : string_list({s, "", ""}, ListKind::kTuple);
  }
  return string_list({s.substr(0, at), *sep, s.substr(at + sep->size())}, ListKind::kTuple);
}

template <bool kPrefix>
StatusOr<Value> str_remove_affix(Runtime& rt, const Value& self, CallArgs& args) {
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(self.as_string().size() / 16)));
  ArgBinder b("removeprefix", args, {"affix"});
  LS_RETURN_IF_ERROR(b.status());
  LS_ASSIGN_OR_RETURN(const std::string* a, required_str(b.get(0), "removeprefix"));
  const std::string& s = self.as_string();
  if (a->size() > s.size()) return self;
  if (kPrefix && s.compare(0, a->size(), *a) == 0) return Value::string(s.substr(a->size()));
  if (!kPrefix && s.compare(s.size() - a->size(), a->size(), *a) == 0) {
    return Value::string(s.substr(0, s.size() - a->size()));
  }
  return self;
}

struct MethodEntry {
  const char* name;
  MethodFn fn;
};

const MethodEntry kStrMethods[] = {
    {"strip", str_strip<true, true>},
    {"lstrip", str_strip<true, false>},
    {"rstrip", str_strip<false, true>},
    {"startswith", str_affix<true>},
    {"endswith", str_affix<false>},
    {"split", str_split<false>},
    {"rsplit", str_split<true>},
    {"splitlines", str_splitlines},
    {"lower", str_case<py_lower>},
    {"casefold", str_case<py_lower>},
    {"upper", str_case<py_upper>},
    {"title", str_case<py_title>},
    {"capitalize", str_case<py_capitalize>},
    {"replace", str_replace},
    {"format", str_format},
    {"count", str_count},
    {"find", str_find<false, false>},
    {"rfind", str_find<true, false>},
    {"index", str_find<false, true>},
    {"rindex", str_find<true, true>},
    {"join", str_join},
    {"isdigit", str_is<py_isdigit>},
    {"isdecimal", str_is<py_isdigit>},
    {"isnumeric", str_is<py_isdigit>},
    {"isalpha", str_is<py_isalpha>},
    {"isalnum", str_is<is_alnum>},
    {"isspace", str_is<py_isspace>},
    {"islower", str_is_case<true>},
    {"isupper", str_is_case<false>},
    {"center", str_pad<0>},
    {"ljust", str_pad<-1>},
    {"rjust", str_pad<1>},
    {"zfill", str_zfill},
    {"partition", str_partition<false>},
    {"rpartition", str_partition<true>},
    {"removeprefix", str_remove_affix<true>},
    {"removesuffix", str_remove_affix<false>},
};

// --- dict methods -------------------------------------------------------------------

StatusOr<Value> dict_get(Runtime&, const Value& self, CallArgs& args) {
  ArgBinder b("get", args, {"key", "default"});
  LS_RETURN_IF_ERROR(b.status());
  if (!b.has(0)) return invalid_argument("get expected at least 1 argument, got 0");
  const Value* v = self.as_dict().find(b.get(0));
  if (v != nullptr) return *v;
  return b.has(1) ? b.get(1) : Value::none();
}

template <ListKind kKind>
StatusOr<Value> dict_view(Runtime& rt, const Value& self, CallArgs& args) {
  LS_RETURN_IF_ERROR(no_args("dict view", args));
  const DictData& d = self.as_dict();
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(d.size())));
  std::vector<Value> items;
  items.reserve(d.size());
  for (const auto& [k, v] : d.entries) {
    if (kKind == ListKind::kDictKeys) {
      items.push_back(k);
    } else if (kKind == ListKind::kDictValues) {
      items.push_back(v);
    } else {
      items.push_back(Value::list({k, v}, ListKind::kTuple));
    }
  }
  return Value::list(std::move(items), kKind);
}

StatusOr<Value> same_object(Runtime&, const Value& self, CallArgs& args) {
  LS_RETURN_IF_ERROR(no_args("copy", args));
  return self;
}

const MethodEntry kDictMethods[] = {
    {"get", dict_get},
    {"items", dict_view<ListKind::kDictItems>},
    {"keys", dict_view<ListKind::kDictKeys>},
    {"values", dict_view<ListKind::kDictValues>},
    {"copy", same_object},
};
const char* const kUnsafeDictMethods[] = {"clear", "pop", "popitem", "setdefault", "update"};

// --- list methods -------------------------------------------------------------------

StatusOr<Value> list_index(Runtime& rt, const Value& self, CallArgs& args) {
  ArgBinder b("index", args, {"value"});
  LS_RETURN_IF_ERROR(b.status());
  const auto& items = self.as_list().items;
  int64_t cost = static_cast<int64_t>(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    if (values_equal(items[i], b.get(0), &cost)) {
      LS_RETURN_IF_ERROR(rt.charge(cost));
      return Value::integer(static_cast<int64_t>(i));
    }
  }
  LS_RETURN_IF_ERROR(rt.charge(cost));
  return invalid_argument("value is not in list");
}

StatusOr<Value> list_count(Runtime& rt, const Value& self, CallArgs& args) {
  ArgBinder b("count", args, {"value"});
  LS_RETURN_IF_ERROR(b.status());
  const auto& items = self.as_list().items;
  int64_t cost = static_cast<int64_t>(items.size());
  int64_t n = 0;
  for (const Value& item : items) n += values_equal(item, b.get(0), &cost);
  LS_RETURN_IF_ERROR(rt.charge(cost));
  return Value::integer(n);
}

const MethodEntry kListMethods[] = {
    {"index", list_index},
    {"count", list_count},
    {"copy", same_object},
};
const char* const kUnsafeListMethods[] = {"append", "clear", "extend", "insert",
                                          "pop",    "remove", "reverse", "sort"};

template <size_t N>
MethodFn find_method(const MethodEntry (&table)[N], const std::string& name) {
  for (const auto& m : table) {
    if (name == m.name) return m.fn;
  }
  return nullptr;
}

template <size_t N>
bool contains(const char* const (&table)[N], const std::string& name) {
  for (const char* n : table) {
    if (name == n) return true;
  }
  return false;
}

// --- loop object ----------------------------------------------------------------------

StatusOr<Value> loop_attribute(const Value& obj, const std::string& name) {
  const LoopState& s = obj.as_object().loop;
  if (name == "index") return Value::integer(s.index0 + 1);
  if (name == "index0") return Value::integer(s.index0);
  if (name == "revindex") return Value::integer(s.length - s.index0);
  if (name == "revindex0") return Value::integer(s.length - s.index0 - 1);
  if (name == "first") return Value::boolean(s.index0 == 0);
  if (name == "last") return Value::boolean(s.index0 == s.length - 1);
  if (name == "length") return Value::integer(s.length);
  if (name == "depth") return Value::integer(1);
  if (name == "depth0") return Value::integer(0);
  if (name == "previtem") {
    if (s.index0 > 0) return s.items->items[static_cast<size_t>(s.index0 - 1)];
    return Value::undefined("there is no previous item");
  }
  if (name == "nextitem") {
    if (s.index0 + 1 < s.length) return s.items->items[static_cast<size_t>(s.index0 + 1)];
    return Value::undefined("there is no next item");
  }
  if (name == "cycle") {
    const int64_t index0 = s.index0;
    auto c = std::make_shared<Callable>();
    c->name = "cycle";
    c->fn = [index0](Runtime&, CallArgs& args) -> StatusOr<Value> {
      if (args.positional.empty()) return invalid_argument("no items for cycling given");
      return args.positional[static_cast<size_t>(index0) % args.positional.size()];
    };
    return Value::callable(std::move(c));
  }
  return missing_attribute(obj, name);
}

}  // namespace

StatusOr<Value> get_attribute(Runtime& rt, const Value& obj, const std::string& name, bool item_fallback) {
  if (obj.is_undefined()) return invalid_argument(obj.undefined_message());
  if (!name.empty() && name[0] == '_') return unsafe_attribute(obj, name);
  switch (obj.type()) {
    case Value::Type::kString:
      if (MethodFn fn = find_method(kStrMethods, name)) return bind_method(obj, name, fn);
      break;
    case Value::Type::kDict: {
      if (MethodFn fn = find_method(kDictMethods, name)) return bind_method(obj, name, fn);
      if (contains(kUnsafeDictMethods, name)) return unsafe_attribute(obj, name);
      if (!item_fallback) break;
      const Value* v = obj.as_dict().find(name);
      if (v != nullptr) return *v;
      break;
    }
    case Value::Type::kList: {
      const ListKind kind = obj.as_list().kind;
      if (kind == ListKind::kList || kind == ListKind::kTuple) {
        if (kind == ListKind::kList && contains(kUnsafeListMethods, name)) {
          return unsafe_attribute(obj, name);
        }
        MethodFn fn = find_method(kListMethods, name);
        if (fn != nullptr && !(kind == ListKind::kTuple && name == "copy")) {
          return bind_method(obj, name, fn);
        }
      }
      break;
    }
    case Value::Type::kObject:
      if (obj.as_object().kind == ObjectKind::kLoop) return loop_attribute(obj, name);
      if (const Value* v = obj.as_object().find_attr(name)) return *v;
      break;
    default:
      break;
  }
  (void)rt;
  return missing_attribute(obj, name);
}

StatusOr<Value> get_item(Runtime& rt, const Value& obj, const Value& key) {
  if (obj.is_undefined()) return invalid_argument(obj.undefined_message());
  switch (obj.type()) {
    case Value::Type::kString:
    case Value::Type::kList: {
      if (obj.is_list() && obj.as_list().kind != ListKind::kList &&
          obj.as_list().kind != ListKind::kTuple && obj.as_list().kind != ListKind::kRange) {
        break;  // iterators and dict views are not subscriptable
      }
      if (!key.is_integral()) break;
      int64_t i = key.as_int();
      if (obj.is_string()) {
        const std::string& s = obj.as_string();
        LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(s.size() / 16)));
        // ASCII strings index by byte; others by code point.
        const bool ascii = std::all_of(s.begin(), s.end(), [](char c) { return (c & 0x80) == 0; });
        if (ascii) {
          const int64_t n = static_cast<int64_t>(s.size());
          if (i < 0) i += n;
          if (i < 0 || i >= n) return missing_element(rt, obj, key);
          return Value::string(std::string(1, s[static_cast<size_t>(i)]));
        }
        const int64_t n = static_cast<int64_t>(utf8_length(s));
        if (i < 0) i += n;
        if (i < 0 || i >= n) return missing_element(rt, obj, key);
        size_t pos = 0;
        for (int64_t k = 0; k < i; ++k) utf8_next(s, &pos);
        size_t end = pos;
        utf8_next(s, &end);
        return Value::string(s.substr(pos, end - pos));
      }
      const auto& items = obj.as_list().items;
      const int64_t n = static_cast<int64_t>(items.size());
      if (i < 0) i += n;
      if (i < 0 || i >= n) return missing_element(rt, obj, key);
      return items[static_cast<size_t>(i)];
    }
    case Value::Type::kDict: {
      if (key.is_list() || key.is_dict()) break;  // unhashable
      if (key.is_string()) LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(key.as_string().size() / 64)));
      const Value* v = obj.as_dict().find(key);
      if (v != nullptr) return *v;
      break;
    }
    default:
      break;
  }
  // jinja2 falls back to getattr for string keys: d['items'] is the method
  // when there is no such key.
  if (key.is_string()) {
    LS_ASSIGN_OR_RETURN(Value attr, get_attribute(rt, obj, key.as_string()));
    if (!attr.is_undefined()) return attr;
    return missing_attribute(obj, key.as_string());
  }
  return missing_element(rt, obj, key);
}

StatusOr<Value> get_slice(Runtime& rt, const Value& obj, const Value& start_v, const Value& stop_v,
                          const Value& step_v) {
  // jinja2 compiles slices to a plain Python subscript (no getitem
  // fallback), so anything but a sequence is a TypeError here.
  if (obj.is_undefined()) return invalid_argument(obj.undefined_message());
  const ListKind kind = obj.is_list() ? obj.as_list().kind : ListKind::kList;
  const bool is_seq = obj.is_string() || (obj.is_list() && (kind == ListKind::kList || kind == ListKind::kTuple ||
                                                            kind == ListKind::kRange));
  if (!is_seq) {
    if (obj.is_dict()) return invalid_argument("unhashable type: 'slice'");
    return invalid_argument("'" + obj.type_name() + "' object is not subscriptable");
  }
  for (const Value* b : {&start_v, &stop_v, &step_v}) {
    if (b->is_undefined()) return invalid_argument(b->undefined_message());
    if (!b->is_none() && !b->is_integral()) {
      return invalid_argument("slice indices must be integers or None or have an __index__ method");
    }
  }
  const int64_t step = step_v.is_none() ? 1 : step_v.as_int();
  if (step == 0) return invalid_argument("slice step cannot be zero");
  std::u32string cps;
  int64_t n;
  if (obj.is_string()) {
    cps = utf8_decode(obj.as_string());
    n = static_cast<int64_t>(cps.size());
  } else {
    n = static_cast<int64_t>(obj.as_list().items.size());
  }
  LS_RETURN_IF_ERROR(rt.charge(n / 2 + 1));
  // slice.indices(n)
  const int64_t lower = step < 0 ? -1 : 0;
  const int64_t upper = step < 0 ? n - 1 : n;
  auto clamp = [&](const Value& v, int64_t dflt) {
    if (v.is_none()) return dflt;
    int64_t i = v.as_int();
    if (i < 0) {
      i += n;
      if (i < lower) i = lower;
    } else if (i > upper) {
      i = upper;
    }
    return i;
  };
  const int64_t start = clamp(start_v, step < 0 ? upper : lower);
  const int64_t stop = clamp(stop_v, step < 0 ? lower : upper);
  if (obj.is_string()) {
    std::string out;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      utf8_append(cps[static_cast<size_t>(i)], &out);
    }
    return Value::string(std::move(out));
  }
  const ListData& l = obj.as_list();
  if (kind == ListKind::kRange) {
    // A slice of a range is a range (CPython's compute_slice).
    const int64_t first = l.range_start + start * l.range_step;
    const int64_t last = l.range_start + stop * l.range_step;
    return Value::range(first, last, l.range_step * step);
  }
  std::vector<Value> out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    out.push_back(l.items[static_cast<size_t>(i)]);
  }
  return Value::list(std::move(out), kind);
}

}  // namespace jinja
}  // namespace loraserve
