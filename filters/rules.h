// The rules language: Cloudflare's Rules language (wirefilter syntax) compiled against parapet's
// scheme (scheme.h) into immutable objects evaluated per request.
//
//   ListRegistry lists;                       // optional: $name lists
//   CompileOptions opt;  opt.lists = &lists;
//   RuleSetResult rs = RuleSet::compile({{"r1", R"(http.host eq "a.test")"}}, opt);
//   if (!rs.ok()) { for (auto& e : rs.errors) log(e.id, e.error.to_string()); }
//   ...per request, on the worker:
//   ctx.reset(&provider);                     // ExecContext kept per connection
//   for (size_t i = rs.set->next_match(ctx); i != RuleSet::npos;
//        i = rs.set->next_match(ctx, i + 1)) { act on rs.set->id(i) }
//
// Contracts:
//  - Compilation runs at config load on any thread; it never throws: errors are values with a
//    1-based line and byte column into the expression text.
//  - Compiled objects are immutable, shareable across threads (shared_ptr<const T>), and keep
//    the lists they use alive. Evaluation is const, thread-safe given one ExecContext per
//    thread, never throws and allocates nothing once the context has warmed up (RE2's lazy DFA
//    may allocate the first times it sees new input shapes, within its own memory budget).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "filters/contains_index.h"
#include "filters/context.h"
#include "filters/ip_list.h"
#include "filters/prefilter.h"
#include "filters/scheme.h"

namespace parapet::filters {

namespace detail {
class Node;
struct Program;
}  // namespace detail

// Why an expression was refused: "1:17: unknown field \"http.request.urii\"".
struct CompileError {
  int line = 0;    // 1-based
  int column = 0;  // 1-based, in bytes
  std::string reason;
  std::string to_string() const;
};

struct CompileOptions {
  // Request-phase rules may not name response fields (http.response.*).
  Phase phase = Phase::Request;
  // Lists for `in $name`; null means no lists (any $name is an error). Borrowed during compile.
  const ListRegistry* lists = nullptr;
  // regex_replace() and wildcard_replace() are only for rewrite value expressions.
  bool allow_rewrite_functions = false;
  size_t max_bytes = 4096;
  int max_depth = 64;
  // RuleSet::compile only: a value that the set compares with `contains` to at least this many
  // distinct literals is scanned once per request (ContainsIndex); 0: never.
  size_t contains_index_min = 8;
};

// A compiled boolean filter expression.
class Filter {
 public:
  ~Filter();
  // True when the expression holds for the request behind `ctx`. `contains` is this filter's
  // binding in a ContainsIndex (contains_index.h), or null: the result is the same either way.
  bool matches(ExecContext& ctx, const ContainsBinding* contains = nullptr) const;
  // A cheap necessary condition of the expression (Kind::None when it has none): the
  // Prefilter (prefilter.h) skips the filter when it fails.
  const Guard& guard() const;

 private:
  friend struct FilterAccess;
  friend class ContainsIndex;
  explicit Filter(std::unique_ptr<detail::Program> p);
  std::unique_ptr<detail::Program> p_;
};

// A compiled String-valued expression (rewrite targets: `concat("/v2", http.request.uri.path)`,
// `regex_replace(...)`).
class ValueExpr {
 public:
  ~ValueExpr();
  // Writes the value into `out` (its capacity reused) and returns true, or returns false (and
  // clears `out`) when the value is missing, e.g. an absent header.
  bool eval(ExecContext& ctx, std::string& out) const;

 private:
  friend struct FilterAccess;
  explicit ValueExpr(std::unique_ptr<detail::Program> p);
  std::unique_ptr<detail::Program> p_;
};

template <typename T>
struct Compiled {
  std::shared_ptr<const T> value;  // null on error
  CompileError error;
  bool ok() const { return value != nullptr; }
};

Compiled<Filter> compile_filter(std::string_view expr, const CompileOptions& opt = {});
Compiled<ValueExpr> compile_value(std::string_view expr, const CompileOptions& opt = {});

struct RuleSource {
  std::string id;
  std::string expression;
};

struct RuleError {
  size_t index = 0;  // position in the source list
  std::string id;
  CompileError error;
};

class RuleSet;
struct RuleSetResult {
  std::shared_ptr<const RuleSet> set;  // null when any rule failed
  std::vector<RuleError> errors;       // every failing rule, in order
  bool ok() const { return set != nullptr; }
};

// An ordered list of filters, compiled all-or-nothing. Walking it does not decide anything:
// the caller applies actions (block, skip, ...) to the matches it is told about.
class RuleSet {
 public:
  static constexpr size_t npos = static_cast<size_t>(-1);

  static RuleSetResult compile(std::span<const RuleSource> rules, const CompileOptions& opt = {});

  size_t size() const { return ids_.size(); }
  const std::string& id(size_t i) const { return ids_[i]; }
  const Filter& filter(size_t i) const { return *filters_[i]; }

  // The index of the first rule at or after `from` that matches, or npos. Rules before a
  // match are evaluated exactly once; later rules are not evaluated.
  size_t next_match(ExecContext& ctx, size_t from = 0) const;
  // Every matching rule index, in order. `matched` is cleared first; its capacity is reused.
  void evaluate(ExecContext& ctx, std::vector<uint32_t>& matched) const;

 private:
  std::vector<std::string> ids_;
  std::vector<std::shared_ptr<const Filter>> filters_;
  // The prefilter's candidates for the request behind ctx (computed once per request).
  const std::vector<uint64_t>& candidates(ExecContext& ctx) const;

  std::shared_ptr<const ContainsIndex> contains_;  // null when contains_index_min is 0
  std::shared_ptr<const Prefilter> prefilter_;
};

}  // namespace parapet::filters
