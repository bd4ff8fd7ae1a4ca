#include "filters/prefilter.h"

#include <map>
#include <utility>

#include "filters/rules.h"

namespace parapet::filters {

namespace {

bool prefix_nocase(std::string_view s, std::string_view lower_prefix) {
  if (s.size() < lower_prefix.size()) return false;
  for (size_t i = 0; i < lower_prefix.size(); ++i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    if (c != lower_prefix[i]) return false;
  }
  return true;
}

bool one_of(std::string_view v, const std::vector<std::string>& values) {
  for (const std::string& x : values) {
    if (v == x) return true;
  }
  return false;
}

void set_bit(std::vector<uint64_t>& bits, size_t i) { bits[i >> 6] |= uint64_t{1} << (i & 63); }

}  // namespace

bool Guard::test(ExecContext& ctx) const {
  const detail::Val& v = ctx.field(field);
  switch (kind) {
    case Kind::None:
      return true;
    case Kind::Eq:
      if (v.k == detail::Val::K::Str) return key.empty() && one_of(v.s, values);
      if (v.k == detail::Val::K::Arr) {
        for (size_t i = 0; i < v.arr.size; ++i) {
          if (one_of(v.arr.data[i], values)) return true;
        }
        return false;
      }
      if (v.k != detail::Val::K::Map) return false;
      for (size_t i = 0; i < v.map.size; ++i) {
        if (v.map.data[i].key == key && one_of(v.map.data[i].value, values)) return true;
      }
      return false;
    case Kind::Prefix:
      if (v.k != detail::Val::K::Str) return false;
      return nocase ? prefix_nocase(v.s, values[0]) : v.s.starts_with(values[0]);
    case Kind::Contains:
      // find(): memchr for the first byte, then a compare; cheaper than memmem's setup on the
      // short values guards read (paths, methods, hosts).
      return v.k == detail::Val::K::Str && v.s.find(values[0]) != std::string_view::npos;
  }
  return true;
}

Prefilter::Prefilter(std::span<const Filter* const> filters, std::span<const bool> always,
                     size_t min_index)
    : size_(filters.size()), base_((filters.size() + 63) / 64, 0) {
  // Equality guards grouped by the value they read, in rule order.
  std::map<std::pair<Field, std::string>, std::vector<uint32_t>> eq;
  for (size_t i = 0; i < filters.size(); ++i) {
    const Guard& g = filters[i]->guard();
    if (always[i] || g.kind == Guard::Kind::None) {
      set_bit(base_, i);
      continue;
    }
    ++guarded_;
    if (g.kind == Guard::Kind::Eq)
      eq[{g.field, g.key}].push_back(static_cast<uint32_t>(i));
    else
      checks_.push_back({static_cast<uint32_t>(i), g});
  }
  for (auto& [what, rules] : eq) {
    if (rules.size() < min_index) {
      for (uint32_t r : rules) checks_.push_back({r, filters[r]->guard()});
      continue;
    }
    Index& ix = indexes_.emplace_back();
    ix.field = what.first;
    ix.key = what.second;
    for (uint32_t r : rules) {
      for (const std::string& v : filters[r]->guard().values) ix.rules[v].push_back(r);
    }
  }
}

void Prefilter::candidates(ExecContext& ctx, std::vector<uint64_t>& bits) const {
  bits.assign(base_.begin(), base_.end());
  for (const Index& ix : indexes_) {
    const detail::Val& v = ctx.field(ix.field);
    auto mark = [&](std::string_view value) {
      auto it = ix.rules.find(value);
      if (it == ix.rules.end()) return;
      for (uint32_t r : it->second) set_bit(bits, r);
    };
    if (v.k == detail::Val::K::Str) {
      if (ix.key.empty()) mark(v.s);
    } else if (v.k == detail::Val::K::Arr) {
      for (size_t i = 0; i < v.arr.size; ++i) mark(v.arr.data[i]);
    } else if (v.k == detail::Val::K::Map) {
      for (size_t i = 0; i < v.map.size; ++i) {
        if (v.map.data[i].key == ix.key) mark(v.map.data[i].value);
      }
    }
  }
  for (const Check& c : checks_) {
    if (c.guard.test(ctx)) set_bit(bits, c.rule);
  }
}

}  // namespace parapet::filters
