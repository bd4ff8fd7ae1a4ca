// Pure encoders used by the ngx API (and testable without a state): base64, URI escaping,
// query-string parsing, digests.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace parapet::lua {

std::string base64_encode(std::string_view in, bool pad = true);
bool base64_decode(std::string_view in, std::string* out);
// ngx.escape_uri: everything but ALPHA / DIGIT / "-" / "." / "_" / "~" as %XX (upper case).
std::string escape_uri(std::string_view in);
// ngx.unescape_uri: %XX decoded (invalid sequences kept as is), '+' as space.
std::string unescape_uri(std::string_view in);
// "a=1&b&c=%20" -> {("a","1",true),("b","",false),("c"," ",true)}; at most `max` pairs (0: all).
struct QueryArg {
  std::string key, value;
  bool has_value = false;
};
std::vector<QueryArg> parse_args(std::string_view query, size_t max, bool* truncated);
std::string md5_hex(std::string_view in);
std::string md5_bin(std::string_view in);
std::string sha1_bin(std::string_view in);
std::string sha256_hex(std::string_view in);
std::string hmac_sha1(std::string_view key, std::string_view in);

}  // namespace parapet::lua
