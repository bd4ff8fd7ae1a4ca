// Compiled policies: the rules of every tenant (its shared policies' rules, with its overrides,
// then its own) compiled once per config snapshot by filters/ into immutable objects the
// workers evaluate (proxy/phase_policy.cc). A shared policy's expressions are compiled once,
// whatever the number of tenants using it.
//
// Also the rate-limit counters (process-wide, they survive reloads): a small interface, so a
// fleet can later keep them in Redis, over a bounded in-memory store that the server creates
// once and hands to every Policies it builds.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/config.h"
#include "filters/ip_list.h"
#include "filters/rules.h"

namespace parapet {

struct CompiledRule {
  const config::RuleConfig* cfg = nullptr;
  std::string policy;  // the shared policy it comes from, "" for the tenant's own
  std::string key;     // "policy/id" or "id": names it in logs and metrics
  std::shared_ptr<const filters::Filter> filter;
  config::RuleConfig::Action action = config::RuleConfig::Action::Block;  // after overrides
  // What a block answers (after overrides): the rule's own, an override's, or the defaults
  // (403, standard body) when an override turns another action into block.
  const config::BlockAnswer* block = nullptr;
  bool log_only = false;
  std::shared_ptr<const filters::ValueExpr> target, path, query;         // expression values
  std::vector<std::shared_ptr<const filters::ValueExpr>> header_values;  // per cfg->headers
  std::vector<std::shared_ptr<const filters::ValueExpr>> characteristics;
  std::shared_ptr<const filters::Filter> counting;     // rate_limit: the counting expression
  const filters::ContainsBinding* contains = nullptr;  // in its TenantRules' ContainsIndex
  std::unique_ptr<std::atomic<uint64_t>> matches = std::make_unique<std::atomic<uint64_t>>(0);
};

struct TenantRules {
  std::vector<CompiledRule> request, response;
  // Many `contains` over one value answered in one scan, per phase (CompiledRule::contains).
  std::shared_ptr<const filters::ContainsIndex> request_contains, response_contains;
  // Which rules can match a request, from their guards, per phase (filters/prefilter.h); set
  // by Policies::build for every tenant, never null.
  std::shared_ptr<const filters::Prefilter> request_prefilter, response_prefilter;
  bool empty() const { return request.empty() && response.empty(); }
};

class RateCounter;

class Policies {
 public:
  // Compiles the lists, the shared policies and every tenant's rules of `cfg`; nullptr and
  // errors ("file:line:col: rule 'id': reason") when anything is refused. `counters` is where
  // rate_limit rules count (it outlives reloads: pass the same one to every build); null only
  // when the result is not served (--check), and then rate limits never refuse.
  static std::shared_ptr<const Policies> build(const config::Config& cfg,
                                               std::vector<std::string>* errors,
                                               std::shared_ptr<RateCounter> counters = nullptr);
  const TenantRules& tenant(uint32_t t) const { return tenants_[t]; }
  size_t tenant_count() const { return tenants_.size(); }
  RateCounter* rate_counter() const { return counters_.get(); }

 private:
  std::vector<TenantRules> tenants_;
  std::shared_ptr<RateCounter> counters_;
};

// Rate-limit counters: where the requests of rate_limit rules are counted, per tenant and key
// (the rule and the characteristics' values). An interface, so that a fleet can later keep them
// in a shared store (Redis) instead of in this process; Policies hands it to the workers.
//
// hit() runs on worker threads, concurrently, once per request that reaches a rate_limit rule:
// it must be quick and must not block on I/O.
class RateCounter {
 public:
  virtual ~RateCounter() = default;
  struct Limit {
    uint32_t period_s = 60;
    uint32_t requests = 1;      // allowed per period
    uint32_t mitigation_s = 0;  // refused this long once over; 0: until the window allows again
  };
  struct Result {
    bool limited = false;
    uint32_t retry_after_s = 0;  // when limited: seconds until the key is let through again
  };
  // Counts one request for `key` of `tenant` when `count` is set, then says whether the key is
  // refused now. A request that is not counted (its rule has a counting expression that did not
  // match) only learns whether the key is refused.
  virtual Result hit(std::string_view tenant, std::string_view key, const Limit& limit, bool count,
                     int64_t now_ms) = 0;
};

// In memory, shared by all workers: 16 shards, each a mutex and, per tenant, a map of that
// tenant's keys; a tenant holds at most `max_keys_per_tenant` keys (split evenly over the
// shards), so one tenant's flood of keys never evicts another tenant's counters. Each key keeps
// a sliding window estimated from two fixed windows (the previous one weighted by how much of it
// still overlaps).
//
// Eviction, when a new key finds its tenant's share of the shard full:
//  1. keys that hold no information any more (both windows over, not blocked) go first;
//  2. then the least recently seen eighth of the tenant's unblocked keys;
//  3. only when every key is blocked, the eighth whose mitigation ends soonest (a client whose
//     counter is forgotten starts a fresh window: it gets `requests` more before it is refused
//     again, which bounds what an eviction gives away).
// The map never holds more than its share.
class LocalRateCounter final : public RateCounter {
 public:
  explicit LocalRateCounter(size_t max_keys_per_tenant = 65536);
  Result hit(std::string_view tenant, std::string_view key, const Limit& limit, bool count,
             int64_t now_ms) override;
  size_t size() const;                         // keys, all tenants
  size_t size(std::string_view tenant) const;  // keys of one tenant
  size_t max_keys_per_tenant() const { return per_shard_ * 16; }

 private:
  struct Window {
    int64_t start_ms = 0;  // of the current fixed window
    uint32_t current = 0, previous = 0;
    int64_t blocked_until_ms = 0;
    int64_t touched_ms = 0;
    int64_t stale_ms = 0;  // from then on the entry is the same as no entry
  };
  struct Keys {  // one tenant's keys in one shard
    std::unordered_map<std::string, Window> map;
    int64_t stale_ms = 0;  // the latest stale_ms of its keys: all stale from then on
  };
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, Keys> tenants;
    int64_t swept_ms = 0;
  };
  void make_room(Keys& k, int64_t now_ms);
  void sweep(Shard& s, int64_t now_ms);
  Shard shards_[16];
  size_t per_shard_;
};

}  // namespace parapet
