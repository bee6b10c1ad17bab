// jinja2's builtin tests (`x is defined`, `n is divisibleby 3`, ...) and the
// `in` operator they share with expressions.
#include <cmath>

#include "chat_template/jinja_builtins.h"

namespace loraserve {
namespace jinja {

StatusOr<bool> value_contains(Runtime& rt, const Value& container, const Value& item) {
  switch (container.type()) {
    case Value::Type::kUndefined:
      return false;
    case Value::Type::kString:
      if (!item.is_string()) {
        return invalid_argument("'in <string>' requires string as left operand, not " + item.type_name());
      }
      LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(container.as_string().size() / 32)));
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Value::Type::kList: {
      if (!container.as_list().deferred_error.empty()) return invalid_argument(container.as_list().deferred_error);
      const auto& items = container.as_list().items;
      if (container.as_list().kind == ListKind::kDictKeys &&
          (item.is_list() || item.is_dict())) {
        return invalid_argument("unhashable type: '" + item.type_name() + "'");
      }
      int64_t cost = static_cast<int64_t>(items.size());
      bool found = false;
      for (const Value& x : items) {
        if (values_equal(x, item, &cost)) {
          found = true;
          break;
        }
      }
      LS_RETURN_IF_ERROR(rt.charge(cost));
      return found;
    }
    case Value::Type::kDict:
      if (item.is_list() || item.is_dict() || item.is_object()) {
        if (!(item.is_list() && item.as_list().kind == ListKind::kTuple)) {
          return invalid_argument("unhashable type: '" + item.type_name() + "'");
        }
      }
      return container.as_dict().find(item) != nullptr;
    default:
      return invalid_argument("argument of type '" + container.type_name() + "' is not iterable");
  }
}

namespace {

Status check_no_args(const char* name, CallArgs& args) { return ArgBinder(name, args, {}).status(); }

StatusOr<const Value*> one_arg(const char* name, CallArgs& args, ArgBinder* b) {
  LS_RETURN_IF_ERROR(b->status());
  if (!b->has(0)) {
    return invalid_argument(std::string(name) + "() missing 1 required positional argument");
  }
  (void)args;
  return &b->get(0);
}

#define SIMPLE_TEST(fn_name, test_name, expr)                      \
  StatusOr<bool> fn_name(Runtime&, const Value& v, CallArgs& args) { \
    LS_RETURN_IF_ERROR(check_no_args(test_name, args));              \
    return (expr);                                                   \
  }

SIMPLE_TEST(t_defined, "defined", !v.is_undefined())
SIMPLE_TEST(t_undefined, "undefined", v.is_undefined())
SIMPLE_TEST(t_none, "none", v.is_none())
SIMPLE_TEST(t_boolean, "boolean", v.is_bool())
SIMPLE_TEST(t_true, "true", v.is_bool() && v.as_bool())
SIMPLE_TEST(t_false, "false", v.is_bool() && !v.as_bool())
SIMPLE_TEST(t_integer, "integer", v.is_int())
SIMPLE_TEST(t_float, "float", v.is_float())
SIMPLE_TEST(t_number, "number", v.is_number())
SIMPLE_TEST(t_string, "string", v.is_string())
SIMPLE_TEST(t_mapping, "mapping", v.is_dict())
SIMPLE_TEST(t_escaped, "escaped", (static_cast<void>(v), false))
// Undefined defines __iter__, __len__ and __getitem__, and __call__ (which
// raises), so it passes iterable, sequence and callable.
SIMPLE_TEST(t_iterable, "iterable",
            v.is_undefined() || v.is_string() || v.is_list() || v.is_dict() ||
                (v.is_object() && v.as_object().kind == ObjectKind::kLoop))
SIMPLE_TEST(t_sequence, "sequence",
            v.is_undefined() || v.is_string() || v.is_dict() ||
                (v.is_list() && (v.as_list().kind == ListKind::kList || v.as_list().kind == ListKind::kTuple ||
                                 v.as_list().kind == ListKind::kRange)))
SIMPLE_TEST(t_callable, "callable",
            v.is_callable() || v.is_undefined() || (v.is_object() && v.as_object().kind == ObjectKind::kLoop))
#undef SIMPLE_TEST

// value % 2 with Python semantics for ints and floats.
StatusOr<double> python_mod(const Value& v, const Value& d) {
  if (v.is_undefined()) return invalid_argument(v.undefined_message());
  if (!v.is_number() || !d.is_number()) {
    return invalid_argument("unsupported operand type(s) for %: '" + v.type_name() + "' and '" + d.type_name() + "'");
  }
  if (v.is_integral() && d.is_integral()) {
    const int64_t b = d.as_int();
    if (b == 0) return invalid_argument("integer division or modulo by zero");
    if (b == -1) return 0.0;
    int64_t r = v.as_int() % b;
    if (r != 0 && ((r < 0) != (b < 0))) r += b;
    return static_cast<double>(r);
  }
  const double b = d.as_double();
  if (b == 0) return invalid_argument("float modulo");
  double r = std::fmod(v.as_double(), b);
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

StatusOr<bool> t_odd(Runtime&, const Value& v, CallArgs& args) {
  LS_RETURN_IF_ERROR(check_no_args("odd", args));
  LS_ASSIGN_OR_RETURN(double r, python_mod(v, Value::integer(2)));
  return r == 1;
}

StatusOr<bool> t_even(Runtime&, const Value& v, CallArgs& args) {
  LS_RETURN_IF_ERROR(check_no_args("even", args));
  LS_ASSIGN_OR_RETURN(double r, python_mod(v, Value::integer(2)));
  return r == 0;
}

StatusOr<bool> t_divisibleby(Runtime&, const Value& v, CallArgs& args) {
  ArgBinder b("divisibleby", args, {"num"});
  LS_ASSIGN_OR_RETURN(const Value* num, one_arg("divisibleby", args, &b));
  LS_ASSIGN_OR_RETURN(double r, python_mod(v, *num));
  return r == 0;
}

StatusOr<bool> equal_charged(Runtime& rt, const Value& a, const Value& b) {
  int64_t cost = 0;
  const bool eq = values_equal(a, b, &cost);
  LS_RETURN_IF_ERROR(rt.charge(cost));
  return eq;
}

StatusOr<bool> t_eq(Runtime& rt, const Value& v, CallArgs& args) {
  ArgBinder b("eq", args, {"other"});
  LS_ASSIGN_OR_RETURN(const Value* other, one_arg("eq", args, &b));
  return equal_charged(rt, v, *other);
}

StatusOr<bool> t_ne(Runtime& rt, const Value& v, CallArgs& args) {
  ArgBinder b("ne", args, {"other"});
  LS_ASSIGN_OR_RETURN(const Value* other, one_arg("ne", args, &b));
  LS_ASSIGN_OR_RETURN(bool eq, equal_charged(rt, v, *other));
  return !eq;
}

// gt, ge, lt, le through Python's <.
template <int kOp>
StatusOr<bool> t_order(Runtime& rt, const Value& v, CallArgs& args) {
  ArgBinder b("compare", args, {"other"});
  LS_ASSIGN_OR_RETURN(const Value* other, one_arg("compare", args, &b));
  if (v.is_undefined()) return invalid_argument(v.undefined_message());
  if (other->is_undefined()) return invalid_argument(other->undefined_message());
  LS_RETURN_IF_ERROR(rt.charge(1 + static_cast<int64_t>((v.is_string() ? v.as_string().size() : 0) / 64)));
  switch (kOp) {
    case 0: return value_less(*other, v);  // gt
    case 1: {                              // ge
      LS_ASSIGN_OR_RETURN(bool lt, value_less(v, *other));
      return !lt;
    }
    case 2: return value_less(v, *other);  // lt
    default: {                             // le
      LS_ASSIGN_OR_RETURN(bool gt, value_less(*other, v));
      return !gt;
    }
  }
}

StatusOr<bool> t_in(Runtime& rt, const Value& v, CallArgs& args) {
  ArgBinder b("in", args, {"seq"});
  LS_ASSIGN_OR_RETURN(const Value* seq, one_arg("in", args, &b));
  return value_contains(rt, *seq, v);
}

StatusOr<bool> t_sameas(Runtime&, const Value& v, CallArgs& args) {
  ArgBinder b("sameas", args, {"other"});
  LS_ASSIGN_OR_RETURN(const Value* other, one_arg("sameas", args, &b));
  if (v.type() != other->type()) return false;
  switch (v.type()) {
    case Value::Type::kNone: return true;
    case Value::Type::kBool: return v.as_bool() == other->as_bool();
    // CPython caches the small ints, so `1 is 1` holds.
    case Value::Type::kInt: return v.as_int() == other->as_int() && v.as_int() >= -5 && v.as_int() <= 256;
    case Value::Type::kUndefined: case Value::Type::kFloat: return false;
    default: return v.identity() == other->identity();
  }
}

template <bool kLower>
StatusOr<bool> t_case(Runtime& rt, const Value& v, CallArgs& args) {
  LS_RETURN_IF_ERROR(check_no_args("lower", args));
  LS_ASSIGN_OR_RETURN(std::string s, str_of(rt, v));
  LS_RETURN_IF_ERROR(rt.charge(text_cost(s)));
  CallArgs none;
  LS_ASSIGN_OR_RETURN(Value method, get_attribute(rt, Value::string(s), kLower ? "islower" : "isupper"));
  LS_ASSIGN_OR_RETURN(Value r, rt.call(method, none));
  return r.truthy();
}

StatusOr<bool> t_filter(Runtime&, const Value& v, CallArgs& args) {
  LS_RETURN_IF_ERROR(check_no_args("filter", args));
  return v.is_string() && find_filter(v.as_string()) != nullptr;
}

StatusOr<bool> t_test(Runtime&, const Value& v, CallArgs& args) {
  LS_RETURN_IF_ERROR(check_no_args("test", args));
  return v.is_string() && find_test(v.as_string()) != nullptr;
}

struct TestEntry {
  const char* name;
  TestFn fn;
};

const TestEntry kTests[] = {
    {"defined", t_defined},     {"undefined", t_undefined}, {"none", t_none},
    {"boolean", t_boolean},     {"true", t_true},           {"false", t_false},
    {"integer", t_integer},     {"float", t_float},         {"number", t_number},
    {"string", t_string},       {"mapping", t_mapping},     {"iterable", t_iterable},
    {"sequence", t_sequence},   {"callable", t_callable},   {"escaped", t_escaped},
    {"odd", t_odd},             {"even", t_even},           {"divisibleby", t_divisibleby},
    {"eq", t_eq},               {"equalto", t_eq},          {"==", t_eq},
    {"ne", t_ne},               {"!=", t_ne},               {"gt", t_order<0>},
    {"greaterthan", t_order<0>}, {">", t_order<0>},         {"ge", t_order<1>},
    {">=", t_order<1>},         {"lt", t_order<2>},         {"lessthan", t_order<2>},
    {"<", t_order<2>},          {"le", t_order<3>},         {"<=", t_order<3>},
    {"in", t_in},               {"sameas", t_sameas},       {"lower", t_case<true>},
    {"upper", t_case<false>},   {"filter", t_filter},       {"test", t_test},
};

}  // namespace

TestFn find_test(std::string_view name) {
  for (const auto& t : kTests) {
    if (name == t.name) return t.fn;
  }
  return nullptr;
}

}  // namespace jinja
}  // namespace loraserve
