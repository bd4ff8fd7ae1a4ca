// W3C Trace Context (level 1) for the traceparent header: parse what a client sent, make the
// context of the hop this proxy adds, and format it for the origin and the access log.
//
// Pure functions over caller-owned memory: no allocation, no locks, no syscalls, so they run on
// the hot path of any worker. Randomness comes from a per-worker 64-bit state the caller owns
// and seeds once (e.g. from std::random_device when the worker starts); it is a splitmix64
// stream: fine for unique ids, not for anything secret.
#pragma once

#include <cstdint>
#include <string_view>

namespace parapet {

// The sampled flag, the only trace flag level 1 defines.
inline constexpr uint8_t kTraceFlagSampled = 0x01;

struct TraceContext {
  uint8_t trace_id[16];
  uint8_t parent_id[8];  // span id
  uint8_t flags;
};

// Parses a traceparent header value (already trimmed of surrounding whitespace) per W3C Trace
// Context level 1. Version 00: exactly "00-<32 hex>-<16 hex>-<2 hex>" (55 chars), lowercase hex
// only; an all-zero trace id or parent id is invalid. Version ff is invalid. A future version
// (not 00, not ff) is accepted when its first 55 chars parse as above and the next char, if
// any, is '-' (what follows is ignored). On success fills *out (flags as sent) and returns
// true; on failure *out is unspecified and the caller starts a new trace.
bool parse_traceparent(std::string_view v, TraceContext* out);

// The context of a new span: the parent's trace id and flags (only the flags level 1 defines,
// i.e. sampled; the spec says unknown flags are set to zero when propagating), or a fresh
// random trace id and flags 0 when `parent` is null; always a fresh random non-zero span id,
// different from the parent's. Advances *rng.
TraceContext child_context(const TraceContext* parent, uint64_t* rng);

// Writes the 55-char "00-<trace id>-<span id>-<flags>" form into out (no NUL). We always
// emit version 00, whatever version we parsed.
void format_traceparent(const TraceContext& t, char out[55]);

// 32 lowercase hex chars of the trace id into out (no NUL).
void format_trace_id(const TraceContext& t, char out[32]);

}  // namespace parapet
