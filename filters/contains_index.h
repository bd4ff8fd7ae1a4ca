// Many literal `contains` over one value, answered by one pass over the value.
//
// A rule set with many `x contains "lit"` over the same value x (a field, or a field expression
// such as lower(http.request.uri.path)) costs one memmem per literal per request: 2,000 literals
// on a 1 KiB URI is hundreds of microseconds. ContainsIndex groups those comparisons across a
// list of compiled filters (the rules of one tenant and phase). Each value compared to at least
// `min_literals` distinct literals gets one Aho-Corasick automaton (a dense DFA over byte
// classes); per request that value is scanned at most once, lazily when the first of its
// comparisons is evaluated, into a bitset kept in the ExecContext, and every comparison of the
// group reads its bit. Values with fewer literals stay on memmem, which is faster for a few.
//
// Semantics are exactly memmem's: bytes compared case-sensitively, a missing value makes every
// comparison false. Left out of groups (evaluated as before): comparisons over an array element
// x[*] inside any()/all() (the value changes per element), empty literals (always true on a
// present value), and literals beyond the memory budget of a group's table.
//
// Two comparisons belong to the same group when their left sides are the same text with the
// whitespace outside string literals removed: the same text names the same value within one
// request. The index never changes the result, only how it is computed (tests prove this).
//
// Why not RE2::Set: its Match() allocates a set per call when asked which patterns matched, and
// rule evaluation must not allocate.
//
// Lifetime and threads: built at config load, immutable, shared by every worker. The bindings
// point into the index: keep the shared_ptr as long as they are used. Per-request state lives in
// the ExecContext, so evaluation stays thread-safe with one context per thread, and allocation-
// free once the context has seen the index (its buffers keep their capacity).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "filters/context.h"

namespace parapet::filters {

class Filter;
class ContainsIndex;

namespace detail {
class Node;
}

// Where each `contains` of one compiled filter finds its answer. Pass it with the filter to
// Filter::matches(); it is only valid with the index that made it.
struct ContainsBinding {
  static constexpr uint32_t kNone = UINT32_MAX;
  struct Slot {
    uint32_t group = kNone;  // kNone: this comparison runs memmem
    uint32_t literal = 0;    // bit of the group
  };
  const ContainsIndex* index = nullptr;
  const Slot* slots = nullptr;  // one per `contains` of the filter, in source order
};

class ContainsIndex {
 public:
  struct Options {
    // A value needs at least this many distinct literals to get an automaton.
    size_t min_literals = 8;
    // Upper bound of one group's transition table; literals that would not fit stay on memmem.
    size_t max_table_bytes = 16u << 20;
  };

  // Groups the comparisons of `filters` (any may be null). Never fails: at worst nothing is
  // grouped and every binding is null.
  static std::shared_ptr<const ContainsIndex> build(std::span<const Filter* const> filters,
                                                    const Options& opt);
  static std::shared_ptr<const ContainsIndex> build(std::span<const Filter* const> filters) {
    return build(filters, Options{});
  }

  // The binding for filters[i] of build(), null when none of its comparisons is grouped.
  const ContainsBinding* binding(size_t i) const {
    return i < bindings_.size() && bindings_[i].slots != nullptr ? &bindings_[i] : nullptr;
  }
  size_t groups() const { return groups_.size(); }
  size_t literals() const;  // grouped, all groups together

  // --- Used by the compiled rules (filters/*.cc), not by the proxy. ---
  // The answer of the comparison at `slot`, whose left side is `value`: the group's bits, from
  // this request's scan, done now if it was not yet.
  bool test(ExecContext& ctx, ContainsBinding::Slot slot, const detail::Node& value) const;

 private:
  // One value's automaton. States are rows of `table`: row[0] is 1 + the state id of the
  // nearest state (itself or a proper suffix) where a literal ends, 0 for none; row[1 + c] is
  // the row of the next state on byte class c.
  struct Group {
    std::array<uint16_t, 256> cls{};  // byte -> class; 0: a byte of no literal
    uint32_t stride = 0;              // 1 + classes
    std::vector<uint32_t> table;
    std::vector<uint32_t> literal;   // per state id: the literal ending there
    std::vector<uint32_t> next_out;  // per state id: like row[0], for the state's proper suffixes
    uint32_t literals = 0;
    uint32_t word = 0, words = 0;  // its bits in ContainsState::words
    void scan(std::string_view s, uint64_t* bits) const;
  };
  std::vector<Group> groups_;
  std::vector<ContainsBinding::Slot> slots_;
  std::vector<ContainsBinding> bindings_;
  uint32_t words_ = 0;
  // Names this index in ExecContexts; an address could be reused by the next config's index.
  uint64_t id_ = 0;
};

}  // namespace parapet::filters
