#include "chat_template/jinja_parser.h"

#include "chat_template/jinja_analysis.h"

#include <algorithm>
#include <initializer_list>

namespace loraserve {
namespace jinja {
namespace {

using Names = std::initializer_list<const char*>;

bool contains(Names names, const std::string& s) {
  return std::any_of(names.begin(), names.end(), [&](const char* n) { return s == n; });
}

ExprPtr make_expr(ExprKind kind, int line) {
  auto e = std::make_unique<Expr>();
  e->kind = kind;
  e->line = line;
  return e;
}

class Parser {
 public:
  Parser(const std::vector<Token>& tokens, int max_nesting) : tokens_(tokens), max_nesting_(max_nesting) {}

  StatusOr<Body> parse() {
    LS_ASSIGN_OR_RETURN(Body body, subparse({}));
    if (cur().type != TokenType::kEof) return fail("unexpected tokens after the template");
    return body;
  }

 private:
  // RAII nesting counter: every recursive path of the parser passes through
  // one, so hostile input ((((((...) fails cleanly instead of overflowing
  // the stack.
  class Nesting {
   public:
    explicit Nesting(Parser* p) : p_(p) { ++p_->depth_; }
    ~Nesting() { --p_->depth_; }
    Nesting(const Nesting&) = delete;
    Nesting& operator=(const Nesting&) = delete;

   private:
    Parser* p_;
  };

  Status check_depth() {
    if (depth_ > max_nesting_) {
      return fail("template nested too deeply (more than " + std::to_string(max_nesting_) + " levels)");
    }
    return ok_status();
  }

  // --- token stream ---------------------------------------------------------

  const Token& cur() const { return tokens_[pos_]; }
  const Token& look() const { return tokens_[std::min(pos_ + 1, tokens_.size() - 1)]; }
  void advance() {
    if (pos_ + 1 < tokens_.size()) ++pos_;
  }
  bool at_op(const char* op) const { return cur().type == TokenType::kOperator && cur().text == op; }
  bool at_name(const char* name) const { return cur().type == TokenType::kName && cur().text == name; }
  bool at_type(TokenType t) const { return cur().type == t; }

  std::string describe(const Token& t) const {
    switch (t.type) {
      case TokenType::kData: return "template data / text";
      case TokenType::kVariableBegin: return "begin of print statement";
      case TokenType::kVariableEnd: return "end of print statement";
      case TokenType::kBlockBegin: return "begin of statement block";
      case TokenType::kBlockEnd: return "end of statement block";
      case TokenType::kName: return t.text;
      case TokenType::kString: return "string";
      case TokenType::kInteger: return "integer";
      case TokenType::kFloat: return "float";
      case TokenType::kOperator: return t.text;
      case TokenType::kEof: return "end of template";
    }
    return "token";
  }

  Status fail_at(int line, const std::string& message) const {
    return invalid_argument("chat template syntax error at line " + std::to_string(line) + ": " + message);
  }
  Status fail(const std::string& message) const { return fail_at(cur().line, message); }

  Status expect_op(const char* op) {
    if (!at_op(op)) return fail(std::string("expected '") + op + "', got '" + describe(cur()) + "'");
    advance();
    return ok_status();
  }
  Status expect_type(TokenType t, const char* what) {
    if (!at_type(t)) return fail(std::string("expected ") + what + ", got '" + describe(cur()) + "'");
    advance();
    return ok_status();
  }
  StatusOr<std::string> expect_name() {
    if (!at_type(TokenType::kName)) return fail("expected name, got '" + describe(cur()) + "'");
    std::string n = cur().text;
    advance();
    return n;
  }
  Status expect_keyword(const char* name) {
    if (!at_name(name)) return fail(std::string("expected '") + name + "', got '" + describe(cur()) + "'");
    advance();
    return ok_status();
  }

  // --- statements ---------------------------------------------------------------

  StatusOr<Body> subparse(Names end_tokens) {
    Nesting nest(this);
    LS_RETURN_IF_ERROR(check_depth());
    Body body;
    while (!at_type(TokenType::kEof)) {
      const Token& t = cur();
      if (t.type == TokenType::kData) {
        body.push_back(std::make_unique<TextStmt>(t.line, t.text));
        advance();
      } else if (t.type == TokenType::kVariableBegin) {
        auto out = std::make_unique<OutputStmt>(t.line);
        advance();
        LS_ASSIGN_OR_RETURN(ExprPtr e, parse_tuple(false, true, {}, false));
        out->exprs.push_back(std::move(e));
        LS_RETURN_IF_ERROR(expect_type(TokenType::kVariableEnd, "end of print statement"));
        body.push_back(std::move(out));
      } else if (t.type == TokenType::kBlockBegin) {
        advance();
        if (at_type(TokenType::kName) && contains(end_tokens, cur().text)) return body;
        LS_ASSIGN_OR_RETURN(std::unique_ptr<Stmt> stmt, parse_statement());
        if (stmt != nullptr) body.push_back(std::move(stmt));
        LS_RETURN_IF_ERROR(expect_type(TokenType::kBlockEnd, "end of statement block"));
      } else {
        return fail("unexpected '" + describe(t) + "'");
      }
    }
    if (end_tokens.size() > 0) {
      std::string wanted;
      for (const char* n : end_tokens) wanted += std::string(wanted.empty() ? "'" : " or '") + n + "'";
      return fail("Unexpected end of template. Jinja was looking for the following tags: " + wanted + ".");
    }
    return body;
  }

  // {% ... %} body up to one of end_tokens; with drop_needle the end tag
  // name is consumed too.
  StatusOr<Body> parse_statements(Names end_tokens, bool drop_needle) {
    if (at_op(":")) advance();
    LS_RETURN_IF_ERROR(expect_type(TokenType::kBlockEnd, "end of statement block"));
    LS_ASSIGN_OR_RETURN(Body body, subparse(end_tokens));
    if (drop_needle) advance();
    return body;
  }

  StatusOr<std::unique_ptr<Stmt>> parse_statement() {
    if (!at_type(TokenType::kName)) return fail("tag name expected");
    const std::string tag = cur().text;
    if (tag == "for") return parse_for();
    if (tag == "if") return parse_if();
    if (tag == "set") return parse_set();
    if (tag == "macro") return parse_macro();
    if (tag == "break" || tag == "continue") {
      const int line = cur().line;
      if (loop_depth_ == 0) return fail("'" + tag + "' outside loop");
      advance();
      return std::unique_ptr<Stmt>(
          std::make_unique<Stmt>(tag == "break" ? StmtKind::kBreak : StmtKind::kContinue, line));
    }
    if (tag == "filter") return parse_filter_block();
    if (tag == "with") return parse_with();
    if (tag == "generation" || tag == "block") return parse_scope(tag);
    if (tag == "print") {
      auto out = std::make_unique<OutputStmt>(cur().line);
      advance();
      while (!at_type(TokenType::kBlockEnd)) {
        if (!out->exprs.empty()) LS_RETURN_IF_ERROR(expect_op(","));
        LS_ASSIGN_OR_RETURN(ExprPtr e, parse_expression(true));
        out->exprs.push_back(std::move(e));
      }
      return std::unique_ptr<Stmt>(std::move(out));
    }
    if (tag == "call" || tag == "extends" || tag == "include" || tag == "import" || tag == "from" ||
        tag == "autoescape" || tag == "do") {
      return fail("tag '" + tag + "' is not supported in chat templates");
    }
    return fail("Encountered unknown tag '" + tag + "'.");
  }

  StatusOr<std::unique_ptr<Stmt>> parse_for() {
    auto node = std::make_unique<ForStmt>(cur().line);
    advance();
    LS_ASSIGN_OR_RETURN(node->target, parse_assign_target(false, {"in"}));
    if (target_names_contain(node->target, "loop")) {
      return fail("Can't assign to special loop variable in for-loop target");
    }
    LS_RETURN_IF_ERROR(expect_keyword("in"));
    LS_ASSIGN_OR_RETURN(node->iter, parse_tuple(false, false, {"recursive"}, false));
    if (at_name("if")) {
      advance();
      LS_ASSIGN_OR_RETURN(node->filter, parse_expression(true));
    }
    if (at_name("recursive")) return fail("recursive loops are not supported in chat templates");
    ++loop_depth_;
    auto body = parse_statements({"endfor", "else"}, false);
    --loop_depth_;
    if (!body.ok()) return body.status();
    node->body = std::move(body).value();
    if (at_name("endfor")) {
      advance();
    } else {
      advance();  // else
      LS_ASSIGN_OR_RETURN(node->else_body, parse_statements({"endfor"}, true));
    }
    return std::unique_ptr<Stmt>(std::move(node));
  }

  StatusOr<std::unique_ptr<Stmt>> parse_if() {
    auto node = std::make_unique<IfStmt>(cur().line);
    advance();
    while (true) {
      LS_ASSIGN_OR_RETURN(ExprPtr cond, parse_tuple(false, false, {}, false));
      node->conditions.push_back(std::move(cond));
      LS_ASSIGN_OR_RETURN(Body body, parse_statements({"elif", "else", "endif"}, false));
      node->bodies.push_back(std::move(body));
      const std::string tag = cur().text;
      advance();
      if (tag == "elif") continue;
      if (tag == "else") {
        LS_ASSIGN_OR_RETURN(Body else_body, parse_statements({"endif"}, true));
        node->bodies.push_back(std::move(else_body));
      }
      break;
    }
    return std::unique_ptr<Stmt>(std::move(node));
  }

  StatusOr<std::unique_ptr<Stmt>> parse_set() {
    const int line = cur().line;
    advance();
    LS_ASSIGN_OR_RETURN(Target target, parse_assign_target(true, {}));
    if (at_op("=")) {
      advance();
      auto node = std::make_unique<SetStmt>(line);
      node->target = std::move(target);
      LS_ASSIGN_OR_RETURN(node->value, parse_tuple(false, true, {}, false));
      return std::unique_ptr<Stmt>(std::move(node));
    }
    auto node = std::make_unique<SetBlockStmt>(line);
    node->target = std::move(target);
    if (at_op("|")) {
      LS_ASSIGN_OR_RETURN(node->filter, parse_filter(nullptr, false));
    }
    LS_ASSIGN_OR_RETURN(node->body, parse_statements({"endset"}, true));
    return std::unique_ptr<Stmt>(std::move(node));
  }

  StatusOr<std::unique_ptr<Stmt>> parse_macro() {
    auto node = std::make_unique<MacroStmt>(cur().line);
    advance();
    LS_ASSIGN_OR_RETURN(node->name, expect_name());
    LS_RETURN_IF_ERROR(expect_op("("));
    while (!at_op(")")) {
      if (!node->params.empty()) LS_RETURN_IF_ERROR(expect_op(","));
      LS_ASSIGN_OR_RETURN(std::string param, expect_name());
      node->params.push_back(param);
      if (at_op("=")) {
        advance();
        LS_ASSIGN_OR_RETURN(ExprPtr d, parse_expression(true));
        node->defaults.push_back(std::move(d));
      } else if (!node->defaults.empty()) {
        return fail("non-default argument follows default argument");
      }
    }
    advance();  // )
    const int saved_loop_depth = loop_depth_;
    loop_depth_ = 0;
    macro_stack_.push_back(node.get());
    auto body = parse_statements({"endmacro"}, true);
    macro_stack_.pop_back();
    loop_depth_ = saved_loop_depth;
    if (!body.ok()) return body.status();
    node->body = std::move(body).value();
    return std::unique_ptr<Stmt>(std::move(node));
  }

  StatusOr<std::unique_ptr<Stmt>> parse_filter_block() {
    auto node = std::make_unique<FilterBlockStmt>(cur().line);
    advance();
    LS_ASSIGN_OR_RETURN(node->filter, parse_filter(nullptr, true));
    LS_ASSIGN_OR_RETURN(node->body, parse_statements({"endfilter"}, true));
    return std::unique_ptr<Stmt>(std::move(node));
  }

  StatusOr<std::unique_ptr<Stmt>> parse_with() {
    auto node = std::make_unique<WithStmt>(cur().line);
    advance();
    while (!at_type(TokenType::kBlockEnd)) {
      if (!node->targets.empty()) LS_RETURN_IF_ERROR(expect_op(","));
      LS_ASSIGN_OR_RETURN(Target t, parse_assign_target(false, {}));
      node->targets.push_back(std::move(t));
      LS_RETURN_IF_ERROR(expect_op("="));
      LS_ASSIGN_OR_RETURN(ExprPtr v, parse_expression(true));
      node->values.push_back(std::move(v));
    }
    LS_ASSIGN_OR_RETURN(node->body, parse_statements({"endwith"}, true));
    return std::unique_ptr<Stmt>(std::move(node));
  }

  // {% generation %} (transformers' AssistantTracker) and {% block name %}
  // both render their body where they stand.
  StatusOr<std::unique_ptr<Stmt>> parse_scope(const std::string& tag) {
    auto node = std::make_unique<ScopeStmt>(cur().line);
    advance();
    std::string block_name;
    if (tag == "block") {
      LS_ASSIGN_OR_RETURN(block_name, expect_name());
      if (at_name("scoped")) advance();
      if (at_name("required")) advance();
      LS_ASSIGN_OR_RETURN(node->body, parse_statements({"endblock"}, true));
      if (at_type(TokenType::kName) && cur().text == block_name) advance();
    } else {
      LS_ASSIGN_OR_RETURN(node->body, parse_statements({"endgeneration"}, true));
    }
    return std::unique_ptr<Stmt>(std::move(node));
  }

  static bool target_names_contain(const Target& t, const std::string& name) {
    if (t.kind == Target::Kind::kName) return t.name == name;
    return std::any_of(t.items.begin(), t.items.end(),
                       [&](const Target& x) { return target_names_contain(x, name); });
  }

  StatusOr<Target> target_from_expr(const Expr& e) {
    Target t;
    if (e.kind == ExprKind::kName) {
      t.kind = Target::Kind::kName;
      t.name = e.name;
      return t;
    }
    if (e.kind == ExprKind::kTuple) {
      t.kind = Target::Kind::kTuple;
      for (const auto& item : e.children) {
        LS_ASSIGN_OR_RETURN(Target sub, target_from_expr(*item));
        t.items.push_back(std::move(sub));
      }
      return t;
    }
    return fail_at(e.line, "can't assign to this expression");
  }

  StatusOr<Target> parse_assign_target(bool with_namespace, Names extra_end) {
    if (with_namespace && at_type(TokenType::kName) && look().type == TokenType::kOperator &&
        look().text == ".") {
      Target t;
      t.kind = Target::Kind::kNamespaceAttr;
      t.name = cur().text;
      advance();
      advance();
      LS_ASSIGN_OR_RETURN(t.attr, expect_name());
      return t;
    }
    LS_ASSIGN_OR_RETURN(ExprPtr e, parse_tuple(true, true, extra_end, false));
    return target_from_expr(*e);
  }

  // --- expressions ------------------------------------------------------------------

  // Loops build chains (a + b + c ..., x|f|g ..., a.b.c ...) without
  // recursing in the parser, so the tree's depth is tracked separately: the
  // renderer walks it recursively, and destroying it recurses too.
  Status check_child_depth(Expr* parent, const Expr* child) {
    if (child == nullptr) return ok_status();
    parent->depth = std::max(parent->depth, child->depth + 1);
    if (parent->depth > max_nesting_) {
      return fail_at(parent->line, "expression nested too deeply (more than " +
                                       std::to_string(max_nesting_) + " levels)");
    }
    return ok_status();
  }

  Status adopt(Expr* parent, ExprPtr child) {
    LS_RETURN_IF_ERROR(check_child_depth(parent, child.get()));
    parent->children.push_back(std::move(child));
    return ok_status();
  }

  bool is_tuple_end(Names extra_end) const {
    if (at_type(TokenType::kVariableEnd) || at_type(TokenType::kBlockEnd) || at_op(")")) return true;
    return at_type(TokenType::kName) && contains(extra_end, cur().text);
  }

  StatusOr<ExprPtr> parse_tuple(bool simplified, bool with_condexpr, Names extra_end, bool explicit_parens) {
    const int line = cur().line;
    std::vector<ExprPtr> args;
    bool is_tuple = false;
    while (true) {
      if (!args.empty()) LS_RETURN_IF_ERROR(expect_op(","));
      if (is_tuple_end(extra_end)) break;
      if (simplified) {
        LS_ASSIGN_OR_RETURN(ExprPtr e, parse_primary());
        args.push_back(std::move(e));
      } else {
        LS_ASSIGN_OR_RETURN(ExprPtr e, parse_expression(with_condexpr));
        args.push_back(std::move(e));
      }
      if (at_op(",")) {
        is_tuple = true;
      } else {
        break;
      }
    }
    if (!is_tuple) {
      if (!args.empty()) return std::move(args[0]);
      if (!explicit_parens) return fail("Expected an expression, got '" + describe(cur()) + "'");
    }
    auto t = make_expr(ExprKind::kTuple, line);
    for (auto& a : args) LS_RETURN_IF_ERROR(adopt(t.get(), std::move(a)));
    return t;
  }

  StatusOr<ExprPtr> parse_expression(bool with_condexpr) {
    Nesting nest(this);
    LS_RETURN_IF_ERROR(check_depth());
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  StatusOr<ExprPtr> parse_condexpr() {
    LS_ASSIGN_OR_RETURN(ExprPtr expr1, parse_or());
    while (at_name("if")) {
      const int line = cur().line;
      advance();
      auto node = make_expr(ExprKind::kCondExpr, line);
      LS_ASSIGN_OR_RETURN(ExprPtr test, parse_or());
      ExprPtr else_expr;
      if (at_name("else")) {
        advance();
        LS_ASSIGN_OR_RETURN(else_expr, parse_condexpr());
      }
      LS_RETURN_IF_ERROR(adopt(node.get(), std::move(test)));
      LS_RETURN_IF_ERROR(adopt(node.get(), std::move(expr1)));
      LS_RETURN_IF_ERROR(adopt(node.get(), std::move(else_expr)));
      expr1 = std::move(node);
    }
    return expr1;
  }

  StatusOr<ExprPtr> parse_or() {
    LS_ASSIGN_OR_RETURN(ExprPtr left, parse_and());
    while (at_name("or")) {
      const int line = cur().line;
      advance();
      LS_ASSIGN_OR_RETURN(ExprPtr right, parse_and());
      auto node = make_expr(ExprKind::kOr, line);
      LS_RETURN_IF_ERROR(adopt(node.get(), std::move(left)));
      LS_RETURN_IF_ERROR(adopt(node.get(), std::move(right)));
      left = std::move(node);
    }
    return left;
  }

  StatusOr<ExprPtr> parse_and() {
    LS_ASSIGN_OR_RETURN(ExprPtr left, parse_not());
    while (at_name("and")) {
      const int line = cur().line;
      advance();
      LS_ASSIGN_OR_RETURN(ExprPtr right, parse_not());
      auto node = make_expr(ExprKind::kAnd, line);
      LS_RETURN_IF_ERROR(adopt(node.get(), std::move(left)));
      LS_RETURN_IF_ERROR(adopt(node.get(), std::move(right)));
      left = std::move(node);
    }
    return left;
  }

  StatusOr<ExprPtr> parse_not() {
    Nesting nest(this);
    LS_RETURN_IF_ERROR(check_depth());
    if (at_name("not")) {
      auto node = make_expr(ExprKind::kNot, cur().line);
      advance();
      LS_ASSIGN_OR_RETURN(ExprPtr operand, parse_not());
      LS_RETURN_IF_ERROR(adopt(node.get(), std::move(operand)));
      return node;
    }
    return parse_compare();
  }

  StatusOr<ExprPtr> parse_compare() {
    const int line = cur().line;
    LS_ASSIGN_OR_RETURN(ExprPtr expr, parse_math1());
    auto node = make_expr(ExprKind::kCompare, line);
    LS_RETURN_IF_ERROR(adopt(node.get(), std::move(expr)));
    while (true) {
      CompareOp op;
      if (at_op("==")) op = CompareOp::kEq;
      else if (at_op("!=")) op = CompareOp::kNe;
      else if (at_op("<")) op = CompareOp::kLt;
      else if (at_op("<=")) op = CompareOp::kLe;
      else if (at_op(">")) op = CompareOp::kGt;
      else if (at_op(">=")) op = CompareOp::kGe;
      else if (at_name("in")) op = CompareOp::kIn;
      else if (at_name("not") && look().type == TokenType::kName && look().text == "in") {
        op = CompareOp::kNotIn;
        advance();
      } else {
        break;
      }
      advance();
      LS_ASSIGN_OR_RETURN(ExprPtr right, parse_math1());
      node->compare_ops.push_back(op);
      LS_RETURN_IF_ERROR(adopt(node.get(), std::move(right)));
    }
    if (node->compare_ops.empty()) return std::move(node->children[0]);
    return node;
  }

  StatusOr<ExprPtr> binary(ExprPtr left, BinaryOp op, ExprPtr right, int line) {
    auto node = make_expr(ExprKind::kBinary, line);
    node->op = op;
    LS_RETURN_IF_ERROR(adopt(node.get(), std::move(left)));
    LS_RETURN_IF_ERROR(adopt(node.get(), std::move(right)));
    return node;
  }

  StatusOr<ExprPtr> parse_math1() {
    LS_ASSIGN_OR_RETURN(ExprPtr left, parse_concat());
    while (at_op("+") || at_op("-")) {
      const BinaryOp op = at_op("+") ? BinaryOp::kAdd : BinaryOp::kSub;
      const int line = cur().line;
      advance();
      LS_ASSIGN_OR_RETURN(ExprPtr right, parse_concat());
      LS_ASSIGN_OR_RETURN(left, binary(std::move(left), op, std::move(right), line));
    }
    return left;
  }

  StatusOr<ExprPtr> parse_concat() {
    const int line = cur().line;
    LS_ASSIGN_OR_RETURN(ExprPtr first, parse_math2());
    if (!at_op("~")) return first;
    auto node = make_expr(ExprKind::kConcat, line);
    LS_RETURN_IF_ERROR(adopt(node.get(), std::move(first)));
    while (at_op("~")) {
      advance();
      LS_ASSIGN_OR_RETURN(ExprPtr next, parse_math2());
      LS_RETURN_IF_ERROR(adopt(node.get(), std::move(next)));
    }
    return node;
  }

  StatusOr<ExprPtr> parse_math2() {
    LS_ASSIGN_OR_RETURN(ExprPtr left, parse_pow());
    while (at_op("*") || at_op("/") || at_op("//") || at_op("%")) {
      const BinaryOp op = at_op("*") ? BinaryOp::kMul : at_op("/") ? BinaryOp::kDiv
                          : at_op("//") ? BinaryOp::kFloorDiv : BinaryOp::kMod;
      const int line = cur().line;
      advance();
      LS_ASSIGN_OR_RETURN(ExprPtr right, parse_pow());
      LS_ASSIGN_OR_RETURN(left, binary(std::move(left), op, std::move(right), line));
    }
    return left;
  }

  StatusOr<ExprPtr> parse_pow() {
    LS_ASSIGN_OR_RETURN(ExprPtr left, parse_unary(true));
    while (at_op("**")) {
      const int line = cur().line;
      advance();
      LS_ASSIGN_OR_RETURN(ExprPtr right, parse_unary(true));
      LS_ASSIGN_OR_RETURN(left, binary(std::move(left), BinaryOp::kPow, std::move(right), line));
    }
    return left;
  }

  StatusOr<ExprPtr> parse_unary(bool with_filter) {
    Nesting nest(this);
    LS_RETURN_IF_ERROR(check_depth());
    ExprPtr node;
    if (at_op("-") || at_op("+")) {
      node = make_expr(at_op("-") ? ExprKind::kNeg : ExprKind::kPos, cur().line);
      advance();
      LS_ASSIGN_OR_RETURN(ExprPtr operand, parse_unary(false));
      LS_RETURN_IF_ERROR(adopt(node.get(), std::move(operand)));
    } else {
      LS_ASSIGN_OR_RETURN(node, parse_primary());
    }
    LS_ASSIGN_OR_RETURN(node, parse_postfix(std::move(node)));
    if (with_filter) {
      LS_ASSIGN_OR_RETURN(node, parse_filter_expr(std::move(node)));
    }
    return node;
  }

  StatusOr<ExprPtr> parse_primary() {
    Nesting nest(this);
    LS_RETURN_IF_ERROR(check_depth());
    const Token& t = cur();
    switch (t.type) {
      case TokenType::kName: {
        ExprPtr node;
        if (t.text == "true" || t.text == "True" || t.text == "false" || t.text == "False") {
          node = make_expr(ExprKind::kConst, t.line);
          node->value = Value::boolean(t.text == "true" || t.text == "True");
        } else if (t.text == "none" || t.text == "None") {
          node = make_expr(ExprKind::kConst, t.line);
          node->value = Value::none();
        } else {
          node = make_expr(ExprKind::kName, t.line);
          node->name = t.text;
          if (t.text == "varargs" || t.text == "kwargs") {
            for (MacroStmt* m : macro_stack_) {
              if (t.text == "varargs") m->catch_varargs = true;
              else m->catch_kwargs = true;
            }
          }
        }
        advance();
        return node;
      }
      case TokenType::kString: {
        auto node = make_expr(ExprKind::kConst, t.line);
        std::string s;
        // Adjacent literals concatenate, as in Python.
        while (at_type(TokenType::kString)) {
          s += cur().text;
          advance();
        }
        node->value = Value::string(std::move(s));
        return node;
      }
      case TokenType::kInteger: {
        auto node = make_expr(ExprKind::kConst, t.line);
        node->value = Value::integer(t.int_value);
        advance();
        return node;
      }
      case TokenType::kFloat: {
        auto node = make_expr(ExprKind::kConst, t.line);
        node->value = Value::floating(t.float_value);
        advance();
        return node;
      }
      case TokenType::kOperator:
        if (t.text == "(") {
          advance();
          LS_ASSIGN_OR_RETURN(ExprPtr node, parse_tuple(false, true, {}, true));
          LS_RETURN_IF_ERROR(expect_op(")"));
          return node;
        }
        if (t.text == "[") return parse_list();
        if (t.text == "{") return parse_dict();
        break;
      default:
        break;
    }
    return fail("unexpected '" + describe(t) + "'");
  }

  StatusOr<ExprPtr> parse_list() {
    auto node = make_expr(ExprKind::kList, cur().line);
    advance();
    while (!at_op("]")) {
      if (!node->children.empty()) LS_RETURN_IF_ERROR(expect_op(","));
      if (at_op("]")) break;
      LS_ASSIGN_OR_RETURN(ExprPtr item, parse_expression(true));
      LS_RETURN_IF_ERROR(adopt(node.get(), std::move(item)));
    }
    advance();
    return node;
  }

  StatusOr<ExprPtr> parse_dict() {
    auto node = make_expr(ExprKind::kDict, cur().line);
    advance();
    while (!at_op("}")) {
      if (!node->children.empty()) LS_RETURN_IF_ERROR(expect_op(","));
      if (at_op("}")) break;
      LS_ASSIGN_OR_RETURN(ExprPtr key, parse_expression(true));
      LS_RETURN_IF_ERROR(expect_op(":"));
      LS_ASSIGN_OR_RETURN(ExprPtr value, parse_expression(true));
      LS_RETURN_IF_ERROR(adopt(node.get(), std::move(key)));
      LS_RETURN_IF_ERROR(adopt(node.get(), std::move(value)));
    }
    advance();
    return node;
  }

  StatusOr<ExprPtr> parse_postfix(ExprPtr node) {
    while (true) {
      if (at_op(".") || at_op("[")) {
        LS_ASSIGN_OR_RETURN(node, parse_subscript(std::move(node)));
      } else if (at_op("(")) {
        LS_ASSIGN_OR_RETURN(node, parse_call(std::move(node)));
      } else {
        return node;
      }
    }
  }

  StatusOr<ExprPtr> parse_filter_expr(ExprPtr node) {
    while (true) {
      if (at_op("|")) {
        LS_ASSIGN_OR_RETURN(node, parse_filter(std::move(node), false));
      } else if (at_name("is")) {
        LS_ASSIGN_OR_RETURN(node, parse_test(std::move(node)));
      } else if (at_op("(")) {
        LS_ASSIGN_OR_RETURN(node, parse_call(std::move(node)));
      } else {
        return node;
      }
    }
  }

  StatusOr<ExprPtr> parse_subscript(ExprPtr node) {
    const int line = cur().line;
    if (at_op(".")) {
      advance();
      const Token& attr = cur();
      if (attr.type == TokenType::kName) {
        auto e = make_expr(ExprKind::kGetAttr, line);
        e->name = attr.text;
        LS_RETURN_IF_ERROR(adopt(e.get(), std::move(node)));
        advance();
        return e;
      }
      if (attr.type != TokenType::kInteger) return fail("expected name or number");
      auto index = make_expr(ExprKind::kConst, attr.line);
      index->value = Value::integer(attr.int_value);
      advance();
      auto e = make_expr(ExprKind::kGetItem, line);
      LS_RETURN_IF_ERROR(adopt(e.get(), std::move(node)));
      LS_RETURN_IF_ERROR(adopt(e.get(), std::move(index)));
      return e;
    }
    advance();  // [
    std::vector<ExprPtr> args;
    while (!at_op("]")) {
      if (!args.empty()) LS_RETURN_IF_ERROR(expect_op(","));
      LS_ASSIGN_OR_RETURN(ExprPtr a, parse_subscribed());
      args.push_back(std::move(a));
    }
    LS_RETURN_IF_ERROR(expect_op("]"));
    if (args.size() == 1 && args[0]->kind == ExprKind::kSlice) {
      LS_RETURN_IF_ERROR(check_child_depth(args[0].get(), node.get()));
      args[0]->children[0] = std::move(node);
      return std::move(args[0]);
    }
    ExprPtr index;
    if (args.size() == 1) {
      index = std::move(args[0]);
    } else {
      for (const auto& a : args) {
        if (a->kind == ExprKind::kSlice) return fail_at(line, "slices inside tuples are not supported");
      }
      index = make_expr(ExprKind::kTuple, line);
      for (auto& a : args) LS_RETURN_IF_ERROR(adopt(index.get(), std::move(a)));
    }
    auto e = make_expr(ExprKind::kGetItem, line);
    LS_RETURN_IF_ERROR(adopt(e.get(), std::move(node)));
    LS_RETURN_IF_ERROR(adopt(e.get(), std::move(index)));
    return e;
  }

  // An index or a slice a:b:c (children[0] is left for the subject).
  StatusOr<ExprPtr> parse_subscribed() {
    const int line = cur().line;
    ExprPtr start;
    if (at_op(":")) {
      advance();
    } else {
      LS_ASSIGN_OR_RETURN(ExprPtr e, parse_expression(true));
      if (!at_op(":")) return e;
      advance();
      start = std::move(e);
    }
    auto slice = make_expr(ExprKind::kSlice, line);
    slice->children.push_back(nullptr);
    LS_RETURN_IF_ERROR(adopt(slice.get(), std::move(start)));
    ExprPtr stop;
    if (!at_op(":") && !at_op("]") && !at_op(",")) {
      LS_ASSIGN_OR_RETURN(stop, parse_expression(true));
    }
    LS_RETURN_IF_ERROR(adopt(slice.get(), std::move(stop)));
    ExprPtr step;
    if (at_op(":")) {
      advance();
      if (!at_op("]") && !at_op(",")) {
        LS_ASSIGN_OR_RETURN(step, parse_expression(true));
      }
    }
    LS_RETURN_IF_ERROR(adopt(slice.get(), std::move(step)));
    return slice;
  }

  // (args, kw=args) into node->children (after index 0) and node->keywords.
  Status parse_call_args(Expr* node) {
    const int line = cur().line;
    LS_RETURN_IF_ERROR(expect_op("("));
    bool require_comma = false;
    while (!at_op(")")) {
      if (require_comma) {
        LS_RETURN_IF_ERROR(expect_op(","));
        if (at_op(")")) break;
      }
      if (at_op("*") || at_op("**")) return fail("*args and **kwargs in calls are not supported");
      if (at_type(TokenType::kName) && look().type == TokenType::kOperator && look().text == "=") {
        std::string key = cur().text;
        advance();
        advance();
        LS_ASSIGN_OR_RETURN(ExprPtr value, parse_expression(true));
        LS_RETURN_IF_ERROR(check_child_depth(node, value.get()));
        node->keywords.emplace_back(std::move(key), std::move(value));
      } else {
        if (!node->keywords.empty()) return fail_at(line, "invalid syntax for function call expression");
        LS_ASSIGN_OR_RETURN(ExprPtr value, parse_expression(true));
        LS_RETURN_IF_ERROR(adopt(node, std::move(value)));
      }
      require_comma = true;
    }
    advance();  // )
    return ok_status();
  }

  StatusOr<ExprPtr> parse_call(ExprPtr callee) {
    auto node = make_expr(ExprKind::kCall, cur().line);
    LS_RETURN_IF_ERROR(adopt(node.get(), std::move(callee)));
    LS_RETURN_IF_ERROR(parse_call_args(node.get()));
    return node;
  }

  StatusOr<std::string> dotted_name() {
    LS_ASSIGN_OR_RETURN(std::string name, expect_name());
    while (at_op(".")) {
      advance();
      LS_ASSIGN_OR_RETURN(std::string part, expect_name());
      name += "." + part;
    }
    return name;
  }

  StatusOr<ExprPtr> parse_filter(ExprPtr node, bool start_inline) {
    while (at_op("|") || start_inline) {
      if (!start_inline) advance();
      start_inline = false;
      const int line = cur().line;
      auto f = make_expr(ExprKind::kFilter, line);
      LS_ASSIGN_OR_RETURN(f->name, dotted_name());
      f->filter = find_filter(f->name);
      LS_RETURN_IF_ERROR(adopt(f.get(), std::move(node)));
      if (at_op("(")) LS_RETURN_IF_ERROR(parse_call_args(f.get()));
      node = std::move(f);
    }
    return node;
  }

  StatusOr<ExprPtr> parse_test(ExprPtr node) {
    const int line = cur().line;
    advance();  // is
    bool negated = false;
    if (at_name("not")) {
      advance();
      negated = true;
    }
    auto t = make_expr(ExprKind::kTest, line);
    LS_ASSIGN_OR_RETURN(t->name, dotted_name());
    t->test = find_test(t->name);
    LS_RETURN_IF_ERROR(adopt(t.get(), std::move(node)));
    if (at_op("(")) {
      LS_RETURN_IF_ERROR(parse_call_args(t.get()));
    } else if ((at_type(TokenType::kName) || at_type(TokenType::kString) || at_type(TokenType::kInteger) ||
                at_type(TokenType::kFloat) || at_op("(") || at_op("[") || at_op("{")) &&
               !at_name("else") && !at_name("or") && !at_name("and")) {
      if (at_name("is")) return fail("You cannot chain multiple tests with is");
      LS_ASSIGN_OR_RETURN(ExprPtr arg, parse_primary());
      LS_ASSIGN_OR_RETURN(arg, parse_postfix(std::move(arg)));
      LS_RETURN_IF_ERROR(adopt(t.get(), std::move(arg)));
    }
    if (!negated) return t;
    auto n = make_expr(ExprKind::kNot, line);
    LS_RETURN_IF_ERROR(adopt(n.get(), std::move(t)));
    return n;
  }

  const std::vector<Token>& tokens_;
  const int max_nesting_;
  size_t pos_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
  std::vector<MacroStmt*> macro_stack_;
};

}  // namespace

StatusOr<ParsedTemplate> parse_template(const std::vector<Token>& tokens, int max_nesting) {
  Parser parser(tokens, max_nesting);
  ParsedTemplate t;
  LS_ASSIGN_OR_RETURN(t.body, parser.parse());
  LS_RETURN_IF_ERROR(analyze_template(&t));
  return t;
}

}  // namespace jinja
}  // namespace loraserve
