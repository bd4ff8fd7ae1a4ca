// Cache keys and Vary (RFC 9111 2 and 4.1).
//
// A stored response is found in two steps:
//   primary key  tenant + scheme + host + path (+ query): names a URL; all of its variants live
//                under it, so purging a URL is one erase and the shard is chosen from it alone.
//   variant      the request values the operator added to the key (KeyOptions headers and
//                cookies: `extras`) plus, per stored response, the request's values of the
//                fields its Vary names. Two Accept-Encoding variants of one URL coexist.
// The tenant is always the first component: tenants never share entries, even for the same
// host and path.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/cache/headers.h"

namespace parapet::cache {

struct KeyOptions {
  bool ignore_query = false;
  std::vector<std::string> headers;  // request fields whose values join the key
  std::vector<std::string> cookies;  // cookie names whose values join the key
};

struct CacheKey {
  std::string primary;  // tenant '\x1f' scheme "://" host target
  std::string extras;   // KeyOptions values, "" when none are configured
  uint64_t hash = 0;    // of `primary`: picks the shard
  uint32_t tenant_len = 0;

  std::string_view tenant() const { return std::string_view(primary).substr(0, tenant_len); }
  std::string_view url() const { return std::string_view(primary).substr(tenant_len + 1); }
};

// `target` is the request target in origin form ("/path?query"). Scheme and host are
// lowercased; the path is kept byte for byte (no decoding: two spellings are two keys).
CacheKey make_key(std::string_view tenant, std::string_view scheme, std::string_view host,
                  std::string_view target, const KeyOptions& opt, Fields req);
// The key of an absolute URL ("https://host/path?q") as stored, for purges and invalidation.
CacheKey url_key(std::string_view tenant, std::string_view url);
uint64_t hash_primary(std::string_view primary);

// A URI reference from a response (Location, Content-Location) resolved against the request's
// URI, RFC 3986 5.2: absolute ("https://h/p"), network-path ("//h/p"), absolute-path ("/p"),
// relative-path ("p", "../p", "?q") references, dot segments removed, fragment dropped.
// `base_target` is the request target in origin form. nullopt: not an http(s) URI, or no
// authority. The result is not yet checked against the request's host (same_host()).
struct ResolvedUri {
  std::string scheme;     // lowercase
  std::string authority;  // host[:port] as written
  std::string target;     // origin form: "/path?query"
};
std::optional<ResolvedUri> resolve_reference(std::string_view base_scheme,
                                             std::string_view base_authority,
                                             std::string_view base_target, std::string_view ref);
// Whether two authorities name the same host (RFC 9111 4.4 compares the host part only):
// ASCII case-insensitive, ports and a trailing dot ignored.
bool same_host(std::string_view a, std::string_view b);

// Vary field names of a response, lowercased, duplicates removed, from every Vary line.
// Returns false for `Vary: *` (such a response never matches a later request).
bool vary_names(Fields resp, std::vector<std::string>* names);

// A request's values for `names`, normalized (RFC 9111 4.1: field lines combined, elements
// trimmed of whitespace and joined by ","), encoded so that an absent field and an empty one
// differ. Stored with each variant; a later request matches when its encoding is equal.
void encode_variant(const std::vector<std::string>& names, Fields req, std::string* out);
bool variant_matches(const std::vector<std::string>& names, std::string_view stored, Fields req);

// Value of one cookie from the Cookie field lines, or nullopt.
std::optional<std::string_view> cookie_value(Fields req, std::string_view name);

}  // namespace parapet::cache
