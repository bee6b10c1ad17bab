// ChatTemplate against jinja2 as transformers configures it: every template
// x context in tests/data/chat_templates/expected.json (written by
// tests/reference/render_chat_templates.py with real jinja2) must render
// byte for byte, and templates that raise must raise the same message. The
// hand-written tests cover what a fixture cannot: errors, limits, hostile
// templates, the CLI and concurrent use. Run from the repo root.
#include "chat_template/chat_template.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "chat_template/chat_template_cli.h"

namespace loraserve {
namespace {

const char kFixtureDir[] = "tests/data/chat_templates/";

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

StatusOr<std::string> render(const std::string& source, const std::string& context_json = "{}",
                             ChatTemplateLimits limits = {}) {
  auto tmpl = ChatTemplate::parse(source, limits);
  if (!tmpl.ok()) return tmpl.status();
  return tmpl->render_json_text(context_json);
}

std::string render_ok(const std::string& source, const std::string& context_json = "{}") {
  auto out = render(source, context_json);
  EXPECT_TRUE(out.ok()) << out.status() << "\n  template: " << source;
  return out.ok() ? *out : std::string();
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Sanitizer builds are several times slower; limits still have to trip fast.
constexpr double kFastSeconds = 5.0;

// --- the fixture ---------------------------------------------------------------------------

TEST(ChatTemplate, MatchesJinja2Fixture) {
  const std::string fixture_path = std::string(kFixtureDir) + "expected.json";
  const std::string text = read_file(fixture_path);
  ASSERT_FALSE(text.empty()) << fixture_path << " is missing; it is committed. Regenerate it with "
                             << "tests/reference/render_chat_templates.py (needs python3-jinja2)";
  auto fixture = nlohmann::ordered_json::parse(text, nullptr, false);
  ASSERT_FALSE(fixture.is_discarded()) << fixture_path << " is not valid JSON";
  std::map<std::string, StatusOr<ChatTemplate>> templates;
  int outputs = 0;
  int raises = 0;
  int other_errors = 0;
  for (const auto& [name, c] : fixture["cases"].items()) {
    SCOPED_TRACE("case " + name);
    const std::string file = c["template"].get<std::string>();
    auto it = templates.find(file);
    if (it == templates.end()) {
      it = templates.emplace(file, ChatTemplate::parse(read_file(kFixtureDir + file))).first;
    }
    ASSERT_TRUE(it->second.ok()) << file << ": " << it->second.status();
    auto out = it->second->render(c["context"]);
    if (c.contains("output")) {
      ASSERT_TRUE(out.ok()) << out.status();
      EXPECT_EQ(*out, c["output"].get<std::string>());
      ++outputs;
    } else {
      ASSERT_FALSE(out.ok()) << "jinja2 failed with " << c["error_type"] << ": " << c["error"]
                             << "\n  but we rendered: " << *out;
      if (c["error_type"] == "TemplateError") {
        // raise_exception(): the message is the API's message, verbatim.
        EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
        EXPECT_EQ(out.status().message(), c["error"].get<std::string>());
        ++raises;
      } else {
        ++other_errors;
      }
    }
  }
  EXPECT_GE(outputs, 55);
  EXPECT_GE(raises, 7);
  EXPECT_GE(other_errors, 1);
}

// --- semantics not worth a fixture entry -------------------------------------------------------

TEST(ChatTemplate, UndefinedRendersEmptyAndIsFalsy) {
  EXPECT_EQ(render_ok("[{{ nope }}]{% if nope %}x{% else %}y{% endif %}{{ nope is defined }}"),
            "[]yFalse");
  EXPECT_EQ(render_ok("{% for x in nope %}x{% endfor %}{{ nope|length }}{{ nope|default('d') }}"), "0d");
}

TEST(ChatTemplate, AttributeOfUndefinedRaisesWithLine) {
  auto out = render("line one\n{{ nope.attr }}");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(out.status().message().find("line 2"), std::string::npos) << out.status();
  EXPECT_NE(out.status().message().find("'nope' is undefined"), std::string::npos) << out.status();
}

TEST(ChatTemplate, RaiseExceptionMessageIsVerbatim) {
  const std::string tmpl =
      "{% macro check(m) %}{% if m.role == 'tool' %}"
      "{{ raise_exception('Role \"' ~ m.role ~ \"\\\" isn't allowed — 日本語\") }}"
      "{% endif %}{% endmacro %}"
      "{% for m in messages %}{{ check(m) }}{% endfor %}";
  auto out = render(tmpl, R"({"messages": [{"role": "user"}, {"role": "tool"}]})");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(out.status().message(), "Role \"tool\" isn't allowed — 日本語");
}

TEST(ChatTemplate, StrftimeNowUsesLocalTime) {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char expected[64];
  std::strftime(expected, sizeof(expected), "%d %b %Y", &local);
  const std::string out = render_ok("{{ strftime_now('%d %b %Y') }}|{{ strftime_now('') }}");
  // A render straddling midnight could differ by a day; tolerate by prefix length.
  EXPECT_EQ(out.size(), std::string(expected).size() + 1) << out;
  EXPECT_EQ(out.back(), '|');
}

TEST(ChatTemplate, Llama32FallsBackToStrftimeNow) {
  auto tmpl = ChatTemplate::parse(read_file(std::string(kFixtureDir) + "llama3_2.jinja"));
  ASSERT_TRUE(tmpl.ok()) << tmpl.status();
  auto out = tmpl->render_json_text(
      R"({"messages": [{"role": "user", "content": "hi"}], "tools": null, "bos_token": "<s>",
          "add_generation_prompt": true})");
  ASSERT_TRUE(out.ok()) << out.status();
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char year[8];
  std::strftime(year, sizeof(year), "%Y", &local);
  EXPECT_NE(out->find("Today Date: "), std::string::npos);
  EXPECT_NE(out->find(year), std::string::npos) << *out;
}

TEST(ChatTemplate, KeyOrderFollowsTheJsonType) {
  const std::string tmpl = "{{ tools | tojson }}";
  auto parsed = ChatTemplate::parse(tmpl);
  ASSERT_TRUE(parsed.ok());
  const std::string ctx = R"({"tools": {"zeta": 1, "alpha": {"y": 2, "x": 3}}})";
  auto ordered = parsed->render(nlohmann::ordered_json::parse(ctx));
  ASSERT_TRUE(ordered.ok());
  EXPECT_EQ(*ordered, R"({"zeta": 1, "alpha": {"y": 2, "x": 3}})");
  auto sorted = parsed->render(nlohmann::json::parse(ctx));
  ASSERT_TRUE(sorted.ok());
  EXPECT_EQ(*sorted, R"({"alpha": {"x": 3, "y": 2}, "zeta": 1})");
}

TEST(ChatTemplate, SandboxRefusesMutation) {
  auto out = render("{% set xs = [] %}{{ xs.append(1) }}");
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("unsafe"), std::string::npos) << out.status();
  EXPECT_EQ(render_ok("{% set d = {'a': 1} %}[{{ d.update }}]{{ d.__class__ }}"), "[]");
}

TEST(ChatTemplate, GenerationBlockRendersBody) {
  EXPECT_EQ(render_ok("{% for m in ['a', 'b'] %}{% generation %}<{{ m }}>{% endgeneration %}{% endfor %}"),
            "<a><b>");
}

TEST(ChatTemplate, UnknownFilterInsideIfFailsOnlyWhenEvaluated) {
  EXPECT_EQ(render_ok("{% if false %}{{ x | no_such_filter }}{% endif %}ok"), "ok");
  auto out = render("{% if true %}{{ x | no_such_filter }}{% endif %}");
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("No filter named 'no_such_filter'"), std::string::npos);
  // Outside an if, jinja2 rejects it when compiling.
  auto parsed = ChatTemplate::parse("{% for x in y %}{{ x | no_such_filter }}{% endfor %}");
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.status().message().find("No filter named"), std::string::npos);
}

TEST(ChatTemplate, SyntaxErrorsNameTheLine) {
  struct Case {
    const char* source;
    const char* line;
  };
  const Case cases[] = {
      {"ok\n{% if %}", "line 2"},
      {"{% for x in y %}\nno end", "line 2"},
      {"a\nb\n{% frobnicate %}", "line 3"},
      {"{{ 1 + }}", "line 1"},
      {"{{ 'unterminated }}", "line 1"},
      {"{# never closed", "line 1"},
      {"{% raw %}never closed", "line 1"},
      {"\n\n{{ (1 }}", "line 3"},
      {"{% break %}", "line 1"},
      {"{% include 'x.jinja' %}", "line 1"},
      {"{{ x is defined is defined }}", "line 1"},
      {"{% macro f(a=1, b) %}{% endmacro %}", "line 1"},
  };
  for (const Case& c : cases) {
    auto t = ChatTemplate::parse(c.source);
    ASSERT_FALSE(t.ok()) << c.source;
    EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument) << c.source;
    EXPECT_NE(t.status().message().find(c.line), std::string::npos) << c.source << " -> " << t.status();
  }
}

TEST(ChatTemplate, RejectsBadInputs) {
  EXPECT_FALSE(ChatTemplate::parse("\xff\xfe bad utf-8").ok());
  auto t = ChatTemplate::parse("{{ messages }}");
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->render_json_text("[1, 2]").ok());
  EXPECT_FALSE(t->render_json_text("{not json").ok());
  ChatTemplateLimits small;
  small.max_template_bytes = 10;
  EXPECT_FALSE(ChatTemplate::parse("this template is too long", small).ok());
}

// --- limits ----------------------------------------------------------------------------------

TEST(ChatTemplate, HugeRangeFailsFast) {
  const auto start = std::chrono::steady_clock::now();
  auto out = render("{% for i in range(100000000) %}x{% endfor %}");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::kResourceExhausted) << out.status();
  EXPECT_LT(seconds_since(start), 1.0);
}

TEST(ChatTemplate, LoopIterationLimit) {
  const auto start = std::chrono::steady_clock::now();
  auto out = render("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::kResourceExhausted) << out.status();
  EXPECT_NE(out.status().message().find("loop iterations"), std::string::npos) << out.status();
  EXPECT_LT(seconds_since(start), kFastSeconds);
}

TEST(ChatTemplate, OutputIsCapped) {
  const auto start = std::chrono::steady_clock::now();
  auto out = render("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::kResourceExhausted) << out.status();
  EXPECT_LT(seconds_since(start), kFastSeconds);
  ChatTemplateLimits small;
  small.max_output_bytes = 100;
  EXPECT_FALSE(render("{{ 'y' * 101 }}", "{}", small).ok());
  EXPECT_TRUE(render("{{ 'y' * 100 }}", "{}", small).ok());
}

TEST(ChatTemplate, StringDoublingIsCapped) {
  const auto start = std::chrono::steady_clock::now();
  auto out = render(
      "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
      "{{ ns.s | length }}");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::kResourceExhausted) << out.status();
  auto list_out = render(
      "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}");
  ASSERT_FALSE(list_out.ok());
  EXPECT_LT(seconds_since(start), kFastSeconds);
}

TEST(ChatTemplate, WorkBudgetStopsQuadraticTemplates) {
  const auto start = std::chrono::steady_clock::now();
  // 100000 comparisons of two distinct 1 MB strings would be 100 GB of memcmp.
  auto out = render(
      "{% set a = 'x' * 1000000 %}{% set b = 'x' * 1000000 %}"
      "{% for i in range(100000) %}{% if a == b %}{% endif %}{% endfor %}");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::kResourceExhausted) << out.status();
  EXPECT_LT(seconds_since(start), kFastSeconds);
  ChatTemplateLimits tiny;
  tiny.max_work = 1000;
  auto small = render("{% for i in range(5000) %}{% endfor %}", "{}", tiny);
  ASSERT_FALSE(small.ok());
  EXPECT_EQ(small.status().code(), StatusCode::kResourceExhausted);
}

TEST(ChatTemplate, MacroRecursionIsBounded) {
  auto out = render("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::kResourceExhausted) << out.status();
  // Legitimate recursion within the limit works.
  EXPECT_EQ(render_ok("{% macro f(n) %}{{ n }}{% if n > 0 %}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(20) }}"),
            "20191817161514131211109876543210");
}

TEST(ChatTemplate, DeepNestingFailsCleanly) {
  const int n = 100000;
  const std::vector<std::string> hostile = {
      "{{ " + std::string(n, '(') + "1" + std::string(n, ')') + " }}",
      "{{ " + std::string(n, '[') + std::string(n, ']') + " }}",
      "{{ " + std::string(n, '{') + std::string(n, '}') + " }}",
      "{{ " + [&] { std::string s; for (int i = 0; i < n; ++i) s += "not "; return s; }() + "1 }}",
      "{{ " + [&] { std::string s; for (int i = 0; i < n; ++i) s += "- "; return s; }() + "1 }}",
      "{{ 1" + [&] { std::string s; for (int i = 0; i < n; ++i) s += " + 1"; return s; }() + " }}",
      "{{ x" + [&] { std::string s; for (int i = 0; i < n; ++i) s += "|trim"; return s; }() + " }}",
      "{{ x" + [&] { std::string s; for (int i = 0; i < n; ++i) s += ".a"; return s; }() + " }}",
      "{{ x" + [&] { std::string s; for (int i = 0; i < n; ++i) s += "[0]"; return s; }() + " }}",
      "{{ f" + [&] { std::string s; for (int i = 0; i < n; ++i) s += "()"; return s; }() + " }}",
      [&] { std::string s; for (int i = 0; i < n; ++i) s += "{% if true %}"; return s; }(),
      [&] { std::string s; for (int i = 0; i < n; ++i) s += "{% for x in y %}"; return s; }(),
      [&] { std::string s; for (int i = 0; i < n; ++i) s += "{% macro m() %}"; return s; }(),
  };
  for (const std::string& source : hostile) {
    auto t = ChatTemplate::parse(source);
    ASSERT_FALSE(t.ok()) << source.substr(0, 40);
    EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument) << t.status();
  }
  // Values nested too deeply through the context fail cleanly too.
  std::string deep_json;
  for (int i = 0; i < n; ++i) deep_json += "[";
  for (int i = 0; i < n; ++i) deep_json += "]";
  auto t = ChatTemplate::parse("{{ x }}");
  ASSERT_TRUE(t.ok());
  EXPECT_FALSE(t->render_json_text("{\"x\": " + deep_json + "}").ok());
  // ...and so do values a template nests in a loop.
  auto built = render("{% set ns = namespace(v=[]) %}{% for i in range(100000) %}{% set ns.v = [ns.v] %}{% endfor %}"
                      "{{ ns.v }}");
  ASSERT_FALSE(built.ok());
}

TEST(ChatTemplate, NamespaceCyclesDoNotLeakOrHang) {
  auto out = render("{% set a = namespace() %}{% set b = namespace(a=a) %}{% set a.b = b %}{{ a.b.a.b.a is defined }}");
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "True");
  // Printing a cycle shows {...} where it closes, as CPython's repr does.
  EXPECT_EQ(render_ok("{% set a = namespace() %}{% set a.self = a %}{{ a }}"),
            "<Namespace {'self': <Namespace {...}>}>");
}

// --- concurrency and the CLI ----------------------------------------------------------------------

TEST(ChatTemplate, OneTemplateRendersFromManyThreads) {
  auto tmpl = ChatTemplate::parse(read_file(std::string(kFixtureDir) + "qwen2_5.jinja"));
  ASSERT_TRUE(tmpl.ok()) << tmpl.status();
  const std::string ctx =
      R"({"messages": [{"role": "user", "content": "héllo 日本語 🙂"}], "tools": null, "add_generation_prompt": true})";
  auto expected = tmpl->render_json_text(ctx);
  ASSERT_TRUE(expected.ok());
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        auto out = tmpl->render_json_text(ctx);
        if (!out.ok() || *out != *expected) ++mismatches[static_cast<size_t>(t)];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);
}

TEST(ChatTemplate, CliPrintsBytesAndFailsOnRaise) {
  const std::string dir = testing::TempDir();
  const std::string tmpl_path = dir + "/cli_template.jinja";
  const std::string ctx_path = dir + "/cli_context.json";
  std::ofstream(tmpl_path) << "{{ messages[0].content }}\n";
  std::ofstream(ctx_path) << R"({"messages": [{"content": "héllo\n"}]})";
  testing::internal::CaptureStdout();
  const int rc = run_chat_template_cli(tmpl_path, ctx_path);
  const std::string printed = testing::internal::GetCapturedStdout();
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(printed, "héllo\n");  // the template's own trailing newline is dropped, as in jinja2

  std::ofstream(tmpl_path) << "{{ raise_exception('nope') }}";
  testing::internal::CaptureStderr();
  EXPECT_EQ(run_chat_template_cli(tmpl_path, ctx_path), 1);
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "nope\n");
  EXPECT_EQ(run_chat_template_cli(dir + "/does_not_exist.jinja", ctx_path), 2);
}

}  // namespace
}  // namespace loraserve
