#include "chat_template/jinja_value.h"

#include <algorithm>

#include "chat_template/jinja_text.h"

namespace loraserve {
namespace jinja {

// --- construction -------------------------------------------------------------

Value Value::undefined(std::string message) {
  Value v;
  v.ptr_ = std::make_shared<std::string>(std::move(message));
  return v;
}

Value Value::none() {
  Value v;
  v.type_ = Type::kNone;
  return v;
}

Value Value::boolean(bool b) {
  Value v;
  v.type_ = Type::kBool;
  v.b_ = b;
  return v;
}

Value Value::integer(int64_t i) {
  Value v;
  v.type_ = Type::kInt;
  v.i_ = i;
  return v;
}

Value Value::floating(double d) {
  Value v;
  v.type_ = Type::kFloat;
  v.f_ = d;
  return v;
}

Value Value::string(std::string s) {
  Value v;
  v.type_ = Type::kString;
  v.ptr_ = std::make_shared<std::string>(std::move(s));
  return v;
}

Value Value::list(std::vector<Value> items, ListKind kind) {
  auto data = std::make_shared<ListData>();
  int depth = 0;
  for (const Value& item : items) depth = std::max(depth, item.depth());
  data->items = std::move(items);
  data->kind = kind;
  data->depth = depth + 1;
  Value v;
  v.type_ = Type::kList;
  v.ptr_ = std::move(data);
  return v;
}

Value Value::list_from(std::shared_ptr<const ListData> data) {
  Value v;
  v.type_ = Type::kList;
  v.ptr_ = std::const_pointer_cast<ListData>(std::move(data));
  return v;
}

Value Value::range(int64_t start, int64_t stop, int64_t step) {
  auto data = std::make_shared<ListData>();
  data->kind = ListKind::kRange;
  data->range_start = start;
  data->range_stop = stop;
  data->range_step = step;
  for (int64_t v = start; step > 0 ? v < stop : v > stop; v += step) data->items.push_back(Value::integer(v));
  Value v;
  v.type_ = Type::kList;
  v.ptr_ = std::move(data);
  return v;
}

Value Value::dict(std::shared_ptr<const DictData> d) {
  Value v;
  v.type_ = Type::kDict;
  v.ptr_ = std::const_pointer_cast<DictData>(std::move(d));
  return v;
}

Value Value::object(std::shared_ptr<ObjectData> o) {
  Value v;
  v.type_ = Type::kObject;
  v.ptr_ = std::move(o);
  return v;
}

Value Value::callable(std::shared_ptr<const Callable> c) {
  Value v;
  v.type_ = Type::kCallable;
  v.ptr_ = std::const_pointer_cast<Callable>(std::move(c));
  return v;
}

bool Value::is_namespace() const {
  return type_ == Type::kObject && as_object().kind == ObjectKind::kNamespace;
}

bool Value::truthy() const {
  switch (type_) {
    case Type::kUndefined: case Type::kNone: return false;
    case Type::kBool: return b_;
    case Type::kInt: return i_ != 0;
    case Type::kFloat: return f_ != 0;
    case Type::kString: return !as_string().empty();
    case Type::kList:
      return as_list().kind == ListKind::kGenerator || !as_list().items.empty();
    case Type::kDict: return as_dict().size() != 0;
    case Type::kObject: case Type::kCallable: return true;
  }
  return false;
}

int Value::depth() const {
  switch (type_) {
    case Type::kList: return as_list().depth;
    case Type::kDict: return as_dict().depth;
    case Type::kObject: return 1;
    default: return 0;
  }
}

std::string Value::undefined_message() const {
  if (type_ == Type::kUndefined && ptr_ != nullptr) {
    return *std::static_pointer_cast<const std::string>(ptr_);
  }
  return "value is undefined";
}

std::string Value::type_name() const {
  switch (type_) {
    case Type::kUndefined: return "Undefined";
    case Type::kNone: return "NoneType";
    case Type::kBool: return "bool";
    case Type::kInt: return "int";
    case Type::kFloat: return "float";
    case Type::kString: return "str";
    case Type::kList:
      switch (as_list().kind) {
        case ListKind::kList: return "list";
        case ListKind::kTuple: return "tuple";
        case ListKind::kGenerator: return "generator";
        case ListKind::kDictKeys: return "dict_keys";
        case ListKind::kDictValues: return "dict_values";
        case ListKind::kDictItems: return "dict_items";
        case ListKind::kRange: return "range";
      }
      return "list";
    case Type::kDict: return "dict";
    case Type::kObject:
      return as_object().kind == ObjectKind::kNamespace ? "Namespace" : "LoopContext";
    case Type::kCallable: return "function";
  }
  return "object";
}

// --- containers ---------------------------------------------------------------

const Value* DictData::find(const std::string& key) const {
  auto it = string_index_.find(key);
  return it == string_index_.end() ? nullptr : &entries[it->second].second;
}

const Value* DictData::find(const Value& key) const {
  if (key.is_string()) return find(key.as_string());
  for (const auto& [k, v] : entries) {
    if (!k.is_string() && values_equal(k, key)) return &v;
  }
  return nullptr;
}

void DictData::set(Value key, Value value) {
  depth = std::max(depth, value.depth() + 1);
  if (key.is_string()) {
    auto it = string_index_.find(key.as_string());
    if (it != string_index_.end()) {
      entries[it->second].second = std::move(value);
      return;
    }
    string_index_.emplace(key.as_string(), entries.size());
    entries.emplace_back(std::move(key), std::move(value));
    return;
  }
  for (auto& [k, v] : entries) {
    if (!k.is_string() && values_equal(k, key)) {
      v = std::move(value);
      return;
    }
  }
  depth = std::max(depth, key.depth() + 1);
  entries.emplace_back(std::move(key), std::move(value));
}

const Value* ObjectData::find_attr(const std::string& name) const {
  for (const auto& [k, v] : attrs) {
    if (k == name) return &v;
  }
  return nullptr;
}

void ObjectData::set_attr(const std::string& name, Value value) {
  for (auto& [k, v] : attrs) {
    if (k == name) {
      v = std::move(value);
      return;
    }
  }
  attrs.emplace_back(name, std::move(value));
}

// --- comparison -----------------------------------------------------------------

namespace {

bool numbers_equal(const Value& a, const Value& b) {
  if (a.is_integral() && b.is_integral()) return a.as_int() == b.as_int();
  return a.as_double() == b.as_double();
}

void add_cost(int64_t* cost, int64_t units) {
  if (cost != nullptr) *cost += units;
}

bool lists_equal(const ListData& a, const ListData& b, int64_t* cost) {
  if (a.items.size() != b.items.size()) return false;
  for (size_t i = 0; i < a.items.size(); ++i) {
    add_cost(cost, 1);
    if (!values_equal(a.items[i], b.items[i], cost)) return false;
  }
  return true;
}

}  // namespace

bool values_equal(const Value& a, const Value& b, int64_t* cost) {
  if (a.is_number() && b.is_number()) return numbers_equal(a, b);
  if (a.type() != b.type()) return false;
  // Python compares container items by identity first; so do we, which
  // also keeps `x == x` cheap for big values.
  if (a.identity() != nullptr && a.identity() == b.identity()) return true;
  switch (a.type()) {
    case Value::Type::kUndefined: case Value::Type::kNone: return true;
    case Value::Type::kString: {
      const std::string& x = a.as_string();
      const std::string& y = b.as_string();
      if (x.size() != y.size()) return false;
      add_cost(cost, static_cast<int64_t>(x.size() / 64));
      return x == y;
    }
    case Value::Type::kList: {
      const ListData& la = a.as_list();
      const ListData& lb = b.as_list();
      if (la.kind == ListKind::kGenerator || lb.kind == ListKind::kGenerator) return false;
      // [1] == (1,) is False in Python: list and tuple are different types.
      return la.kind == lb.kind && lists_equal(la, lb, cost);
    }
    case Value::Type::kDict: {
      const DictData& da = a.as_dict();
      const DictData& db = b.as_dict();
      if (da.size() != db.size()) return false;
      for (const auto& [k, v] : da.entries) {
        add_cost(cost, 1);
        const Value* other = db.find(k);
        if (other == nullptr || !values_equal(v, *other, cost)) return false;
      }
      return true;
    }
    default: return false;  // objects and callables: identity only
  }
}

StatusOr<bool> value_less(const Value& a, const Value& b, int64_t* cost) {
  if (a.is_number() && b.is_number()) {
    if (a.is_integral() && b.is_integral()) return a.as_int() < b.as_int();
    return a.as_double() < b.as_double();
  }
  if (a.is_string() && b.is_string()) {
    add_cost(cost, static_cast<int64_t>(std::min(a.as_string().size(), b.as_string().size()) / 64));
    return a.as_string() < b.as_string();
  }
  if (a.is_list() && b.is_list() && a.as_list().kind == b.as_list().kind &&
      (a.as_list().kind == ListKind::kList || a.as_list().kind == ListKind::kTuple)) {
    const auto& x = a.as_list().items;
    const auto& y = b.as_list().items;
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      add_cost(cost, 1);
      if (values_equal(x[i], y[i], cost)) continue;
      return value_less(x[i], y[i], cost);
    }
    return x.size() < y.size();
  }
  return invalid_argument("'<' not supported between instances of '" + a.type_name() +
                          "' and '" + b.type_name() + "'");
}

// --- printing ---------------------------------------------------------------------

namespace {

constexpr int kMaxPrintDepth = 2 * kMaxValueDepth;

// `active` holds the namespaces being printed: like CPython's dict repr, a
// namespace reached again inside itself prints as {...}.
struct PrintState {
  size_t max_bytes;
  std::vector<const void*> active;
};

Status print_value(const Value& v, bool repr, int depth, PrintState* st, std::string* out);

Status check_size(size_t max_bytes, const std::string* out) {
  if (out->size() > max_bytes) {
    return resource_exhausted("chat template output exceeds " + std::to_string(max_bytes) + " bytes");
  }
  return ok_status();
}

Status print_items(const std::vector<Value>& items, int depth, PrintState* st, std::string* out) {
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) *out += ", ";
    LS_RETURN_IF_ERROR(print_value(items[i], true, depth + 1, st, out));
    LS_RETURN_IF_ERROR(check_size(st->max_bytes, out));
  }
  return ok_status();
}

Status print_dict_body(const std::vector<std::pair<Value, Value>>& entries, int depth, PrintState* st,
                       std::string* out) {
  *out += '{';
  bool first = true;
  for (const auto& [k, v] : entries) {
    if (!first) *out += ", ";
    first = false;
    LS_RETURN_IF_ERROR(print_value(k, true, depth + 1, st, out));
    *out += ": ";
    LS_RETURN_IF_ERROR(print_value(v, true, depth + 1, st, out));
    LS_RETURN_IF_ERROR(check_size(st->max_bytes, out));
  }
  *out += '}';
  return ok_status();
}

Status print_value(const Value& v, bool repr, int depth, PrintState* st, std::string* out) {
  if (depth > kMaxPrintDepth) return invalid_argument("value nested too deeply to print");
  switch (v.type()) {
    case Value::Type::kUndefined:
      // str(Undefined) is ''; repr(Undefined) is 'Undefined'.
      if (repr) *out += "Undefined";
      return ok_status();
    case Value::Type::kNone: *out += "None"; return ok_status();
    case Value::Type::kBool: *out += v.as_bool() ? "True" : "False"; return ok_status();
    case Value::Type::kInt: *out += std::to_string(v.as_int()); return ok_status();
    case Value::Type::kFloat: *out += py_float_repr(v.as_double()); return ok_status();
    case Value::Type::kString:
      if (repr) {
        *out += py_repr_string(v.as_string());
      } else {
        *out += v.as_string();
      }
      return check_size(st->max_bytes, out);
    case Value::Type::kList: {
      const ListData& l = v.as_list();
      switch (l.kind) {
        case ListKind::kList:
          *out += '[';
          LS_RETURN_IF_ERROR(print_items(l.items, depth, st, out));
          *out += ']';
          return ok_status();
        case ListKind::kTuple:
          *out += '(';
          LS_RETURN_IF_ERROR(print_items(l.items, depth, st, out));
          if (l.items.size() == 1) *out += ',';
          *out += ')';
          return ok_status();
        case ListKind::kGenerator:
          // CPython prints an address here; no template can rely on it.
          *out += "<generator object>";
          return ok_status();
        case ListKind::kDictKeys: *out += "dict_keys(["; break;
        case ListKind::kDictValues: *out += "dict_values(["; break;
        case ListKind::kDictItems: *out += "dict_items(["; break;
        case ListKind::kRange:
          *out += "range(" + std::to_string(l.range_start) + ", " + std::to_string(l.range_stop);
          if (l.range_step != 1) *out += ", " + std::to_string(l.range_step);
          *out += ')';
          return ok_status();
      }
      LS_RETURN_IF_ERROR(print_items(l.items, depth, st, out));
      *out += "])";
      return ok_status();
    }
    case Value::Type::kDict:
      return print_dict_body(v.as_dict().entries, depth, st, out);
    case Value::Type::kObject: {
      const ObjectData& o = v.as_object();
      if (o.kind == ObjectKind::kLoop) {
        *out += "<LoopContext " + std::to_string(o.loop.index0 + 1) + "/" +
                std::to_string(o.loop.length) + ">";
        return ok_status();
      }
      *out += "<Namespace ";
      if (std::find(st->active.begin(), st->active.end(), &o) != st->active.end()) {
        *out += "{...}>";
        return ok_status();
      }
      std::vector<std::pair<Value, Value>> entries;
      for (const auto& [k, val] : o.attrs) entries.emplace_back(Value::string(k), val);
      st->active.push_back(&o);
      Status s = print_dict_body(entries, depth, st, out);
      st->active.pop_back();
      LS_RETURN_IF_ERROR(s);
      *out += '>';
      return ok_status();
    }
    case Value::Type::kCallable:
      *out += "<function " + v.as_callable().name + ">";
      return ok_status();
  }
  return ok_status();
}

}  // namespace

Status append_str(const Value& v, size_t max_bytes, std::string* out) {
  PrintState st{max_bytes, {}};
  LS_RETURN_IF_ERROR(print_value(v, false, 0, &st, out));
  return check_size(max_bytes, out);
}

Status append_repr(const Value& v, size_t max_bytes, std::string* out) {
  PrintState st{max_bytes, {}};
  LS_RETURN_IF_ERROR(print_value(v, true, 0, &st, out));
  return check_size(max_bytes, out);
}

// --- iteration --------------------------------------------------------------------

StatusOr<std::shared_ptr<const ListData>> iterate(const Value& v) {
  switch (v.type()) {
    case Value::Type::kUndefined:
      return std::make_shared<const ListData>();
    case Value::Type::kList:
      if (!v.as_list().deferred_error.empty()) return invalid_argument(v.as_list().deferred_error);
      return v.list_ptr();
    default:
      break;
  }
  auto data = std::make_shared<ListData>();
  if (v.is_string()) {
    const std::string& s = v.as_string();
    size_t pos = 0;
    while (pos < s.size()) {
      const size_t start = pos;
      utf8_next(s, &pos);
      data->items.push_back(Value::string(s.substr(start, pos - start)));
    }
    return std::shared_ptr<const ListData>(std::move(data));
  }
  if (v.is_dict()) {
    for (const auto& [k, val] : v.as_dict().entries) data->items.push_back(k);
    data->depth = v.as_dict().depth;
    return std::shared_ptr<const ListData>(std::move(data));
  }
  return invalid_argument("'" + v.type_name() + "' object is not iterable");
}

StatusOr<int64_t> value_length(const Value& v) {
  switch (v.type()) {
    case Value::Type::kUndefined: return 0;
    case Value::Type::kString: return static_cast<int64_t>(utf8_length(v.as_string()));
    case Value::Type::kList:
      if (v.as_list().kind == ListKind::kGenerator) break;
      return static_cast<int64_t>(v.as_list().items.size());
    case Value::Type::kDict: return static_cast<int64_t>(v.as_dict().size());
    case Value::Type::kObject:
      if (v.as_object().kind == ObjectKind::kLoop) break;
      break;
    default: break;
  }
  return invalid_argument("object of type '" + v.type_name() + "' has no len()");
}

}  // namespace jinja
}  // namespace loraserve
