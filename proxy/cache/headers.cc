#include "proxy/cache/headers.h"

#include <strings.h>

#include <cstdio>

#include "proxy/http1.h"

namespace parapet::cache {

void fields_of(const MessageHead& head, std::vector<Field>* out) {
  out->clear();
  out->reserve(head.headers.size());
  for (const HeaderSpan& h : head.headers) out->push_back({head.name(h), head.value(h)});
}

bool ieq(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::optional<std::string_view> first_value(Fields f, std::string_view name) {
  for (const Field& x : f) {
    if (ieq(x.name, name)) return trim_ows(x.value);
  }
  return std::nullopt;
}

bool has_field(Fields f, std::string_view name) { return first_value(f, name).has_value(); }

size_t count_fields(Fields f, std::string_view name) {
  size_t n = 0;
  for (const Field& x : f) n += ieq(x.name, name) ? 1 : 0;
  return n;
}

std::optional<int64_t> parse_delta_seconds(std::string_view s) {
  if (s.empty()) return std::nullopt;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    if (v < kMaxDelta) v = v * 10 + (c - '0');
  }
  return v > kMaxDelta ? kMaxDelta : v;
}

namespace {

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's well-known algorithm).
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

constexpr const char* kMonths[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
constexpr const char* kDays[7] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};

struct Cursor {
  std::string_view s;
  size_t i = 0;
  bool lit(std::string_view l) {
    if (s.substr(i, l.size()) != l) return false;
    i += l.size();
    return true;
  }
  bool num(size_t min_digits, size_t max_digits, int* out) {
    int v = 0;
    size_t n = 0;
    while (i < s.size() && n < max_digits && s[i] >= '0' && s[i] <= '9') {
      v = v * 10 + (s[i++] - '0');
      ++n;
    }
    *out = v;
    return n >= min_digits;
  }
  bool month(int* m) {
    for (int k = 0; k < 12; ++k) {
      if (s.size() - i >= 3 && strncasecmp(s.data() + i, kMonths[k], 3) == 0) {
        *m = k + 1;
        i += 3;
        return true;
      }
    }
    return false;
  }
  bool time(int* hh, int* mm, int* ss) {
    return num(2, 2, hh) && lit(":") && num(2, 2, mm) && lit(":") && num(2, 2, ss);
  }
  bool skip_day_name() {
    size_t j = i;
    while (j < s.size() && ((s[j] >= 'A' && s[j] <= 'Z') || (s[j] >= 'a' && s[j] <= 'z'))) ++j;
    if (j - i < 3) return false;
    i = j;
    return true;
  }
};

}  // namespace

std::optional<int64_t> parse_http_date(std::string_view s) {
  s = trim_ows(s);
  Cursor c{s};
  int day = 0, mon = 0, year = 0, hh = 0, mm = 0, ss = 0;
  if (!c.skip_day_name()) return std::nullopt;
  if (c.lit(", ")) {
    // IMF-fixdate "06 Nov 1994 08:49:37 GMT" or RFC 850 "06-Nov-94 08:49:37 GMT".
    if (!c.num(2, 2, &day)) return std::nullopt;
    if (c.lit(" ")) {
      if (!c.month(&mon) || !c.lit(" ") || !c.num(4, 4, &year)) return std::nullopt;
    } else if (c.lit("-")) {
      if (!c.month(&mon) || !c.lit("-") || !c.num(2, 2, &year)) return std::nullopt;
      // RFC 9110 5.6.7: a two-digit year more than 50 years in the future is in the past.
      year += year < 70 ? 2000 : 1900;
    } else {
      return std::nullopt;
    }
    if (!c.lit(" ") || !c.time(&hh, &mm, &ss) || !c.lit(" GMT")) return std::nullopt;
  } else if (c.lit(" ")) {
    // asctime "Nov  6 08:49:37 1994".
    if (!c.month(&mon) || !c.lit(" ")) return std::nullopt;
    if (c.lit(" ")) {
      if (!c.num(1, 1, &day)) return std::nullopt;
    } else if (!c.num(2, 2, &day)) {
      return std::nullopt;
    }
    if (!c.lit(" ") || !c.time(&hh, &mm, &ss) || !c.lit(" ") || !c.num(4, 4, &year)) {
      return std::nullopt;
    }
  } else {
    return std::nullopt;
  }
  if (c.i != s.size()) return std::nullopt;
  if (day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60) return std::nullopt;
  return days_from_civil(year, static_cast<unsigned>(mon), static_cast<unsigned>(day)) * 86400 +
         hh * 3600 + mm * 60 + ss;
}

std::string format_http_date(int64_t t) {
  int64_t days = t >= 0 ? t / 86400 : (t - 86399) / 86400;
  int64_t secs = t - days * 86400;
  // civil_from_days (Hinnant).
  int64_t z = days + 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t y = static_cast<int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  y += m <= 2;
  int wd = static_cast<int>(((days % 7) + 11) % 7);  // 1970-01-01 was a Thursday
  char buf[80];
  snprintf(buf, sizeof buf, "%s, %02u %s %04lld %02lld:%02lld:%02lld GMT", kDays[wd], d,
           kMonths[m - 1], static_cast<long long>(y), static_cast<long long>(secs / 3600),
           static_cast<long long>(secs / 60 % 60), static_cast<long long>(secs % 60));
  return buf;
}

}  // namespace parapet::cache
