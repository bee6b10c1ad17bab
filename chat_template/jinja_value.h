// The values a Jinja template computes with, modelled on the Python objects
// jinja2 uses: Undefined, None, bool, int, float, str, list/tuple (and the
// lazy iterators filters return), dict (insertion ordered), namespace and
// loop objects, and callables (macros, builtins, bound methods).
//
// Lists and dicts are immutable once built (transformers renders in jinja2's
// ImmutableSandboxedEnvironment, where list.append and dict.update raise), so
// values share them through shared_ptr and copying a Value is cheap. Only
// namespace objects are mutable ({% set ns.x = ... %}).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/status.h"

namespace loraserve {
namespace jinja {

class Value;
class Runtime;
struct ListData;
struct DictData;
struct ObjectData;
struct Callable;

// Nesting deeper than this is refused where values are built, which keeps
// every recursive walk over values (printing, tojson, ==, destruction) shallow.
constexpr int kMaxValueDepth = 200;

// What Python type a sequence value stands for. They iterate alike; they
// differ in printing, truthiness and len() (a generator has no len and is
// always true, which templates can observe with `{% if x|select(...) %}`).
enum class ListKind : uint8_t { kList, kTuple, kGenerator, kDictKeys, kDictValues, kDictItems, kRange };

enum class ObjectKind : uint8_t { kNamespace, kLoop };

class Value {
 public:
  enum class Type : uint8_t {
    kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kObject, kCallable
  };

  Value() = default;  // Undefined
  // An Undefined whose use raises `message` (e.g. "'dict object' has no attribute 'x'").
  static Value undefined(std::string message);
  static Value none();
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value floating(double d);
  static Value string(std::string s);
  static Value list(std::vector<Value> items, ListKind kind = ListKind::kList);
  static Value list_from(std::shared_ptr<const ListData> data);
  // range(start, stop, step); the caller bounds its length.
  static Value range(int64_t start, int64_t stop, int64_t step);
  static Value dict(std::shared_ptr<const DictData> d);
  static Value object(std::shared_ptr<ObjectData> o);
  static Value callable(std::shared_ptr<const Callable> c);

  Type type() const { return type_; }
  bool is_undefined() const { return type_ == Type::kUndefined; }
  bool is_none() const { return type_ == Type::kNone; }
  bool is_bool() const { return type_ == Type::kBool; }
  bool is_int() const { return type_ == Type::kInt; }
  bool is_float() const { return type_ == Type::kFloat; }
  bool is_string() const { return type_ == Type::kString; }
  bool is_list() const { return type_ == Type::kList; }
  bool is_dict() const { return type_ == Type::kDict; }
  bool is_object() const { return type_ == Type::kObject; }
  bool is_callable() const { return type_ == Type::kCallable; }
  // bool is a subclass of int in Python: True + 1 == 2.
  bool is_integral() const { return type_ == Type::kBool || type_ == Type::kInt; }
  bool is_number() const { return is_integral() || type_ == Type::kFloat; }
  bool is_namespace() const;

  bool as_bool() const { return b_; }
  int64_t as_int() const { return type_ == Type::kBool ? (b_ ? 1 : 0) : i_; }
  double as_double() const { return type_ == Type::kFloat ? f_ : static_cast<double>(as_int()); }
  const std::string& as_string() const { return *std::static_pointer_cast<const std::string>(ptr_); }
  const ListData& as_list() const { return *std::static_pointer_cast<const ListData>(ptr_); }
  const DictData& as_dict() const { return *std::static_pointer_cast<const DictData>(ptr_); }
  ObjectData& as_object() const { return *std::static_pointer_cast<ObjectData>(ptr_); }
  const Callable& as_callable() const { return *std::static_pointer_cast<const Callable>(ptr_); }
  std::shared_ptr<const ListData> list_ptr() const { return std::static_pointer_cast<const ListData>(ptr_); }
  std::shared_ptr<ObjectData> object_ptr() const { return std::static_pointer_cast<ObjectData>(ptr_); }
  const void* identity() const { return ptr_.get(); }

  // Python bool(x).
  bool truthy() const;
  // Container nesting (0 for scalars).
  int depth() const;
  // The message an Undefined raises when used.
  std::string undefined_message() const;
  // Python's type name, for error messages ("str", "int", "dict", ...).
  std::string type_name() const;

 private:
  Type type_ = Type::kUndefined;
  union {
    bool b_;
    int64_t i_ = 0;
    double f_;
  };
  // string / ListData / DictData / ObjectData / Callable, or the message of
  // an Undefined (a std::string).
  std::shared_ptr<void> ptr_;
};

struct ListData {
  std::vector<Value> items;
  ListKind kind = ListKind::kList;
  int depth = 1;
  // A generator whose body fails when iterated (jinja2's lazy |items on a
  // non-mapping): the error surfaces only if something iterates it.
  std::string deferred_error;
  // kRange keeps its arguments for printing: range(0, 3).
  int64_t range_start = 0;
  int64_t range_stop = 0;
  int64_t range_step = 1;
};

// An insertion-ordered dict with Python key semantics (1 == 1.0 == True).
struct DictData {
  std::vector<std::pair<Value, Value>> entries;
  int depth = 1;

  const Value* find(const Value& key) const;
  const Value* find(const std::string& key) const;
  // Inserts or replaces (keeping the original position, as Python does).
  void set(Value key, Value value);
  size_t size() const { return entries.size(); }

 private:
  std::unordered_map<std::string, size_t> string_index_;
};

// State of one iteration of a for loop, read through `loop.*`.
struct LoopState {
  int64_t index0 = 0;
  int64_t length = 0;
  std::shared_ptr<const ListData> items;
};

struct ObjectData {
  ObjectKind kind = ObjectKind::kNamespace;
  std::vector<std::pair<std::string, Value>> attrs;  // namespace attributes, ordered
  LoopState loop;

  const Value* find_attr(const std::string& name) const;
  void set_attr(const std::string& name, Value value);
};

// Arguments of a call: positional, then keyword (in call order).
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keywords;
};

struct Callable {
  std::string name;
  std::function<StatusOr<Value>(Runtime&, CallArgs&)> fn;
};

// Python ==. With `cost`, adds the elements and 64-byte blocks compared, so
// callers can charge comparisons of large values to the work budget.
bool values_equal(const Value& a, const Value& b, int64_t* cost = nullptr);
// Python <; fails with a TypeError-like message for unorderable types.
StatusOr<bool> value_less(const Value& a, const Value& b, int64_t* cost = nullptr);
// Python str(x) (what {{ x }} prints) and repr(x). They fail only for values
// nested past kMaxValueDepth through namespaces, or when the text would pass
// max_bytes.
Status append_str(const Value& v, size_t max_bytes, std::string* out);
Status append_repr(const Value& v, size_t max_bytes, std::string* out);
// Items a for loop over v visits (list items, dict keys, string characters);
// an error for non-iterables. Undefined iterates as empty.
StatusOr<std::shared_ptr<const ListData>> iterate(const Value& v);
// Python len(x); an error for values without len().
StatusOr<int64_t> value_length(const Value& v);

}  // namespace jinja
}  // namespace loraserve
