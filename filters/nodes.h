// Internal: the evaluation form of compiled expressions (a tree of immutable nodes) and the
// pieces the parser uses to build it. Not part of the public API.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "filters/context.h"
#include "filters/ip_list.h"
#include "filters/prefilter.h"
#include "filters/rules.h"
#include "filters/scheme.h"

namespace re2 {
class RE2;
}

namespace parapet::filters::detail {

// Thrown inside the compiler only; compile_filter() turns it into a CompileError.
struct CompileFail {
  size_t pos;
  std::string reason;
};

class Node {
 public:
  virtual ~Node() = default;
  virtual Val eval(ExecContext& ctx) const = 0;
  // Bool-typed nodes override this to skip building a Val.
  virtual bool test(ExecContext& ctx) const {
    Val v = eval(ctx);
    return v.k == Val::K::Bool && v.b;
  }
  // Introspection for guards (prefilter.h), at compile time only.
  // The field a FieldNode reads.
  virtual bool field_of(Field*) const { return false; }
  // A String literal's value.
  virtual const std::string* literal() const { return nullptr; }
  // A necessary condition for test() to be true, when this node has a cheap one.
  virtual bool guard(Guard*) const { return false; }
  // A `contains` comparison (its guard is not worth testing on its own).
  virtual bool bare_contains() const { return false; }
};
using NodePtr = std::unique_ptr<Node>;

// A node whose value is a Bool that is never missing (comparisons, logic).
class Predicate : public Node {
 public:
  Val eval(ExecContext& ctx) const final { return Val::boolean(test(ctx)); }
};

// One `x contains "lit"` of a program, for ContainsIndex (contains_index.h).
struct ContainsSite {
  std::string value;  // the left side's text, whitespace outside string literals removed
  std::string literal;
  bool groupable;  // false: over x[*] (changes per element) or an empty literal
};

struct Program {
  NodePtr root;
  uint32_t strings = 0;  // scratch strings used (ExecContext::scratch_string)
  uint32_t arrays = 0;   // scratch arrays
  uint32_t iters = 0;    // nesting of any()/all()
  // Every `contains`, in source order (ContainsNode knows its index).
  std::vector<ContainsSite> contains;
  Guard guard;  // Kind::None: no cheap necessary condition
};

// What the compiler tracks while building one program.
struct BuildEnv {
  const CompileOptions* opt;
  Program* prog;
  uint32_t new_string() { return prog->strings++; }
  uint32_t new_array() { return prog->arrays++; }
};

// A typed, parsed expression: a node, or a literal still waiting for its node (functions take
// some arguments as compile-time constants: regexes, wildcard patterns, cidr bit counts).
struct Expr {
  NodePtr node;
  Type type = Type::Bool;
  size_t pos = 0;
  bool literal = false;
  std::string str;    // literal String
  int64_t num = 0;    // literal Int
  bool flag = false;  // literal Bool
  bool iter = false;  // its value depends on the element x[*] of an enclosing any()/all()
};

// A `*` glob: literal pieces between stars. Case-insensitive patterns store lowered pieces.
struct Wildcard {
  std::vector<std::string> pieces;  // pieces.size() == stars + 1 (possibly empty strings)
  bool case_sensitive = false;
  // Parses `\*` and `\\` escapes; any other backslash is an error (false, *err set).
  static bool compile(std::string_view pattern, bool case_sensitive, Wildcard* out,
                      std::string* err);
  // Matches the whole subject; fills caps (one per star, if non-null and sized) on success.
  bool match(std::string_view s, std::string_view* caps) const;
};

// Literal node for function arguments.
NodePtr make_literal(const Expr& e);

// Builds a function call: type-checks arguments (throwing CompileFail) and returns the node
// with *result set to its type. `any`/`all` are handled by the parser, not here.
NodePtr make_call(std::string_view name, size_t name_pos, std::vector<Expr>& args, BuildEnv& env,
                  Type* result);
bool is_function(std::string_view name);

std::shared_ptr<const re2::RE2> compile_regex(std::string_view pattern, size_t pos);

}  // namespace parapet::filters::detail
