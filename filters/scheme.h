// The typed scheme of the rules language: the fields a rule may name, their types and the phase
// in which they exist. The scheme is fixed at build time (the proxy fills every field through a
// FieldProvider, see context.h), so a field is a small integer and per-request field tables are
// flat arrays.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace parapet::filters {

// Types of values. Map is Map<Array<String>> (headers, args, cookies): the only map shape the
// scheme needs, so it gets one name instead of a general type constructor.
enum class Type : uint8_t { Bool, Int, String, Ip, ArrayString, MapString };

// "Bool", "Int", "String", "IP", "Array<String>", "Map<Array<String>>".
const char* type_name(Type t);

// When a field exists. A request-phase rule naming a response field is a compile error.
enum class Phase : uint8_t { Request, Response };

enum class Field : uint16_t {
  HttpHost,
  HttpRequestMethod,
  HttpRequestUri,
  HttpRequestUriPath,
  HttpRequestUriPathExtension,
  HttpRequestUriQuery,
  HttpRequestUriArgs,
  HttpRequestUriArgsNames,
  HttpRequestUriArgsValues,
  HttpRequestFullUri,
  HttpRequestHeaders,
  HttpRequestHeadersNames,
  HttpRequestHeadersValues,
  HttpRequestCookies,
  HttpCookie,
  HttpUserAgent,
  HttpReferer,
  HttpXForwardedFor,
  HttpRequestVersion,
  HttpRequestTimestampSec,
  IpSrc,
  Ssl,
  RawHttpRequestUri,
  RawHttpRequestUriPath,
  RawHttpRequestUriQuery,
  HttpResponseCode,
  HttpResponseHeaders,
  HttpResponseHeadersNames,
  HttpResponseHeadersValues,
  ParapetTenant,
  kCount,
};
inline constexpr size_t kFieldCount = static_cast<size_t>(Field::kCount);

struct FieldInfo {
  std::string_view name;  // "http.request.uri.path"
  Type type;
  Phase phase;  // Response: only in the response phase; Request: in both
};

const FieldInfo& field_info(Field f);
std::optional<Field> find_field(std::string_view name);

// An IP address, v4 or v6. A v4-mapped v6 address (::ffff:a.b.c.d) is parsed as the v4 address
// a.b.c.d: clients reaching a dual-stack socket appear that way, and a rule written for 1.2.3.4
// must match them. Plain value type, no allocation.
struct IpAddr {
  std::array<uint8_t, 16> bytes{};  // v4 uses bytes[0..3]
  bool v4 = false;

  // Accepts dotted quads and RFC 4291 text; no brackets, no zone ids.
  static bool parse(std::string_view text, IpAddr* out);
  static IpAddr from_v4(uint32_t host_order);
  uint32_t v4_value() const;           // host order; v4 only
  unsigned __int128 v6_value() const;  // v6 only
  std::string to_string() const;
  bool operator==(const IpAddr& o) const { return v4 == o.v4 && bytes == o.bytes; }
};

}  // namespace parapet::filters
