// Prefilter: which rules of an ordered list can match a request, decided without walking them.
//
// The compiler gives each filter a guard when it has a cheap necessary condition: a test that
// must hold for the filter to be true (`http.host eq "a"`, a conjunct of an `and`, the literal
// prefix of a wildcard, a literal every match of a regex contains, ...). The prefilter indexes
// the equality guards of a rule list by the value they read (one hash lookup per value and
// request answers all the rules of that value) and tests the other guards directly; a rule
// whose guard fails cannot match, so the caller skips its evaluation. The answer never differs
// from evaluating every rule: a guard only rules matches out.
//
// Built once per rule list (config load), read-only afterwards and shared by all workers;
// candidates() is allocation-free once `bits` has grown to the list's size.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "filters/context.h"
#include "filters/scheme.h"

namespace parapet::filters {

class Filter;

// A necessary condition of a filter over one value of the request.
struct Guard {
  enum class Kind : uint8_t { None, Eq, Prefix, Contains };
  Kind kind = Kind::None;
  Field field{};
  // Eq over a map field (headers, cookies, args): the values of the entries with this key, any
  // of which may equal; "" for a String field (its value) or an Array field (any element).
  std::string key;
  std::vector<std::string> values;  // Eq: any of these, exactly; Prefix / Contains: one literal
  bool nocase = false;              // Prefix: ASCII case-insensitive (values[0] is lowercase)
  // False when the request behind ctx cannot satisfy the guard.
  bool test(ExecContext& ctx) const;
};

class Prefilter {
 public:
  // `filters[i]` is rule i's filter; `always[i]` true makes rule i a candidate whatever its
  // guard says (a rule with work to do when it does not match). Equality guards over one value
  // are indexed when at least `min_index` rules share it; the others are tested one by one.
  Prefilter(std::span<const Filter* const> filters, std::span<const bool> always,
            size_t min_index = 2);
  size_t size() const { return size_; }
  // Sets bit i of `bits` (words of 64) when rule i may match the request behind ctx.
  void candidates(ExecContext& ctx, std::vector<uint64_t>& bits) const;
  static bool has(const std::vector<uint64_t>& bits, size_t i) {
    return (bits[i >> 6] >> (i & 63)) & 1;
  }
  // Rules skipped by an unguarded fallback: for tests and benchmarks.
  size_t guarded() const { return guarded_; }

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct Index {
    Field field{};
    std::string key;
    std::unordered_map<std::string, std::vector<uint32_t>, Hash, std::equal_to<>> rules;
  };
  struct Check {
    uint32_t rule;
    Guard guard;
  };
  size_t size_ = 0, guarded_ = 0;
  std::vector<uint64_t> base_;  // rules without a guard (or always visited)
  std::vector<Index> indexes_;
  std::vector<Check> checks_;
};

}  // namespace parapet::filters
