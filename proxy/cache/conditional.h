// Conditional requests against the cache (RFC 9110 13, RFC 9111 4.3), byte ranges of stored
// responses (RFC 9110 14) and the Cache-Status field (RFC 9211). Pure functions over header
// views, like freshness.h.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/cache/headers.h"

namespace parapet::cache {

// ---- entity tags (RFC 9110 8.8.3) ----
bool etag_weak_equal(std::string_view a, std::string_view b);
bool etag_strong_equal(std::string_view a, std::string_view b);

// ---- a client's conditional request answered from a stored response (RFC 9111 4.3.2) ----
enum class CondResult : uint8_t {
  Full,         // no applicable condition, or it did not match: send the stored response
  NotModified,  // send 304 with not_modified_fields()
  Forward,      // preconditions meant for the origin (If-Match, If-Unmodified-Since): go there
};
// If-None-Match (weak comparison; "*" matches any stored response) takes precedence; only
// without it is If-Modified-Since evaluated, against Last-Modified, else Date, else the time the
// response was received (RFC 9110 13.2.2, RFC 9111 4.3.2). Only GET and HEAD; only for stored
// 2xx responses other than 206. An If-Modified-Since that is not a single valid HTTP-date is
// ignored (RFC 9110 13.1.3).
CondResult evaluate_conditional(std::string_view method, Fields req, uint16_t stored_status,
                                Fields stored, int64_t response_time);
// The stored fields a 304 carries (RFC 9110 15.4.5): Cache-Control, Content-Location, Date,
// ETag, Expires, Vary, and Last-Modified when there is no ETag.
std::vector<Field> not_modified_fields(Fields stored);

// ---- revalidation with the origin (RFC 9111 4.3.1, 4.3.3, 4.3.4, 3.2) ----
// Fields to add to the request sent to the origin: If-None-Match from ETag, If-Modified-Since
// from Last-Modified. (The client's own conditionals are removed by the caller first.)
std::vector<std::pair<std::string, std::string>> revalidation_fields(Fields stored);
// Whether a 304 from the origin selects this stored response for update (4.3.4), in this
// order: a strong ETag in the 304 must equal the stored one strongly, a weak one weakly; else a
// Last-Modified must equal the stored one; else (no validator in the 304) the stored response
// must have no validator either (ETag or Last-Modified). The caller's lookup has selected the
// single stored response of the request. False: the cache MUST NOT update anything with it.
bool can_freshen(Fields stored, Fields not_modified);
// A 200 to a HEAD sent for a stale stored GET response (4.3.5): it may update the stored
// response when its validators match as for a 304 and its Content-Length, when present, equals
// the stored body's length. False: the stored response is to be treated as stale (invalidated).
bool head_can_freshen(Fields stored, uint64_t stored_length, Fields head);
// Stored fields updated with a 304's (3.2): a field present in the 304 replaces all stored lines
// of that name, others are kept; Content-Length, Content-Encoding and Content-Range are never
// updated (the stored body depends on them), nor the fields a cache does not store. A 304
// without Date drops the stored Date (the receipt time of the 304 stands in for it).
struct MergedFields {
  std::vector<std::pair<std::string, std::string>> owned;
  std::vector<Field> fields;  // views into `owned`
};
void merge_304(Fields stored, Fields not_modified, MergedFields* out);

// ---- Range (RFC 9110 14) over a complete stored response ----
struct RangeAnswer {
  enum class Kind : uint8_t { Full, Partial, Unsatisfiable } kind = Kind::Full;
  uint64_t first = 0, last = 0;  // inclusive, Partial only
  std::string content_range;     // "bytes 0-99/1000", or "bytes */1000" for 416
};
// One `bytes=` range (first-last, first-, -suffix) → 206; unsatisfiable → 416. Everything else
// → 200 with the whole body: no Range, a method other than GET, a stored status other than 200,
// another unit, invalid syntax, several ranges (allowed: a server may ignore Range), or an
// If-Range that does not match (strong ETag comparison, or exactly the Last-Modified date).
RangeAnswer evaluate_range(std::string_view method, Fields req, uint16_t stored_status,
                           Fields stored, uint64_t length);

// ---- Cache-Status (RFC 9211) ----
struct CacheStatus {
  enum class Fwd : uint8_t {
    None,
    Bypass,
    Method,
    UriMiss,
    VaryMiss,
    Miss,
    Request,
    Stale,
    Partial
  };
  bool hit = false;
  Fwd fwd = Fwd::None;
  uint16_t fwd_status = 0;     // 0: not sent
  std::optional<int64_t> ttl;  // negative when stale
  bool stored = false;
  bool collapsed = false;
  std::string_view key;     // sent as a string when not empty
  std::string_view detail;  // a token as is, anything else as a string
};
// The field value for one cache, e.g. `parapet; hit; ttl=42`, `parapet; fwd=miss; stored`.
std::string cache_status_value(std::string_view cache_name, const CacheStatus& s);

}  // namespace parapet::cache
