// The runtime form of a Config: what the hot path reads. Immutable once built and shared
// read-only by all workers through a shared_ptr; an exchange keeps the snapshot it started with.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "config/config.h"
#include "proxy/cache_runtime.h"

typedef struct ssl_ctx_st SSL_CTX;

namespace parapet {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringMap = std::unordered_map<std::string, uint32_t, StringHash, std::equal_to<>>;

// One origin group of one tenant, with its servers numbered globally (per-worker pools and
// health are indexed by the global server id).
struct OriginGroup {
  const config::Origin* cfg = nullptr;
  uint32_t tenant = 0;
  uint32_t index = 0;  // among all groups of the snapshot
  std::vector<uint32_t> server_ids;
  // Consistent-hash ring: (point, index into server_ids), sorted by point.
  std::vector<std::pair<uint64_t, uint32_t>> ring;
};

class TlsContexts;
class Policies;
class LuaRuntime;

class Snapshot {
 public:
  explicit Snapshot(config::Config cfg, std::shared_ptr<const TlsContexts> tls = nullptr,
                    std::shared_ptr<const Policies> policies = nullptr,
                    std::shared_ptr<const LuaRuntime> lua = nullptr);
  // The tenants' compiled Lua scripts (null when none has one).
  const LuaRuntime* lua() const { return lua_.get(); }
  // The tenants' compiled rules (null when none has any).
  const Policies* policies() const { return policies_.get(); }
  // Certificates by SNI (null when no tenant has one).
  const std::shared_ptr<const TlsContexts>& tls() const { return tls_; }

  const config::Config& cfg() const { return cfg_; }
  // Tenant index for a lowercased host without port, or -1.
  int find_tenant(std::string_view host) const;
  // Route of tenant `t` for a path (longest prefix), or nullptr.
  const config::Route* find_route(uint32_t t, std::string_view path) const;
  const OriginGroup& group(uint32_t tenant, size_t origin_index) const {
    return groups_[group_base_[tenant] + origin_index];
  }
  size_t group_count() const { return groups_.size(); }
  size_t server_count() const { return servers_.size(); }
  const config::Address& server(uint32_t id) const { return *servers_[id]; }
  const config::Origin& server_origin(uint32_t id) const { return *server_origin_[id]; }
  // "tenant/origin/host:port": a worker keeps a server's pool and health across reloads
  // while its key stays the same.
  const std::string& server_key(uint32_t id) const { return server_keys_[id]; }
  // The cache settings of tenant `t`.
  const CacheRuntime& cache(uint32_t t) const { return cache_[t]; }
  // Client TLS context of an https:// server (nullptr for plain HTTP), owned by tls().
  SSL_CTX* server_tls(uint32_t id) const { return server_tls_[id]; }

 private:
  config::Config cfg_;
  std::shared_ptr<const TlsContexts> tls_;
  std::shared_ptr<const Policies> policies_;
  std::shared_ptr<const LuaRuntime> lua_;
  StringMap exact_;
  StringMap wildcard_;  // key: ".example.com" for "*.example.com"
  std::vector<OriginGroup> groups_;
  std::vector<uint32_t> group_base_;
  std::vector<const config::Address*> servers_;
  std::vector<const config::Origin*> server_origin_;
  std::vector<std::string> server_keys_;
  std::vector<SSL_CTX*> server_tls_;
  std::vector<CacheRuntime> cache_;
};

uint64_t hash64(std::string_view s);

}  // namespace parapet
