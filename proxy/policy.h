// Compiled policies: the rules of every tenant (its shared policies' rules, with its overrides,
// then its own) compiled once per config snapshot by filters/ into immutable objects the
// workers evaluate (proxy/phase_policy.cc). A shared policy's expressions are compiled once,
// whatever the number of tenants using it.
//
// Also the rate-limit counters (process-wide, they survive reloads): a small interface, so a
// fleet can later keep them in Redis, over a bounded in-memory store.
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
  bool log_only = false;
  std::shared_ptr<const filters::ValueExpr> target, path, query;         // expression values
  std::vector<std::shared_ptr<const filters::ValueExpr>> header_values;  // per cfg->headers
  std::vector<std::shared_ptr<const filters::ValueExpr>> characteristics;
  std::unique_ptr<std::atomic<uint64_t>> matches = std::make_unique<std::atomic<uint64_t>>(0);
};

struct TenantRules {
  std::vector<CompiledRule> request, response;
  bool empty() const { return request.empty() && response.empty(); }
};

class Policies {
 public:
  // Compiles the lists, the shared policies and every tenant's rules of `cfg`; nullptr and
  // errors ("file:line:col: rule 'id': reason") when anything is refused.
  static std::shared_ptr<const Policies> build(const config::Config& cfg,
                                               std::vector<std::string>* errors);
  const TenantRules& tenant(uint32_t t) const { return tenants_[t]; }
  size_t tenant_count() const { return tenants_.size(); }

 private:
  std::vector<TenantRules> tenants_;
};

// Rate-limit counters. hit() counts one request for `key` and says whether it is over the
// limit, and for how long it stays refused.
class RateCounter {
 public:
  virtual ~RateCounter() = default;
  struct Result {
    bool limited = false;
    uint32_t retry_after_s = 0;
  };
  virtual Result hit(std::string_view key, uint32_t period_s, uint32_t limit, uint32_t mitigation_s,
                     int64_t now_ms) = 0;
};

// In memory, shared by all workers: 16 shards, each a mutex and a map of at most
// `max_keys_per_shard` keys. A sliding window estimated from two fixed windows (the previous
// one weighted by how much of it still overlaps). When a shard is full, its oldest-touched
// keys go first (the least active clients lose their history, never the blocked ones: a
// blocked key is kept until its mitigation ends).
class LocalRateCounter final : public RateCounter {
 public:
  explicit LocalRateCounter(size_t max_keys_per_shard = 65536) : max_(max_keys_per_shard) {}
  Result hit(std::string_view key, uint32_t period_s, uint32_t limit, uint32_t mitigation_s,
             int64_t now_ms) override;
  size_t size() const;

  static LocalRateCounter& process();  // the one the proxy uses

 private:
  struct Window {
    int64_t start_ms = 0;  // of the current fixed window
    uint32_t current = 0, previous = 0;
    int64_t blocked_until_ms = 0;
    int64_t touched_ms = 0;
  };
  struct Shard {
    mutable std::mutex mu;
    std::unordered_map<std::string, Window> map;
  };
  void make_room(Shard& s, int64_t now_ms);
  Shard shards_[16];
  size_t max_;
};

}  // namespace parapet
