#include "filters/contains_index.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <unordered_map>

#include "filters/nodes.h"
#include "filters/rules.h"

namespace parapet::filters {

size_t ContainsIndex::literals() const {
  size_t n = 0;
  for (const Group& g : groups_) n += g.literals;
  return n;
}

void ContainsIndex::Group::scan(std::string_view s, uint64_t* bits) const {
  const uint32_t* t = table.data();
  uint32_t row = 0;
  uint32_t found = 0;
  for (unsigned char c : s) {
    row = t[row + 1 + cls[c]];
    // Every literal ending here: this state's, then its suffixes'. A literal already reported
    // was reported with all the suffixes after it (this walk never stops before a reported
    // one), so the walk stops there: each literal costs one visit per scan.
    for (uint32_t id1 = t[row]; id1 != 0; id1 = next_out[id1 - 1]) {
      const uint32_t lit = literal[id1 - 1];
      const uint64_t bit = uint64_t{1} << (lit & 63);
      if (bits[lit >> 6] & bit) break;
      bits[lit >> 6] |= bit;
      if (++found == literals) return;  // nothing left to find
    }
  }
}

bool ContainsIndex::test(ExecContext& ctx, ContainsBinding::Slot slot,
                         const detail::Node& value) const {
  detail::ContainsState& st = ctx.contains_state();
  if (st.owner != id_) {  // another index used this context: its results mean nothing here
    st.owner = id_;
    st.done.assign(groups_.size(), 0);
    if (st.words.size() < words_) st.words.resize(words_);
  }
  const Group& g = groups_[slot.group];
  if (st.done[slot.group] != ctx.generation()) {
    st.done[slot.group] = ctx.generation();
    std::fill_n(st.words.data() + g.word, g.words, 0);
    detail::Val v = value.eval(ctx);
    // Missing (or not a String): no bit set, every comparison of the group false, as memmem's.
    if (v.k == detail::Val::K::Str) g.scan(v.s, st.words.data() + g.word);
  }
  const uint64_t w = st.words[g.word + (slot.literal >> 6)];
  return (w >> (slot.literal & 63)) & 1;
}

namespace {

// The literals of one value, in order of first appearance, and where they are compared.
struct Candidate {
  std::vector<std::string> literals;
  std::unordered_map<std::string, uint32_t> index;  // literal -> position in `literals`
};

}  // namespace

std::shared_ptr<const ContainsIndex> ContainsIndex::build(std::span<const Filter* const> filters,
                                                          const Options& opt) {
  static std::atomic<uint64_t> next_id{1};
  auto out = std::shared_ptr<ContainsIndex>(new ContainsIndex());
  out->id_ = next_id.fetch_add(1, std::memory_order_relaxed);
  // 1. Gather the groupable comparisons by value.
  std::map<std::string, Candidate> by_value;
  for (const Filter* f : filters) {
    if (f == nullptr) continue;
    for (const detail::ContainsSite& site : f->p_->contains) {
      if (!site.groupable) continue;
      Candidate& c = by_value[site.value];
      if (c.index.emplace(site.literal, static_cast<uint32_t>(c.literals.size())).second) {
        c.literals.push_back(site.literal);
      }
    }
  }
  // 2. One automaton per value with enough literals. made[value]: its group, and the bit of
  // each of its literals (kNone: did not fit the table).
  std::map<std::string, std::pair<uint32_t, std::vector<uint32_t>>> made;  // value -> group
  for (auto& [value, c] : by_value) {
    if (opt.min_literals == 0 || c.literals.size() < opt.min_literals) continue;
    Group g;
    uint32_t classes = 1;
    for (const std::string& lit : c.literals) {
      for (unsigned char ch : lit) {
        if (g.cls[ch] == 0) g.cls[ch] = static_cast<uint16_t>(classes++);
      }
    }
    g.stride = 1 + classes;
    const size_t max_states = std::max<size_t>(opt.max_table_bytes / (g.stride * 4), 1);
    // The trie: rows of children (0: none yet; the root is never a child).
    std::vector<uint32_t>& t = g.table;
    t.assign(g.stride, 0);
    std::vector<uint32_t> ids(c.literals.size(), ContainsBinding::kNone);
    std::vector<uint32_t> ends;  // per state id: 1 + the literal ending there, 0 for none
    ends.push_back(0);
    for (size_t k = 0; k < c.literals.size(); ++k) {
      const std::string& lit = c.literals[k];
      if (t.size() / g.stride + lit.size() > max_states) continue;  // stays on memmem
      uint32_t row = 0;
      for (unsigned char ch : lit) {
        uint32_t& next = t[row + 1 + g.cls[ch]];
        if (next == 0) {
          next = static_cast<uint32_t>(t.size());
          t.resize(t.size() + g.stride, 0);  // invalidates `next`, so it is not used after
          ends.push_back(0);
        }
        row = t[row + 1 + g.cls[ch]];
      }
      ids[k] = g.literals++;
      ends[row / g.stride] = ids[k] + 1;
    }
    if (g.literals < opt.min_literals) continue;  // the budget left too few to be worth it
    // Breadth first: failure links, then every missing transition filled from the state's
    // failure (a complete DFA), and the output links.
    const size_t states = t.size() / g.stride;
    std::vector<uint32_t> fail(states, 0);
    g.literal.assign(states, 0);
    g.next_out.assign(states, 0);
    std::vector<uint32_t> queue;
    queue.reserve(states);
    for (uint32_t cl = 0; cl < classes; ++cl) {
      if (t[1 + cl] != 0) queue.push_back(t[1 + cl]);  // depth 1: failure is the root
    }
    for (size_t qi = 0; qi < queue.size(); ++qi) {
      const uint32_t row = queue[qi];
      const uint32_t id = row / g.stride;
      const uint32_t frow = fail[id];
      // Output: the nearest state among this one and its suffixes where a literal ends.
      g.next_out[id] = t[frow];
      if (ends[id] != 0) {
        g.literal[id] = ends[id] - 1;
        t[row] = id + 1;
      } else {
        t[row] = t[frow];
      }
      for (uint32_t cl = 0; cl < classes; ++cl) {
        uint32_t& next = t[row + 1 + cl];
        if (next != 0) {
          fail[next / g.stride] = t[frow + 1 + cl];
          queue.push_back(next);
        } else {
          next = t[frow + 1 + cl];
        }
      }
    }
    g.words = (g.literals + 63) / 64;
    g.word = out->words_;
    out->words_ += g.words;
    made.emplace(value, std::make_pair(static_cast<uint32_t>(out->groups_.size()), ids));
    out->groups_.push_back(std::move(g));
  }
  // 3. Bindings: a slot per comparison of every filter that has at least one grouped.
  std::vector<std::pair<size_t, size_t>> spans(filters.size(), {0, 0});  // slots_ offset, count
  for (size_t i = 0; i < filters.size(); ++i) {
    if (filters[i] == nullptr) continue;
    const auto& sites = filters[i]->p_->contains;
    std::vector<ContainsBinding::Slot> slots(sites.size());
    bool any = false;
    for (size_t j = 0; j < sites.size(); ++j) {
      if (!sites[j].groupable) continue;
      auto it = made.find(sites[j].value);
      if (it == made.end()) continue;
      const uint32_t lit = it->second.second[by_value[sites[j].value].index[sites[j].literal]];
      if (lit == ContainsBinding::kNone) continue;
      slots[j] = {it->second.first, lit};
      any = true;
    }
    if (!any) continue;
    spans[i] = {out->slots_.size(), slots.size()};
    out->slots_.insert(out->slots_.end(), slots.begin(), slots.end());
  }
  out->bindings_.resize(filters.size());
  for (size_t i = 0; i < filters.size(); ++i) {
    if (spans[i].second == 0) continue;
    out->bindings_[i] = {out.get(), out->slots_.data() + spans[i].first};
  }
  return out;
}

}  // namespace parapet::filters
