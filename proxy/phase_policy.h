// Phase "policy" (DESIGN.md: request rules after route, before Lua and cache; response rules
// before the response head is sent): the tenant's compiled rules (proxy/policy.h) evaluated
// in order over the request's fields, fetched lazily once per request.
//
// Request phase actions: block (403 or the rule's status, content type and body), allow (the
// rest of the phase is skipped), skip (named rules, the rest of the phase, the response phase,
// the cache), log, redirect (static or computed target, 301/302/303/307/308), rewrite (request
// path and query, request headers set/add/remove; literal or computed values),
// set_cache_settings (bypass, edge TTL), rate_limit (429 with Retry-After). The first
// terminating action ends the phase. Response phase: log, rewrite (response headers), skip;
// over every answer sent after the request rules ran (origin, cache, or made here).
// A rule in shadow mode (log_only) records what it would have done and does nothing.
// Every match is kept in the exchange's trail (access log "rules", metrics per rule).
//
// Later rules see the request as received: a rewrite changes what goes upstream, not the
// fields of the rules after it.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "proxy/cache/headers.h"
#include "proxy/conn.h"
#include "proxy/policy.h"

namespace parapet {

struct ExchangePolicy {
  struct Hit {
    const CompiledRule* rule;
    bool log_only;
  };
  void clear();

  std::vector<Hit> trail;
  std::vector<const CompiledRule*> skipped;
  bool skip_response = false;
  bool response_ran = false;  // the response rules ran (they run once per exchange)
  bool skip_cache = false;
  bool skip_lua = false;
  bool cache_bypass = false;
  int64_t cache_ttl_s = -1;
  std::string target;  // a rewritten request target (ex->target points here)
  std::vector<std::pair<std::string, std::string>> req_add;
  std::vector<std::string> req_remove;  // lowercased
  std::vector<std::pair<std::string, std::string>> resp_add;
  std::vector<std::string> resp_remove;  // lowercased
  uint16_t resp_status = 0;    // the final status a Lua header_filter set (0: the origin's)
  std::string scratch, value;  // buffers kept for their capacity
};

Flow phase_policy(Exchange* ex);
// The response rules, over the final response head about to be sent, whoever made it: the
// origin's (before it is relayed; ex->resp), a cached entry's, or an answer made here (a block,
// a redirect, a challenge, a script's answer, an error) with its content type and its extra
// header lines ("Name: value\r\n"...). They run at most once per exchange (a revalidated
// entry served after the origin's 304 keeps what the rules decided on that 304); whoever writes
// the head then applies policy_drops_response_header / policy_add_response_headers.
void phase_policy_response(Exchange* ex);
void phase_policy_response(Exchange* ex, uint16_t status, cache::Fields headers);
void phase_policy_response(Exchange* ex, uint16_t status, std::string_view content_type,
                           std::string_view extra);
// Forward head: whether to drop a request header; the header lines to add.
bool policy_drops_request_header(const Exchange* ex, std::string_view name);
void policy_add_request_headers(const Exchange* ex, std::string& head);
// Response head to the client: the same for response headers.
bool policy_drops_response_header(const Exchange* ex, std::string_view name);
void policy_add_response_headers(const Exchange* ex, std::string& head);
// Whether the response rules decided any header change for this exchange.
bool policy_rewrites_response_headers(const Exchange* ex);
// Appends to `out` the lines of `lines` ("Name: value\r\n"...) that the response rules keep;
// Content-Length, Transfer-Encoding and Connection (the framing) are always kept.
void policy_filter_header_lines(const Exchange* ex, std::string_view lines, std::string& out);
// The trail as JSON for the access log: ,"rules":[{"id":..,"action":..,"log_only":..}].
void policy_log_fields(const Exchange* ex, std::string& line);
const char* action_name(config::RuleConfig::Action a);

}  // namespace parapet
