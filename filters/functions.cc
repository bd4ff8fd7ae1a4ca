// The rules language functions: type checking at compile time and evaluation.
#include <arpa/inet.h>
#include <re2/re2.h>

#include <algorithm>
#include <bitset>
#include <cstring>
#include <variant>

#include "filters/nodes.h"
#include "filters/normalize.h"

namespace parapet::filters::detail {
namespace {

enum class Fn {
  Lower,
  Upper,
  Len,
  StartsWith,
  EndsWith,
  Concat,
  Substring,
  UrlDecode,
  DecodeBase64,
  RemoveBytes,
  Cidr,
  Join,
  Split,
  ToString,
  LookupJsonString,
  RegexReplace,
  WildcardReplace,
};

struct FnInfo {
  std::string_view name;
  Fn fn;
  int min_args;
  int max_args;  // -1: variadic
  bool rewrite_only;
};

constexpr FnInfo kFns[] = {
    {"lower", Fn::Lower, 1, 1, false},
    {"upper", Fn::Upper, 1, 1, false},
    {"len", Fn::Len, 1, 1, false},
    {"starts_with", Fn::StartsWith, 2, 2, false},
    {"ends_with", Fn::EndsWith, 2, 2, false},
    {"concat", Fn::Concat, 1, -1, false},
    {"substring", Fn::Substring, 2, 3, false},
    {"url_decode", Fn::UrlDecode, 1, 2, false},
    {"decode_base64", Fn::DecodeBase64, 1, 1, false},
    {"remove_bytes", Fn::RemoveBytes, 2, 2, false},
    {"cidr", Fn::Cidr, 3, 3, false},
    {"join", Fn::Join, 2, 2, false},
    {"split", Fn::Split, 2, 3, false},
    {"to_string", Fn::ToString, 1, 1, false},
    {"lookup_json_string", Fn::LookupJsonString, 2, -1, false},
    {"regex_replace", Fn::RegexReplace, 3, 3, true},
    {"wildcard_replace", Fn::WildcardReplace, 3, 4, true},
};

const FnInfo* find_fn(std::string_view name) {
  for (const FnInfo& f : kFns) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

class LiteralNode : public Node {
 public:
  explicit LiteralNode(const Expr& e) : type_(e.type), str_(e.str), num_(e.num), flag_(e.flag) {}
  Val eval(ExecContext&) const override {
    switch (type_) {
      case Type::String:
        return Val::str(str_);
      case Type::Int:
        return Val::integer(num_);
      case Type::Bool:
        return Val::boolean(flag_);
      default:
        return Val();
    }
  }
  const std::string* literal() const override { return type_ == Type::String ? &str_ : nullptr; }

 private:
  Type type_;
  std::string str_;
  int64_t num_;
  bool flag_;
};

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

void append_utf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// url_decode with the 'u' option: %uXXXX escapes (IIS style) become UTF-8.
void url_decode_once(std::string_view in, bool unicode, std::string& out) {
  out.clear();
  if (!unicode) {
    percent_decode(in, true, out);
    return;
  }
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 5 < in.size() && (in[i + 1] == 'u' || in[i + 1] == 'U')) {
      uint32_t cp = 0;
      bool ok = true;
      for (size_t k = 2; k < 6; ++k) {
        int h = hexval(in[i + k]);
        if (h < 0) ok = false;
        cp = cp * 16 + static_cast<uint32_t>(h < 0 ? 0 : h);
      }
      if (ok) {
        append_utf8(cp, out);
        i += 5;
        continue;
      }
    }
    if (in[i] == '%' && i + 2 < in.size() && hexval(in[i + 1]) >= 0 && hexval(in[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hexval(in[i + 1]) * 16 + hexval(in[i + 2])));
      i += 2;
    } else {
      out.push_back(in[i] == '+' ? ' ' : in[i]);
    }
  }
}

int b64val(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}

// Standard or URL-safe alphabet, padding optional. False when malformed.
bool decode_base64(std::string_view in, std::string& out) {
  out.clear();
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  if (in.size() % 4 == 1) return false;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = b64val(c);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return true;
}

// --- A small allocation-free JSON walker for lookup_json_string. ---

const char* json_ws(const char* p, const char* e) {
  while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) ++p;
  return p;
}

// p at '"': returns the position after the closing quote, or null; *raw = the bytes inside.
const char* json_string(const char* p, const char* e, std::string_view* raw) {
  const char* s = ++p;
  while (p < e && *p != '"') p += (*p == '\\') ? 2 : 1;
  if (p >= e) return nullptr;
  *raw = std::string_view(s, static_cast<size_t>(p - s));
  return p + 1;
}

// Skips one value of any kind; iterative so hostile nesting cannot exhaust the stack.
const char* json_skip(const char* p, const char* e) {
  p = json_ws(p, e);
  if (p >= e) return nullptr;
  if (*p == '"') {
    std::string_view raw;
    return json_string(p, e, &raw);
  }
  if (*p == '{' || *p == '[') {
    int depth = 0;
    while (p < e) {
      if (*p == '"') {
        std::string_view raw;
        p = json_string(p, e, &raw);
        if (p == nullptr) return nullptr;
        continue;
      }
      if (*p == '{' || *p == '[') ++depth;
      if (*p == '}' || *p == ']') {
        if (--depth == 0) return p + 1;
      }
      ++p;
    }
    return nullptr;
  }
  while (p < e && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n' && *p != '\t' &&
         *p != '\r') {
    ++p;
  }
  return p;
}

bool json_unescape(std::string_view raw, std::string& out) {
  out.clear();
  for (size_t i = 0; i < raw.size(); ++i) {
    char c = raw[i];
    if (c != '\\') {
      out.push_back(c);
      continue;
    }
    if (++i >= raw.size()) return false;
    switch (raw[i]) {
      case '"':
        out.push_back('"');
        break;
      case '\\':
        out.push_back('\\');
        break;
      case '/':
        out.push_back('/');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'u': {
        auto read4 = [&](size_t at, uint32_t* v) {
          if (at + 4 > raw.size()) return false;
          *v = 0;
          for (size_t k = 0; k < 4; ++k) {
            int h = hexval(raw[at + k]);
            if (h < 0) return false;
            *v = *v * 16 + static_cast<uint32_t>(h);
          }
          return true;
        };
        uint32_t cp;
        if (!read4(i + 1, &cp)) return false;
        i += 4;
        if (cp >= 0xD800 && cp < 0xDC00 && i + 6 < raw.size() && raw[i + 1] == '\\' &&
            raw[i + 2] == 'u') {
          uint32_t lo;
          if (read4(i + 3, &lo) && lo >= 0xDC00 && lo < 0xE000) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            i += 6;
          }
        }
        append_utf8(cp, out);
        break;
      }
      default:
        return false;
    }
  }
  return true;
}

using JsonStep = std::variant<std::string, int64_t>;

// Walks `steps` into `json`; on a String value, unescapes it into `out`.
bool json_lookup(std::string_view json, const std::vector<JsonStep>& steps, std::string& out) {
  const char* p = json.data();
  const char* e = p + json.size();
  for (const JsonStep& step : steps) {
    p = json_ws(p, e);
    if (p >= e) return false;
    if (const std::string* key = std::get_if<std::string>(&step)) {
      if (*p != '{') return false;
      p = json_ws(p + 1, e);
      bool found = false;
      while (p < e && *p != '}') {
        std::string_view name;
        if (*p != '"' || (p = json_string(p, e, &name)) == nullptr) return false;
        p = json_ws(p, e);
        if (p >= e || *p != ':') return false;
        p = json_ws(p + 1, e);
        // Keys are compared as written (a key spelled with escapes does not match).
        if (name == *key) {
          found = true;
          break;
        }
        if ((p = json_skip(p, e)) == nullptr) return false;
        p = json_ws(p, e);
        if (p < e && *p == ',') p = json_ws(p + 1, e);
      }
      if (!found) return false;
    } else {
      int64_t idx = std::get<int64_t>(step);
      if (*p != '[' || idx < 0) return false;
      p = json_ws(p + 1, e);
      for (int64_t i = 0; i < idx; ++i) {
        if (p >= e || *p == ']') return false;
        if ((p = json_skip(p, e)) == nullptr) return false;
        p = json_ws(p, e);
        if (p >= e || *p != ',') return false;
        p = json_ws(p + 1, e);
      }
      if (p >= e || *p == ']') return false;
    }
  }
  p = json_ws(p, e);
  std::string_view raw;
  if (p >= e || *p != '"' || json_string(p, e, &raw) == nullptr) return false;
  return json_unescape(raw, out);
}

// "${1}" -> capture 1; "$$"? Not special. Returns false on a reference above `max_ref`.
bool check_refs(std::string_view repl, size_t max_ref, std::string* err) {
  for (size_t i = 0; i + 1 < repl.size(); ++i) {
    if (repl[i] == '$' && repl[i + 1] == '{') {
      size_t close = repl.find('}', i);
      if (close == std::string_view::npos) {
        *err = "unterminated ${ in replacement";
        return false;
      }
      std::string_view num = repl.substr(i + 2, close - i - 2);
      if (num.empty() || num.size() > 2 ||
          !std::all_of(num.begin(), num.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        *err = "invalid reference \"${" + std::string(num) + "}\" in replacement";
        return false;
      }
      size_t n = static_cast<size_t>(std::stoi(std::string(num)));
      if (n > max_ref) {
        *err = "replacement refers to ${" + std::to_string(n) + "} but the pattern has only " +
               std::to_string(max_ref);
        return false;
      }
    }
  }
  return true;
}

class FuncNode : public Node {
 public:
  Fn fn;
  std::vector<NodePtr> args;
  uint32_t s1 = 0, s2 = 0, a1 = 0;  // scratch slots
  std::string lit;                  // remove_bytes set, re2 rewrite
  std::bitset<256> bytes;
  bool flag = false;   // url_decode 'r'
  bool flag2 = false;  // url_decode 'u'
  int64_t n1 = 0, n2 = 0;
  std::shared_ptr<const re2::RE2> re;
  Wildcard wc;
  std::string repl;
  std::vector<JsonStep> steps;

  Val eval(ExecContext& ctx) const override;
  // starts_with(field, "lit"): the field starts with the literal.
  bool guard(Guard* g) const override {
    if (fn != Fn::StartsWith || !args[0]->field_of(&g->field)) return false;
    const std::string* prefix = args[1]->literal();
    if (prefix == nullptr || prefix->empty()) return false;
    g->kind = Guard::Kind::Prefix;
    g->values = {*prefix};
    return true;
  }
};

Val FuncNode::eval(ExecContext& ctx) const {
  Val a = args[0]->eval(ctx);
  if (a.k == Val::K::Missing) return Val();
  switch (fn) {
    case Fn::Lower:
    case Fn::Upper: {
      std::string& out = ctx.scratch_string(s1);
      out.assign(a.s);
      for (char& c : out) {
        if (fn == Fn::Lower && c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
        if (fn == Fn::Upper && c >= 'a' && c <= 'z') c = static_cast<char>(c - 32);
      }
      return Val::str(out);
    }
    case Fn::Len:
      return Val::integer(static_cast<int64_t>(a.k == Val::K::Arr ? a.arr.size : a.s.size()));
    case Fn::StartsWith:
    case Fn::EndsWith: {
      Val b = args[1]->eval(ctx);
      if (b.k != Val::K::Str) return Val();
      return Val::boolean(fn == Fn::StartsWith ? a.s.starts_with(b.s) : a.s.ends_with(b.s));
    }
    case Fn::Concat: {
      std::string& out = ctx.scratch_string(s1);
      out.assign(a.s);
      for (size_t i = 1; i < args.size(); ++i) {
        Val b = args[i]->eval(ctx);
        if (b.k != Val::K::Str) return Val();
        out.append(b.s);
      }
      return Val::str(out);
    }
    case Fn::Substring: {
      // Byte offsets; negative counts from the end; end is exclusive; out of range clamps.
      auto size = static_cast<int64_t>(a.s.size());
      Val b = args[1]->eval(ctx);
      if (b.k != Val::K::Int) return Val();
      int64_t start = b.i < 0 ? std::max<int64_t>(0, size + b.i) : std::min(b.i, size);
      int64_t end = size;
      if (args.size() > 2) {
        Val c = args[2]->eval(ctx);
        if (c.k != Val::K::Int) return Val();
        end = c.i < 0 ? std::max<int64_t>(0, size + c.i) : std::min(c.i, size);
      }
      if (end < start) end = start;
      return Val::str(a.s.substr(static_cast<size_t>(start), static_cast<size_t>(end - start)));
    }
    case Fn::UrlDecode: {
      std::string* cur = &ctx.scratch_string(s1);
      std::string* other = &ctx.scratch_string(s2);
      url_decode_once(a.s, flag2, *cur);
      // 'r': decode until stable (bounded: each round only shrinks the string).
      for (int round = 0; flag && round < 16 && cur->find('%') != std::string::npos; ++round) {
        url_decode_once(*cur, flag2, *other);
        if (other->size() == cur->size()) break;
        std::swap(cur, other);
      }
      return Val::str(*cur);
    }
    case Fn::DecodeBase64: {
      std::string& out = ctx.scratch_string(s1);
      if (!decode_base64(a.s, out)) return Val();
      return Val::str(out);
    }
    case Fn::RemoveBytes: {
      std::string& out = ctx.scratch_string(s1);
      out.clear();
      for (char c : a.s) {
        if (!bytes.test(static_cast<unsigned char>(c))) out.push_back(c);
      }
      return Val::str(out);
    }
    case Fn::Cidr: {
      Val r = a;
      int64_t bits = a.ip.v4 ? n1 : n2;
      int whole = static_cast<int>(bits / 8), rest = static_cast<int>(bits % 8);
      int total = a.ip.v4 ? 4 : 16;
      for (int i = 0; i < total; ++i) {
        if (i < whole) continue;
        if (i == whole && rest) {
          r.ip.bytes[i] &= static_cast<uint8_t>(0xFF << (8 - rest));
        } else {
          r.ip.bytes[i] = 0;
        }
      }
      return r;
    }
    case Fn::Join: {
      Val b = args[1]->eval(ctx);
      if (b.k != Val::K::Str) return Val();
      std::string& out = ctx.scratch_string(s1);
      out.clear();
      for (size_t i = 0; i < a.arr.size; ++i) {
        if (i) out.append(b.s);
        out.append(a.arr.data[i]);
      }
      return Val::str(out);
    }
    case Fn::Split: {
      Val b = args[1]->eval(ctx);
      if (b.k != Val::K::Str) return Val();
      std::vector<std::string_view>& out = ctx.scratch_array(a1);
      out.clear();
      std::string_view rest = a.s;
      // At most n1 items; the last one keeps the unsplit remainder (Rust's splitn).
      while (static_cast<int64_t>(out.size()) + 1 < n1 && !b.s.empty()) {
        size_t at = rest.find(b.s);
        if (at == std::string_view::npos) break;
        out.push_back(rest.substr(0, at));
        rest.remove_prefix(at + b.s.size());
      }
      out.push_back(rest);
      Val r;
      r.k = Val::K::Arr;
      r.arr = {out.data(), out.size()};
      return r;
    }
    case Fn::ToString: {
      std::string& out = ctx.scratch_string(s1);
      out.clear();
      switch (a.k) {
        case Val::K::Str:
          return a;
        case Val::K::Bool:
          out.assign(a.b ? "true" : "false");
          break;
        case Val::K::Int: {
          char buf[24];
          int n = std::snprintf(buf, sizeof(buf), "%lld", static_cast<long long>(a.i));
          out.assign(buf, static_cast<size_t>(n));
          break;
        }
        case Val::K::Ip: {
          char buf[INET6_ADDRSTRLEN];
          inet_ntop(a.ip.v4 ? AF_INET : AF_INET6, a.ip.bytes.data(), buf, sizeof(buf));
          out.assign(buf);
          break;
        }
        default:
          return Val();
      }
      return Val::str(out);
    }
    case Fn::LookupJsonString: {
      std::string& out = ctx.scratch_string(s1);
      if (!json_lookup(a.s, steps, out)) return Val();
      return Val::str(out);
    }
    case Fn::RegexReplace: {
      std::string& out = ctx.scratch_string(s1);
      out.assign(a.s);
      re2::RE2::Replace(&out, *re, lit);
      return Val::str(out);
    }
    case Fn::WildcardReplace: {
      std::string_view caps[64];
      if (wc.pieces.size() - 1 > 64 || !wc.match(a.s, caps)) return a;
      std::string& out = ctx.scratch_string(s1);
      out.clear();
      for (size_t i = 0; i < repl.size(); ++i) {
        if (repl[i] == '$' && i + 1 < repl.size() && repl[i + 1] == '{') {
          size_t close = repl.find('}', i);
          size_t n = static_cast<size_t>(std::atoi(repl.c_str() + i + 2));
          if (n >= 1 && n < wc.pieces.size()) out.append(caps[n - 1]);
          i = close;
          continue;
        }
        out.push_back(repl[i]);
      }
      return Val::str(out);
    }
  }
  return Val();
}

[[noreturn]] void fail(size_t pos, std::string reason) {
  throw CompileFail{pos, std::move(reason)};
}

std::string fn_ref(std::string_view name) { return std::string(name) + "()"; }

void need_type(std::string_view name, const std::vector<Expr>& args, size_t i,
               std::initializer_list<Type> types) {
  for (Type t : types) {
    if (args[i].type == t) return;
  }
  std::string want;
  for (Type t : types) want += (want.empty() ? "" : " or ") + std::string(type_name(t));
  fail(args[i].pos, "argument " + std::to_string(i + 1) + " of " + fn_ref(name) + " must be " +
                        want + ", found " + type_name(args[i].type));
}

void need_literal(std::string_view name, const std::vector<Expr>& args, size_t i) {
  if (!args[i].literal) {
    fail(args[i].pos,
         "argument " + std::to_string(i + 1) + " of " + fn_ref(name) + " must be a literal");
  }
}

NodePtr node_of(Expr& e) {
  if (e.literal) return make_literal(e);
  return std::move(e.node);
}

}  // namespace

NodePtr make_literal(const Expr& e) { return std::make_unique<LiteralNode>(e); }

bool is_function(std::string_view name) { return find_fn(name) != nullptr; }

std::shared_ptr<const re2::RE2> compile_regex(std::string_view pattern, size_t pos) {
  re2::RE2::Options o;
  o.set_log_errors(false);
  auto re = std::make_shared<re2::RE2>(re2::StringPiece(pattern.data(), pattern.size()), o);
  if (!re->ok()) fail(pos, "invalid regex: " + re->error());
  return re;
}

NodePtr make_call(std::string_view name, size_t name_pos, std::vector<Expr>& args, BuildEnv& env,
                  Type* result) {
  const FnInfo* info = find_fn(name);
  if (info == nullptr) fail(name_pos, "unknown function \"" + std::string(name) + "\"");
  if (info->rewrite_only && !env.opt->allow_rewrite_functions) {
    fail(name_pos, "function " + fn_ref(name) + " is only allowed in rewrite value expressions");
  }
  int n = static_cast<int>(args.size());
  if (n < info->min_args || (info->max_args >= 0 && n > info->max_args)) {
    std::string want =
        info->max_args < 0 ? "at least " + std::to_string(info->min_args)
        : info->min_args == info->max_args
            ? std::to_string(info->min_args)
            : std::to_string(info->min_args) + " to " + std::to_string(info->max_args);
    fail(name_pos, "function " + fn_ref(name) + " takes " + want + " argument" +
                       (want == "1" ? "" : "s") + ", got " + std::to_string(n));
  }
  auto f = std::make_unique<FuncNode>();
  f->fn = info->fn;
  const Type S = Type::String, I = Type::Int;
  *result = S;
  switch (info->fn) {
    case Fn::Lower:
    case Fn::Upper:
    case Fn::DecodeBase64:
      need_type(name, args, 0, {S});
      f->s1 = env.new_string();
      break;
    case Fn::Len:
      need_type(name, args, 0, {S, Type::ArrayString});
      *result = I;
      break;
    case Fn::StartsWith:
    case Fn::EndsWith:
      need_type(name, args, 0, {S});
      need_type(name, args, 1, {S});
      *result = Type::Bool;
      break;
    case Fn::Concat:
      for (size_t i = 0; i < args.size(); ++i) need_type(name, args, i, {S});
      f->s1 = env.new_string();
      break;
    case Fn::Substring:
      need_type(name, args, 0, {S});
      for (size_t i = 1; i < args.size(); ++i) need_type(name, args, i, {I});
      break;
    case Fn::UrlDecode:
      need_type(name, args, 0, {S});
      if (args.size() > 1) {
        need_type(name, args, 1, {S});
        need_literal(name, args, 1);
        for (char c : args[1].str) {
          if (c == 'r') {
            f->flag = true;
          } else if (c == 'u') {
            f->flag2 = true;
          } else {
            fail(args[1].pos,
                 "url_decode() options are \"r\" and \"u\", found \"" + std::string(1, c) + "\"");
          }
        }
        args.pop_back();
      }
      f->s1 = env.new_string();
      f->s2 = env.new_string();
      break;
    case Fn::RemoveBytes:
      need_type(name, args, 0, {S});
      need_type(name, args, 1, {S});
      need_literal(name, args, 1);
      for (char c : args[1].str) f->bytes.set(static_cast<unsigned char>(c));
      args.pop_back();
      f->s1 = env.new_string();
      break;
    case Fn::Cidr:
      need_type(name, args, 0, {Type::Ip});
      need_type(name, args, 1, {I});
      need_type(name, args, 2, {I});
      need_literal(name, args, 1);
      need_literal(name, args, 2);
      f->n1 = args[1].num;
      f->n2 = args[2].num;
      if (f->n1 < 1 || f->n1 > 32) fail(args[1].pos, "cidr() IPv4 bits must be 1 to 32");
      if (f->n2 < 1 || f->n2 > 128) fail(args[2].pos, "cidr() IPv6 bits must be 1 to 128");
      args.resize(1);
      *result = Type::Ip;
      break;
    case Fn::Join:
      need_type(name, args, 0, {Type::ArrayString});
      need_type(name, args, 1, {S});
      f->s1 = env.new_string();
      break;
    case Fn::Split:
      need_type(name, args, 0, {S});
      need_type(name, args, 1, {S});
      need_literal(name, args, 1);
      if (args[1].str.empty()) fail(args[1].pos, "split() separator must not be empty");
      f->n1 = 128;
      if (args.size() > 2) {
        need_type(name, args, 2, {I});
        need_literal(name, args, 2);
        f->n1 = args[2].num;
        if (f->n1 < 1 || f->n1 > 128) fail(args[2].pos, "split() limit must be 1 to 128");
        args.pop_back();
      }
      f->a1 = env.new_array();
      *result = Type::ArrayString;
      break;
    case Fn::ToString:
      need_type(name, args, 0, {I, Type::Bool, Type::Ip, S});
      f->s1 = env.new_string();
      break;
    case Fn::LookupJsonString:
      need_type(name, args, 0, {S});
      for (size_t i = 1; i < args.size(); ++i) {
        need_type(name, args, i, {S, I});
        need_literal(name, args, i);
        if (args[i].type == S) {
          f->steps.emplace_back(args[i].str);
        } else {
          f->steps.emplace_back(args[i].num);
        }
      }
      args.resize(1);
      f->s1 = env.new_string();
      break;
    case Fn::RegexReplace: {
      need_type(name, args, 0, {S});
      need_type(name, args, 1, {S});
      need_type(name, args, 2, {S});
      need_literal(name, args, 1);
      need_literal(name, args, 2);
      f->re = compile_regex(args[1].str, args[1].pos);
      std::string err;
      if (!check_refs(args[2].str, static_cast<size_t>(f->re->NumberOfCapturingGroups()), &err)) {
        fail(args[2].pos, err);
      }
      // Cloudflare writes captures as ${1}; RE2 rewrites use \1 and need '\' escaped.
      const std::string& r = args[2].str;
      for (size_t i = 0; i < r.size(); ++i) {
        if (r[i] == '$' && i + 1 < r.size() && r[i + 1] == '{') {
          size_t close = r.find('}', i);
          f->lit += '\\';
          f->lit += r.substr(i + 2, close - i - 2);
          i = close;
        } else if (r[i] == '\\') {
          f->lit += "\\\\";
        } else {
          f->lit += r[i];
        }
      }
      args.resize(1);
      f->s1 = env.new_string();
      break;
    }
    case Fn::WildcardReplace: {
      need_type(name, args, 0, {S});
      for (size_t i = 1; i < args.size(); ++i) {
        need_type(name, args, i, {S});
        need_literal(name, args, i);
      }
      bool strict = false;
      if (args.size() > 3) {
        if (args[3].str != "s" && !args[3].str.empty()) {
          fail(args[3].pos,
               "wildcard_replace() flags are \"s\" (strict), found \"" + args[3].str + "\"");
        }
        strict = args[3].str == "s";
      }
      std::string err;
      if (!Wildcard::compile(args[1].str, strict, &f->wc, &err)) fail(args[1].pos, err);
      if (f->wc.pieces.size() - 1 > 64) fail(args[1].pos, "wildcard pattern has over 64 stars");
      if (!check_refs(args[2].str, f->wc.pieces.size() - 1, &err)) fail(args[2].pos, err);
      f->repl = args[2].str;
      args.resize(1);
      f->s1 = env.new_string();
      break;
    }
  }
  for (Expr& e : args) f->args.push_back(node_of(e));
  return f;
}

}  // namespace parapet::filters::detail
