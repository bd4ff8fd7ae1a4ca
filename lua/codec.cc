#include "lua/codec.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

namespace parapet::lua {

namespace {
const char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const char kHex[] = "0123456789ABCDEF";
const char kHexLower[] = "0123456789abcdef";

int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string digest(const EVP_MD* md, std::string_view in) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(in.data(), in.size(), out, &len, md, nullptr);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string to_hex(std::string_view bin) {
  std::string s;
  s.reserve(bin.size() * 2);
  for (unsigned char c : bin) {
    s.push_back(kHexLower[c >> 4]);
    s.push_back(kHexLower[c & 15]);
  }
  return s;
}
}  // namespace

std::string base64_encode(std::string_view in, bool pad) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out.push_back(kB64[v >> 18]);
    out.push_back(kB64[(v >> 12) & 63]);
    out.push_back(kB64[(v >> 6) & 63]);
    out.push_back(kB64[v & 63]);
  }
  size_t rest = in.size() - i;
  if (rest) {
    uint32_t v = uint8_t(in[i]) << 16;
    if (rest == 2) v |= uint8_t(in[i + 1]) << 8;
    out.push_back(kB64[v >> 18]);
    out.push_back(kB64[(v >> 12) & 63]);
    if (rest == 2) out.push_back(kB64[(v >> 6) & 63]);
    if (pad) out.append(rest == 1 ? "==" : "=");
  }
  return out;
}

bool base64_decode(std::string_view in, std::string* out) {
  out->clear();
  // Padding is optional (as in nginx); anything else outside the alphabet is an error.
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  if (in.size() % 4 == 1) return false;
  out->reserve(in.size() / 4 * 3 + 2);
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    int v = b64_value(c);
    if (v < 0) return false;
    acc = (acc << 6) | uint32_t(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(char((acc >> bits) & 0xFF));
    }
  }
  return true;
}

std::string escape_uri(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (unsigned char c : in) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '.' || c == '_' || c == '~') {
      out.push_back(char(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string unescape_uri(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%' && i + 2 < in.size() && hex_value(in[i + 1]) >= 0 &&
               hex_value(in[i + 2]) >= 0) {
      out.push_back(char(hex_value(in[i + 1]) * 16 + hex_value(in[i + 2])));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::vector<QueryArg> parse_args(std::string_view q, size_t max, bool* truncated) {
  std::vector<QueryArg> args;
  if (truncated) *truncated = false;
  size_t pos = 0;
  while (pos <= q.size()) {
    size_t amp = q.find('&', pos);
    if (amp == std::string_view::npos) amp = q.size();
    std::string_view part = q.substr(pos, amp - pos);
    pos = amp + 1;
    if (part.empty()) {
      if (amp == q.size()) break;
      continue;
    }
    if (max && args.size() >= max) {
      if (truncated) *truncated = true;
      break;
    }
    QueryArg a;
    size_t eq = part.find('=');
    if (eq == std::string_view::npos) {
      a.key = unescape_uri(part);
    } else {
      a.key = unescape_uri(part.substr(0, eq));
      a.value = unescape_uri(part.substr(eq + 1));
      a.has_value = true;
    }
    args.push_back(std::move(a));
    if (amp == q.size()) break;
  }
  return args;
}

std::string md5_bin(std::string_view in) { return digest(EVP_md5(), in); }
std::string md5_hex(std::string_view in) { return to_hex(md5_bin(in)); }
std::string sha1_bin(std::string_view in) { return digest(EVP_sha1(), in); }
std::string sha256_hex(std::string_view in) { return to_hex(digest(EVP_sha256(), in)); }

std::string hmac_sha1(std::string_view key, std::string_view in) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha1(), key.data(), int(key.size()), reinterpret_cast<const unsigned char*>(in.data()),
       in.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

}  // namespace parapet::lua
