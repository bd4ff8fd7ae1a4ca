#include "filters/ip_list.h"

#include <algorithm>
#include <charconv>

namespace parapet::filters {
namespace {

using U128 = unsigned __int128;
constexpr U128 kMappedLo = U128{0xffff} << 32;
constexpr U128 kMappedHi = kMappedLo | 0xffffffffu;

template <typename T>
void merge(std::vector<std::pair<T, T>>& v) {
  std::sort(v.begin(), v.end());
  size_t out = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    if (out > 0 &&
        (v[out - 1].second == static_cast<T>(~T{0}) || v[i].first <= v[out - 1].second + 1)) {
      v[out - 1].second = std::max(v[out - 1].second, v[i].second);
    } else {
      v[out++] = v[i];
    }
  }
  v.resize(out);
  v.shrink_to_fit();
}

template <typename T>
bool find(const std::vector<std::pair<T, T>>& v, T x) {
  // The last range starting at or before x is the only candidate: ranges are disjoint.
  auto it = std::upper_bound(v.begin(), v.end(), x,
                             [](T value, const std::pair<T, T>& r) { return value < r.first; });
  if (it == v.begin()) return false;
  --it;
  return x <= it->second;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

// Calls fn(line_number, entry) for every entry of a list text; stops when fn returns false.
template <typename Fn>
bool for_each_entry(std::string_view text, Fn&& fn) {
  int line = 0;
  while (!text.empty()) {
    ++line;
    size_t nl = text.find('\n');
    std::string_view l = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    size_t hash = l.find('#');
    if (hash != std::string_view::npos) l = l.substr(0, hash);
    l = trim(l);
    if (l.empty()) continue;
    if (!fn(line, l)) return false;
  }
  return true;
}

}  // namespace

bool parse_cidr(std::string_view text, IpAddr* lo, IpAddr* hi, std::string* err) {
  size_t slash = text.find('/');
  IpAddr a;
  if (!IpAddr::parse(text.substr(0, slash), &a)) {
    *err = "invalid IP address \"" + std::string(text.substr(0, slash)) + "\"";
    return false;
  }
  bool mapped_text = !a.v4 ? false : text.substr(0, slash).find(':') != std::string_view::npos;
  int bits = a.v4 ? 32 : 128;
  int prefix = bits;
  if (slash != std::string_view::npos) {
    std::string_view p = text.substr(slash + 1);
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
    // A v4-mapped CIDR is written with a v6 prefix (::ffff:10.0.0.0/104).
    int max = mapped_text ? 128 : bits;
    if (p.empty() || ec != std::errc() || end != p.data() + p.size() || prefix < 0 ||
        prefix > max) {
      *err = "invalid CIDR prefix \"/" + std::string(p) + "\"";
      return false;
    }
    if (mapped_text) {
      if (prefix < 96) {
        *err = "v4-mapped CIDR prefix must be at least /96";
        return false;
      }
      prefix -= 96;
    }
  }
  if (a.v4) {
    uint32_t v = a.v4_value();
    uint32_t mask = prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
    *lo = IpAddr::from_v4(v & mask);
    *hi = IpAddr::from_v4((v & mask) | ~mask);
  } else {
    U128 v = a.v6_value();
    U128 mask = prefix == 0 ? 0 : ~U128{0} << (128 - prefix);
    U128 l = v & mask, h = (v & mask) | ~mask;
    IpAddr x, y;
    for (int i = 15; i >= 0; --i) {
      x.bytes[i] = static_cast<uint8_t>(l);
      y.bytes[i] = static_cast<uint8_t>(h);
      l >>= 8;
      h >>= 8;
    }
    *lo = x;
    *hi = y;
  }
  return true;
}

void IpRangeSet::add(const IpAddr& lo, const IpAddr& hi) {
  if (lo.v4) {
    v4_.emplace_back(lo.v4_value(), hi.v4_value());
    return;
  }
  U128 l = lo.v6_value(), h = hi.v6_value();
  v6_.emplace_back(l, h);
  // The v4-mapped block is matched as v4 (IpAddr::parse turns such addresses into v4).
  U128 ml = std::max(l, kMappedLo), mh = std::min(h, kMappedHi);
  if (ml <= mh) v4_.emplace_back(static_cast<uint32_t>(ml), static_cast<uint32_t>(mh));
}

bool IpRangeSet::add_text(std::string_view cidr, std::string* err) {
  IpAddr lo, hi;
  if (!parse_cidr(cidr, &lo, &hi, err)) return false;
  add(lo, hi);
  return true;
}

void IpRangeSet::finalize() {
  merge(v4_);
  merge(v6_);
}

bool IpRangeSet::contains(const IpAddr& a) const {
  if (a.v4) return find(v4_, a.v4_value());
  return find(v6_, a.v6_value());
}

std::string ListLoadError::to_string() const { return std::to_string(line) + ": " + reason; }

void StringList::finalize() {
  std::sort(items_.begin(), items_.end());
  items_.erase(std::unique(items_.begin(), items_.end()), items_.end());
}

bool StringList::contains(std::string_view s) const {
  auto it = std::lower_bound(items_.begin(), items_.end(), s,
                             [](const std::string& a, std::string_view b) { return a < b; });
  return it != items_.end() && *it == s;
}

bool load_ip_list(std::string_view text, IpList* out, ListLoadError* err) {
  std::string reason;
  int bad = 0;
  bool ok = for_each_entry(text, [&](int line, std::string_view entry) {
    if (out->set().add_text(entry, &reason)) return true;
    bad = line;
    return false;
  });
  if (!ok) {
    *err = {bad, reason};
    return false;
  }
  out->set().finalize();
  return true;
}

bool load_string_list(std::string_view text, StringList* out, ListLoadError* err) {
  for_each_entry(text, [&](int, std::string_view entry) {
    out->add(entry);
    return true;
  });
  out->finalize();
  (void)err;  // every non-empty line is a valid string entry
  return true;
}

void ListRegistry::add_ip_list(std::string name, std::shared_ptr<const IpList> list) {
  ip_[std::move(name)] = std::move(list);
}

void ListRegistry::add_string_list(std::string name, std::shared_ptr<const StringList> list) {
  str_[std::move(name)] = std::move(list);
}

std::shared_ptr<const IpList> ListRegistry::ip_list(std::string_view name) const {
  auto it = ip_.find(name);
  return it == ip_.end() ? nullptr : it->second;
}

std::shared_ptr<const StringList> ListRegistry::string_list(std::string_view name) const {
  auto it = str_.find(name);
  return it == str_.end() ? nullptr : it->second;
}

}  // namespace parapet::filters
