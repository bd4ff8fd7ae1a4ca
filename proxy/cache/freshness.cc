#include "proxy/cache/freshness.h"

#include <algorithm>
#include <cctype>

namespace parapet::cache {
namespace {

std::string lower(std::string_view s) {
  std::string r(s);
  for (char& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

// The argument of a directive, unquoted (RFC 9110 5.6.4 quoted-pair removed).
std::string_view unquote(std::string_view v, std::string* scratch) {
  if (v.size() < 2 || v.front() != '"' || v.back() != '"') return v;
  v = v.substr(1, v.size() - 2);
  if (v.find('\\') == std::string_view::npos) return v;
  scratch->clear();
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '\\' && i + 1 < v.size()) ++i;
    scratch->push_back(v[i]);
  }
  return *scratch;
}

// Folds a duplicate: the smaller (more restrictive for ages) wins; an invalid argument is 0.
void keep_min(int64_t* slot, std::optional<int64_t> v) {
  int64_t x = v.value_or(0);
  *slot = *slot < 0 ? x : std::min(*slot, x);
}

// A freshness directive (max-age, s-maxage): a duplicate with another value makes it 0, i.e.
// the response is stale (RFC 9111 4.2.1 offers "use the first" or "consider it stale"; stale
// is the choice that never serves what the origin may not have meant); an invalid argument
// is 0 too.
void keep_consistent(int64_t* slot, std::optional<int64_t> v) {
  int64_t x = v.value_or(0);
  *slot = *slot < 0 || *slot == x ? x : 0;
}

void add_field_names(std::string_view arg, std::vector<std::string>* out) {
  for_each_element(arg, [&](std::string_view name) {
    out->push_back(lower(name));
    return true;
  });
}

bool understood_status(uint16_t s) {
  switch (s) {
    case 200:
    case 203:
    case 204:
    case 300:
    case 301:
    case 302:
    case 303:
    case 307:
    case 308:
    case 400:
    case 403:
    case 404:
    case 405:
    case 410:
    case 414:
    case 500:
    case 501:
    case 502:
    case 503:
    case 504:
      return true;
    default:
      return false;
  }
}

}  // namespace

CacheControl parse_cache_control(Fields f) {
  CacheControl cc;
  std::string scratch;
  for_each_element(f, "cache-control", [&](std::string_view el) {
    cc.present = true;
    // cache-directive = token [ "=" ( token / quoted-string ) ]: no whitespace around "=",
    // so "max-age =5" is another (unknown) directive and "max-age= 5" has an invalid argument.
    std::string_view name = el, arg;
    bool has_arg = false;
    if (size_t eq = el.find('='); eq != std::string_view::npos) {
      name = el.substr(0, eq);
      arg = unquote(el.substr(eq + 1), &scratch);
      has_arg = true;
    }
    auto delta = [&]() { return has_arg ? parse_delta_seconds(arg) : std::nullopt; };
    if (ieq(name, "max-age")) {
      keep_consistent(&cc.max_age, delta());
    } else if (ieq(name, "s-maxage")) {
      keep_consistent(&cc.s_maxage, delta());
    } else if (ieq(name, "max-stale")) {
      // A bare max-stale accepts any staleness.
      keep_min(&cc.max_stale, has_arg ? delta() : std::optional<int64_t>(kMaxDelta));
    } else if (ieq(name, "min-fresh")) {
      int64_t v = delta().value_or(0);
      cc.min_fresh = std::max(cc.min_fresh, v);
    } else if (ieq(name, "stale-while-revalidate")) {
      keep_min(&cc.stale_while_revalidate, delta());
    } else if (ieq(name, "stale-if-error")) {
      keep_min(&cc.stale_if_error, delta());
    } else if (ieq(name, "no-store")) {
      cc.no_store = true;
    } else if (ieq(name, "no-cache")) {
      if (has_arg && !arg.empty()) {
        add_field_names(arg, &cc.no_cache_fields);
      } else {
        cc.no_cache = true;
      }
    } else if (ieq(name, "private")) {
      if (has_arg && !arg.empty()) {
        add_field_names(arg, &cc.private_fields);
      } else {
        cc.private_ = true;
      }
    } else if (ieq(name, "public")) {
      cc.public_ = true;
    } else if (ieq(name, "must-revalidate")) {
      cc.must_revalidate = true;
    } else if (ieq(name, "proxy-revalidate")) {
      cc.proxy_revalidate = true;
    } else if (ieq(name, "must-understand")) {
      cc.must_understand = true;
    } else if (ieq(name, "immutable")) {
      cc.immutable = true;
    } else if (ieq(name, "only-if-cached")) {
      cc.only_if_cached = true;
    } else if (ieq(name, "no-transform")) {
      cc.no_transform = true;
    }
    // Unknown extensions are ignored (RFC 9111 5.2.3).
    return true;
  });
  return cc;
}

CacheControl parse_request_cache_control(Fields req) {
  CacheControl cc = parse_cache_control(req);
  if (!cc.present) {
    for_each_element(req, "pragma", [&](std::string_view el) {
      if (ieq(el, "no-cache")) cc.no_cache = true;
      return true;
    });
  }
  return cc;
}

bool heuristically_cacheable(uint16_t s) {
  switch (s) {
    case 200:
    case 203:
    case 204:
    case 206:
    case 300:
    case 301:
    case 308:
    case 404:
    case 405:
    case 410:
    case 414:
    case 501:
      return true;
    default:
      return false;
  }
}

namespace {

const int64_t* ttl_override(const Policy& p, uint16_t status) {
  for (const auto& [s, ttl] : p.ttl_by_status) {
    if (s == status) return &ttl;
  }
  return nullptr;
}

bool vary_star(Fields resp) {
  bool star = false;
  for_each_element(resp, "vary", [&](std::string_view e) {
    star = e == "*";
    return !star;
  });
  return star;
}

}  // namespace

Storability storable(std::string_view method, uint16_t status, Fields req,
                     const CacheControl& req_cc, Fields resp, const Policy& policy) {
  // HEAD is answered from a stored GET; its own responses are not stored (they have no body
  // to serve a GET with).
  if (method != "GET") return {false, "method"};
  if (status < 200) return {false, "status"};
  if (status == 206) return {false, "partial"};  // we store complete responses only
  if (status == 304) return {false, "not-modified"};
  if (req_cc.no_store) return {false, "request-no-store"};
  const CacheControl cc = parse_cache_control(resp);
  if (cc.must_understand && !understood_status(status)) return {false, "must-understand"};
  // must-understand with an understood status overrides no-store (RFC 9111 5.2.2.3).
  bool no_store = cc.no_store && !(cc.must_understand && understood_status(status));
  if (no_store && (policy.respect_no_store || !policy.cache_everything)) {
    return {false, "no-store"};
  }
  if (vary_star(resp)) return {false, "vary-star"};
  if (!policy.store_set_cookie && has_field(resp, "set-cookie")) return {false, "set-cookie"};
  if (policy.shared && has_field(req, "authorization") && !cc.must_revalidate && !cc.public_ &&
      cc.s_maxage < 0) {
    return {false, "authorization"};
  }
  if (policy.cache_everything) return {true, "policy"};
  if (policy.shared && cc.private_) return {false, "private"};
  if (cc.public_ || cc.max_age >= 0 || (policy.shared && cc.s_maxage >= 0) ||
      has_field(resp, "expires") || heuristically_cacheable(status) ||
      ttl_override(policy, status) != nullptr) {
    return {true, "ok"};
  }
  return {false, "no-freshness"};
}

Lifetime freshness_lifetime(uint16_t status, const CacheControl& cc, Fields resp,
                            int64_t date_value, const Policy& policy) {
  if (policy.shared && cc.s_maxage >= 0) return {cc.s_maxage, false};
  if (cc.max_age >= 0) return {cc.max_age, false};
  if (auto e = first_value(resp, "expires")) {
    // An invalid Expires (e.g. "0") means already expired (RFC 9111 5.3).
    auto t = parse_http_date(*e);
    if (!t) return {0, false};
    return {std::max<int64_t>(0, *t - date_value), false};
  }
  if (!heuristically_cacheable(status) && !cc.public_) return {0, false};
  auto lm = first_value(resp, "last-modified");
  auto t = lm ? parse_http_date(*lm) : std::nullopt;
  if (!t || *t >= date_value) return {0, true};
  auto h = static_cast<int64_t>(static_cast<double>(date_value - *t) * policy.heuristic_fraction);
  return {std::clamp<int64_t>(h, 0, policy.heuristic_max), true};
}

int64_t corrected_initial_age(int64_t age_value, int64_t date_value, int64_t request_time,
                              int64_t response_time) {
  const int64_t apparent_age = std::max<int64_t>(0, response_time - date_value);
  const int64_t response_delay = std::max<int64_t>(0, response_time - request_time);
  const int64_t corrected_age_value = age_value + response_delay;
  return std::max(apparent_age, corrected_age_value);
}

int64_t current_age(const EntryMeta& m, int64_t now) {
  const int64_t resident_time = std::max<int64_t>(0, now - m.response_time);
  return m.corrected_initial_age + resident_time;
}

EntryMeta make_meta(uint16_t status, Fields resp, int64_t request_time, int64_t response_time,
                    const Policy& policy) {
  EntryMeta m;
  const CacheControl cc = parse_cache_control(resp);
  m.status = status;
  m.request_time = request_time;
  m.response_time = response_time;
  auto d = first_value(resp, "date");
  auto dv = d ? parse_http_date(*d) : std::nullopt;
  // RFC 9110 6.6.1: without a (valid) Date, the receipt time stands in for it.
  m.has_date = dv.has_value();
  m.date_value = dv.value_or(response_time);
  if (auto a = first_value(resp, "age")) m.age_value = parse_delta_seconds(*a).value_or(0);
  m.corrected_initial_age =
      corrected_initial_age(m.age_value, m.date_value, request_time, response_time);
  Lifetime lt = freshness_lifetime(status, cc, resp, m.date_value, policy);
  m.lifetime = lt.seconds;
  m.heuristic = lt.heuristic;
  if (const int64_t* o = ttl_override(policy, status)) {
    m.lifetime = *o;
    m.heuristic = false;
  } else if (policy.cache_everything) {
    m.lifetime = policy.cache_everything_ttl;
    m.heuristic = false;
  }
  m.no_cache = cc.no_cache && !policy.cache_everything;
  m.must_revalidate =
      cc.must_revalidate || (policy.shared && (cc.proxy_revalidate || cc.s_maxage >= 0));
  m.immutable = cc.immutable;
  m.stale_while_revalidate = cc.stale_while_revalidate;
  m.stale_if_error = cc.stale_if_error;
  return m;
}

EntryMeta freshened_meta(uint16_t status, Fields merged, Fields not_modified, int64_t request_time,
                         int64_t response_time, const Policy& policy) {
  EntryMeta m = make_meta(status, merged, request_time, response_time, policy);
  m.age_value = 0;
  if (auto a = first_value(not_modified, "age")) m.age_value = parse_delta_seconds(*a).value_or(0);
  m.corrected_initial_age =
      corrected_initial_age(m.age_value, m.date_value, request_time, response_time);
  return m;
}

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::Fresh:
      return "fresh";
    case Verdict::StaleAcceptable:
      return "stale-acceptable";
    case Verdict::StaleWhileRevalidate:
      return "stale-while-revalidate";
    case Verdict::StaleIfError:
      return "stale-if-error";
    case Verdict::MustRevalidate:
      return "must-revalidate";
  }
  return "?";
}

Decision decide(const EntryMeta& m, const CacheControl& rq, const Policy& policy, int64_t now) {
  Decision d;
  d.age = current_age(m, now);
  d.ttl = m.lifetime - d.age;
  d.verdict = Verdict::MustRevalidate;
  // no-cache on either side: never reuse without validation (RFC 9111 5.2.1.4, 5.2.2.4).
  if (rq.no_cache || m.no_cache) return d;
  // The client's max-age bounds the age it accepts, fresh or stale (5.2.1.1).
  if (rq.max_age >= 0 && d.age > rq.max_age) return d;
  if (d.ttl > 0) {
    if (rq.min_fresh >= 0 && d.ttl < rq.min_fresh) return d;
    d.verdict = Verdict::Fresh;
    return d;
  }
  // Stale. must-revalidate / proxy-revalidate / s-maxage forbid any stale reuse (4.2.4), and
  // min-fresh cannot be met by a stale response.
  if (m.must_revalidate || rq.min_fresh > 0) return d;
  const int64_t staleness = -d.ttl;
  if (rq.max_stale >= 0 && staleness <= rq.max_stale) {
    d.verdict = Verdict::StaleAcceptable;
    return d;
  }
  const int64_t swr = std::max(m.stale_while_revalidate, policy.default_stale_while_revalidate);
  if (swr > 0 && staleness <= swr) {
    d.verdict = Verdict::StaleWhileRevalidate;
    return d;
  }
  const int64_t sie =
      std::max({m.stale_if_error, rq.stale_if_error, policy.default_stale_if_error});
  if (sie > 0 && staleness <= sie) d.verdict = Verdict::StaleIfError;
  return d;
}

bool excluded_from_storage(std::string_view name, Fields resp, const CacheControl& cc) {
  static constexpr std::string_view kHopByHop[] = {
      "connection",        "keep-alive", "proxy-connection", "te",
      "transfer-encoding", "upgrade",    "trailer",          "age"};
  for (std::string_view h : kHopByHop) {
    if (ieq(name, h)) return true;
  }
  bool listed = false;
  for_each_element(resp, "connection", [&](std::string_view e) {
    listed = ieq(e, name);
    return !listed;
  });
  if (listed) return true;
  for (const std::string& f : cc.no_cache_fields) {
    if (ieq(f, name)) return true;
  }
  for (const std::string& f : cc.private_fields) {
    if (ieq(f, name)) return true;
  }
  return false;
}

}  // namespace parapet::cache
