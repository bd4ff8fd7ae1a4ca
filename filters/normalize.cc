#include "filters/normalize.h"

namespace parapet::filters {
namespace {

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

}  // namespace

void percent_decode(std::string_view in, bool plus_as_space, std::string& out) {
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%' && i + 2 < in.size() && hex(in[i + 1]) >= 0 && hex(in[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(in[i + 1]) * 16 + hex(in[i + 2])));
      i += 2;
    } else if (c == '+' && plus_as_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
}

void normalize_path(std::string_view path, std::string& out) {
  out.clear();
  out.reserve(path.size());
  // Steps 1 and 2 in one pass: decode unreserved escapes, uppercase the rest, merge slashes.
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (size_t i = 0; i < path.size(); ++i) {
    char c = path[i];
    if (c == '%' && i + 2 < path.size() && hex(path[i + 1]) >= 0 && hex(path[i + 2]) >= 0) {
      int v = hex(path[i + 1]) * 16 + hex(path[i + 2]);
      i += 2;
      if (unreserved(static_cast<unsigned char>(v))) {
        out.push_back(static_cast<char>(v));
      } else {
        out.push_back('%');
        out.push_back(kHex[v >> 4]);
        out.push_back(kHex[v & 15]);
      }
      continue;
    }
    if (c == '/' && !out.empty() && out.back() == '/') continue;
    out.push_back(c);
  }
  // Step 3, in place: segments are copied down over removed ones. `w` is the output length.
  size_t w = 0, r = 0;
  const size_t n = out.size();
  auto seg_end = [&](size_t from) {
    size_t e = out.find('/', from);
    return e == std::string::npos ? n : e;
  };
  auto pop_segment = [&] {
    // Drop the last output segment and its leading '/', as RFC 3986 5.2.4 step 2C does.
    while (w > 0 && out[w - 1] != '/') --w;
    if (w > 0) --w;
  };
  while (r < n) {
    if (out[r] == '/') {
      size_t e = seg_end(r + 1);
      std::string_view seg(out.data() + r + 1, e - r - 1);
      if (seg == ".") {
        // "/./" -> "/"; a trailing "/." leaves the directory "/".
        r = e;
        if (r == n) out[w++] = '/';
        continue;
      }
      if (seg == "..") {
        pop_segment();
        r = e;
        if (r == n) out[w++] = '/';
        continue;
      }
      for (size_t k = r; k < e; ++k) out[w++] = out[k];
      r = e;
    } else {
      // A relative leading segment (no '/'): "." and ".." are dropped, others kept.
      size_t e = seg_end(r);
      std::string_view seg(out.data() + r, e - r);
      if (seg == "." || seg == "..") {
        // 5.2.4 step 2A: drop the segment and its '/', the next one stays relative.
        r = e < n ? e + 1 : e;
        continue;
      }
      for (size_t k = r; k < e; ++k) out[w++] = out[k];
      r = e;
    }
  }
  out.resize(w);
}

std::string normalize_path(std::string_view path) {
  std::string out;
  normalize_path(path, out);
  return out;
}

}  // namespace parapet::filters
