// Lexer, parser and type checker of the rules language, in one pass: each production builds its
// evaluation node as soon as its operand types are known, so a typed literal (an IP, a CIDR, an
// int range) is lexed according to the type of the left side, as wirefilter does.
#include <re2/re2.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <exception>
#include <optional>

#include "filters/nodes.h"
#include "filters/rules.h"

namespace parapet::filters {
namespace detail {
namespace {

[[noreturn]] void fail(size_t pos, std::string reason) {
  throw CompileFail{pos, std::move(reason)};
}

enum class Op { Eq, Ne, Lt, Le, Gt, Ge, Contains, Matches, Wildcard, StrictWildcard, In };

const char* op_name(Op op) {
  switch (op) {
    case Op::Eq:
      return "eq";
    case Op::Ne:
      return "ne";
    case Op::Lt:
      return "lt";
    case Op::Le:
      return "le";
    case Op::Gt:
      return "gt";
    case Op::Ge:
      return "ge";
    case Op::Contains:
      return "contains";
    case Op::Matches:
      return "matches";
    case Op::Wildcard:
      return "wildcard";
    case Op::StrictWildcard:
      return "strict wildcard";
    case Op::In:
      return "in";
  }
  return "?";
}

template <typename T>
bool compare(Op op, const T& a, const T& b) {
  switch (op) {
    case Op::Eq:
      return a == b;
    case Op::Ne:
      return a != b;
    case Op::Lt:
      return a < b;
    case Op::Le:
      return a <= b;
    case Op::Gt:
      return a > b;
    case Op::Ge:
      return a >= b;
    default:
      return false;
  }
}

// --- Value nodes ---

class FieldNode : public Node {
 public:
  explicit FieldNode(Field f) : f_(f) {}
  Val eval(ExecContext& ctx) const override { return ctx.field(f_); }
  bool field_of(Field* f) const override {
    *f = f_;
    return true;
  }

 private:
  Field f_;
};

class IndexNode : public Node {
 public:
  IndexNode(NodePtr base, int64_t i) : base_(std::move(base)), i_(static_cast<size_t>(i)) {}
  Val eval(ExecContext& ctx) const override {
    Val v = base_->eval(ctx);
    if (v.k != Val::K::Arr || i_ >= v.arr.size) return Val();
    return Val::str(v.arr.data[i_]);
  }

 private:
  NodePtr base_;
  size_t i_;
};

// m["key"]: the values of every entry with that key (headers may repeat), in order.
class MapKeyNode : public Node {
 public:
  MapKeyNode(NodePtr base, std::string key, uint32_t slot)
      : base_(std::move(base)), key_(std::move(key)), slot_(slot) {}
  Val eval(ExecContext& ctx) const override {
    Val v = base_->eval(ctx);
    if (v.k != Val::K::Map) return Val();
    std::vector<std::string_view>& out = ctx.scratch_array(slot_);
    out.clear();
    for (size_t i = 0; i < v.map.size; ++i) {
      if (v.map.data[i].key == key_) out.push_back(v.map.data[i].value);
    }
    Val r;
    r.k = Val::K::Arr;
    r.arr = {out.data(), out.size()};
    return r;
  }
  // m["key"] straight over a map field: that field and key.
  bool field_key(Field* f, std::string* key) const {
    if (!base_->field_of(f)) return false;
    *key = key_;
    return true;
  }

 private:
  NodePtr base_;
  std::string key_;
  uint32_t slot_;
};

// x[*] inside any()/all(): the element the enclosing loop is at.
class IterNode : public Node {
 public:
  explicit IterNode(uint32_t depth) : depth_(depth) {}
  Val eval(ExecContext& ctx) const override { return ctx.iter(depth_); }

 private:
  uint32_t depth_;
};

// --- Logic ---

class AnyAllNode : public Predicate {
 public:
  AnyAllNode(NodePtr source, uint32_t depth, NodePtr body, bool all)
      : source_(std::move(source)), depth_(depth), body_(std::move(body)), all_(all) {}
  bool test(ExecContext& ctx) const override {
    Val v = source_->eval(ctx);
    // Missing or empty: false for both. all() over nothing is deliberately not vacuously true,
    // so a rule never matches because a header is absent.
    if (v.k != Val::K::Arr || v.arr.size == 0) return false;
    for (size_t i = 0; i < v.arr.size; ++i) {
      ctx.iter(depth_) = Val::str(v.arr.data[i]);
      bool r = body_->test(ctx);
      if (all_ != r) return r;
    }
    return all_;
  }
  bool guard(Guard* g) const override;

 private:
  NodePtr source_;
  uint32_t depth_;
  NodePtr body_;
  bool all_;
};

class AndNode : public Predicate {
 public:
  explicit AndNode(std::vector<NodePtr> k) : k_(std::move(k)) {}
  bool test(ExecContext& ctx) const override {
    for (const NodePtr& n : k_) {
      if (!n->test(ctx)) return false;
    }
    return true;
  }
  // Every conjunct is necessary: the one that rules out most cheaply (an equality can be
  // indexed, a prefix is tested in place, a contains scans).
  bool guard(Guard* g) const override {
    bool found = false;
    for (const NodePtr& n : k_) {
      Guard c;
      if (!n->guard(&c)) continue;
      if (!found || c.kind < g->kind) {  // Eq < Prefix < Contains
        *g = std::move(c);
        found = true;
      }
    }
    return found;
  }

 private:
  std::vector<NodePtr> k_;
};

class OrNode : public Predicate {
 public:
  explicit OrNode(std::vector<NodePtr> k) : k_(std::move(k)) {}
  bool test(ExecContext& ctx) const override {
    for (const NodePtr& n : k_) {
      if (n->test(ctx)) return true;
    }
    return false;
  }

 private:
  std::vector<NodePtr> k_;
};

class XorNode : public Predicate {
 public:
  XorNode(NodePtr a, NodePtr b) : a_(std::move(a)), b_(std::move(b)) {}
  bool test(ExecContext& ctx) const override { return a_->test(ctx) != b_->test(ctx); }

 private:
  NodePtr a_, b_;
};

class NotNode : public Predicate {
 public:
  explicit NotNode(NodePtr a) : a_(std::move(a)) {}
  bool test(ExecContext& ctx) const override { return !a_->test(ctx); }

 private:
  NodePtr a_;
};

// --- Comparisons: each is false when its left side is missing (ne included). ---

class StrCmpNode : public Predicate {
 public:
  StrCmpNode(NodePtr l, Op op, std::string lit) : l_(std::move(l)), op_(op), lit_(std::move(lit)) {}
  bool test(ExecContext& ctx) const override {
    Val v = l_->eval(ctx);
    return v.k == Val::K::Str && compare<std::string_view>(op_, v.s, lit_);
  }
  bool guard(Guard* g) const override {
    if (op_ != Op::Eq || !l_->field_of(&g->field)) return false;
    g->kind = Guard::Kind::Eq;
    g->values = {lit_};
    return true;
  }
  // `x[*] eq "lit"`: the literal (for the guard of an enclosing any()/all()).
  const std::string* eq_iter_literal() const {
    return op_ == Op::Eq && dynamic_cast<const IterNode*>(l_.get()) != nullptr ? &lit_ : nullptr;
  }

 private:
  NodePtr l_;
  Op op_;
  std::string lit_;
};

// any(m["key"][*] eq "lit"), any(array[*] eq "lit") and all(...): some value must equal the
// literal (all() over no values is false too).
bool AnyAllNode::guard(Guard* g) const {
  const auto* cmp = dynamic_cast<const StrCmpNode*>(body_.get());
  const std::string* lit = cmp != nullptr ? cmp->eq_iter_literal() : nullptr;
  if (lit == nullptr) return false;
  const auto* key = dynamic_cast<const MapKeyNode*>(source_.get());
  // m["key"][*] (the entries with that key), or an array field's elements.
  if (key != nullptr ? !key->field_key(&g->field, &g->key) : !source_->field_of(&g->field))
    return false;
  g->kind = Guard::Kind::Eq;
  g->values = {*lit};
  return true;
}

class ContainsNode : public Predicate {
 public:
  // `site`: this comparison's index in Program::contains.
  ContainsNode(NodePtr l, std::string lit, uint32_t site)
      : l_(std::move(l)), lit_(std::move(lit)), site_(site) {}
  bool test(ExecContext& ctx) const override {
    if (const ContainsBinding* b = ctx.contains_binding()) {
      const ContainsBinding::Slot s = b->slots[site_];
      if (s.group != ContainsBinding::kNone) return b->index->test(ctx, s, *l_);
    }
    Val v = l_->eval(ctx);
    if (v.k != Val::K::Str) return false;
    if (lit_.empty()) return true;
    if (v.s.size() < lit_.size()) return false;  // also keeps a null data() away from memmem
    return memmem(v.s.data(), v.s.size(), lit_.data(), lit_.size()) != nullptr;
  }
  // The conjunct guard of an `and` (prefilter.h). A rule that is only a contains gets no
  // guard (Filter::guard): the ContainsIndex answers all of those in one scan already.
  bool guard(Guard* g) const override {
    if (lit_.empty() || !l_->field_of(&g->field)) return false;
    g->kind = Guard::Kind::Contains;
    g->values = {lit_};
    return true;
  }
  bool bare_contains() const override { return true; }

 private:
  NodePtr l_;
  std::string lit_;
  uint32_t site_;
};

class RegexNode : public Predicate {
 public:
  RegexNode(NodePtr l, std::shared_ptr<const re2::RE2> re) : l_(std::move(l)), re_(std::move(re)) {}
  bool test(ExecContext& ctx) const override {
    Val v = l_->eval(ctx);
    return v.k == Val::K::Str &&
           re2::RE2::PartialMatch(re2::StringPiece(v.s.data(), v.s.size()), *re_);
  }
  // RE2 bounds every string the regex matches in full between min and max; all of those start
  // with the common prefix of min and max, so a subject it partially matches contains it.
  bool guard(Guard* g) const override {
    std::string lo, hi;
    if (!re_->PossibleMatchRange(&lo, &hi, 16)) return false;
    size_t n = 0;
    while (n < lo.size() && n < hi.size() && lo[n] == hi[n]) ++n;
    if (n == 0 || !l_->field_of(&g->field)) return false;
    g->kind = Guard::Kind::Contains;
    g->values = {lo.substr(0, n)};
    return true;
  }

 private:
  NodePtr l_;
  std::shared_ptr<const re2::RE2> re_;
};

class WildcardNode : public Predicate {
 public:
  WildcardNode(NodePtr l, Wildcard w) : l_(std::move(l)), w_(std::move(w)) {}
  bool test(ExecContext& ctx) const override {
    Val v = l_->eval(ctx);
    return v.k == Val::K::Str && w_.match(v.s, nullptr);
  }
  // The whole subject matches: it starts with the piece before the first star.
  bool guard(Guard* g) const override {
    if (w_.pieces.empty() || w_.pieces[0].empty() || !l_->field_of(&g->field)) return false;
    g->kind = Guard::Kind::Prefix;
    g->values = {w_.pieces[0]};
    g->nocase = !w_.case_sensitive;
    return true;
  }

 private:
  NodePtr l_;
  Wildcard w_;
};

class StrSetNode : public Predicate {
 public:
  StrSetNode(NodePtr l, std::vector<std::string> set) : l_(std::move(l)), set_(std::move(set)) {}
  bool test(ExecContext& ctx) const override {
    Val v = l_->eval(ctx);
    if (v.k != Val::K::Str) return false;
    auto it = std::lower_bound(set_.begin(), set_.end(), v.s,
                               [](const std::string& a, std::string_view b) { return a < b; });
    return it != set_.end() && *it == v.s;
  }
  bool guard(Guard* g) const override {
    if (set_.empty() || !l_->field_of(&g->field)) return false;
    g->kind = Guard::Kind::Eq;
    g->values = set_;
    return true;
  }

 private:
  NodePtr l_;
  std::vector<std::string> set_;  // sorted, unique
};

class StrListNode : public Predicate {
 public:
  StrListNode(NodePtr l, std::shared_ptr<const StringList> list)
      : l_(std::move(l)), list_(std::move(list)) {}
  bool test(ExecContext& ctx) const override {
    Val v = l_->eval(ctx);
    return v.k == Val::K::Str && list_->contains(v.s);
  }

 private:
  NodePtr l_;
  std::shared_ptr<const StringList> list_;
};

class IntCmpNode : public Predicate {
 public:
  IntCmpNode(NodePtr l, Op op, int64_t lit) : l_(std::move(l)), op_(op), lit_(lit) {}
  bool test(ExecContext& ctx) const override {
    Val v = l_->eval(ctx);
    return v.k == Val::K::Int && compare(op_, v.i, lit_);
  }

 private:
  NodePtr l_;
  Op op_;
  int64_t lit_;
};

class IntSetNode : public Predicate {
 public:
  IntSetNode(NodePtr l, std::vector<std::pair<int64_t, int64_t>> ranges)
      : l_(std::move(l)), ranges_(std::move(ranges)) {}
  bool test(ExecContext& ctx) const override {
    Val v = l_->eval(ctx);
    if (v.k != Val::K::Int) return false;
    auto it = std::upper_bound(
        ranges_.begin(), ranges_.end(), v.i,
        [](int64_t x, const std::pair<int64_t, int64_t>& r) { return x < r.first; });
    return it != ranges_.begin() && v.i <= std::prev(it)->second;
  }

 private:
  NodePtr l_;
  std::vector<std::pair<int64_t, int64_t>> ranges_;  // sorted, merged
};

class IpSetNode : public Predicate {
 public:
  IpSetNode(NodePtr l, IpRangeSet set, bool negate)
      : l_(std::move(l)), set_(std::move(set)), negate_(negate) {}
  bool test(ExecContext& ctx) const override {
    Val v = l_->eval(ctx);
    return v.k == Val::K::Ip && set_.contains(v.ip) != negate_;
  }

 private:
  NodePtr l_;
  IpRangeSet set_;
  bool negate_;
};

class IpListNode : public Predicate {
 public:
  IpListNode(NodePtr l, std::shared_ptr<const IpList> list)
      : l_(std::move(l)), list_(std::move(list)) {}
  bool test(ExecContext& ctx) const override {
    Val v = l_->eval(ctx);
    return v.k == Val::K::Ip && list_->contains(v.ip);
  }

 private:
  NodePtr l_;
  std::shared_ptr<const IpList> list_;
};

class BoolEqNode : public Predicate {
 public:
  BoolEqNode(NodePtr l, bool want) : l_(std::move(l)), want_(want) {}
  bool test(ExecContext& ctx) const override {
    Val v = l_->eval(ctx);
    return v.k == Val::K::Bool && v.b == want_;
  }

 private:
  NodePtr l_;
  bool want_;
};

// --- The parser ---

bool ident_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool ident_char(char c) { return ident_start(c) || (c >= '0' && c <= '9') || c == '.'; }
bool digit(char c) { return c >= '0' && c <= '9'; }

class Parser {
 public:
  Parser(std::string_view src, const CompileOptions& opt, Program* prog)
      : src_(src), opt_(opt), env_{&opt_, prog}, prog_(prog) {}

  NodePtr filter() {
    ws();
    if (end()) fail(pos_, "empty expression");
    NodePtr n = parse_or();
    ws();
    if (!end()) unexpected();
    return n;
  }

  NodePtr value() {
    ws();
    if (end()) fail(pos_, "empty expression");
    Expr e = operand(true);
    ws();
    if (!end()) unexpected();
    if (e.type != Type::String) {
      fail(e.pos, std::string("value expression must be String, found ") + type_name(e.type));
    }
    return e.literal ? make_literal(e) : std::move(e.node);
  }

 private:
  struct Frame {
    NodePtr source;
    uint32_t depth;
  };
  // Counts nesting (parentheses, not, calls) so hostile input cannot exhaust the stack.
  struct Deeper {
    Deeper(Parser* p, size_t pos) : p_(p) {
      if (++p_->depth_ > p_->opt_.max_depth) {
        fail(pos,
             "expression nested deeper than " + std::to_string(p_->opt_.max_depth) + " levels");
      }
    }
    ~Deeper() { --p_->depth_; }
    Parser* p_;
  };

  bool end() const { return pos_ >= src_.size(); }
  char cur() const { return end() ? '\0' : src_[pos_]; }
  char at(size_t i) const { return i < src_.size() ? src_[i] : '\0'; }
  void ws() {
    while (!end() && (cur() == ' ' || cur() == '\t' || cur() == '\n' || cur() == '\r')) ++pos_;
  }
  bool sym(std::string_view s) {
    ws();
    if (src_.substr(pos_, s.size()) != s) return false;
    pos_ += s.size();
    return true;
  }
  std::string_view peek_ident() {
    ws();
    if (!ident_start(cur())) return {};
    size_t e = pos_;
    while (e < src_.size() && ident_char(src_[e])) ++e;
    return src_.substr(pos_, e - pos_);
  }
  bool word(std::string_view w) {
    if (peek_ident() != w) return false;
    pos_ += w.size();
    return true;
  }
  [[noreturn]] void unexpected() {
    ws();
    if (end()) fail(pos_, "unexpected end of expression");
    std::string_view id = peek_ident();
    std::string tok = id.empty() ? std::string(1, cur()) : std::string(id);
    fail(pos_, "unexpected \"" + tok + "\"");
  }
  void expect(char c) {
    ws();
    if (cur() != c) {
      if (end()) fail(pos_, std::string("expected \"") + c + "\", found end of expression");
      fail(pos_, std::string("expected \"") + c + "\"");
    }
    ++pos_;
  }

  NodePtr parse_or() {
    std::vector<NodePtr> k;
    k.push_back(parse_xor());
    while (word("or") || sym("||")) k.push_back(parse_xor());
    return k.size() == 1 ? std::move(k[0]) : std::make_unique<OrNode>(std::move(k));
  }
  NodePtr parse_xor() {
    NodePtr l = parse_and();
    while (word("xor") || sym("^^")) l = std::make_unique<XorNode>(std::move(l), parse_and());
    return l;
  }
  NodePtr parse_and() {
    std::vector<NodePtr> k;
    k.push_back(parse_not());
    while (word("and") || sym("&&")) k.push_back(parse_not());
    return k.size() == 1 ? std::move(k[0]) : std::make_unique<AndNode>(std::move(k));
  }
  NodePtr parse_not() {
    ws();
    size_t at = pos_;
    if (word("not") || (cur() == '!' && this->at(at + 1) != '=' && sym("!"))) {
      Deeper d(this, at);
      return std::make_unique<NotNode>(parse_not());
    }
    return parse_term();
  }

  NodePtr parse_term() {
    ws();
    size_t start = pos_;
    if (cur() == '(') {
      Deeper d(this, start);
      ++pos_;
      NodePtr n = parse_or();
      expect(')');
      return n;
    }
    Expr lhs = operand(false);
    size_t op_pos;
    std::optional<Op> op = parse_op(&op_pos);
    if (!op) {
      if (lhs.type == Type::Bool) return lhs.literal ? make_literal(lhs) : std::move(lhs.node);
      ws();
      fail(pos_,
           std::string("expected a comparison operator after ") + type_name(lhs.type) + " value");
    }
    return comparison(std::move(lhs), *op, op_pos);
  }

  std::optional<Op> parse_op(size_t* op_pos) {
    ws();
    *op_pos = pos_;
    static constexpr std::pair<std::string_view, Op> kSyms[] = {
        {"==", Op::Eq}, {"!=", Op::Ne}, {"<=", Op::Le},    {">=", Op::Ge},
        {"<", Op::Lt},  {">", Op::Gt},  {"~", Op::Matches}};
    for (const auto& [s, op] : kSyms) {
      if (sym(s)) return op;
    }
    static constexpr std::pair<std::string_view, Op> kWords[] = {{"eq", Op::Eq},
                                                                 {"ne", Op::Ne},
                                                                 {"lt", Op::Lt},
                                                                 {"le", Op::Le},
                                                                 {"gt", Op::Gt},
                                                                 {"ge", Op::Ge},
                                                                 {"contains", Op::Contains},
                                                                 {"matches", Op::Matches},
                                                                 {"wildcard", Op::Wildcard},
                                                                 {"in", Op::In}};
    for (const auto& [w, op] : kWords) {
      if (word(w)) return op;
    }
    if (word("strict")) {
      if (!word("wildcard")) fail(pos_, "expected \"wildcard\" after \"strict\"");
      return Op::StrictWildcard;
    }
    return std::nullopt;
  }

  // --- Literals ---

  bool at_string() const {
    return cur() == '"' || (cur() == 'r' && (at(pos_ + 1) == '"' || at(pos_ + 1) == '#'));
  }

  std::string string_lit() {
    ws();
    size_t start = pos_;
    std::string out;
    if (cur() == 'r') {
      ++pos_;
      size_t hashes = 0;
      while (cur() == '#') ++hashes, ++pos_;
      if (cur() != '"') fail(start, "expected '\"' after r" + std::string(hashes, '#'));
      ++pos_;
      std::string close = "\"" + std::string(hashes, '#');
      size_t e = src_.find(close, pos_);
      if (e == std::string_view::npos) fail(start, "unterminated raw string");
      out.assign(src_.substr(pos_, e - pos_));
      pos_ = e + close.size();
      return out;
    }
    if (cur() != '"') fail(start, "expected a String literal");
    ++pos_;
    while (true) {
      if (end()) fail(start, "unterminated string");
      char c = src_[pos_];
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c == '\\') {
        size_t esc = pos_;
        char n = at(pos_ + 1);
        if (n == '"' || n == '\\') {
          out.push_back(n);
          pos_ += 2;
        } else if (n == 'x') {
          int h = hex(at(pos_ + 2)), l = hex(at(pos_ + 3));
          if (h < 0 || l < 0) fail(esc, "invalid \\x escape: expected two hex digits");
          out.push_back(static_cast<char>(h * 16 + l));
          pos_ += 4;
        } else {
          fail(esc, n == '\0' ? std::string("unterminated string")
                              : "invalid escape \"\\" + std::string(1, n) + "\"");
        }
        continue;
      }
      out.push_back(c);
      ++pos_;
    }
  }
  static int hex(char c) {
    if (digit(c)) return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  int64_t int_lit() {
    ws();
    size_t start = pos_;
    size_t e = pos_;
    if (at(e) == '-') ++e;
    if (!digit(at(e))) fail(start, "expected an Int literal");
    while (digit(at(e))) ++e;
    int64_t v = 0;
    auto [p, ec] = std::from_chars(src_.data() + pos_, src_.data() + e, v);
    if (ec != std::errc() || p != src_.data() + e) fail(start, "integer out of range");
    if (ident_start(at(e))) fail(start, "invalid Int literal");
    pos_ = e;
    return v;
  }

  // An IP, CIDR or (when `range` is set) "lo..hi" token: [0-9a-fA-F:.]+ (/digits)?.
  void ip_lit(IpRangeSet* set, bool allow_range) {
    ws();
    size_t start = pos_, e = pos_;
    auto ipchar = [](char c) { return hex(c) >= 0 || c == ':' || c == '.'; };
    while (e < src_.size() && (ipchar(src_[e]) || src_[e] == '/')) ++e;
    std::string_view tok = src_.substr(start, e - start);
    if (tok.empty()) fail(start, "expected an IP address or CIDR");
    pos_ = e;
    size_t dots = tok.find("..");
    std::string err;
    if (dots == std::string_view::npos) {
      IpAddr lo, hi;
      if (!parse_cidr(tok, &lo, &hi, &err)) fail(start, err);
      set->add(lo, hi);
      return;
    }
    if (!allow_range) fail(start, "an IP range is only allowed inside { }");
    IpAddr lo, hi;
    std::string_view a = tok.substr(0, dots), b = tok.substr(dots + 2);
    if (!IpAddr::parse(a, &lo)) fail(start, "invalid IP address \"" + std::string(a) + "\"");
    if (!IpAddr::parse(b, &hi)) {
      fail(start + dots + 2, "invalid IP address \"" + std::string(b) + "\"");
    }
    if (lo.v4 != hi.v4) fail(start, "IP range mixes IPv4 and IPv6");
    bool bad = lo.v4 ? lo.v4_value() > hi.v4_value() : lo.v6_value() > hi.v6_value();
    if (bad) fail(start, "range start is greater than end");
    set->add(lo, hi);
  }

  std::string list_name() {
    ws();
    size_t start = ++pos_;  // past '$'
    while (!end() && (ident_char(cur()) || cur() == '-')) ++pos_;
    if (pos_ == start) fail(start - 1, "expected a list name after \"$\"");
    return std::string(src_.substr(start, pos_ - start));
  }

  // --- Operands: fields, calls, literals, with [index] suffixes ---

  Expr operand(bool allow_literal) {
    ws();
    Expr e;
    e.pos = pos_;
    char c = cur();
    if (at_string()) {
      if (!allow_literal) fail(pos_, "a comparison must start with a field or a function");
      e.literal = true;
      e.type = Type::String;
      e.str = string_lit();
      return e;
    }
    if (digit(c) || (c == '-' && digit(at(pos_ + 1)))) {
      if (!allow_literal) fail(pos_, "a comparison must start with a field or a function");
      e.literal = true;
      e.type = Type::Int;
      e.num = int_lit();
      return e;
    }
    std::string_view name = peek_ident();
    if (name.empty()) unexpected();
    if (name == "true" || name == "false") {
      pos_ += name.size();
      e.literal = true;
      e.type = Type::Bool;
      e.flag = name == "true";
      return e;
    }
    pos_ += name.size();
    ws();
    if (cur() == '(') {
      Deeper d(this, e.pos);
      ++pos_;
      if (name == "any" || name == "all") {
        any_all(name, &e);
      } else {
        if (!is_function(name)) fail(e.pos, "unknown function \"" + std::string(name) + "\"");
        std::vector<Expr> args;
        ws();
        if (cur() != ')') {
          args.push_back(operand(true));
          while (sym(",")) args.push_back(operand(true));
        }
        expect(')');
        for (const Expr& a : args) e.iter |= a.iter;
        e.node = make_call(name, e.pos, args, env_, &e.type);
      }
    } else {
      std::optional<Field> f = find_field(name);
      if (!f) fail(e.pos, "unknown field \"" + std::string(name) + "\"");
      const FieldInfo& fi = field_info(*f);
      if (fi.phase == Phase::Response && opt_.phase != Phase::Response) {
        fail(e.pos, "field \"" + std::string(name) + "\" is only available in the response phase");
      }
      e.node = std::make_unique<FieldNode>(*f);
      e.type = fi.type;
    }
    indexes(&e);
    return e;
  }

  void any_all(std::string_view name, Expr* e) {
    frames_.push_back({nullptr, static_cast<uint32_t>(frames_.size())});
    prog_->iters = std::max<uint32_t>(prog_->iters, static_cast<uint32_t>(frames_.size()));
    NodePtr body = parse_or();
    expect(')');
    Frame f = std::move(frames_.back());
    frames_.pop_back();
    if (!f.source) {
      fail(e->pos, std::string(name) + "() needs an array element x[*] in its argument");
    }
    e->node =
        std::make_unique<AnyAllNode>(std::move(f.source), f.depth, std::move(body), name == "all");
    e->type = Type::Bool;
  }

  void indexes(Expr* e) {
    while (true) {
      ws();
      if (cur() != '[') return;
      size_t at_pos = pos_++;
      ws();
      if (cur() == '*') {
        ++pos_;
        expect(']');
        if (e->type != Type::ArrayString) {
          fail(at_pos, std::string("[*] needs an Array, found ") + type_name(e->type));
        }
        if (frames_.empty()) fail(at_pos, "[*] is only allowed inside any() or all()");
        Frame& f = frames_.back();
        if (f.source) fail(at_pos, "only one [*] is allowed in one any() or all()");
        f.source = std::move(e->node);
        e->node = std::make_unique<IterNode>(f.depth);
        e->type = Type::String;
        e->iter = true;
      } else if (at_string()) {
        if (e->type != Type::MapString) {
          fail(at_pos, std::string("[\"key\"] needs a Map, found ") + type_name(e->type));
        }
        std::string key = string_lit();
        expect(']');
        e->node =
            std::make_unique<MapKeyNode>(std::move(e->node), std::move(key), env_.new_array());
        e->type = Type::ArrayString;
      } else if (digit(cur())) {
        if (e->type != Type::ArrayString) {
          fail(at_pos, std::string("[index] needs an Array, found ") + type_name(e->type));
        }
        int64_t i = int_lit();
        expect(']');
        e->node = std::make_unique<IndexNode>(std::move(e->node), i);
        e->type = Type::String;
      } else {
        fail(pos_, "expected an index: [0], [\"name\"] or [*]");
      }
    }
  }

  // --- Comparisons, typed by the left side ---

  NodePtr comparison(Expr lhs, Op op, size_t op_pos) {
    const size_t lhs_pos = lhs.pos;
    const bool lhs_iter = lhs.iter;
    NodePtr l = lhs.literal ? make_literal(lhs) : std::move(lhs.node);
    auto undefined = [&] {
      fail(op_pos, std::string("operator \"") + op_name(op) + "\" is not defined for " +
                       type_name(lhs.type));
    };
    ws();
    size_t rhs_pos = pos_;
    switch (lhs.type) {
      case Type::String: {
        if (op == Op::In) {
          if (cur() == '$') {
            std::string name = list_name();
            auto list = opt_.lists ? opt_.lists->string_list(name) : nullptr;
            if (!list) {
              if (opt_.lists && opt_.lists->ip_list(name)) {
                fail(rhs_pos, "list $" + name + " holds IP addresses but the left side is String");
              }
              fail(rhs_pos, "unknown list \"$" + name + "\"");
            }
            return std::make_unique<StrListNode>(std::move(l), std::move(list));
          }
          std::vector<std::string> set;
          set_items([&] {
            if (!at_string()) fail(pos_, "expected a String literal in the set");
            set.push_back(string_lit());
          });
          std::sort(set.begin(), set.end());
          set.erase(std::unique(set.begin(), set.end()), set.end());
          return std::make_unique<StrSetNode>(std::move(l), std::move(set));
        }
        if (!at_string()) {
          fail(rhs_pos, std::string("expected a String literal after \"") + op_name(op) + "\"");
        }
        std::string lit = string_lit();
        switch (op) {
          case Op::Contains: {
            const auto site = static_cast<uint32_t>(prog_->contains.size());
            const bool groupable = !lhs_iter && !lit.empty();
            prog_->contains.push_back(
                {value_key(src_.substr(lhs_pos, op_pos - lhs_pos)), lit, groupable});
            return std::make_unique<ContainsNode>(std::move(l), std::move(lit), site);
          }
          case Op::Matches:
            return std::make_unique<RegexNode>(std::move(l), compile_regex(lit, rhs_pos));
          case Op::Wildcard:
          case Op::StrictWildcard: {
            Wildcard w;
            std::string err;
            if (!Wildcard::compile(lit, op == Op::StrictWildcard, &w, &err)) fail(rhs_pos, err);
            return std::make_unique<WildcardNode>(std::move(l), std::move(w));
          }
          default:
            return std::make_unique<StrCmpNode>(std::move(l), op, std::move(lit));
        }
      }
      case Type::Int: {
        if (op == Op::In) {
          if (cur() == '$') fail(rhs_pos, "lists hold IPs or Strings, not Int");
          std::vector<std::pair<int64_t, int64_t>> ranges;
          set_items([&] {
            size_t at_item = pos_;
            int64_t lo = int_lit();
            int64_t hi = lo;
            if (src_.substr(pos_, 2) == "..") {
              pos_ += 2;
              hi = int_lit();
              if (hi < lo) fail(at_item, "range start is greater than end");
            }
            ranges.emplace_back(lo, hi);
          });
          std::sort(ranges.begin(), ranges.end());
          std::vector<std::pair<int64_t, int64_t>> merged;
          for (const auto& r : ranges) {
            if (!merged.empty() &&
                (merged.back().second == INT64_MAX || r.first <= merged.back().second + 1)) {
              merged.back().second = std::max(merged.back().second, r.second);
            } else {
              merged.push_back(r);
            }
          }
          return std::make_unique<IntSetNode>(std::move(l), std::move(merged));
        }
        if (op == Op::Contains || op == Op::Matches || op == Op::Wildcard ||
            op == Op::StrictWildcard) {
          undefined();
        }
        return std::make_unique<IntCmpNode>(std::move(l), op, int_lit());
      }
      case Type::Ip: {
        if (op == Op::In) {
          if (cur() == '$') {
            std::string name = list_name();
            auto list = opt_.lists ? opt_.lists->ip_list(name) : nullptr;
            if (!list) {
              if (opt_.lists && opt_.lists->string_list(name)) {
                fail(rhs_pos, "list $" + name + " holds Strings but the left side is IP");
              }
              fail(rhs_pos, "unknown list \"$" + name + "\"");
            }
            return std::make_unique<IpListNode>(std::move(l), std::move(list));
          }
          IpRangeSet set;
          set_items([&] { ip_lit(&set, true); });
          set.finalize();
          return std::make_unique<IpSetNode>(std::move(l), std::move(set), false);
        }
        if (op != Op::Eq && op != Op::Ne) undefined();
        IpRangeSet set;
        ip_lit(&set, false);
        set.finalize();
        return std::make_unique<IpSetNode>(std::move(l), std::move(set), op == Op::Ne);
      }
      case Type::Bool: {
        if (op != Op::Eq && op != Op::Ne) undefined();
        bool v;
        if (word("true")) {
          v = true;
        } else if (word("false")) {
          v = false;
        } else {
          fail(rhs_pos, "expected true or false");
        }
        return std::make_unique<BoolEqNode>(std::move(l), v == (op == Op::Eq));
      }
      default:
        undefined();
    }
    return nullptr;  // not reached: undefined() throws
  }

  // The text of an operand with the whitespace outside its string literals removed: two
  // operands with the same key are the same value (no two tokens of a valid operand are
  // separated by whitespace alone, so nothing else changes meaning).
  static std::string value_key(std::string_view text) {
    std::string out;
    size_t i = 0;
    while (i < text.size()) {
      const char c = text[i];
      const bool raw = c == 'r' && (i == 0 || !ident_char(text[i - 1])) && i + 1 < text.size() &&
                       (text[i + 1] == '"' || text[i + 1] == '#');
      if (raw) {  // r#"..."#: copied up to the quote and as many hashes
        size_t q = text.find('"', i);
        if (q == std::string_view::npos) break;
        const std::string close = "\"" + std::string(q - i - 1, '#');
        size_t e = text.find(close, q + 1);
        e = e == std::string_view::npos ? text.size() : e + close.size();
        out.append(text.substr(i, e - i));
        i = e;
      } else if (c == '"') {  // copied with its escapes, up to the closing quote
        size_t e = i + 1;
        while (e < text.size() && text[e] != '"') e += text[e] == '\\' ? 2 : 1;
        e = std::min(e + 1, text.size());
        out.append(text.substr(i, e - i));
        i = e;
      } else {
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') out.push_back(c);
        ++i;
      }
    }
    return out;
  }

  template <typename Fn>
  void set_items(Fn&& item) {
    ws();
    if (cur() != '{') fail(pos_, "expected \"{\" or a $list after \"in\"");
    size_t open = pos_++;
    size_t n = 0;
    while (true) {
      ws();
      if (end()) fail(open, "unterminated set: missing \"}\"");
      if (cur() == '}') break;
      item();
      ++n;
      // Items are separated by whitespace, as in Cloudflare's syntax.
      if (!end() && cur() != '}' && cur() != ' ' && cur() != '\t' && cur() != '\n' &&
          cur() != '\r') {
        unexpected();
      }
    }
    if (n == 0) fail(open, "empty set");
    ++pos_;
  }

  std::string_view src_;
  const CompileOptions& opt_;
  BuildEnv env_;
  Program* prog_;
  size_t pos_ = 0;
  int depth_ = 0;
  std::vector<Frame> frames_;
};

CompileError error_at(std::string_view src, size_t pos, std::string reason) {
  pos = std::min(pos, src.size());
  CompileError e;
  e.line = 1;
  size_t line_start = 0;
  for (size_t i = 0; i < pos; ++i) {
    if (src[i] == '\n') {
      ++e.line;
      line_start = i + 1;
    }
  }
  e.column = static_cast<int>(pos - line_start) + 1;
  e.reason = std::move(reason);
  return e;
}

// Runs one compile; every failure, including ones thrown by RE2 or the allocator, becomes a
// CompileError here so nothing escapes the API.
template <typename ParseFn>
std::unique_ptr<Program> run(std::string_view src, const CompileOptions& opt, CompileError* err,
                             ParseFn&& parse) {
  if (src.size() > opt.max_bytes) {
    *err = {1, 1,
            "expression is " + std::to_string(src.size()) + " bytes, over the " +
                std::to_string(opt.max_bytes) + "-byte limit"};
    return nullptr;
  }
  try {
    auto prog = std::make_unique<Program>();
    Parser p(src, opt, prog.get());
    prog->root = parse(p);
    return prog;
  } catch (const CompileFail& f) {
    *err = error_at(src, f.pos, f.reason);
  } catch (const std::exception& e) {
    *err = {1, 1, std::string("internal error: ") + e.what()};
  }
  return nullptr;
}

}  // namespace
}  // namespace detail

struct FilterAccess {
  static std::shared_ptr<const Filter> filter(std::unique_ptr<detail::Program> p) {
    return std::shared_ptr<const Filter>(new Filter(std::move(p)));
  }
  static std::shared_ptr<const ValueExpr> value(std::unique_ptr<detail::Program> p) {
    return std::shared_ptr<const ValueExpr>(new ValueExpr(std::move(p)));
  }
};

std::string CompileError::to_string() const {
  return std::to_string(line) + ":" + std::to_string(column) + ": " + reason;
}

Filter::Filter(std::unique_ptr<detail::Program> p) : p_(std::move(p)) {}
Filter::~Filter() = default;

const Guard& Filter::guard() const { return p_->guard; }

bool Filter::matches(ExecContext& ctx, const ContainsBinding* contains) const {
  ctx.prepare(p_->strings, p_->arrays, p_->iters);
  ctx.set_contains_binding(contains);
  const bool r = p_->root->test(ctx);
  ctx.set_contains_binding(nullptr);
  return r;
}

ValueExpr::ValueExpr(std::unique_ptr<detail::Program> p) : p_(std::move(p)) {}
ValueExpr::~ValueExpr() = default;

bool ValueExpr::eval(ExecContext& ctx, std::string& out) const {
  ctx.prepare(p_->strings, p_->arrays, p_->iters);
  detail::Val v = p_->root->eval(ctx);
  if (v.k != detail::Val::K::Str) {
    out.clear();
    return false;
  }
  out.assign(v.s);
  return true;
}

Compiled<Filter> compile_filter(std::string_view expr, const CompileOptions& opt) {
  Compiled<Filter> r;
  auto prog = detail::run(expr, opt, &r.error, [](detail::Parser& p) { return p.filter(); });
  if (!prog) return r;
  if (prog->root->bare_contains() || !prog->root->guard(&prog->guard)) prog->guard = Guard{};
  r.value = FilterAccess::filter(std::move(prog));
  return r;
}

Compiled<ValueExpr> compile_value(std::string_view expr, const CompileOptions& opt) {
  Compiled<ValueExpr> r;
  auto prog = detail::run(expr, opt, &r.error, [](detail::Parser& p) { return p.value(); });
  if (prog) r.value = FilterAccess::value(std::move(prog));
  return r;
}

RuleSetResult RuleSet::compile(std::span<const RuleSource> rules, const CompileOptions& opt) {
  RuleSetResult r;
  auto set = std::shared_ptr<RuleSet>(new RuleSet());
  for (size_t i = 0; i < rules.size(); ++i) {
    Compiled<Filter> f = compile_filter(rules[i].expression, opt);
    if (!f.ok()) {
      r.errors.push_back({i, rules[i].id, std::move(f.error)});
      continue;
    }
    set->ids_.push_back(rules[i].id);
    set->filters_.push_back(std::move(f.value));
  }
  if (!r.errors.empty()) return r;
  if (opt.contains_index_min > 0) {
    std::vector<const Filter*> filters;
    for (const auto& f : set->filters_) filters.push_back(f.get());
    ContainsIndex::Options copt;
    copt.min_literals = opt.contains_index_min;
    set->contains_ = ContainsIndex::build(filters, copt);
  }
  std::vector<const Filter*> filters;
  for (const auto& f : set->filters_) filters.push_back(f.get());
  std::unique_ptr<bool[]> always(new bool[filters.size() + 1]());  // no rule is special here
  set->prefilter_ = std::make_shared<const Prefilter>(
      filters, std::span<const bool>(always.get(), filters.size()));
  r.set = std::move(set);
  return r;
}

const std::vector<uint64_t>& RuleSet::candidates(ExecContext& ctx) const {
  bool fresh = false;
  std::vector<uint64_t>& bits = ctx.candidate_bits(this, &fresh);
  if (!fresh) prefilter_->candidates(ctx, bits);
  return bits;
}

size_t RuleSet::next_match(ExecContext& ctx, size_t from) const {
  const std::vector<uint64_t>& bits = candidates(ctx);
  for (size_t i = from; i < filters_.size(); ++i) {
    if (!Prefilter::has(bits, i)) continue;
    if (filters_[i]->matches(ctx, contains_ ? contains_->binding(i) : nullptr)) return i;
  }
  return npos;
}

void RuleSet::evaluate(ExecContext& ctx, std::vector<uint32_t>& matched) const {
  matched.clear();
  const std::vector<uint64_t>& bits = candidates(ctx);
  for (size_t i = 0; i < filters_.size(); ++i) {
    if (!Prefilter::has(bits, i)) continue;
    if (filters_[i]->matches(ctx, contains_ ? contains_->binding(i) : nullptr)) {
      matched.push_back(static_cast<uint32_t>(i));
    }
  }
}

}  // namespace parapet::filters
