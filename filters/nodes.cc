#include "filters/nodes.h"

namespace parapet::filters::detail {
namespace {

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

bool equal_at(std::string_view s, size_t at, std::string_view piece, bool cs) {
  if (at + piece.size() > s.size()) return false;
  if (cs) return s.compare(at, piece.size(), piece) == 0;
  for (size_t i = 0; i < piece.size(); ++i) {
    if (lower(s[at + i]) != piece[i]) return false;
  }
  return true;
}

// Leftmost occurrence of `piece` in s[from, limit), or npos.
size_t find_in(std::string_view s, size_t from, size_t limit, std::string_view piece, bool cs) {
  if (piece.empty()) return from;
  if (limit < piece.size()) return std::string_view::npos;
  for (size_t at = from; at + piece.size() <= limit; ++at) {
    if (equal_at(s, at, piece, cs)) return at;
  }
  return std::string_view::npos;
}

}  // namespace

bool Wildcard::compile(std::string_view pattern, bool case_sensitive, Wildcard* out,
                       std::string* err) {
  out->case_sensitive = case_sensitive;
  out->pieces.assign(1, std::string());
  for (size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (c == '\\') {
      if (i + 1 >= pattern.size() || (pattern[i + 1] != '*' && pattern[i + 1] != '\\')) {
        *err = "invalid escape in wildcard pattern (only \\* and \\\\)";
        return false;
      }
      c = pattern[++i];
      out->pieces.back().push_back(case_sensitive ? c : lower(c));
    } else if (c == '*') {
      out->pieces.emplace_back();
    } else {
      out->pieces.back().push_back(case_sensitive ? c : lower(c));
    }
  }
  return true;
}

bool Wildcard::match(std::string_view s, std::string_view* caps) const {
  const bool cs = case_sensitive;
  const size_t k = pieces.size() - 1;  // stars
  if (k == 0) return s.size() == pieces[0].size() && equal_at(s, 0, pieces[0], cs);
  const std::string& first = pieces.front();
  const std::string& last = pieces.back();
  if (first.size() + last.size() > s.size()) return false;
  if (!equal_at(s, 0, first, cs) || !equal_at(s, s.size() - last.size(), last, cs)) return false;
  // Placing each middle piece leftmost leaves the most room for the rest: a `*`-only glob
  // matches iff this greedy placement succeeds. Linear in pieces, no backtracking.
  size_t pos = first.size();
  const size_t limit = s.size() - last.size();
  for (size_t i = 1; i < k; ++i) {
    size_t at = find_in(s, pos, limit, pieces[i], cs);
    if (at == std::string_view::npos) return false;
    if (caps) caps[i - 1] = s.substr(pos, at - pos);
    pos = at + pieces[i].size();
  }
  if (caps) caps[k - 1] = s.substr(pos, limit - pos);
  return true;
}

}  // namespace parapet::filters::detail
