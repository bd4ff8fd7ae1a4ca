// Header-field helpers shared by the cache's RFC logic (freshness, Vary, conditionals, ranges).
//
// Every header-facing function of the cache takes a `Fields` view: a span of {name, value}
// string_view pairs. It costs nothing to build one from a MessageHead (fields_of() below) and it
// is what a stored Entry keeps, so the same code runs on a request from the wire, an origin
// response and a stored response. Names compare ASCII case-insensitively; several field lines
// with the same name are one comma-separated list (RFC 9110 5.3), which the iterators below
// walk without allocating.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace parapet {
class MessageHead;
}

namespace parapet::cache {

struct Field {
  std::string_view name, value;
};
using Fields = std::span<const Field>;

// The fields of a parsed head, as views into its buffer (valid while the head is unchanged).
void fields_of(const MessageHead& head, std::vector<Field>* out);

bool ieq(std::string_view a, std::string_view b);
std::string_view trim_ows(std::string_view s);
// Value of the first field line with this name; nullopt when absent (an empty value is "").
std::optional<std::string_view> first_value(Fields f, std::string_view name);
bool has_field(Fields f, std::string_view name);
size_t count_fields(Fields f, std::string_view name);

// Calls fn(element) for each non-empty element of the comma-separated list made of every field
// line named `name`, trimmed of OWS. Commas inside quoted strings do not split. fn returns
// false to stop early.
template <class Fn>
void for_each_element(Fields f, std::string_view name, Fn&& fn);
// The same over a single value.
template <class Fn>
void for_each_element(std::string_view value, Fn&& fn);

// HTTP-date (RFC 9110 5.6.7): IMF-fixdate, and the obsolete RFC 850 and asctime forms, which
// recipients MUST accept. Seconds since the epoch, or nullopt when the value is not a date.
std::optional<int64_t> parse_http_date(std::string_view s);
// IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT".
std::string format_http_date(int64_t t);

// delta-seconds (RFC 9111 1.2.2): digits only; values past 2^31 become 2^31, as the RFC
// requires. nullopt when not a non-negative integer.
std::optional<int64_t> parse_delta_seconds(std::string_view s);
inline constexpr int64_t kMaxDelta = int64_t{1} << 31;

// ---- templates ----

template <class Fn>
void for_each_element(std::string_view v, Fn&& fn) {
  size_t start = 0;
  bool quoted = false;
  for (size_t i = 0; i <= v.size(); ++i) {
    if (i < v.size()) {
      char c = v[i];
      if (quoted) {
        if (c == '\\' && i + 1 < v.size()) {
          ++i;
        } else if (c == '"') {
          quoted = false;
        }
        continue;
      }
      if (c == '"') {
        quoted = true;
        continue;
      }
      if (c != ',') continue;
    }
    std::string_view e = trim_ows(v.substr(start, i - start));
    start = i + 1;
    if (!e.empty() && !fn(e)) return;
  }
}

template <class Fn>
void for_each_element(Fields f, std::string_view name, Fn&& fn) {
  bool stop = false;
  for (const Field& x : f) {
    if (stop) return;
    if (!ieq(x.name, name)) continue;
    for_each_element(x.value, [&](std::string_view e) {
      if (!fn(e)) {
        stop = true;
        return false;
      }
      return true;
    });
  }
}

}  // namespace parapet::cache
