// Jinja's builtin filters, tests, globals and the attribute/item lookup
// rules of jinja2's ImmutableSandboxedEnvironment, written against a small
// Runtime interface so they do not depend on the renderer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>
#include <initializer_list>

#include "common/status.h"
#include "chat_template/jinja_value.h"

namespace loraserve {
namespace jinja {

// What builtins need from the render in progress.
class Runtime {
 public:
  virtual ~Runtime() = default;
  // Charges `units` of work (elements or bytes touched) to the render's
  // budget; fails once it is spent, so no template can run unbounded.
  virtual Status charge(int64_t units) = 0;
  // The largest string or output the render may build.
  virtual size_t max_bytes() const = 0;
  // Calls a callable value (macro, builtin or bound method).
  virtual StatusOr<Value> call(const Value& fn, CallArgs args) = 0;
  // Applies a filter / test by name (for map('lower'), select('odd'), ...).
  virtual StatusOr<Value> apply_filter(const std::string& name, const Value& v, CallArgs args) = 0;
  virtual StatusOr<bool> apply_test(const std::string& name, const Value& v, CallArgs args) = 0;
  // Keeps a namespace alive until the render ends, when the renderer clears
  // every namespace so reference cycles through them are broken.
  virtual void track_object(const std::shared_ptr<ObjectData>& o) = 0;
};

using FilterFn = StatusOr<Value> (*)(Runtime&, const Value&, CallArgs&);
using TestFn = StatusOr<bool> (*)(Runtime&, const Value&, CallArgs&);

// Null when jinja2 has no such filter / test.
FilterFn find_filter(std::string_view name);
TestFn find_test(std::string_view name);

// obj.name: methods and attributes first, then obj['name'] (jinja2's
// getattr), Undefined when neither exists. Mutating methods (list.append,
// dict.update, ...) resolve to an Undefined that raises the sandbox's
// SecurityError message when called, as in transformers. Without
// item_fallback only real attributes count (the |attr filter).
StatusOr<Value> get_attribute(Runtime& rt, const Value& obj, const std::string& name,
                              bool item_fallback = true);
// obj[key]: items first, then attributes for string keys (jinja2's getitem).
StatusOr<Value> get_item(Runtime& rt, const Value& obj, const Value& key);
// obj[start:stop:step]; each bound may be None/Undefined.
StatusOr<Value> get_slice(Runtime& rt, const Value& obj, const Value& start, const Value& stop,
                          const Value& step);

// The globals transformers' environment has: range, namespace, dict,
// raise_exception, strftime_now, cycler-free subset. Undefined if unknown.
Value find_global(const std::string& name);

// The internal status raise_exception() produces: kAborted carrying the
// template's message verbatim, so the API border can pass it through
// untouched (as kInvalidArgument).
Status template_raised(const std::string& message);
bool is_template_raise(const Status& s);

// Binds call arguments to named parameters the way Python does for builtin
// filters and methods: positional first, then keywords; unknown keywords
// and surplus positionals are errors.
class ArgBinder {
 public:
  ArgBinder(const char* function, CallArgs& args, std::initializer_list<const char*> params);
  const Status& status() const { return status_; }
  bool has(size_t i) const { return i < bound_.size() && bound_[i] != nullptr; }
  const Value& get(size_t i) const;

 private:
  Status status_;
  std::vector<const Value*> bound_;
};

// Shared conversions.
// str(v), bounded by rt.max_bytes() and charged to the work budget.
StatusOr<std::string> str_of(Runtime& rt, const Value& v);
// iterate() (jinja_value.h) charged to the work budget: a string iterates
// as one value per code point, which costs as much as its length.
StatusOr<std::shared_ptr<const ListData>> iterate_charged(Runtime& rt, const Value& v);
// Work units for one pass over s that maps code points (case mapping,
// classification): cheap for ASCII, dearer for the rest.
int64_t text_cost(std::string_view s);
// An int argument (bool counts, as in Python); `what` names it in errors.
StatusOr<int64_t> int_arg(const Value& v, const char* what);
// Python's `item in container`.
StatusOr<bool> value_contains(Runtime& rt, const Value& container, const Value& item);
// json.dumps(v, ensure_ascii, indent, separators, sort_keys) as transformers'
// tojson filter calls it.
struct JsonOptions {
  bool ensure_ascii = false;
  bool has_indent = false;
  std::string indent;  // the text of one indentation level
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
};
StatusOr<std::string> to_json(Runtime& rt, const Value& v, const JsonOptions& options);
// Python's printf-style formatting: format_string % args (also |format).
StatusOr<std::string> percent_format(Runtime& rt, const std::string& format_string, const Value& args);
// str.format(*args, **kwargs).
StatusOr<std::string> brace_format(Runtime& rt, const std::string& format_string, const CallArgs& args);

}  // namespace jinja
}  // namespace loraserve
