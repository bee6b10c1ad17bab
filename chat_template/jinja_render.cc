#include "chat_template/jinja_render.h"

#include <cmath>
#include <memory>
#include <utility>
#include <vector>

#include "chat_template/jinja_builtins.h"
#include "chat_template/jinja_text.h"

namespace loraserve {
namespace jinja {
namespace {

// Variables of one frame. jinja2 gives for-loop bodies (fresh every
// iteration), macro calls, set/filter blocks and `with` their own frame;
// `if` shares its parent's. Lookups walk the parents, so a macro sees the
// live values of the frame it was defined in (Python closures).
struct Scope {
  explicit Scope(std::shared_ptr<Scope> p) : parent(std::move(p)) {}
  std::shared_ptr<Scope> parent;
  std::vector<std::pair<std::string, Value>> vars;

  const Value* find_local(const std::string& name) const {
    for (const auto& [k, v] : vars) {
      if (k == name) return &v;
    }
    return nullptr;
  }
  void set(const std::string& name, Value v) {
    for (auto& [k, old] : vars) {
      if (k == name) {
        old = std::move(v);
        return;
      }
    }
    vars.emplace_back(name, std::move(v));
  }
};
using ScopePtr = std::shared_ptr<Scope>;

enum class Flow { kNormal, kBreak, kContinue };

class Renderer : public Runtime {
 public:
  Renderer(const RenderLimits& limits, const Value& context)
      : limits_(limits), context_(context), root_(std::make_shared<Scope>(nullptr)) {}

  ~Renderer() override {
    // Namespaces may reference each other (ns.a = other_ns); emptying them
    // all breaks every cycle before the shared_ptrs are released.
    for (auto& o : objects_) o->attrs.clear();
  }

  StatusOr<std::string> render(const ParsedTemplate& t) {
    std::string out;
    declare_locals(t.body_locals, root_.get());
    auto flow = exec_body(t.body, root_, &out);
    if (!flow.ok()) return flow.status();
    return out;
  }

  // --- Runtime ---------------------------------------------------------------

  Status charge(int64_t units) override {
    work_ += std::max<int64_t>(units, 0);
    if (work_ > limits_.max_work) {
      return resource_exhausted("chat template exceeded its work budget (" + std::to_string(limits_.max_work) +
                                " units)");
    }
    return ok_status();
  }

  size_t max_bytes() const override { return limits_.max_output_bytes; }

  StatusOr<Value> call(const Value& fn, CallArgs args) override {
    if (fn.is_undefined()) return invalid_argument(fn.undefined_message());
    if (!fn.is_callable()) return invalid_argument("'" + fn.type_name() + "' object is not callable");
    LS_RETURN_IF_ERROR(charge(1));
    return fn.as_callable().fn(*this, args);
  }

  StatusOr<Value> apply_filter(const std::string& name, const Value& v, CallArgs args) override {
    FilterFn fn = find_filter(name);
    if (fn == nullptr) return invalid_argument("No filter named '" + name + "'.");
    LS_RETURN_IF_ERROR(charge(1));
    return fn(*this, v, args);
  }

  StatusOr<bool> apply_test(const std::string& name, const Value& v, CallArgs args) override {
    TestFn fn = find_test(name);
    if (fn == nullptr) return invalid_argument("No test named '" + name + "'.");
    LS_RETURN_IF_ERROR(charge(1));
    return fn(*this, v, args);
  }

  void track_object(const std::shared_ptr<ObjectData>& o) override { objects_.push_back(o); }

 private:
  // Counts nesting of exec/eval across macro calls; the parser bounds one
  // template's tree, this bounds the sum over recursive macro calls.
  class DepthGuard {
   public:
    explicit DepthGuard(Renderer* r) : r_(r) { ++r_->depth_; }
    ~DepthGuard() { --r_->depth_; }
    DepthGuard(const DepthGuard&) = delete;
    DepthGuard& operator=(const DepthGuard&) = delete;

   private:
    Renderer* r_;
  };

  Status check_depth() {
    if (depth_ > limits_.max_depth) {
      return resource_exhausted("chat template recursion too deep (more than " +
                                std::to_string(limits_.max_depth) + " nested evaluations)");
    }
    return ok_status();
  }

  // Adds the template line to the first error on its way out; messages of
  // raise_exception() stay verbatim.
  Status annotate(const Status& s, int line) {
    if (s.ok() || is_template_raise(s) || annotated_) return s;
    annotated_ = true;
    return Status(s.code(), "chat template error at line " + std::to_string(line) + ": " + s.message());
  }

  // Binds the names a frame owns from its start (jinja_ast.h, "Frame
  // locals") to Undefined.
  static void declare_locals(const std::vector<std::string>& names, Scope* scope) {
    for (const auto& name : names) scope->set(name, Value::undefined("'" + name + "' is undefined"));
  }

  ScopePtr new_frame(const ScopePtr& parent, const std::vector<std::string>& locals) {
    auto scope = std::make_shared<Scope>(parent);
    declare_locals(locals, scope.get());
    return scope;
  }

  Status append_output(const Value& v, std::string* out) {
    const size_t before = out->size();
    LS_RETURN_IF_ERROR(append_str(v, limits_.max_output_bytes, out));
    return charge(static_cast<int64_t>((out->size() - before) / (v.is_string() ? 64 : 4)));
  }

  Status append_text(const std::string& text, std::string* out) {
    if (out->size() + text.size() > limits_.max_output_bytes) {
      return resource_exhausted("chat template output exceeds " + std::to_string(limits_.max_output_bytes) +
                                " bytes");
    }
    out->append(text);
    return charge(static_cast<int64_t>(text.size() / 64));
  }

  // --- statements --------------------------------------------------------------

  StatusOr<Flow> exec_body(const Body& body, const ScopePtr& scope, std::string* out) {
    for (const auto& stmt : body) {
      LS_ASSIGN_OR_RETURN(Flow flow, exec(*stmt, scope, out));
      if (flow != Flow::kNormal) return flow;
    }
    return Flow::kNormal;
  }

  StatusOr<Flow> exec(const Stmt& stmt, const ScopePtr& scope, std::string* out) {
    DepthGuard guard(this);
    Status s = check_depth();
    if (s.ok()) s = charge(1);
    if (!s.ok()) return annotate(s, stmt.line);
    auto result = exec_inner(stmt, scope, out);
    if (!result.ok()) return annotate(result.status(), stmt.line);
    return result;
  }

  StatusOr<Flow> exec_inner(const Stmt& stmt, const ScopePtr& scope, std::string* out) {
    switch (stmt.kind) {
      case StmtKind::kText:
        LS_RETURN_IF_ERROR(append_text(static_cast<const TextStmt&>(stmt).text, out));
        return Flow::kNormal;
      case StmtKind::kOutput:
        for (const auto& e : static_cast<const OutputStmt&>(stmt).exprs) {
          LS_ASSIGN_OR_RETURN(Value v, eval_top(*e, scope, /*printed=*/true));
          LS_RETURN_IF_ERROR(append_output(v, out));
        }
        return Flow::kNormal;
      case StmtKind::kIf: {
        const auto& s = static_cast<const IfStmt&>(stmt);
        for (size_t i = 0; i < s.conditions.size(); ++i) {
          LS_ASSIGN_OR_RETURN(Value cond, eval(*s.conditions[i], scope));
          if (cond.truthy()) return exec_body(s.bodies[i], scope, out);
        }
        if (s.bodies.size() > s.conditions.size()) return exec_body(s.bodies.back(), scope, out);
        return Flow::kNormal;
      }
      case StmtKind::kFor:
        return exec_for(static_cast<const ForStmt&>(stmt), scope, out);
      case StmtKind::kSet: {
        const auto& s = static_cast<const SetStmt&>(stmt);
        LS_ASSIGN_OR_RETURN(Value v, eval(*s.value, scope));
        LS_RETURN_IF_ERROR(assign(s.target, v, scope));
        return Flow::kNormal;
      }
      case StmtKind::kSetBlock: {
        const auto& s = static_cast<const SetBlockStmt&>(stmt);
        std::string buf;
        LS_ASSIGN_OR_RETURN(Flow flow, exec_body(s.body, new_frame(scope, s.body_locals), &buf));
        Value v = Value::string(std::move(buf));
        if (s.filter != nullptr) {
          LS_ASSIGN_OR_RETURN(v, eval_filter(*s.filter, scope, &v));
        }
        LS_RETURN_IF_ERROR(assign(s.target, v, scope));
        return flow;
      }
      case StmtKind::kMacro:
        define_macro(static_cast<const MacroStmt&>(stmt), scope);
        return Flow::kNormal;
      case StmtKind::kBreak:
        return Flow::kBreak;
      case StmtKind::kContinue:
        return Flow::kContinue;
      case StmtKind::kFilterBlock: {
        const auto& s = static_cast<const FilterBlockStmt&>(stmt);
        std::string buf;
        LS_ASSIGN_OR_RETURN(Flow flow, exec_body(s.body, new_frame(scope, s.body_locals), &buf));
        Value subject = Value::string(std::move(buf));
        LS_ASSIGN_OR_RETURN(Value v, eval_filter(*s.filter, scope, &subject));
        LS_RETURN_IF_ERROR(append_output(v, out));
        return flow;
      }
      case StmtKind::kWith: {
        const auto& s = static_cast<const WithStmt&>(stmt);
        auto inner = new_frame(scope, s.body_locals);
        for (size_t i = 0; i < s.targets.size(); ++i) {
          LS_ASSIGN_OR_RETURN(Value v, eval(*s.values[i], scope));  // outer frame, as jinja2
          LS_RETURN_IF_ERROR(assign(s.targets[i], v, inner));
        }
        return exec_body(s.body, inner, out);
      }
      case StmtKind::kScope:
        const auto& s = static_cast<const ScopeStmt&>(stmt);
        return exec_body(s.body, new_frame(scope, s.body_locals), out);
    }
    return Flow::kNormal;
  }

  Status count_iteration() {
    if (++iterations_ > limits_.max_loop_iterations) {
      return resource_exhausted("chat template exceeded " + std::to_string(limits_.max_loop_iterations) +
                                " loop iterations");
    }
    return charge(1);
  }

  StatusOr<Flow> exec_for(const ForStmt& s, const ScopePtr& scope, std::string* out) {
    LS_ASSIGN_OR_RETURN(Value iterable, eval(*s.iter, scope));
    LS_ASSIGN_OR_RETURN(std::shared_ptr<const ListData> items, iterate_charged(*this, iterable));
    LS_RETURN_IF_ERROR(charge(static_cast<int64_t>(items->items.size())));
    if (s.filter != nullptr) {
      // `for x in xs if cond`: jinja2 filters first, so loop.length and
      // loop.index count only the items that pass.
      auto kept = std::make_shared<ListData>();
      auto test_scope = std::make_shared<Scope>(scope);
      for (const Value& item : items->items) {
        LS_RETURN_IF_ERROR(count_iteration());
        test_scope->vars.clear();
        LS_RETURN_IF_ERROR(assign(s.target, item, test_scope));
        LS_ASSIGN_OR_RETURN(Value keep, eval(*s.filter, test_scope));
        if (keep.truthy()) kept->items.push_back(item);
      }
      items = std::move(kept);
    }
    auto loop = std::make_shared<ObjectData>();
    loop->kind = ObjectKind::kLoop;
    loop->loop.items = items;
    loop->loop.length = static_cast<int64_t>(items->items.size());
    const Value loop_value = Value::object(loop);
    auto body_scope = std::make_shared<Scope>(scope);
    // jinja2 clears its "no iteration happened" flag at the end of the body,
    // so a body that always breaks or continues still renders the else block.
    bool completed_iteration = false;
    for (size_t i = 0; i < items->items.size(); ++i) {
      LS_RETURN_IF_ERROR(count_iteration());
      body_scope->vars.clear();
      declare_locals(s.body_locals, body_scope.get());
      loop->loop.index0 = static_cast<int64_t>(i);
      body_scope->set("loop", loop_value);
      LS_RETURN_IF_ERROR(assign(s.target, items->items[i], body_scope));
      LS_ASSIGN_OR_RETURN(Flow flow, exec_body(s.body, body_scope, out));
      if (flow == Flow::kBreak) break;
      if (flow == Flow::kNormal) completed_iteration = true;
    }
    if (!completed_iteration && !s.else_body.empty()) {
      LS_ASSIGN_OR_RETURN(Flow flow, exec_body(s.else_body, new_frame(scope, s.else_locals), out));
      return flow;
    }
    return Flow::kNormal;
  }

  Status assign(const Target& t, const Value& v, const ScopePtr& scope) {
    switch (t.kind) {
      case Target::Kind::kName:
        scope->set(t.name, v);
        return ok_status();
      case Target::Kind::kTuple: {
        if (!(v.is_list() || v.is_string() || v.is_dict())) {
          return invalid_argument("cannot unpack non-iterable " + v.type_name() + " object");
        }
        LS_ASSIGN_OR_RETURN(auto items, iterate_charged(*this, v));
        const size_t want = t.items.size();
        const size_t got = items->items.size();
        if (got > want) return invalid_argument("too many values to unpack (expected " + std::to_string(want) + ")");
        if (got < want) {
          return invalid_argument("not enough values to unpack (expected " + std::to_string(want) + ", got " +
                                  std::to_string(got) + ")");
        }
        for (size_t i = 0; i < want; ++i) LS_RETURN_IF_ERROR(assign(t.items[i], items->items[i], scope));
        return ok_status();
      }
      case Target::Kind::kNamespaceAttr: {
        const Value ns = lookup(t.name, scope);
        if (!ns.is_namespace()) return invalid_argument("cannot assign attribute on non-namespace object");
        ns.as_object().set_attr(t.attr, v);
        return ok_status();
      }
    }
    return ok_status();
  }

  // --- macros -------------------------------------------------------------------

  void define_macro(const MacroStmt& m, const ScopePtr& scope) {
    auto fn = std::make_shared<Callable>();
    fn->name = m.name;
    std::weak_ptr<Scope> defined_in = scope;
    const MacroStmt* node = &m;
    fn->fn = [this, node, defined_in](Runtime&, CallArgs& args) { return call_macro(*node, defined_in, args); };
    scope->set(m.name, Value::callable(std::move(fn)));
  }

  StatusOr<Value> call_macro(const MacroStmt& m, const std::weak_ptr<Scope>& defined_in, CallArgs& args) {
    if (macro_depth_ >= limits_.max_recursion) {
      return resource_exhausted("chat template macro recursion deeper than " +
                                std::to_string(limits_.max_recursion) + " (in macro '" + m.name + "')");
    }
    ScopePtr parent = defined_in.lock();
    if (parent == nullptr) parent = root_;
    auto scope = new_frame(parent, m.body_locals);
    // Mirrors jinja2's Macro.__call__: positionals first; keywords fill
    // only the parameters the positionals did not reach.
    const size_t n = m.params.size();
    std::vector<bool> bound(n, false);
    for (size_t i = 0; i < n && i < args.positional.size(); ++i) {
      scope->set(m.params[i], args.positional[i]);
      bound[i] = true;
    }
    std::vector<std::pair<std::string, Value>> extra_kwargs;
    for (auto& [key, value] : args.keywords) {
      bool used = false;
      if (args.positional.size() < n) {
        for (size_t i = args.positional.size(); i < n; ++i) {
          if (m.params[i] == key && !bound[i]) {
            scope->set(key, value);
            bound[i] = true;
            used = true;
            break;
          }
        }
      }
      if (!used) extra_kwargs.emplace_back(key, value);
    }
    if (!extra_kwargs.empty() && !m.catch_kwargs) {
      return invalid_argument("macro '" + m.name + "' takes no keyword argument '" + extra_kwargs[0].first + "'");
    }
    if (args.positional.size() > n && !m.catch_varargs) {
      return invalid_argument("macro '" + m.name + "' takes not more than " + std::to_string(n) + " argument(s)");
    }
    const size_t first_default = n - m.defaults.size();
    for (size_t i = 0; i < n; ++i) {
      if (bound[i]) continue;
      if (i >= first_default) {
        LS_ASSIGN_OR_RETURN(Value d, eval(*m.defaults[i - first_default], scope));
        scope->set(m.params[i], std::move(d));
      } else {
        scope->set(m.params[i], Value::undefined("parameter '" + m.params[i] + "' was not provided"));
      }
    }
    if (m.catch_varargs) {
      std::vector<Value> rest;
      for (size_t i = n; i < args.positional.size(); ++i) rest.push_back(args.positional[i]);
      scope->set("varargs", Value::list(std::move(rest), ListKind::kTuple));
    }
    if (m.catch_kwargs) {
      auto d = std::make_shared<DictData>();
      for (auto& [k, v] : extra_kwargs) d->set(Value::string(k), v);
      scope->set("kwargs", Value::dict(std::move(d)));
    }
    ++macro_depth_;
    std::string buf;
    auto flow = exec_body(m.body, scope, &buf);
    --macro_depth_;
    if (!flow.ok()) return flow.status();
    return Value::string(std::move(buf));
  }

  // --- expressions -----------------------------------------------------------------

  Value lookup(const std::string& name, const ScopePtr& scope) const {
    for (const Scope* s = scope.get(); s != nullptr; s = s->parent.get()) {
      if (const Value* v = s->find_local(name)) return *v;
    }
    if (context_.is_dict()) {
      if (const Value* v = context_.as_dict().find(name)) return *v;
    }
    Value g = find_global(name);
    if (!g.is_undefined()) return g;
    return Value::undefined("'" + name + "' is undefined");
  }

  // jinja2 folds expressions made of literals when it compiles the
  // template (optimizer.py, and visit_Output for printed expressions). A
  // fold keeps its value if that value has a safe repr (or is printed
  // directly); otherwise the expression runs at render time, where its
  // constant parts fold on their own. Folding differs from running in one
  // observable way: a slice of a non-sequence gives Undefined instead of
  // raising. eval() replays that: a constant subtree is first evaluated
  // with folding_ set.
  StatusOr<Value> eval_top(const Expr& e, const ScopePtr& scope, bool printed) {
    if (folding_ && !e.constant) return Status(StatusCode::kUnavailable, "not constant");  // jinja2's Impossible
    if (!e.constant || folding_ || e.kind == ExprKind::kConst) return eval_node(e, scope);
    folding_ = true;
    auto folded = eval_node(e, scope);
    folding_ = false;
    if (folded.ok() && (printed || has_safe_repr(*folded, 0))) return folded;
    return eval_node(e, scope);
  }

  static bool has_safe_repr(const Value& v, int depth) {
    if (depth > kMaxValueDepth) return false;
    switch (v.type()) {
      case Value::Type::kNone: case Value::Type::kBool: case Value::Type::kInt: case Value::Type::kFloat:
      case Value::Type::kString:
        return true;
      case Value::Type::kList: {
        const ListKind kind = v.as_list().kind;
        if (kind == ListKind::kRange) return true;
        if (kind != ListKind::kList && kind != ListKind::kTuple) return false;
        for (const Value& item : v.as_list().items) {
          if (!has_safe_repr(item, depth + 1)) return false;
        }
        return true;
      }
      case Value::Type::kDict:
        for (const auto& [k, val] : v.as_dict().entries) {
          if (!has_safe_repr(k, depth + 1) || !has_safe_repr(val, depth + 1)) return false;
        }
        return true;
      default:
        return false;
    }
  }

  StatusOr<Value> eval(const Expr& e, const ScopePtr& scope) { return eval_top(e, scope, false); }

  StatusOr<Value> eval_node(const Expr& e, const ScopePtr& scope) {
    DepthGuard guard(this);
    LS_RETURN_IF_ERROR(check_depth());
    LS_RETURN_IF_ERROR(charge(1));
    switch (e.kind) {
      case ExprKind::kConst:
        return e.value;
      case ExprKind::kName:
        return lookup(e.name, scope);
      case ExprKind::kList:
      case ExprKind::kTuple: {
        std::vector<Value> items;
        items.reserve(e.children.size());
        for (const auto& c : e.children) {
          LS_ASSIGN_OR_RETURN(Value v, eval(*c, scope));
          items.push_back(std::move(v));
        }
        Value v = Value::list(std::move(items), e.kind == ExprKind::kTuple ? ListKind::kTuple : ListKind::kList);
        if (v.depth() > kMaxValueDepth) return invalid_argument("value nested too deeply");
        return v;
      }
      case ExprKind::kDict: {
        auto d = std::make_shared<DictData>();
        for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
          LS_ASSIGN_OR_RETURN(Value k, eval(*e.children[i], scope));
          LS_ASSIGN_OR_RETURN(Value v, eval(*e.children[i + 1], scope));
          if (!is_hashable(k)) return invalid_argument("unhashable type: '" + k.type_name() + "'");
          d->set(std::move(k), std::move(v));
        }
        if (d->depth > kMaxValueDepth) return invalid_argument("value nested too deeply");
        return Value::dict(std::move(d));
      }
      case ExprKind::kGetAttr: {
        LS_ASSIGN_OR_RETURN(Value obj, eval(*e.children[0], scope));
        return get_attribute(*this, obj, e.name);
      }
      case ExprKind::kGetItem: {
        LS_ASSIGN_OR_RETURN(Value obj, eval(*e.children[0], scope));
        LS_ASSIGN_OR_RETURN(Value key, eval(*e.children[1], scope));
        return get_item(*this, obj, key);
      }
      case ExprKind::kSlice: {
        LS_ASSIGN_OR_RETURN(Value obj, eval(*e.children[0], scope));
        Value bounds[3];
        for (int i = 0; i < 3; ++i) {
          const Expr* b = e.children[static_cast<size_t>(i) + 1].get();
          if (b == nullptr) {
            bounds[i] = Value::none();
          } else {
            LS_ASSIGN_OR_RETURN(bounds[i], eval(*b, scope));
          }
        }
        auto sliced = get_slice(*this, obj, bounds[0], bounds[1], bounds[2]);
        if (!sliced.ok() && folding_ && !obj.is_undefined() &&
            sliced.status().code() == StatusCode::kInvalidArgument) {
          // Folding goes through environment.getitem, which turns the
          // TypeError into Undefined.
          return Value::undefined("'" + obj.type_name() + "' object has no element slice");
        }
        return sliced;
      }
      case ExprKind::kCall: {
        LS_ASSIGN_OR_RETURN(Value fn, eval(*e.children[0], scope));
        LS_ASSIGN_OR_RETURN(CallArgs args, eval_args(e, scope));
        return call(fn, std::move(args));
      }
      case ExprKind::kFilter:
        return eval_filter(e, scope, nullptr);
      case ExprKind::kTest: {
        LS_ASSIGN_OR_RETURN(Value subject, eval(*e.children[0], scope));
        LS_ASSIGN_OR_RETURN(CallArgs args, eval_args(e, scope));
        if (e.test == nullptr) return invalid_argument("No test named '" + e.name + "'.");
        LS_ASSIGN_OR_RETURN(bool r, e.test(*this, subject, args));
        return Value::boolean(r);
      }
      case ExprKind::kNot: {
        LS_ASSIGN_OR_RETURN(Value v, eval(*e.children[0], scope));
        return Value::boolean(!v.truthy());
      }
      case ExprKind::kNeg:
      case ExprKind::kPos: {
        LS_ASSIGN_OR_RETURN(Value v, eval(*e.children[0], scope));
        return unary(e.kind == ExprKind::kNeg, v);
      }
      case ExprKind::kBinary: {
        LS_ASSIGN_OR_RETURN(Value a, eval(*e.children[0], scope));
        LS_ASSIGN_OR_RETURN(Value b, eval(*e.children[1], scope));
        return binary(e.op, a, b);
      }
      case ExprKind::kCompare: {
        LS_ASSIGN_OR_RETURN(Value left, eval(*e.children[0], scope));
        for (size_t i = 0; i < e.compare_ops.size(); ++i) {
          LS_ASSIGN_OR_RETURN(Value right, eval(*e.children[i + 1], scope));
          LS_ASSIGN_OR_RETURN(bool r, compare(e.compare_ops[i], left, right));
          if (!r) return Value::boolean(false);
          left = std::move(right);
        }
        return Value::boolean(true);
      }
      case ExprKind::kAnd: {
        LS_ASSIGN_OR_RETURN(Value a, eval(*e.children[0], scope));
        if (!a.truthy()) return a;
        return eval(*e.children[1], scope);
      }
      case ExprKind::kOr: {
        LS_ASSIGN_OR_RETURN(Value a, eval(*e.children[0], scope));
        if (a.truthy()) return a;
        return eval(*e.children[1], scope);
      }
      case ExprKind::kConcat: {
        std::string s;
        for (const auto& c : e.children) {
          LS_ASSIGN_OR_RETURN(Value v, eval(*c, scope));
          const size_t before = s.size();
          LS_RETURN_IF_ERROR(append_str(v, limits_.max_output_bytes, &s));
          // Copying a string is cheap; printing a list or dict is not.
          LS_RETURN_IF_ERROR(charge(static_cast<int64_t>((s.size() - before) / (v.is_string() ? 16 : 4))));
        }
        return Value::string(std::move(s));
      }
      case ExprKind::kCondExpr: {
        LS_ASSIGN_OR_RETURN(Value test, eval(*e.children[0], scope));
        if (test.truthy()) return eval(*e.children[1], scope);
        if (e.children[2] != nullptr) return eval(*e.children[2], scope);
        return Value::undefined("the inline if-expression on line " + std::to_string(e.line) +
                                " evaluated to false and no else section was defined.");
      }
    }
    return Value();
  }

  static bool is_hashable(const Value& k) {
    if (k.is_list()) {
      if (k.as_list().kind != ListKind::kTuple) return false;
      for (const Value& item : k.as_list().items) {
        if (!is_hashable(item)) return false;
      }
      return true;
    }
    return !k.is_dict() && !k.is_object();
  }

  StatusOr<CallArgs> eval_args(const Expr& e, const ScopePtr& scope) {
    CallArgs args;
    for (size_t i = 1; i < e.children.size(); ++i) {
      LS_ASSIGN_OR_RETURN(Value v, eval(*e.children[i], scope));
      args.positional.push_back(std::move(v));
    }
    for (const auto& [k, ve] : e.keywords) {
      LS_ASSIGN_OR_RETURN(Value v, eval(*ve, scope));
      args.keywords.emplace_back(k, std::move(v));
    }
    return args;
  }

  // A filter node; in {% filter %} and {% set x | f %} the innermost subject
  // is the rendered block (`block_subject`).
  StatusOr<Value> eval_filter(const Expr& e, const ScopePtr& scope, const Value* block_subject) {
    Value subject;
    const Expr* inner = e.children[0].get();
    if (inner == nullptr) {
      if (block_subject != nullptr) subject = *block_subject;
    } else if (inner->kind == ExprKind::kFilter) {
      DepthGuard guard(this);
      LS_RETURN_IF_ERROR(check_depth());
      LS_ASSIGN_OR_RETURN(subject, eval_filter(*inner, scope, block_subject));
    } else {
      LS_ASSIGN_OR_RETURN(subject, eval(*inner, scope));
    }
    LS_ASSIGN_OR_RETURN(CallArgs args, eval_args(e, scope));
    if (e.filter == nullptr) return invalid_argument("No filter named '" + e.name + "'.");
    LS_RETURN_IF_ERROR(charge(1));
    return e.filter(*this, subject, args);
  }

  // --- operators -----------------------------------------------------------------------

  static Status undefined_operand(const Value& a, const Value& b) {
    return invalid_argument(a.is_undefined() ? a.undefined_message() : b.undefined_message());
  }

  static Status unsupported(const char* op, const Value& a, const Value& b) {
    return invalid_argument(std::string("unsupported operand type(s) for ") + op + ": '" + a.type_name() +
                            "' and '" + b.type_name() + "'");
  }

  static StatusOr<Value> unary(bool negate, const Value& v) {
    if (v.is_undefined()) return invalid_argument(v.undefined_message());
    if (v.is_float()) return Value::floating(negate ? -v.as_double() : v.as_double());
    if (v.is_integral()) {
      if (negate && v.as_int() == INT64_MIN) return invalid_argument("integer overflow");
      return Value::integer(negate ? -v.as_int() : v.as_int());
    }
    return invalid_argument(std::string("bad operand type for unary ") + (negate ? "-" : "+") + ": '" +
                            v.type_name() + "'");
  }

  StatusOr<Value> repeat(const Value& seq, int64_t times) {
    if (times <= 0) {
      return seq.is_string() ? Value::string("") : Value::list(std::vector<Value>(), seq.as_list().kind);
    }
    if (seq.is_string()) {
      const std::string& s = seq.as_string();
      if (static_cast<long double>(s.size()) * times > limits_.max_output_bytes) {
        return resource_exhausted("string repetition exceeds " + std::to_string(limits_.max_output_bytes) + " bytes");
      }
      LS_RETURN_IF_ERROR(charge(static_cast<int64_t>(s.size()) * times / 16));
      std::string out;
      out.reserve(s.size() * static_cast<size_t>(times));
      for (int64_t i = 0; i < times; ++i) out += s;
      return Value::string(std::move(out));
    }
    const auto& items = seq.as_list().items;
    if (static_cast<long double>(items.size()) * times > static_cast<long double>(limits_.max_loop_iterations)) {
      return resource_exhausted("list repetition too large");
    }
    LS_RETURN_IF_ERROR(charge(static_cast<int64_t>(items.size()) * times));
    std::vector<Value> out;
    out.reserve(items.size() * static_cast<size_t>(times));
    for (int64_t i = 0; i < times; ++i) out.insert(out.end(), items.begin(), items.end());
    return Value::list(std::move(out), seq.as_list().kind);
  }

  static bool is_plain_sequence(const Value& v) {
    return v.is_list() && (v.as_list().kind == ListKind::kList || v.as_list().kind == ListKind::kTuple);
  }

  StatusOr<Value> binary(BinaryOp op, const Value& a, const Value& b) {
    if (a.is_undefined() || b.is_undefined()) {
      // str % undefined formats it as '', everything else raises.
      if (!(op == BinaryOp::kMod && a.is_string())) return undefined_operand(a, b);
    }
    const bool numbers = a.is_number() && b.is_number();
    const bool ints = a.is_integral() && b.is_integral();
    switch (op) {
      case BinaryOp::kAdd:
        if (ints) {
          int64_t r;
          if (__builtin_add_overflow(a.as_int(), b.as_int(), &r)) return invalid_argument("integer overflow");
          return Value::integer(r);
        }
        if (numbers) return Value::floating(a.as_double() + b.as_double());
        if (a.is_string() && b.is_string()) {
          if (a.as_string().size() + b.as_string().size() > limits_.max_output_bytes) {
            return resource_exhausted("string concatenation exceeds " + std::to_string(limits_.max_output_bytes) +
                                      " bytes");
          }
          LS_RETURN_IF_ERROR(charge(static_cast<int64_t>((a.as_string().size() + b.as_string().size()) / 16)));
          return Value::string(a.as_string() + b.as_string());
        }
        if (is_plain_sequence(a) && is_plain_sequence(b) && a.as_list().kind == b.as_list().kind) {
          const auto& x = a.as_list().items;
          const auto& y = b.as_list().items;
          if (x.size() + y.size() > static_cast<size_t>(limits_.max_loop_iterations)) {
            return resource_exhausted("list concatenation too large");
          }
          LS_RETURN_IF_ERROR(charge(static_cast<int64_t>(x.size() + y.size())));
          std::vector<Value> out(x);
          out.insert(out.end(), y.begin(), y.end());
          return Value::list(std::move(out), a.as_list().kind);
        }
        if (a.is_string()) {
          return invalid_argument("can only concatenate str (not \"" + b.type_name() + "\") to str");
        }
        if (is_plain_sequence(a)) {
          return invalid_argument("can only concatenate " + a.type_name() + " (not \"" + b.type_name() + "\") to " +
                                  a.type_name());
        }
        return unsupported("+", a, b);
      case BinaryOp::kSub:
        if (ints) {
          int64_t r;
          if (__builtin_sub_overflow(a.as_int(), b.as_int(), &r)) return invalid_argument("integer overflow");
          return Value::integer(r);
        }
        if (numbers) return Value::floating(a.as_double() - b.as_double());
        return unsupported("-", a, b);
      case BinaryOp::kMul:
        if (ints) {
          int64_t r;
          if (__builtin_mul_overflow(a.as_int(), b.as_int(), &r)) return invalid_argument("integer overflow");
          return Value::integer(r);
        }
        if (numbers) return Value::floating(a.as_double() * b.as_double());
        if ((a.is_string() || is_plain_sequence(a)) && b.is_integral()) return repeat(a, b.as_int());
        if ((b.is_string() || is_plain_sequence(b)) && a.is_integral()) return repeat(b, a.as_int());
        return invalid_argument("can't multiply sequence by non-int of type '" +
                                (a.is_number() ? a : b).type_name() + "'");
      case BinaryOp::kDiv:
        if (!numbers) return unsupported("/", a, b);
        if (b.as_double() == 0) return invalid_argument("division by zero");
        if (ints) return Value::floating(int_true_divide(a.as_int(), b.as_int()));
        return Value::floating(a.as_double() / b.as_double());
      case BinaryOp::kFloorDiv:
      case BinaryOp::kMod:
        if (op == BinaryOp::kMod && a.is_string()) {
          LS_ASSIGN_OR_RETURN(std::string s, percent_format(*this, a.as_string(), b));
          return Value::string(std::move(s));
        }
        if (!numbers) return unsupported(op == BinaryOp::kMod ? "%" : "//", a, b);
        if (ints) {
          const int64_t x = a.as_int();
          const int64_t y = b.as_int();
          if (y == 0) return invalid_argument("integer division or modulo by zero");
          if (x == INT64_MIN && y == -1) {
            if (op == BinaryOp::kMod) return Value::integer(0);
            return invalid_argument("integer overflow");
          }
          int64_t q = x / y;
          int64_t r = x % y;
          if (r != 0 && ((r < 0) != (y < 0))) {
            q -= 1;
            r += y;
          }
          return Value::integer(op == BinaryOp::kMod ? r : q);
        }
        {
          const double x = a.as_double();
          const double y = b.as_double();
          if (y == 0) return invalid_argument(op == BinaryOp::kMod ? "float modulo" : "float floor division by zero");
          // CPython's float_divmod.
          double mod = std::fmod(x, y);
          double div = (x - mod) / y;
          if (mod != 0) {
            if ((y < 0) != (mod < 0)) {
              mod += y;
              div -= 1.0;
            }
          } else {
            mod = std::copysign(0.0, y);
          }
          double floordiv;
          if (div != 0) {
            floordiv = std::floor(div);
            if (div - floordiv > 0.5) floordiv += 1.0;
          } else {
            floordiv = std::copysign(0.0, x / y);
          }
          return Value::floating(op == BinaryOp::kMod ? mod : floordiv);
        }
      case BinaryOp::kPow:
        if (!numbers) return unsupported("** or pow()", a, b);
        if (ints && b.as_int() >= 0) {
          int64_t base = a.as_int();
          int64_t exp = b.as_int();
          int64_t result = 1;
          while (exp > 0) {
            if (exp & 1) {
              if (__builtin_mul_overflow(result, base, &result)) return invalid_argument("integer overflow");
            }
            exp >>= 1;
            if (exp > 0 && __builtin_mul_overflow(base, base, &base)) return invalid_argument("integer overflow");
          }
          return Value::integer(result);
        }
        {
          const double x = a.as_double();
          const double y = b.as_double();
          if (x == 0 && y < 0) return invalid_argument("0.0 cannot be raised to a negative power");
          if (x < 0 && y != std::floor(y)) return invalid_argument("complex results are not supported");
          return Value::floating(std::pow(x, y));
        }
    }
    return Value();
  }

  // int / int in Python is correctly rounded even past 2**53.
  static double int_true_divide(int64_t x, int64_t y) {
    const int64_t limit = int64_t{1} << 53;
    if (x > -limit && x < limit && y > -limit && y < limit) {
      return static_cast<double>(x) / static_cast<double>(y);
    }
    return static_cast<double>(static_cast<long double>(x) / static_cast<long double>(y));
  }

  StatusOr<bool> compare(CompareOp op, const Value& a, const Value& b) {
    int64_t cost = 0;
    StatusOr<bool> result = compare_values(op, a, b, &cost);
    LS_RETURN_IF_ERROR(charge(cost));
    return result;
  }

  StatusOr<bool> compare_values(CompareOp op, const Value& a, const Value& b, int64_t* cost) {
    switch (op) {
      case CompareOp::kEq: return values_equal(a, b, cost);
      case CompareOp::kNe: return !values_equal(a, b, cost);
      case CompareOp::kIn: return value_contains(*this, b, a);
      case CompareOp::kNotIn: {
        LS_ASSIGN_OR_RETURN(bool in, value_contains(*this, b, a));
        return !in;
      }
      default: break;
    }
    if (a.is_undefined() || b.is_undefined()) return undefined_operand(a, b);
    switch (op) {
      case CompareOp::kLt: return value_less(a, b, cost);
      case CompareOp::kGt: return value_less(b, a, cost);
      case CompareOp::kLe: {
        LS_ASSIGN_OR_RETURN(bool lt, value_less(a, b, cost));
        return lt || values_equal(a, b, cost);
      }
      case CompareOp::kGe: {
        LS_ASSIGN_OR_RETURN(bool gt, value_less(b, a, cost));
        return gt || values_equal(a, b, cost);
      }
      default: return false;
    }
  }

  const RenderLimits& limits_;
  const Value& context_;
  ScopePtr root_;
  std::vector<std::shared_ptr<ObjectData>> objects_;
  int64_t work_ = 0;
  int64_t iterations_ = 0;
  int depth_ = 0;
  int macro_depth_ = 0;
  bool annotated_ = false;
  bool folding_ = false;  // evaluating a constant subtree as jinja2's optimizer would
};

}  // namespace

StatusOr<std::string> render_template(const ParsedTemplate& t, const Value& context, const RenderLimits& limits) {
  Renderer renderer(limits, context);
  return renderer.render(t);
}

}  // namespace jinja
}  // namespace loraserve
