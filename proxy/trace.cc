#include "proxy/trace.h"

#include <cstring>

namespace parapet {
namespace {

constexpr char kHex[] = "0123456789abcdef";
constexpr size_t kLen = 55;  // "vv-" + 32 + "-" + 16 + "-" + 2

// Lowercase hex only: the spec refuses uppercase so that ids compare as strings.
int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Decodes 2*n hex chars at s into out[0..n); false on any non-lowercase-hex char.
bool decode_hex(const char* s, size_t n, uint8_t* out) {
  for (size_t i = 0; i < n; ++i) {
    int hi = hex_value(s[2 * i]);
    int lo = hex_value(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

void encode_hex(const uint8_t* in, size_t n, char* out) {
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kHex[in[i] >> 4];
    out[2 * i + 1] = kHex[in[i] & 0xf];
  }
}

bool all_zero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

uint64_t splitmix64(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void fill_random(uint8_t* out, size_t n, uint64_t* rng) {
  for (size_t i = 0; i < n; i += 8) {
    uint64_t r = splitmix64(rng);
    std::memcpy(out + i, &r, n - i < 8 ? n - i : 8);
  }
}

}  // namespace

bool parse_traceparent(std::string_view v, TraceContext* out) {
  if (v.size() < kLen) return false;
  uint8_t version;
  if (!decode_hex(v.data(), 1, &version) || version == 0xff) return false;
  // Version 00 has exactly these fields; a later version may append "-..." fields.
  if (version == 0 ? v.size() != kLen : v.size() > kLen && v[kLen] != '-') return false;
  if (v[2] != '-' || v[35] != '-' || v[52] != '-') return false;
  if (!decode_hex(v.data() + 3, 16, out->trace_id) ||
      !decode_hex(v.data() + 36, 8, out->parent_id) || !decode_hex(v.data() + 53, 1, &out->flags)) {
    return false;
  }
  return !all_zero(out->trace_id, 16) && !all_zero(out->parent_id, 8);
}

TraceContext child_context(const TraceContext* parent, uint64_t* rng) {
  TraceContext t;
  if (parent != nullptr) {
    std::memcpy(t.trace_id, parent->trace_id, sizeof(t.trace_id));
    t.flags = parent->flags & kTraceFlagSampled;
  } else {
    do {
      fill_random(t.trace_id, sizeof(t.trace_id), rng);
    } while (all_zero(t.trace_id, sizeof(t.trace_id)));
    t.flags = 0;
  }
  // Zero is invalid and equal to the parent would make the hop invisible; both are 2^-64 odds,
  // but the loop makes the contract unconditional.
  do {
    fill_random(t.parent_id, sizeof(t.parent_id), rng);
  } while (
      all_zero(t.parent_id, sizeof(t.parent_id)) ||
      (parent != nullptr && std::memcmp(t.parent_id, parent->parent_id, sizeof(t.parent_id)) == 0));
  return t;
}

void format_traceparent(const TraceContext& t, char out[55]) {
  out[0] = '0';
  out[1] = '0';
  out[2] = '-';
  encode_hex(t.trace_id, 16, out + 3);
  out[35] = '-';
  encode_hex(t.parent_id, 8, out + 36);
  out[52] = '-';
  encode_hex(&t.flags, 1, out + 53);
}

void format_trace_id(const TraceContext& t, char out[32]) { encode_hex(t.trace_id, 16, out); }

}  // namespace parapet
