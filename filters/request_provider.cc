#include "filters/request_provider.h"

#include <cstring>

#include "filters/normalize.h"

namespace parapet::filters {
namespace {

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string_view lowered(std::string_view s, FieldWriter& out) {
  bool has_upper = false;
  for (char c : s) has_upper |= (c >= 'A' && c <= 'Z');
  if (!has_upper) return s;
  char* p = out.alloc(s.size());
  for (size_t i = 0; i < s.size(); ++i) p[i] = lower(s[i]);
  return {p, s.size()};
}

// Values of every header named `name`, joined by `sep` into the context when more than one.
std::string_view header_value(std::span<const HeaderPair> hs, std::string_view name,
                              std::string_view sep, FieldWriter& out) {
  std::string_view first;
  size_t count = 0, total = 0;
  for (const HeaderPair& h : hs) {
    if (!iequals(h.first, name)) continue;
    if (count++ == 0) first = h.second;
    total += h.second.size() + sep.size();
  }
  if (count <= 1) return first;
  char* p = out.alloc(total);
  size_t n = 0;
  for (const HeaderPair& h : hs) {
    if (!iequals(h.first, name)) continue;
    if (n) {
      if (!sep.empty()) std::memcpy(p + n, sep.data(), sep.size());
      n += sep.size();
    }
    if (!h.second.empty()) std::memcpy(p + n, h.second.data(), h.second.size());
    n += h.second.size();
  }
  return {p, n};
}

// Percent-decodes into the context's arena; returns `s` itself when nothing changes.
std::string_view decoded(std::string_view s, bool plus, FieldWriter& out) {
  if (s.find('%') == std::string_view::npos && (!plus || s.find('+') == std::string_view::npos)) {
    return s;
  }
  // Decoding only shrinks, so the arena block can be sized up front (no std::string).
  char* p = out.alloc(s.size());
  size_t n = 0;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      p[n++] = static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else {
      p[n++] = (plus && s[i] == '+') ? ' ' : s[i];
    }
  }
  return {p, n};
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string_view raw_path(const RequestView& r) { return r.target.substr(0, r.target.find('?')); }

std::string_view raw_query(const RequestView& r) {
  size_t q = r.target.find('?');
  return q == std::string_view::npos ? std::string_view() : r.target.substr(q + 1);
}

// The normalized path, built into the arena (normalize_path wants a std::string: use a
// thread-local buffer that keeps its capacity, then copy).
std::string_view norm_path(const RequestView& r, FieldWriter& out) {
  thread_local std::string buf;
  normalize_path(raw_path(r), buf);
  return out.copy(buf);
}

}  // namespace

bool RequestFieldProvider::fetch(Field field, FieldWriter& out) {
  if (req_ == nullptr) return false;
  const RequestView& r = *req_;
  switch (field) {
    case Field::HttpHost:
      out.set_string(r.host);
      return true;
    case Field::HttpRequestMethod:
      out.set_string(r.method);
      return true;
    case Field::HttpRequestUri: {
      std::string_view path = norm_path(r, out);
      std::string_view q = raw_query(r);
      if (q.empty() && r.target.find('?') == std::string_view::npos) {
        out.set_string(path);
        return true;
      }
      char* p = out.alloc(path.size() + 1 + q.size());
      if (!path.empty()) std::memcpy(p, path.data(), path.size());
      p[path.size()] = '?';
      if (!q.empty()) std::memcpy(p + path.size() + 1, q.data(), q.size());
      out.set_string({p, path.size() + 1 + q.size()});
      return true;
    }
    case Field::HttpRequestUriPath:
      out.set_string(norm_path(r, out));
      return true;
    case Field::HttpRequestUriPathExtension: {
      std::string_view path = norm_path(r, out);
      std::string_view last = path.substr(path.rfind('/') + 1);
      size_t dot = last.rfind('.');
      out.set_string(dot == std::string_view::npos ? std::string_view()
                                                   : lowered(last.substr(dot + 1), out));
      return true;
    }
    case Field::HttpRequestUriQuery:
      out.set_string(raw_query(r));
      return true;
    case Field::HttpRequestUriArgs:
    case Field::HttpRequestUriArgsNames:
    case Field::HttpRequestUriArgsValues: {
      std::string_view q = raw_query(r);
      while (!q.empty()) {
        size_t amp = q.find('&');
        std::string_view kv = q.substr(0, amp);
        q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
        if (kv.empty()) continue;
        size_t eq = kv.find('=');
        std::string_view k = decoded(kv.substr(0, eq), true, out);
        std::string_view v = eq == std::string_view::npos ? std::string_view()
                                                          : decoded(kv.substr(eq + 1), true, out);
        if (field == Field::HttpRequestUriArgs) out.add_entry(k, v);
        if (field == Field::HttpRequestUriArgsNames) out.add_string(k);
        if (field == Field::HttpRequestUriArgsValues) out.add_string(v);
      }
      return true;
    }
    case Field::HttpRequestFullUri: {
      std::string_view scheme = r.tls ? "https://" : "http://";
      std::string_view path = norm_path(r, out);
      std::string_view q = raw_query(r);
      bool has_q = r.target.find('?') != std::string_view::npos;
      size_t n = scheme.size() + r.host.size() + path.size() + (has_q ? 1 + q.size() : 0);
      char* p = out.alloc(n);
      size_t o = 0;
      for (std::string_view part : {scheme, r.host, path}) {
        if (!part.empty()) std::memcpy(p + o, part.data(), part.size());
        o += part.size();
      }
      if (has_q) {
        p[o++] = '?';
        if (!q.empty()) std::memcpy(p + o, q.data(), q.size());
      }
      out.set_string({p, n});
      return true;
    }
    case Field::HttpRequestHeaders:
    case Field::HttpRequestHeadersNames:
    case Field::HttpRequestHeadersValues:
    case Field::HttpResponseHeaders:
    case Field::HttpResponseHeadersNames:
    case Field::HttpResponseHeadersValues: {
      bool resp = field == Field::HttpResponseHeaders || field == Field::HttpResponseHeadersNames ||
                  field == Field::HttpResponseHeadersValues;
      if (resp && r.response_code == 0) return false;
      for (const HeaderPair& h : resp ? r.response_headers : r.headers) {
        if (field == Field::HttpRequestHeaders || field == Field::HttpResponseHeaders) {
          out.add_entry(lowered(h.first, out), h.second);
        } else if (field == Field::HttpRequestHeadersNames ||
                   field == Field::HttpResponseHeadersNames) {
          out.add_string(lowered(h.first, out));
        } else {
          out.add_string(h.second);
        }
      }
      return true;
    }
    case Field::HttpRequestCookies: {
      for (const HeaderPair& h : r.headers) {
        if (!iequals(h.first, "cookie")) continue;
        std::string_view c = h.second;
        while (!c.empty()) {
          size_t semi = c.find(';');
          std::string_view kv = trim(c.substr(0, semi));
          c = semi == std::string_view::npos ? std::string_view() : c.substr(semi + 1);
          if (kv.empty()) continue;
          size_t eq = kv.find('=');
          std::string_view k = trim(kv.substr(0, eq));
          std::string_view v =
              eq == std::string_view::npos ? std::string_view() : trim(kv.substr(eq + 1));
          if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
          out.add_entry(k, decoded(v, false, out));
        }
      }
      return true;
    }
    case Field::HttpCookie:
      out.set_string(header_value(r.headers, "cookie", "; ", out));
      return true;
    case Field::HttpUserAgent:
      out.set_string(header_value(r.headers, "user-agent", ", ", out));
      return true;
    case Field::HttpReferer:
      out.set_string(header_value(r.headers, "referer", ", ", out));
      return true;
    case Field::HttpXForwardedFor:
      out.set_string(header_value(r.headers, "x-forwarded-for", ", ", out));
      return true;
    case Field::HttpRequestVersion:
      out.set_string(r.version);
      return true;
    case Field::HttpRequestTimestampSec:
      out.set_int(r.timestamp_sec);
      return true;
    case Field::IpSrc:
      if (!r.has_src) return false;
      out.set_ip(r.src);
      return true;
    case Field::Ssl:
      out.set_bool(r.tls);
      return true;
    case Field::RawHttpRequestUri:
      out.set_string(r.target);
      return true;
    case Field::RawHttpRequestUriPath:
      out.set_string(raw_path(r));
      return true;
    case Field::RawHttpRequestUriQuery:
      out.set_string(raw_query(r));
      return true;
    case Field::HttpResponseCode:
      if (r.response_code == 0) return false;
      out.set_int(r.response_code);
      return true;
    case Field::ParapetTenant:
      out.set_string(r.tenant);
      return true;
    case Field::kCount:
      return false;
  }
  return false;
}

}  // namespace parapet::filters
