// The syntax tree the Jinja parser builds and the renderer walks. It mirrors
// jinja2's nodes closely enough that the renderer can follow jinja2's
// evaluation rules node by node.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chat_template/jinja_builtins.h"
#include "chat_template/jinja_value.h"

namespace loraserve {
namespace jinja {

enum class ExprKind : uint8_t {
  kConst,     // value
  kName,      // name
  kList,      // children: items
  kTuple,     // children: items
  kDict,      // children: key0, value0, key1, value1, ...
  kGetAttr,   // children[0].name
  kGetItem,   // children[0][children[1]]
  kSlice,     // children[0][children[1]:children[2]:children[3]] (null = omitted)
  kCall,      // children[0](children[1..], keywords)
  kFilter,    // children[0]|name(children[1..], keywords); children[0] null in {% filter %}
  kTest,      // children[0] is name(children[1..], keywords)
  kNot,       // not children[0]
  kNeg,       // -children[0]
  kPos,       // +children[0]
  kBinary,    // children[0] op children[1]
  kCompare,   // children[0] compare_ops[0] children[1] compare_ops[1] children[2] ...
  kAnd,       // children[0] and children[1]
  kOr,        // children[0] or children[1]
  kConcat,    // children joined with ~
  kCondExpr,  // children[1] if children[0] else children[2] (null = no else)
};

enum class BinaryOp : uint8_t { kAdd, kSub, kMul, kDiv, kFloorDiv, kMod, kPow };
enum class CompareOp : uint8_t { kEq, kNe, kLt, kLe, kGt, kGe, kIn, kNotIn };

struct Expr {
  ExprKind kind = ExprKind::kConst;
  int line = 0;
  int depth = 1;  // height of this subtree, bounded by the parser
  bool constant = false;  // built from literals only (jinja2 folds it at compile time)
  Value value;
  std::string name;
  BinaryOp op = BinaryOp::kAdd;
  std::vector<CompareOp> compare_ops;
  std::vector<std::unique_ptr<Expr>> children;
  std::vector<std::pair<std::string, std::unique_ptr<Expr>>> keywords;
  // Resolved at parse time. Null for a name jinja2 only rejects when it is
  // evaluated (inside {% if %} and conditional expressions).
  FilterFn filter = nullptr;
  TestFn test = nullptr;
};
using ExprPtr = std::unique_ptr<Expr>;

// Where {% set %} and {% for %} store: a name, a tuple to unpack, or a
// namespace attribute (ns.attr).
struct Target {
  enum class Kind : uint8_t { kName, kTuple, kNamespaceAttr };
  Kind kind = Kind::kName;
  std::string name;
  std::string attr;
  std::vector<Target> items;
};

// Frame locals: jinja2 decides at compile time which names a frame (the
// template, a loop body, a macro, a set/filter/with block) owns. A name the
// frame assigns before anything in it reads the name starts out undefined
// in that frame, even where an outer frame or the context has a value:
//   {% for m in ms %}{{ x }}{% endfor %}{% set x = 1 %}  prints nothing for x.
// The parser lists such names per frame (`*_locals`); the renderer binds
// them to Undefined when it enters the frame.

enum class StmtKind : uint8_t {
  kText, kOutput, kIf, kFor, kSet, kSetBlock, kMacro, kBreak, kContinue, kFilterBlock, kWith,
  kScope,  // {% generation %} / {% block %}: renders its body in place
};

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;


struct Stmt {
  explicit Stmt(StmtKind k, int l) : kind(k), line(l) {}
  virtual ~Stmt() = default;
  StmtKind kind;
  int line;
};

struct TextStmt : Stmt {
  TextStmt(int l, std::string t) : Stmt(StmtKind::kText, l), text(std::move(t)) {}
  std::string text;
};

struct OutputStmt : Stmt {
  explicit OutputStmt(int l) : Stmt(StmtKind::kOutput, l) {}
  std::vector<ExprPtr> exprs;
};

struct IfStmt : Stmt {
  explicit IfStmt(int l) : Stmt(StmtKind::kIf, l) {}
  std::vector<ExprPtr> conditions;  // if, elif, elif, ...
  std::vector<Body> bodies;         // one per condition, plus one for else
};

struct ForStmt : Stmt {
  explicit ForStmt(int l) : Stmt(StmtKind::kFor, l) {}
  Target target;
  ExprPtr iter;
  ExprPtr filter;  // `for x in y if cond`, may be null
  Body body;
  Body else_body;
  std::vector<std::string> body_locals;  // see Frame locals below
  std::vector<std::string> else_locals;
};

struct SetStmt : Stmt {
  explicit SetStmt(int l) : Stmt(StmtKind::kSet, l) {}
  Target target;
  ExprPtr value;
};

struct SetBlockStmt : Stmt {
  explicit SetBlockStmt(int l) : Stmt(StmtKind::kSetBlock, l) {}
  Target target;
  ExprPtr filter;  // {% set x | upper %}, may be null
  Body body;
  std::vector<std::string> body_locals;
};

struct MacroStmt : Stmt {
  explicit MacroStmt(int l) : Stmt(StmtKind::kMacro, l) {}
  std::string name;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // for the last defaults.size() params
  bool catch_varargs = false;     // the body reads `varargs`
  bool catch_kwargs = false;      // the body reads `kwargs`
  Body body;
  std::vector<std::string> body_locals;
};

struct FilterBlockStmt : Stmt {
  explicit FilterBlockStmt(int l) : Stmt(StmtKind::kFilterBlock, l) {}
  ExprPtr filter;  // a filter chain whose innermost subject is null
  Body body;
  std::vector<std::string> body_locals;
};

struct WithStmt : Stmt {
  explicit WithStmt(int l) : Stmt(StmtKind::kWith, l) {}
  std::vector<Target> targets;
  std::vector<ExprPtr> values;
  Body body;
  std::vector<std::string> body_locals;
};

struct ScopeStmt : Stmt {
  explicit ScopeStmt(int l) : Stmt(StmtKind::kScope, l) {}
  Body body;
  std::vector<std::string> body_locals;
};

struct ParsedTemplate {
  Body body;
  std::vector<std::string> body_locals;  // the template frame's, see Frame locals
};

}  // namespace jinja
}  // namespace loraserve
