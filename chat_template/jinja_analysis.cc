#include "chat_template/jinja_analysis.h"

#include <map>
#include <set>
#include <string>
#include <vector>

namespace loraserve {
namespace jinja {
namespace {

Status fail_at(int line, const std::string& message) {
  return invalid_argument("chat template syntax error at line " + std::to_string(line) + ": " + message);
}

// jinja2's optimizer folds expressions built only from literals; folding
// evaluates slices through environment.getitem (a TypeError becomes
// Undefined) where the runtime would raise. The renderer needs to know
// which slices those are. Names, calls and the filters that take the
// render context (map, select, ...) are never constant.
void mark_constant(Expr* e) {
  switch (e->kind) {
    case ExprKind::kName:
    case ExprKind::kCall:
      e->constant = false;
      return;
    case ExprKind::kFilter:
      if (e->filter == nullptr || e->children[0] == nullptr || e->name == "map" || e->name == "select" ||
          e->name == "reject" || e->name == "selectattr" || e->name == "rejectattr") {
        e->constant = false;
        return;
      }
      break;
    case ExprKind::kTest:
      if (e->test == nullptr) {
        e->constant = false;
        return;
      }
      break;
    default:
      break;
  }
  // as_const is evaluated, not declared: `a if true else name` and
  // `false and name` fold because the name is never reached. So these
  // are constant when their first operand is; the renderer gives up on a
  // fold that reaches a name.
  if (e->kind == ExprKind::kCondExpr || e->kind == ExprKind::kAnd || e->kind == ExprKind::kOr) {
    e->constant = e->children[0]->constant;
    return;
  }
  bool constant = true;
  for (const auto& c : e->children) constant = constant && (c == nullptr || c->constant);
  for (const auto& [k, v] : e->keywords) constant = constant && v->constant;
  e->constant = constant;
}

// jinja2 reports an unknown filter or test when it compiles the template,
// except inside {% if %} bodies and conditional expressions ("soft"
// frames), where it waits until the expression runs. Loops, macros, set
// and filter blocks open fresh frames that are not soft.

Status check_expr(Expr* e, bool soft) {
  if (e == nullptr) return ok_status();
  if (e->kind == ExprKind::kFilter && e->filter == nullptr && !soft) {
    return fail_at(e->line, "No filter named '" + e->name + "'.");
  }
  if (e->kind == ExprKind::kTest && e->test == nullptr && !soft) {
    return fail_at(e->line, "No test named '" + e->name + "'.");
  }
  const bool child_soft = soft || e->kind == ExprKind::kCondExpr;
  for (const auto& c : e->children) LS_RETURN_IF_ERROR(check_expr(c.get(), child_soft));
  for (const auto& [k, v] : e->keywords) LS_RETURN_IF_ERROR(check_expr(v.get(), child_soft));
  mark_constant(e);
  return ok_status();
}

Status check_names(Body& body, bool soft) {
  for (const auto& stmt : body) {
    switch (stmt->kind) {
      case StmtKind::kOutput:
        for (const auto& e : static_cast<OutputStmt&>(*stmt).exprs) {
          LS_RETURN_IF_ERROR(check_expr(e.get(), soft));
        }
        break;
      case StmtKind::kIf: {
        auto& s = static_cast<IfStmt&>(*stmt);
        for (const auto& c : s.conditions) LS_RETURN_IF_ERROR(check_expr(c.get(), true));
        for (auto& b : s.bodies) LS_RETURN_IF_ERROR(check_names(b, true));
        break;
      }
      case StmtKind::kFor: {
        auto& s = static_cast<ForStmt&>(*stmt);
        LS_RETURN_IF_ERROR(check_expr(s.iter.get(), soft));
        LS_RETURN_IF_ERROR(check_expr(s.filter.get(), false));
        LS_RETURN_IF_ERROR(check_names(s.body, false));
        LS_RETURN_IF_ERROR(check_names(s.else_body, false));
        break;
      }
      case StmtKind::kSet:
        LS_RETURN_IF_ERROR(check_expr(static_cast<SetStmt&>(*stmt).value.get(), soft));
        break;
      case StmtKind::kSetBlock: {
        auto& s = static_cast<SetBlockStmt&>(*stmt);
        LS_RETURN_IF_ERROR(check_expr(s.filter.get(), false));
        LS_RETURN_IF_ERROR(check_names(s.body, false));
        break;
      }
      case StmtKind::kMacro: {
        auto& s = static_cast<MacroStmt&>(*stmt);
        for (const auto& d : s.defaults) LS_RETURN_IF_ERROR(check_expr(d.get(), false));
        LS_RETURN_IF_ERROR(check_names(s.body, false));
        break;
      }
      case StmtKind::kFilterBlock: {
        auto& s = static_cast<FilterBlockStmt&>(*stmt);
        LS_RETURN_IF_ERROR(check_expr(s.filter.get(), false));
        LS_RETURN_IF_ERROR(check_names(s.body, false));
        break;
      }
      case StmtKind::kWith: {
        auto& s = static_cast<WithStmt&>(*stmt);
        for (const auto& v : s.values) LS_RETURN_IF_ERROR(check_expr(v.get(), soft));
        LS_RETURN_IF_ERROR(check_names(s.body, false));
        break;
      }
      case StmtKind::kScope:
        LS_RETURN_IF_ERROR(check_names(static_cast<ScopeStmt&>(*stmt).body, false));
        break;
      default:
        break;
    }
  }
  return ok_status();
}


// Follows jinja2's FrameSymbolVisitor: a frame sees its own statements
// (including `if` bodies) but not the bodies of nested frames, which are
// analyzed afterwards with this frame's names as their outer names.
//
// One simplification: jinja2 keeps a name stored in every branch of an
// if/elif/else undefined; we treat a name first stored inside any branch
// as resolved from outside (what jinja2 does when some branch lacks it).
class FrameAnalyzer {
 public:
  void analyze(Body& body, const std::set<std::string>& params, const std::set<std::string>& outer,
               std::vector<std::string>* locals) {
    FrameAnalyzer frame;
    frame.outer_ = &outer;
    for (const auto& p : params) frame.refs_[p] = Mode::kParam;
    for (auto& stmt : body) frame.walk(*stmt, false);
    for (const auto& [name, mode] : frame.refs_) {
      if (mode == Mode::kUndefined) locals->push_back(name);
    }
    std::set<std::string> inner_outer = outer;
    for (const auto& [name, mode] : frame.refs_) inner_outer.insert(name);
    for (auto& child : frame.children_) analyze(*child.body, child.params, inner_outer, child.locals);
  }

 private:
  enum class Mode { kParam, kResolve, kUndefined, kAlias };

  struct Child {
    Body* body;
    std::set<std::string> params;
    std::vector<std::string>* locals;
  };

  void load(const std::string& name) {
    if (refs_.count(name) == 0 && outer_->count(name) == 0) refs_[name] = Mode::kResolve;
  }

  void store(const std::string& name, bool in_branch) {
    if (refs_.count(name) != 0) return;
    if (outer_->count(name) != 0) {
      refs_[name] = Mode::kAlias;
    } else {
      refs_[name] = in_branch ? Mode::kResolve : Mode::kUndefined;
    }
  }

  void load_expr(const Expr* e) {
    if (e == nullptr) return;
    if (e->kind == ExprKind::kName) load(e->name);
    for (const auto& c : e->children) load_expr(c.get());
    for (const auto& [k, v] : e->keywords) load_expr(v.get());
  }

  void store_target(const Target& t, bool in_branch) {
    switch (t.kind) {
      case Target::Kind::kName: store(t.name, in_branch); break;
      case Target::Kind::kTuple:
        for (const auto& item : t.items) store_target(item, in_branch);
        break;
      case Target::Kind::kNamespaceAttr: load(t.name); break;
    }
  }

  static void target_names(const Target& t, std::set<std::string>* out) {
    if (t.kind == Target::Kind::kName) out->insert(t.name);
    for (const auto& item : t.items) target_names(item, out);
  }

  void walk(Stmt& stmt, bool in_branch) {
    switch (stmt.kind) {
      case StmtKind::kOutput:
        for (const auto& e : static_cast<OutputStmt&>(stmt).exprs) load_expr(e.get());
        break;
      case StmtKind::kIf: {
        auto& s = static_cast<IfStmt&>(stmt);
        load_expr(s.conditions[0].get());
        for (size_t i = 0; i < s.bodies.size(); ++i) {
          if (i > 0 && i < s.conditions.size()) load_expr(s.conditions[i].get());
          for (auto& child : s.bodies[i]) walk(*child, true);
        }
        break;
      }
      case StmtKind::kFor: {
        auto& s = static_cast<ForStmt&>(stmt);
        load_expr(s.iter.get());
        std::set<std::string> params = {"loop"};
        target_names(s.target, &params);
        children_.push_back({&s.body, params, &s.body_locals});
        children_.push_back({&s.else_body, {}, &s.else_locals});
        break;
      }
      case StmtKind::kSet: {
        auto& s = static_cast<SetStmt&>(stmt);
        load_expr(s.value.get());
        store_target(s.target, in_branch);
        break;
      }
      case StmtKind::kSetBlock: {
        auto& s = static_cast<SetBlockStmt&>(stmt);
        store_target(s.target, in_branch);
        children_.push_back({&s.body, {}, &s.body_locals});
        break;
      }
      case StmtKind::kMacro: {
        auto& s = static_cast<MacroStmt&>(stmt);
        store(s.name, in_branch);
        std::set<std::string> params(s.params.begin(), s.params.end());
        params.insert({"varargs", "kwargs", "caller"});
        children_.push_back({&s.body, params, &s.body_locals});
        break;
      }
      case StmtKind::kFilterBlock: {
        auto& s = static_cast<FilterBlockStmt&>(stmt);
        load_expr(s.filter.get());
        children_.push_back({&s.body, {}, &s.body_locals});
        break;
      }
      case StmtKind::kWith: {
        auto& s = static_cast<WithStmt&>(stmt);
        for (const auto& v : s.values) load_expr(v.get());
        std::set<std::string> params;
        for (const auto& t : s.targets) target_names(t, &params);
        children_.push_back({&s.body, params, &s.body_locals});
        break;
      }
      case StmtKind::kScope: {
        auto& s = static_cast<ScopeStmt&>(stmt);
        children_.push_back({&s.body, {}, &s.body_locals});
        break;
      }
      default:
        break;
    }
  }

  const std::set<std::string>* outer_ = nullptr;
  std::map<std::string, Mode> refs_;
  std::vector<Child> children_;
};

}  // namespace

Status analyze_template(ParsedTemplate* t) {
  LS_RETURN_IF_ERROR(check_names(t->body, false));
  FrameAnalyzer analyzer;
  analyzer.analyze(t->body, {}, {}, &t->body_locals);
  return ok_status();
}

}  // namespace jinja
}  // namespace loraserve
