// Python string formatting for templates: `fmt % args` (and the |format
// filter) and str.format(). Covers the conversions templates use (s, r, d,
// i, f, e, g, x, o, c, %) with flags, width, precision and fill/align.
#include <cmath>
#include <cstdio>

#include "chat_template/jinja_builtins.h"
#include "chat_template/jinja_text.h"

namespace loraserve {
namespace jinja {
namespace {

struct Spec {
  std::string fill = " ";
  char align = 0;  // '<', '>', '^', '=' or 0 for the type's default
  char sign = '-';
  bool alternate = false;
  bool zero = false;
  int64_t width = -1;
  char grouping = 0;
  int64_t precision = -1;
  char type = 0;
};

constexpr int64_t kMaxWidth = 1 << 20;

std::string pad(const std::string& body, const Spec& spec, char default_align) {
  const int64_t len = static_cast<int64_t>(utf8_length(body));
  if (spec.width <= len) return body;
  const int64_t total = spec.width - len;
  const char align = spec.align ? spec.align : default_align;
  int64_t left = 0;
  if (align == '>') left = total;
  if (align == '^') left = total / 2;
  std::string out;
  if (align == '=') {
    // Padding goes between the sign and the digits.
    size_t sign_len = (!body.empty() && (body[0] == '-' || body[0] == '+' || body[0] == ' ')) ? 1 : 0;
    out = body.substr(0, sign_len);
    for (int64_t i = 0; i < total; ++i) out += spec.fill;
    out += body.substr(sign_len);
    return out;
  }
  for (int64_t i = 0; i < left; ++i) out += spec.fill;
  out += body;
  for (int64_t i = 0; i < total - left; ++i) out += spec.fill;
  return out;
}

std::string group_digits(const std::string& digits, char sep) {
  std::string out;
  const size_t n = digits.size();
  for (size_t i = 0; i < n; ++i) {
    if (i > 0 && (n - i) % 3 == 0) out += sep;
    out += digits[i];
  }
  return out;
}

StatusOr<std::string> format_integer(int64_t v, const Spec& spec) {
  const char type = spec.type ? spec.type : 'd';
  const bool negative = v < 0;
  const uint64_t mag = negative ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
  std::string digits;
  char buf[80];
  switch (type) {
    case 'd': case 'i': case 'u': case 'n':
      std::snprintf(buf, sizeof(buf), "%llu", static_cast<unsigned long long>(mag));
      digits = buf;
      if (spec.grouping) digits = group_digits(digits, spec.grouping);
      break;
    case 'x': case 'X':
      std::snprintf(buf, sizeof(buf), type == 'x' ? "%llx" : "%llX", static_cast<unsigned long long>(mag));
      digits = std::string(spec.alternate ? (type == 'x' ? "0x" : "0X") : "") + buf;
      break;
    case 'o':
      std::snprintf(buf, sizeof(buf), "%llo", static_cast<unsigned long long>(mag));
      digits = std::string(spec.alternate ? "0o" : "") + buf;
      break;
    case 'b': {
      uint64_t m = mag;
      do {
        digits.insert(digits.begin(), static_cast<char>('0' + (m & 1)));
        m >>= 1;
      } while (m != 0);
      if (spec.alternate) digits = "0b" + digits;
      break;
    }
    case 'c': {
      if (v < 0 || v > 0x10FFFF) return invalid_argument("%c arg not in range(0x110000)");
      std::string s;
      utf8_append(static_cast<char32_t>(v), &s);
      return pad(s, spec, '<');
    }
    default:
      return invalid_argument(std::string("Unknown format code '") + type + "' for object of type 'int'");
  }
  std::string sign;
  if (negative) {
    sign = "-";
  } else if (spec.sign == '+' || spec.sign == ' ') {
    sign = std::string(1, spec.sign);
  }
  Spec s = spec;
  if (s.zero && !s.align) {
    s.fill = "0";
    s.align = '=';
  }
  return pad(sign + digits, s, '>');
}

StatusOr<std::string> format_double(double v, const Spec& spec) {
  char type = spec.type;
  int64_t precision = spec.precision;
  bool percent = false;
  if (type == '%') {
    percent = true;
    v *= 100;
    type = 'f';
  }
  std::string body;
  if (type == 0 && precision < 0) {
    body = py_float_repr(v);
  } else {
    if (type == 0) type = 'g';
    if (type == 'n') type = 'g';
    if (type != 'e' && type != 'E' && type != 'f' && type != 'F' && type != 'g' && type != 'G') {
      return invalid_argument(std::string("Unknown format code '") + type + "' for object of type 'float'");
    }
    if (precision < 0) precision = 6;
    if (precision > 400) return invalid_argument("precision too big");
    std::string fmt = "%";
    if (spec.alternate) fmt += '#';
    fmt += ".*";
    fmt += type;
    std::vector<char> buf(static_cast<size_t>(precision) + 420);
    std::snprintf(buf.data(), buf.size(), fmt.c_str(), static_cast<int>(precision), v);
    body = buf.data();
    if (std::isinf(v)) body = std::string(v < 0 ? "-" : "") + (std::isupper(type) ? "INF" : "inf");
    if (std::isnan(v)) body = std::isupper(type) ? "NAN" : "nan";
  }
  if (percent) body += '%';
  if (!body.empty() && body[0] != '-' && (spec.sign == '+' || spec.sign == ' ')) {
    body = std::string(1, spec.sign) + body;
  }
  Spec s = spec;
  if (s.zero && !s.align) {
    s.fill = "0";
    s.align = '=';
  }
  return pad(body, s, '>');
}

// value.__format__(spec)
StatusOr<std::string> format_value(Runtime& rt, const Value& v, const Spec& spec, bool spec_empty) {
  if (v.is_string() || spec_empty || v.is_undefined()) {
    if (!v.is_string() && !spec_empty) {
      return invalid_argument("unsupported format string passed to " + v.type_name() + ".__format__");
    }
    LS_ASSIGN_OR_RETURN(std::string s, str_of(rt, v));
    if (spec.type != 0 && spec.type != 's') {
      return invalid_argument(std::string("Unknown format code '") + spec.type + "' for object of type 'str'");
    }
    if (spec.precision >= 0) {
      const std::u32string cps = utf8_decode(s);
      if (static_cast<int64_t>(cps.size()) > spec.precision) {
        s = utf8_encode(cps.substr(0, static_cast<size_t>(spec.precision)));
      }
    }
    return pad(s, spec, '<');
  }
  if (v.is_integral()) {
    const char t = spec.type;
    if (t == 'e' || t == 'E' || t == 'f' || t == 'F' || t == 'g' || t == 'G' || t == '%') {
      return format_double(v.as_double(), spec);
    }
    return format_integer(v.as_int(), spec);
  }
  if (v.is_float()) return format_double(v.as_double(), spec);
  return invalid_argument("unsupported format string passed to " + v.type_name() + ".__format__");
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Parses [[fill]align][sign][#][0][width][,_][.precision][type].
Status parse_brace_spec(const std::string& text, Spec* spec) {
  const std::u32string s = utf8_decode(text);
  size_t i = 0;
  auto is_align = [](char32_t c) { return c == '<' || c == '>' || c == '^' || c == '='; };
  if (s.size() >= 2 && is_align(s[1])) {
    spec->fill.clear();
    utf8_append(s[0], &spec->fill);
    spec->align = static_cast<char>(s[1]);
    i = 2;
  } else if (!s.empty() && is_align(s[0])) {
    spec->align = static_cast<char>(s[0]);
    i = 1;
  }
  if (i < s.size() && (s[i] == '+' || s[i] == '-' || s[i] == ' ')) spec->sign = static_cast<char>(s[i++]);
  if (i < s.size() && s[i] == '#') {
    spec->alternate = true;
    ++i;
  }
  if (i < s.size() && s[i] == '0') {
    spec->zero = true;
    ++i;
  }
  int64_t width = -1;
  while (i < s.size() && s[i] < 0x80 && is_digit(static_cast<char>(s[i]))) {
    width = std::max<int64_t>(width, 0) * 10 + (s[i++] - '0');
    if (width > kMaxWidth) return invalid_argument("format width too big");
  }
  spec->width = width;
  if (i < s.size() && (s[i] == ',' || s[i] == '_')) spec->grouping = static_cast<char>(s[i++]);
  if (i < s.size() && s[i] == '.') {
    ++i;
    int64_t p = 0;
    bool any = false;
    while (i < s.size() && s[i] < 0x80 && is_digit(static_cast<char>(s[i]))) {
      p = p * 10 + (s[i++] - '0');
      any = true;
      if (p > kMaxWidth) return invalid_argument("format precision too big");
    }
    if (!any) return invalid_argument("Format specifier missing precision");
    spec->precision = p;
  }
  if (i < s.size() && s[i] < 0x80) spec->type = static_cast<char>(s[i++]);
  if (i != s.size()) return invalid_argument("Invalid format specifier");
  return ok_status();
}

}  // namespace

StatusOr<std::string> percent_format(Runtime& rt, const std::string& fmt, const Value& args) {
  std::vector<Value> positional;
  const DictData* mapping = nullptr;
  if (args.is_list() && args.as_list().kind == ListKind::kTuple) {
    positional = args.as_list().items;
  } else {
    if (args.is_dict()) mapping = &args.as_dict();
    positional.push_back(args);
  }
  size_t next = 0;
  bool used_mapping = false;
  std::string out;
  size_t i = 0;
  while (i < fmt.size()) {
    const char c = fmt[i++];
    if (c != '%') {
      out += c;
      continue;
    }
    if (i >= fmt.size()) return invalid_argument("incomplete format");
    if (fmt[i] == '%') {
      out += '%';
      ++i;
      continue;
    }
    const Value* arg = nullptr;
    if (fmt[i] == '(') {
      const size_t close = fmt.find(')', i);
      if (close == std::string::npos) return invalid_argument("incomplete format key");
      if (mapping == nullptr) return invalid_argument("format requires a mapping");
      arg = mapping->find(fmt.substr(i + 1, close - i - 1));
      if (arg == nullptr) return invalid_argument("'" + fmt.substr(i + 1, close - i - 1) + "'");
      used_mapping = true;
      i = close + 1;
    }
    Spec spec;
    for (; i < fmt.size(); ++i) {
      const char f = fmt[i];
      if (f == '-') spec.align = '<';
      else if (f == '+') spec.sign = '+';
      else if (f == ' ') { if (spec.sign != '+') spec.sign = ' '; }
      else if (f == '#') spec.alternate = true;
      else if (f == '0') spec.zero = true;
      else break;
    }
    while (i < fmt.size() && is_digit(fmt[i])) {
      spec.width = std::max<int64_t>(spec.width, 0) * 10 + (fmt[i++] - '0');
      if (spec.width > kMaxWidth) return invalid_argument("format width too big");
    }
    if (i < fmt.size() && fmt[i] == '.') {
      ++i;
      spec.precision = 0;
      while (i < fmt.size() && is_digit(fmt[i])) {
        spec.precision = spec.precision * 10 + (fmt[i++] - '0');
        if (spec.precision > kMaxWidth) return invalid_argument("format precision too big");
      }
    }
    while (i < fmt.size() && (fmt[i] == 'h' || fmt[i] == 'l' || fmt[i] == 'L')) ++i;
    if (i >= fmt.size()) return invalid_argument("incomplete format");
    const char type = fmt[i++];
    if (arg == nullptr) {
      if (next >= positional.size()) return invalid_argument("not enough arguments for format string");
      arg = &positional[next++];
    }
    if (spec.align == '<') spec.zero = false;
    switch (type) {
      case 's': case 'r': case 'a': {
        std::string s;
        if (type == 's') {
          LS_ASSIGN_OR_RETURN(s, str_of(rt, *arg));
        } else {
          LS_RETURN_IF_ERROR(append_repr(*arg, rt.max_bytes(), &s));
        }
        if (spec.precision >= 0) {
          const std::u32string cps = utf8_decode(s);
          if (static_cast<int64_t>(cps.size()) > spec.precision) {
            s = utf8_encode(cps.substr(0, static_cast<size_t>(spec.precision)));
          }
        }
        out += pad(s, spec, '>');
        break;
      }
      case 'd': case 'i': case 'u': {
        if (!arg->is_number()) {
          return invalid_argument(std::string("%") + type + " format: a real number is required, not " +
                                  arg->type_name());
        }
        const double d = arg->as_double();
        if (arg->is_float() && (!std::isfinite(d) || std::fabs(d) >= 9.2e18)) {
          return invalid_argument("cannot convert float to integer");
        }
        const int64_t v = arg->is_float() ? static_cast<int64_t>(d) : arg->as_int();
        Spec s = spec;
        s.type = 'd';
        if (spec.precision >= 0) s.precision = -1;
        LS_ASSIGN_OR_RETURN(std::string text, format_integer(v, s));
        out += text;
        break;
      }
      case 'x': case 'X': case 'o': case 'c': {
        if (type == 'c' && arg->is_string()) {
          out += pad(arg->as_string(), spec, '>');
          break;
        }
        if (!arg->is_integral()) {
          return invalid_argument(std::string("%") + type + " format: an integer is required, not " +
                                  arg->type_name());
        }
        Spec s = spec;
        s.type = type;
        LS_ASSIGN_OR_RETURN(std::string text, format_integer(arg->as_int(), s));
        if (type == 'o' && spec.alternate) text = pad(text, s, '>');
        out += text;
        break;
      }
      case 'e': case 'E': case 'f': case 'F': case 'g': case 'G': {
        if (!arg->is_number()) {
          return invalid_argument("must be real number, not " + arg->type_name());
        }
        Spec s = spec;
        s.type = type;
        LS_ASSIGN_OR_RETURN(std::string text, format_double(arg->as_double(), s));
        out += text;
        break;
      }
      default:
        return invalid_argument(std::string("unsupported format character '") + type + "'");
    }
    if (out.size() > rt.max_bytes()) return resource_exhausted("string too long in % formatting");
  }
  if (!used_mapping && next < positional.size() && mapping == nullptr) {
    return invalid_argument("not all arguments converted during string formatting");
  }
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(out.size() / 4 + fmt.size() / 16)));
  return out;
}

StatusOr<std::string> brace_format(Runtime& rt, const std::string& fmt, const CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  size_t i = 0;
  while (i < fmt.size()) {
    const char c = fmt[i];
    if (c == '}') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') {
        out += '}';
        i += 2;
        continue;
      }
      return invalid_argument("Single '}' encountered in format string");
    }
    if (c != '{') {
      out += c;
      ++i;
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out += '{';
      i += 2;
      continue;
    }
    // {field[.attr|[key]]*[!conv][:spec]}
    size_t j = i + 1;
    int depth = 1;
    while (j < fmt.size()) {
      if (fmt[j] == '{') ++depth;
      if (fmt[j] == '}' && --depth == 0) break;
      ++j;
    }
    if (j >= fmt.size()) return invalid_argument("expected '}' before end of string");
    const std::string field = fmt.substr(i + 1, j - i - 1);
    i = j + 1;
    size_t colon = std::string::npos;
    size_t bang = std::string::npos;
    for (size_t k = 0, bracket = 0; k < field.size(); ++k) {
      if (field[k] == '[') ++bracket;
      if (field[k] == ']' && bracket > 0) --bracket;
      if (bracket == 0 && field[k] == '!' && bang == std::string::npos) bang = k;
      if (bracket == 0 && field[k] == ':') {
        colon = k;
        break;
      }
    }
    const size_t name_end = std::min(bang, colon);
    std::string name = field.substr(0, std::min(name_end, field.size()));
    std::string spec_text = colon == std::string::npos ? "" : field.substr(colon + 1);
    char conversion = 0;
    if (bang != std::string::npos && bang < colon) {
      if (bang + 2 != std::min(colon, field.size())) return invalid_argument("expected ':' after conversion specifier");
      conversion = field[bang + 1];
    }
    if (spec_text.find('{') != std::string::npos) {
      return invalid_argument("nested replacement fields in format specs are not supported");
    }
    // The first part of the name selects the argument.
    size_t k = 0;
    while (k < name.size() && name[k] != '.' && name[k] != '[') ++k;
    const std::string head = name.substr(0, k);
    Value value;
    if (head.empty()) {
      if (auto_index >= args.positional.size()) {
        return invalid_argument("Replacement index " + std::to_string(auto_index) + " out of range for positional args tuple");
      }
      value = args.positional[auto_index++];
    } else if (std::all_of(head.begin(), head.end(), is_digit)) {
      const size_t index = static_cast<size_t>(std::stoull(head.substr(0, 9)));
      if (index >= args.positional.size()) {
        return invalid_argument("Replacement index " + head + " out of range for positional args tuple");
      }
      value = args.positional[index];
    } else {
      bool found = false;
      for (const auto& [kw, v] : args.keywords) {
        if (kw == head) {
          value = v;
          found = true;
        }
      }
      if (!found) return invalid_argument("'" + head + "'");
    }
    while (k < name.size()) {
      if (name[k] == '.') {
        size_t e = k + 1;
        while (e < name.size() && name[e] != '.' && name[e] != '[') ++e;
        LS_ASSIGN_OR_RETURN(value, get_attribute(rt, value, name.substr(k + 1, e - k - 1)));
        k = e;
      } else {
        const size_t e = name.find(']', k);
        if (e == std::string::npos) return invalid_argument("Missing ']' in format string");
        const std::string key = name.substr(k + 1, e - k - 1);
        Value key_value = !key.empty() && std::all_of(key.begin(), key.end(), is_digit)
                              ? Value::integer(std::stoll(key.substr(0, 18)))
                              : Value::string(key);
        LS_ASSIGN_OR_RETURN(value, get_item(rt, value, key_value));
        k = e + 1;
      }
    }
    if (conversion == 'r' || conversion == 'a') {
      std::string r;
      LS_RETURN_IF_ERROR(append_repr(value, rt.max_bytes(), &r));
      value = Value::string(std::move(r));
    } else if (conversion == 's') {
      LS_ASSIGN_OR_RETURN(std::string s, str_of(rt, value));
      value = Value::string(std::move(s));
    } else if (conversion != 0) {
      return invalid_argument(std::string("Unknown conversion specifier ") + conversion);
    }
    Spec spec;
    LS_RETURN_IF_ERROR(parse_brace_spec(spec_text, &spec));
    LS_ASSIGN_OR_RETURN(std::string text, format_value(rt, value, spec, spec_text.empty()));
    out += text;
    if (out.size() > rt.max_bytes()) return resource_exhausted("string too long in format()");
  }
  LS_RETURN_IF_ERROR(rt.charge(static_cast<int64_t>(out.size() / 4 + fmt.size() / 16)));
  return out;
}

}  // namespace jinja
}  // namespace loraserve
