#include "proxy/cache/conditional.h"

#include <algorithm>

#include "proxy/cache/freshness.h"

namespace parapet::cache {
namespace {

bool is_weak(std::string_view t) { return t.size() >= 2 && t.substr(0, 2) == "W/"; }
std::string_view opaque(std::string_view t) { return is_weak(t) ? t.substr(2) : t; }

bool valid_etag(std::string_view t) {
  t = opaque(t);
  return t.size() >= 2 && t.front() == '"' && t.back() == '"';
}

}  // namespace

bool etag_weak_equal(std::string_view a, std::string_view b) {
  return valid_etag(a) && valid_etag(b) && opaque(a) == opaque(b);
}

bool etag_strong_equal(std::string_view a, std::string_view b) {
  return valid_etag(a) && valid_etag(b) && !is_weak(a) && !is_weak(b) && a == b;
}

CondResult evaluate_conditional(std::string_view method, Fields req, uint16_t stored_status,
                                Fields stored, int64_t response_time) {
  if (has_field(req, "if-match") || has_field(req, "if-unmodified-since")) {
    return CondResult::Forward;
  }
  if (method != "GET" && method != "HEAD") return CondResult::Full;
  if (stored_status < 200 || stored_status > 299 || stored_status == 206) return CondResult::Full;
  if (has_field(req, "if-none-match")) {
    auto etag = first_value(stored, "etag");
    bool match = false;
    for_each_element(req, "if-none-match", [&](std::string_view t) {
      match = t == "*" || (etag && etag_weak_equal(t, *etag));
      return !match;
    });
    return match ? CondResult::NotModified : CondResult::Full;
  }
  if (count_fields(req, "if-modified-since") != 1) return CondResult::Full;
  auto ims = parse_http_date(*first_value(req, "if-modified-since"));
  if (!ims) return CondResult::Full;
  std::optional<int64_t> lm;
  if (auto v = first_value(stored, "last-modified")) lm = parse_http_date(*v);
  if (!lm) {
    if (auto v = first_value(stored, "date")) lm = parse_http_date(*v);
  }
  const int64_t modified = lm.value_or(response_time);
  return modified <= *ims ? CondResult::NotModified : CondResult::Full;
}

std::vector<Field> not_modified_fields(Fields stored) {
  static constexpr std::string_view kKeep[] = {"cache-control", "content-location", "date",
                                               "etag",          "expires",          "vary"};
  const bool has_etag = has_field(stored, "etag");
  std::vector<Field> out;
  for (const Field& f : stored) {
    bool keep = !has_etag && ieq(f.name, "last-modified");
    for (std::string_view k : kKeep) keep = keep || ieq(f.name, k);
    if (keep) out.push_back(f);
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> revalidation_fields(Fields stored) {
  std::vector<std::pair<std::string, std::string>> out;
  if (auto e = first_value(stored, "etag")) out.emplace_back("If-None-Match", std::string(*e));
  if (auto lm = first_value(stored, "last-modified")) {
    out.emplace_back("If-Modified-Since", std::string(*lm));
  }
  return out;
}

bool can_freshen(Fields stored, Fields nm) {
  auto old_etag = first_value(stored, "etag");
  // A strong validator identifies the stored response by strong comparison; a weak one by
  // weak comparison (RFC 9111 4.3.4, first and second rules).
  if (auto new_etag = first_value(nm, "etag")) {
    if (!old_etag) return false;
    return is_weak(*new_etag) ? etag_weak_equal(*new_etag, *old_etag)
                              : etag_strong_equal(*new_etag, *old_etag);
  }
  auto old_lm = first_value(stored, "last-modified");
  if (auto new_lm = first_value(nm, "last-modified")) {
    auto a = parse_http_date(*new_lm);
    auto b = old_lm ? parse_http_date(*old_lm) : std::nullopt;
    return a && b && *a == *b;
  }
  // No validator at all: only a stored response that has none either (third rule; the
  // caller's lookup selected the single stored response of this request).
  return !old_etag && !old_lm;
}

bool head_can_freshen(Fields stored, uint64_t stored_length, Fields head) {
  if (!can_freshen(stored, head)) return false;
  auto cl = first_value(head, "content-length");
  return !cl || *cl == std::to_string(stored_length);
}

void merge_304(Fields stored, Fields nm, MergedFields* out) {
  static constexpr std::string_view kNeverUpdated[] = {"content-length", "content-encoding",
                                                       "content-range"};
  const CacheControl nm_cc = parse_cache_control(nm);
  auto updatable = [&](std::string_view name) {
    for (std::string_view k : kNeverUpdated) {
      if (ieq(name, k)) return false;
    }
    return !excluded_from_storage(name, nm, nm_cc);
  };
  auto replaced = [&](std::string_view name) {
    if (!updatable(name)) return false;
    for (const Field& f : nm) {
      if (ieq(f.name, name)) return true;
    }
    return false;
  };
  // A 304 without Date: the stored Date goes too, so the entry's date is the time the 304
  // arrived (RFC 9110 6.6.1) and its apparent age restarts from there (RFC 9111 4.2.3).
  const bool drop_date = !has_field(nm, "date");
  out->owned.clear();
  out->fields.clear();
  for (const Field& f : stored) {
    if (replaced(f.name) || (drop_date && ieq(f.name, "date"))) continue;
    out->owned.emplace_back(std::string(f.name), std::string(f.value));
  }
  for (const Field& f : nm) {
    if (updatable(f.name)) out->owned.emplace_back(std::string(f.name), std::string(f.value));
  }
  out->fields.reserve(out->owned.size());
  for (const auto& [n, v] : out->owned) out->fields.push_back({n, v});
}

namespace {

// Digits to a number; saturates instead of overflowing (a huge first-pos is just unsatisfiable).
std::optional<uint64_t> parse_pos(std::string_view s) {
  if (s.empty()) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    uint64_t d = static_cast<uint64_t>(c - '0');
    v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
  }
  return v;
}

bool if_range_matches(Fields req, Fields stored) {
  auto ir = first_value(req, "if-range");
  if (!ir) return true;
  if (!ir->empty() && (ir->front() == '"' || ir->substr(0, 2) == "W/")) {
    auto etag = first_value(stored, "etag");
    return etag && etag_strong_equal(*ir, *etag);
  }
  auto d = parse_http_date(*ir);
  auto lm_v = first_value(stored, "last-modified");
  auto lm = lm_v ? parse_http_date(*lm_v) : std::nullopt;
  return d && lm && *d == *lm;
}

}  // namespace

RangeAnswer evaluate_range(std::string_view method, Fields req, uint16_t stored_status,
                           Fields stored, uint64_t length) {
  RangeAnswer full;
  if (method != "GET" || stored_status != 200) return full;
  if (count_fields(req, "range") != 1) return full;
  std::string_view v = *first_value(req, "range");
  size_t eq = v.find('=');
  if (eq == std::string_view::npos || !ieq(trim_ows(v.substr(0, eq)), "bytes")) return full;
  if (!if_range_matches(req, stored)) return full;
  std::string_view set = v.substr(eq + 1);
  std::vector<std::string_view> specs;
  for_each_element(set, [&](std::string_view s) {
    specs.push_back(s);
    return true;
  });
  if (specs.size() != 1) return full;  // none, or several: answer with the whole body
  std::string_view spec = specs[0];
  size_t dash = spec.find('-');
  if (dash == std::string_view::npos) return full;
  std::string_view a = trim_ows(spec.substr(0, dash)), b = trim_ows(spec.substr(dash + 1));
  RangeAnswer r;
  auto unsatisfiable = [&]() {
    r.kind = RangeAnswer::Kind::Unsatisfiable;
    r.content_range = "bytes */" + std::to_string(length);
    return r;
  };
  if (a.empty()) {  // suffix-range
    auto n = parse_pos(b);
    if (!n) return full;
    if (*n == 0) return unsatisfiable();
    if (length == 0) return full;  // nothing to select: the (empty) whole body
    r.first = *n >= length ? 0 : length - *n;
    r.last = length - 1;
  } else {
    auto first = parse_pos(a);
    if (!first) return full;
    std::optional<uint64_t> last;
    if (!b.empty()) {
      last = parse_pos(b);
      if (!last || *last < *first) return full;  // invalid: ignore the Range
    }
    if (*first >= length) return unsatisfiable();
    r.first = *first;
    r.last = last ? std::min(*last, length - 1) : length - 1;
  }
  r.kind = RangeAnswer::Kind::Partial;
  r.content_range = "bytes " + std::to_string(r.first) + "-" + std::to_string(r.last) + "/" +
                    std::to_string(length);
  return r;
}

namespace {

bool is_sf_token(std::string_view s) {
  if (s.empty()) return false;
  char c0 = s[0];
  if (!((c0 >= 'a' && c0 <= 'z') || (c0 >= 'A' && c0 <= 'Z') || c0 == '*')) return false;
  static constexpr std::string_view kExtra = "!#$%&'*+-.^_`|~:/";
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              kExtra.find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

void append_sf_string(std::string* out, std::string_view s) {
  out->push_back('"');
  for (char c : s) {
    if (c < 0x20 || c > 0x7e) continue;  // not representable in an sf-string
    if (c == '"' || c == '\\') out->push_back('\\');
    out->push_back(c);
  }
  out->push_back('"');
}

const char* fwd_name(CacheStatus::Fwd f) {
  switch (f) {
    case CacheStatus::Fwd::None:
      return "";
    case CacheStatus::Fwd::Bypass:
      return "bypass";
    case CacheStatus::Fwd::Method:
      return "method";
    case CacheStatus::Fwd::UriMiss:
      return "uri-miss";
    case CacheStatus::Fwd::VaryMiss:
      return "vary-miss";
    case CacheStatus::Fwd::Miss:
      return "miss";
    case CacheStatus::Fwd::Request:
      return "request";
    case CacheStatus::Fwd::Stale:
      return "stale";
    case CacheStatus::Fwd::Partial:
      return "partial";
  }
  return "";
}

}  // namespace

std::string cache_status_value(std::string_view cache_name, const CacheStatus& s) {
  std::string out;
  if (is_sf_token(cache_name)) {
    out.append(cache_name);
  } else {
    append_sf_string(&out, cache_name);
  }
  if (s.hit) out.append("; hit");
  if (s.fwd != CacheStatus::Fwd::None) out.append("; fwd=").append(fwd_name(s.fwd));
  if (s.fwd_status != 0) out.append("; fwd-status=").append(std::to_string(s.fwd_status));
  if (s.ttl) out.append("; ttl=").append(std::to_string(*s.ttl));
  if (s.stored) out.append("; stored");
  if (s.collapsed) out.append("; collapsed");
  if (!s.key.empty()) {
    out.append("; key=");
    append_sf_string(&out, s.key);
  }
  if (!s.detail.empty()) {
    out.append("; detail=");
    if (is_sf_token(s.detail)) {
      out.append(s.detail);
    } else {
      append_sf_string(&out, s.detail);
    }
  }
  return out;
}

}  // namespace parapet::cache
