#include "chat_template/chat_template.h"

#include <algorithm>
#include <exception>
#include <new>

#include "chat_template/jinja_ast.h"
#include "chat_template/jinja_builtins.h"
#include "chat_template/jinja_json.h"
#include "chat_template/jinja_lexer.h"
#include "chat_template/jinja_parser.h"
#include "chat_template/jinja_render.h"

namespace loraserve {

struct ChatTemplate::Impl {
  ChatTemplateLimits limits;
  jinja::ParsedTemplate parsed;
};

namespace {

jinja::RenderLimits render_limits(const ChatTemplateLimits& l) {
  jinja::RenderLimits r;
  r.max_recursion = l.max_recursion;
  r.max_loop_iterations = l.max_loop_iterations;
  r.max_output_bytes = l.max_output_bytes;
  r.max_work = l.max_work;
  // Statements and expressions nest at most max_nesting deep per template;
  // this bounds all recursive macro calls together, which keeps the native
  // stack small whatever the macros do.
  r.max_depth = static_cast<int>(std::min<int64_t>(4 * static_cast<int64_t>(l.max_nesting), 1 << 20));
  return r;
}

// The one place internal statuses become API statuses: a template's
// raise_exception() travels as kAborted so nothing annotates it on the way.
Status to_api_status(const Status& s) {
  if (jinja::is_template_raise(s)) return invalid_argument(s.message());
  return s;
}

template <typename Json>
StatusOr<std::string> render_impl(const ChatTemplate::Impl& impl, const Json& context) {
  try {
    if (!context.is_object()) return invalid_argument("chat template context must be a JSON object");
    auto value = jinja::value_from_json(context);
    if (!value.ok()) return value.status();
    auto out = jinja::render_template(impl.parsed, *value, render_limits(impl.limits));
    if (!out.ok()) return to_api_status(out.status());
    return std::move(out).value();
  } catch (const std::bad_alloc&) {
    return resource_exhausted("out of memory while rendering the chat template");
  } catch (const std::exception& e) {
    return internal_error(std::string("chat template render failed: ") + e.what());
  }
}

}  // namespace

StatusOr<ChatTemplate> ChatTemplate::parse(const std::string& source, ChatTemplateLimits limits) {
  try {
    if (source.size() > limits.max_template_bytes) {
      return invalid_argument("chat template is " + std::to_string(source.size()) + " bytes; the limit is " +
                              std::to_string(limits.max_template_bytes));
    }
    if (limits.max_nesting < 1 || limits.max_recursion < 0 || limits.max_loop_iterations < 0 ||
        limits.max_work < 0) {
      return invalid_argument("invalid chat template limits");
    }
    auto tokens = jinja::tokenize(source);
    if (!tokens.ok()) return tokens.status();
    auto parsed = jinja::parse_template(*tokens, limits.max_nesting);
    if (!parsed.ok()) return parsed.status();
    auto impl = std::make_shared<Impl>();
    impl->limits = limits;
    impl->parsed = std::move(parsed).value();
    return ChatTemplate(std::move(impl));
  } catch (const std::bad_alloc&) {
    return resource_exhausted("out of memory while parsing the chat template");
  } catch (const std::exception& e) {
    return internal_error(std::string("chat template parse failed: ") + e.what());
  }
}

StatusOr<std::string> ChatTemplate::render(const nlohmann::ordered_json& context) const {
  return render_impl(*impl_, context);
}

StatusOr<std::string> ChatTemplate::render(const nlohmann::json& context) const {
  return render_impl(*impl_, context);
}

StatusOr<std::string> ChatTemplate::render_json_text(const std::string& context_json) const {
  try {
    auto context = nlohmann::ordered_json::parse(context_json, nullptr, /*allow_exceptions=*/false);
    if (context.is_discarded()) return invalid_argument("chat template context is not valid JSON");
    return render(context);
  } catch (const std::exception& e) {
    return invalid_argument(std::string("chat template context is not valid JSON: ") + e.what());
  }
}

const ChatTemplateLimits& ChatTemplate::limits() const { return impl_->limits; }

}  // namespace loraserve
