// A tenant's cache settings compiled once per snapshot for the hot path: the key options and
// the RFC 9111 policy (proxy/cache/freshness.h), one per cache rule with its overrides.
#pragma once

#include <vector>

#include "config/config.h"
#include "proxy/cache/freshness.h"
#include "proxy/cache/key.h"

namespace parapet {

struct CacheRuntime {
  bool enabled = false;
  cache::KeyOptions key;
  cache::Policy base;
  struct Rule {
    const config::CacheRule* cfg;
    cache::Policy policy;  // base with the rule's overrides
  };
  std::vector<Rule> rules;

  static CacheRuntime build(const config::TenantCache& c) {
    CacheRuntime r;
    r.enabled = c.enabled;
    r.key.ignore_query = c.ignore_query;
    r.key.headers = c.key_headers;
    r.key.cookies = c.key_cookies;
    r.base.store_set_cookie = c.store_set_cookie;
    r.base.heuristic_fraction = c.heuristic_fraction;
    r.base.ttl_by_status = c.ttl_by_status;
    r.base.default_stale_if_error = c.stale_if_error_s;
    for (const config::CacheRule& rule : c.rules) {
      Rule x{&rule, r.base};
      if (rule.cache_everything) {
        x.policy.cache_everything = true;
        x.policy.cache_everything_ttl = rule.ttl_s >= 0 ? rule.ttl_s : 0;
      } else if (rule.ttl_s >= 0) {
        // A TTL without cache_everything: the lifetime of every cacheable status (the
        // first entry for a status wins, so the rule's go first).
        std::vector<std::pair<uint16_t, int64_t>> ttl;
        for (uint16_t st : {200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501}) {
          ttl.emplace_back(st, rule.ttl_s);
        }
        ttl.insert(ttl.end(), c.ttl_by_status.begin(), c.ttl_by_status.end());
        x.policy.ttl_by_status = std::move(ttl);
      }
      r.rules.push_back(std::move(x));
    }
    return r;
  }
};

}  // namespace parapet
