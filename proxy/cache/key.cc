#include "proxy/cache/key.h"

#include <algorithm>
#include <cctype>
#include <functional>

namespace parapet::cache {
namespace {

void append_lower(std::string* out, std::string_view s) {
  for (char c : s) out->push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
}

// Separators that cannot appear in a tenant name, a URL or a field value (control bytes are
// refused by the codec), so the encodings below are unambiguous.
constexpr char kTenantSep = '\x1f';
constexpr char kPartSep = '\x1e';
constexpr char kAbsent = '\x1d';

}  // namespace

uint64_t hash_primary(std::string_view primary) { return std::hash<std::string_view>{}(primary); }

std::optional<std::string_view> cookie_value(Fields req, std::string_view name) {
  for (const Field& f : req) {
    if (!ieq(f.name, "cookie")) continue;
    std::string_view v = f.value;
    while (!v.empty()) {
      size_t semi = v.find(';');
      std::string_view pair = trim_ows(v.substr(0, semi));
      v = semi == std::string_view::npos ? std::string_view() : v.substr(semi + 1);
      size_t eq = pair.find('=');
      if (eq == std::string_view::npos) continue;
      if (trim_ows(pair.substr(0, eq)) == name) return trim_ows(pair.substr(eq + 1));
    }
  }
  return std::nullopt;
}

CacheKey make_key(std::string_view tenant, std::string_view scheme, std::string_view host,
                  std::string_view target, const KeyOptions& opt, Fields req) {
  CacheKey k;
  k.primary.reserve(tenant.size() + scheme.size() + host.size() + target.size() + 4);
  k.primary.append(tenant);
  k.primary.push_back(kTenantSep);
  k.tenant_len = static_cast<uint32_t>(tenant.size());
  append_lower(&k.primary, scheme);
  k.primary.append("://");
  append_lower(&k.primary, host);
  if (opt.ignore_query) target = target.substr(0, target.find('?'));
  k.primary.append(target);
  k.hash = hash_primary(k.primary);
  for (const std::string& h : opt.headers) {
    k.extras.append("h:").append(h).push_back('=');
    std::vector<std::string> one{h};
    std::string v;
    encode_variant(one, req, &v);
    k.extras.append(v);
  }
  for (const std::string& c : opt.cookies) {
    k.extras.append("c:").append(c).push_back('=');
    if (auto v = cookie_value(req, c)) {
      k.extras.append(*v);
    } else {
      k.extras.push_back(kAbsent);
    }
    k.extras.push_back(kPartSep);
  }
  return k;
}

CacheKey url_key(std::string_view tenant, std::string_view url) {
  CacheKey k;
  k.primary.append(tenant);
  k.primary.push_back(kTenantSep);
  k.tenant_len = static_cast<uint32_t>(tenant.size());
  // Lowercase scheme and host as make_key does; keep the rest.
  size_t sep = url.find("://");
  size_t host_end = sep == std::string_view::npos ? 0 : url.find('/', sep + 3);
  if (sep != std::string_view::npos && host_end == std::string_view::npos) host_end = url.size();
  append_lower(&k.primary, url.substr(0, host_end));
  k.primary.append(url.substr(host_end));
  k.hash = hash_primary(k.primary);
  return k;
}

namespace {

// RFC 3986 5.2.4.
std::string remove_dot_segments(std::string_view in) {
  std::string out;
  auto pop_last = [&]() {
    size_t p = out.rfind('/');
    out.resize(p == std::string::npos ? 0 : p);
  };
  while (!in.empty()) {
    if (in.starts_with("../")) {
      in.remove_prefix(3);
    } else if (in.starts_with("./")) {
      in.remove_prefix(2);
    } else if (in.starts_with("/./")) {
      in.remove_prefix(2);
    } else if (in == "/.") {
      in = "/";
    } else if (in.starts_with("/../")) {
      in.remove_prefix(3);
      pop_last();
    } else if (in == "/..") {
      in = "/";
      pop_last();
    } else if (in == "." || in == "..") {
      in = {};
    } else {
      size_t end = in.find('/', 1);
      if (end == std::string_view::npos) end = in.size();
      out.append(in.substr(0, end));
      in.remove_prefix(end);
    }
  }
  return out;
}

bool scheme_char(char c, bool first) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return !first && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.');
}

std::string_view host_part(std::string_view authority) {
  if (size_t at = authority.rfind('@'); at != std::string_view::npos) {
    authority.remove_prefix(at + 1);
  }
  if (!authority.empty() && authority[0] == '[') {
    size_t close = authority.find(']');
    return close == std::string_view::npos ? authority : authority.substr(0, close + 1);
  }
  authority = authority.substr(0, authority.rfind(':'));
  if (!authority.empty() && authority.back() == '.') authority.remove_suffix(1);
  return authority;
}

}  // namespace

bool same_host(std::string_view a, std::string_view b) {
  std::string_view ha = host_part(a), hb = host_part(b);
  return !ha.empty() && ieq(ha, hb);
}

std::optional<ResolvedUri> resolve_reference(std::string_view base_scheme,
                                             std::string_view base_authority,
                                             std::string_view base_target, std::string_view ref) {
  ref = trim_ows(ref);
  ref = ref.substr(0, ref.find('#'));
  // Split the reference (RFC 3986 3): [scheme ":"] ["//" authority] path ["?" query].
  std::optional<std::string_view> scheme, authority, query;
  size_t i = 0;
  while (i < ref.size() && scheme_char(ref[i], i == 0)) ++i;
  if (i > 0 && i < ref.size() && ref[i] == ':') {
    scheme = ref.substr(0, i);
    ref.remove_prefix(i + 1);
  }
  if (ref.starts_with("//")) {
    ref.remove_prefix(2);
    size_t end = ref.find_first_of("/?");
    authority = ref.substr(0, end);
    ref = end == std::string_view::npos ? std::string_view() : ref.substr(end);
  }
  if (size_t q = ref.find('?'); q != std::string_view::npos) {
    query = ref.substr(q + 1);
    ref = ref.substr(0, q);
  }
  const std::string_view path = ref;
  // The base (RFC 3986 5.2.2).
  std::string_view base_path = base_target.substr(0, base_target.find('?'));
  std::optional<std::string_view> base_query;
  if (size_t q = base_target.find('?'); q != std::string_view::npos) {
    base_query = base_target.substr(q + 1);
  }
  ResolvedUri r;
  std::string p;
  if (scheme && !authority) return std::nullopt;  // "http:/x" or "mailto:x": nothing to purge
  if (scheme || authority) {
    r.authority = std::string(*authority);
    p = remove_dot_segments(path);
  } else {
    r.authority = std::string(base_authority);
    if (path.empty()) {
      p = std::string(base_path);
      if (!query) query = base_query;
    } else if (path[0] == '/') {
      p = remove_dot_segments(path);
    } else {
      size_t slash = base_path.rfind('/');
      std::string merged(slash == std::string_view::npos ? std::string_view("/")
                                                         : base_path.substr(0, slash + 1));
      merged.append(path);
      p = remove_dot_segments(merged);
    }
  }
  append_lower(&r.scheme, scheme ? *scheme : base_scheme);
  if ((r.scheme != "http" && r.scheme != "https") || r.authority.empty()) return std::nullopt;
  r.target = p.empty() ? "/" : p;
  if (query) r.target.append("?").append(*query);
  return r;
}

bool vary_names(Fields resp, std::vector<std::string>* names) {
  names->clear();
  bool star = false;
  for_each_element(resp, "vary", [&](std::string_view e) {
    if (e == "*") {
      star = true;
      return false;
    }
    std::string n;
    append_lower(&n, e);
    if (std::find(names->begin(), names->end(), n) == names->end()) names->push_back(n);
    return true;
  });
  if (star) names->clear();
  return !star;
}

void encode_variant(const std::vector<std::string>& names, Fields req, std::string* out) {
  for (const std::string& n : names) {
    bool present = false;
    bool first = true;
    for (const Field& f : req) {
      if (!ieq(f.name, n)) continue;
      present = true;
      for_each_element(f.value, [&](std::string_view e) {
        if (!first) out->push_back(',');
        out->append(e);
        first = false;
        return true;
      });
    }
    if (!present) out->push_back(kAbsent);
    out->push_back(kPartSep);
  }
}

bool variant_matches(const std::vector<std::string>& names, std::string_view stored, Fields req) {
  if (names.empty()) return stored.empty();
  // One scratch string per thread: matching runs under a shard lock, so it must not allocate
  // once warm.
  thread_local std::string scratch;
  scratch.clear();
  encode_variant(names, req, &scratch);
  return scratch == stored;
}

}  // namespace parapet::cache
