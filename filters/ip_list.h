// Lists referenced from rules as `$name`: IP lists (v4 and v6 addresses, CIDRs and ranges) and
// string lists, and the registry that names them at compile time.
//
// Lifetime and threads: lists are built and finalized at config load, then shared read-only
// (std::shared_ptr<const ...>) by every compiled rule that names them and by every worker.
// contains() is const, lock-free and allocation-free.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "filters/scheme.h"

namespace parapet::filters {

// A set of IP addresses as merged, sorted, disjoint ranges, one vector per family, searched by
// binary search. v4-mapped v6 addresses and ranges count as v4 (see IpAddr): a v6 range that
// overlaps ::ffff:0:0/96 also adds the overlapping part as v4 addresses.
class IpRangeSet {
 public:
  // Building: any order, overlaps allowed; finalize() sorts and merges. Not thread-safe.
  void add(const IpAddr& lo, const IpAddr& hi);  // inclusive; same family; lo <= hi
  // "10.0.0.0/8", "2001:db8::/32", "1.2.3.4", "::1". False (and `*err` set) when malformed.
  bool add_text(std::string_view cidr, std::string* err);
  void finalize();

  bool contains(const IpAddr& a) const;
  size_t v4_ranges() const { return v4_.size(); }
  size_t v6_ranges() const { return v6_.size(); }

 private:
  using U128 = unsigned __int128;
  std::vector<std::pair<uint32_t, uint32_t>> v4_;
  std::vector<std::pair<U128, U128>> v6_;
};

// Parses "a.b.c.d/n", "v6/n", or a lone address into an inclusive range. Host bits are masked
// off (10.1.2.3/8 is 10.0.0.0/8), as firewalls do, rather than refused.
bool parse_cidr(std::string_view text, IpAddr* lo, IpAddr* hi, std::string* err);

// A list load error: the 1-based line of the text and why.
struct ListLoadError {
  int line = 0;
  std::string reason;
  std::string to_string() const;  // "12: invalid IP address \"1.2.3\""
};

class IpList {
 public:
  IpRangeSet& set() { return set_; }
  const IpRangeSet& set() const { return set_; }
  bool contains(const IpAddr& a) const { return set_.contains(a); }

 private:
  IpRangeSet set_;
};

class StringList {
 public:
  void add(std::string_view s) { items_.emplace_back(s); }
  void finalize();  // sorts and removes duplicates
  bool contains(std::string_view s) const;
  size_t size() const { return items_.size(); }

 private:
  std::vector<std::string> items_;
};

// Text loaders: one entry per line; blank lines and `#` comments (whole-line or after an entry)
// are skipped; surrounding spaces trimmed. The result is finalized. On error, returns false and
// fills `*err` with the first bad line.
bool load_ip_list(std::string_view text, IpList* out, ListLoadError* err);
bool load_string_list(std::string_view text, StringList* out, ListLoadError* err);

// Names lists for the compiler. Built at config load; the compiled rules keep shared_ptrs to
// the lists they use, so the registry itself need not outlive them.
class ListRegistry {
 public:
  void add_ip_list(std::string name, std::shared_ptr<const IpList> list);
  void add_string_list(std::string name, std::shared_ptr<const StringList> list);
  std::shared_ptr<const IpList> ip_list(std::string_view name) const;
  std::shared_ptr<const StringList> string_list(std::string_view name) const;

 private:
  std::map<std::string, std::shared_ptr<const IpList>, std::less<>> ip_;
  std::map<std::string, std::shared_ptr<const StringList>, std::less<>> str_;
};

}  // namespace parapet::filters
