// Cache-Control, storability, freshness and age: the RFC 9111 rules of a shared cache, as pure
// functions over header views and explicit times (seconds since the epoch), so they are tested
// without clocks or sockets.
//
// A worker uses them in this order:
//   request:  CacheControl rq = parse_cache_control(req);   (Pragma: no-cache is folded in)
//   response: Storability s = storable(method, status, req, rq, resp, policy);
//             if (s.ok) meta = make_meta(status, resp, request_time, response_time, policy);
//   hit:      Decision d = decide(entry.meta, rq, policy, now);  age header: d.age
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/cache/headers.h"

namespace parapet::cache {

// Parsed Cache-Control (RFC 9111 5.2) of a request or a response; directives of both kinds are
// collected and the caller reads the ones that apply. Integer arguments are -1 when absent.
//
// Duplicates and invalid values (RFC 9111 4.2.1): max-age or s-maxage given twice with two
// different values is 0, i.e. the response is stale (the RFC's "consider it stale" option;
// the same value twice is that value); other duplicated ages (max-stale, stale-while-revalidate,
// stale-if-error) keep the smaller, more restrictive one. An argument that is not delta-seconds
// (e.g. "max-age=1.5", "max-age=-1", "max-age", "max-age= 5") makes a freshness directive 0,
// i.e. the response is stale, as the RFC encourages. Arguments may be tokens or quoted strings
// (RFC 9111 5.2: recipients accept both forms); whitespace around "=" is not allowed by the
// grammar, so "max-age =5" is not max-age.
struct CacheControl {
  int64_t max_age = -1;
  int64_t s_maxage = -1;
  int64_t max_stale = -1;  // request; kMaxDelta for a bare "max-stale" (any staleness)
  int64_t min_fresh = -1;  // request
  int64_t stale_while_revalidate = -1;
  int64_t stale_if_error = -1;
  bool no_store = false;
  bool no_cache = false;  // unqualified: revalidate every time
  bool private_ = false;  // unqualified: not storable in a shared cache
  bool public_ = false;
  bool must_revalidate = false;
  bool proxy_revalidate = false;
  bool must_understand = false;
  bool immutable = false;
  bool only_if_cached = false;  // request
  bool no_transform = false;
  bool present = false;  // at least one Cache-Control field line
  // Field names of qualified no-cache="a, b" / private="c": those fields are dropped from the
  // stored response (RFC 9111 5.2.2.4 and 5.2.2.7 allow storing the rest). Lowercased.
  std::vector<std::string> no_cache_fields;
  std::vector<std::string> private_fields;
};

CacheControl parse_cache_control(Fields f);
// Request directives, with `Pragma: no-cache` meaning no-cache when the request has no
// Cache-Control (RFC 9111 5.4).
CacheControl parse_request_cache_control(Fields req);

// Operator policy for one tenant or route: the defaults below are the RFC's behaviour. The caller
// (config) fills one per route; the functions never read globals.
struct Policy {
  bool shared = true;               // a shared cache (s-maxage, private and Authorization rules)
  bool store_set_cookie = false;    // responses with Set-Cookie are not stored unless allowed
  double heuristic_fraction = 0.1;  // of (Date - Last-Modified), RFC 9111 4.2.2
  int64_t heuristic_max = 86400;    // cap of a heuristic lifetime, seconds
  // Lifetime override by status, replacing the origin's freshness (but not no-store, private
  // or no-cache) for statuses listed here. E.g. {404, 60}.
  std::vector<std::pair<uint16_t, int64_t>> ttl_by_status;
  // "Cache everything on this route": store any final response to GET except 206 whatever its
  // Cache-Control says (private, no-cache, no freshness...), with this lifetime (or the
  // ttl_by_status entry), but still honour no-store when respect_no_store is set.
  bool cache_everything = false;
  int64_t cache_everything_ttl = 0;
  bool respect_no_store = true;
  // Staleness the operator allows on top of the origin's stale-while-revalidate /
  // stale-if-error (0: only what the origin says).
  int64_t default_stale_while_revalidate = 0;
  int64_t default_stale_if_error = 0;
};

// RFC 9111 3. `reason` is a stable token for logs and Cache-Status detail.
struct Storability {
  bool ok = false;
  const char* reason = "";
};
Storability storable(std::string_view method, uint16_t status, Fields req,
                     const CacheControl& req_cc, Fields resp, const Policy& policy);

// Statuses that are heuristically cacheable (RFC 9110 15.1).
bool heuristically_cacheable(uint16_t status);

// What a stored response needs to answer later requests: the times of RFC 9111 4.2.3 and the
// response directives that govern reuse.
struct EntryMeta {
  uint16_t status = 0;
  int64_t request_time = 0;   // when the request that produced this response was sent
  int64_t response_time = 0;  // when the response was received
  int64_t date_value = 0;     // Date, or response_time when missing or invalid
  int64_t age_value = 0;      // Age header, 0 when absent or invalid
  int64_t corrected_initial_age = 0;
  int64_t lifetime = 0;  // freshness lifetime, seconds
  bool heuristic = false;
  bool no_cache = false;         // response no-cache: always revalidate
  bool must_revalidate = false;  // must-revalidate, proxy-revalidate or s-maxage (shared)
  bool immutable = false;
  int64_t stale_while_revalidate = -1;
  int64_t stale_if_error = -1;
  bool has_date = false;  // false: the stored headers get a Date (RFC 9110 6.6.1)
};

EntryMeta make_meta(uint16_t status, Fields resp, int64_t request_time, int64_t response_time,
                    const Policy& policy);
// The meta of a stored response freshened by a 304 (RFC 9111 4.3.4): `merged` is
// merge_304(stored, not_modified) (so Date is the 304's, or absent when the 304 had none and the
// receipt time stands in for it), and the Age that counts is the 304's own (Age is never
// stored, so it is read from `not_modified`): the freshened entry's age is the 304's age.
EntryMeta freshened_meta(uint16_t status, Fields merged, Fields not_modified, int64_t request_time,
                         int64_t response_time, const Policy& policy);

// Freshness lifetime (RFC 9111 4.2.1, shared cache): s-maxage > max-age > Expires - Date >
// heuristic (4.2.2). An Expires that is not a valid date means already expired.
struct Lifetime {
  int64_t seconds = 0;
  bool heuristic = false;
};
Lifetime freshness_lifetime(uint16_t status, const CacheControl& cc, Fields resp,
                            int64_t date_value, const Policy& policy);

// RFC 9111 4.2.3, term by term.
int64_t corrected_initial_age(int64_t age_value, int64_t date_value, int64_t request_time,
                              int64_t response_time);
int64_t current_age(const EntryMeta& m, int64_t now);

enum class Verdict : uint8_t {
  Fresh,                 // serve
  StaleAcceptable,       // stale, but the request's max-stale accepts it: serve
  StaleWhileRevalidate,  // serve now, revalidate in the background
  StaleIfError,          // revalidate; serve this if the origin fails (5xx, unreachable)
  MustRevalidate,        // revalidate (or fetch) before answering
};
const char* verdict_name(Verdict v);

struct Decision {
  Verdict verdict = Verdict::MustRevalidate;
  int64_t age = 0;  // the Age header value to send
  int64_t ttl = 0;  // lifetime - age; negative when stale (Cache-Status ttl)
};
Decision decide(const EntryMeta& m, const CacheControl& req_cc, const Policy& policy, int64_t now);

// Fields a cache never stores or forwards from a stored response (RFC 9111 3.1): Connection and
// the fields it names, the hop-by-hop fields, Age (recomputed on every answer), and the fields
// of qualified no-cache / private directives.
bool excluded_from_storage(std::string_view name, Fields resp, const CacheControl& resp_cc);

}  // namespace parapet::cache
