#include "proxy/snapshot.h"

#include <algorithm>

#include "proxy/phase_lua.h"
#include "proxy/policy.h"
#include "proxy/tls.h"

namespace parapet {

uint64_t hash64(std::string_view s) {
  // FNV-1a with a final avalanche (splitmix64): stable across workers and runs.
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

Snapshot::Snapshot(config::Config cfg, std::shared_ptr<const TlsContexts> tls,
                   std::shared_ptr<const Policies> policies, std::shared_ptr<const LuaRuntime> lua)
    : cfg_(std::move(cfg)),
      tls_(std::move(tls)),
      policies_(std::move(policies)),
      lua_(std::move(lua)) {
  constexpr int kPointsPerServer = 160;
  for (uint32_t t = 0; t < cfg_.tenants.size(); ++t) {
    const config::Tenant& tenant = cfg_.tenants[t];
    for (const std::string& h : tenant.hosts) {
      if (h.rfind("*.", 0) == 0) {
        wildcard_.emplace(h.substr(1), t);
      } else {
        exact_.emplace(h, t);
      }
    }
    cache_.push_back(CacheRuntime::build(tenant.cache));
    group_base_.push_back(static_cast<uint32_t>(groups_.size()));
    for (size_t oi = 0; oi < tenant.origins.size(); ++oi) {
      const config::Origin& o = tenant.origins[oi];
      SSL_CTX* octx = tls_ ? tls_->origin_ctx(t, oi) : nullptr;
      OriginGroup g;
      g.cfg = &o;
      g.tenant = t;
      g.index = static_cast<uint32_t>(groups_.size());
      for (uint32_t i = 0; i < o.servers.size(); ++i) {
        g.server_ids.push_back(static_cast<uint32_t>(servers_.size()));
        servers_.push_back(&o.servers[i]);
        server_origin_.push_back(&o);
        server_keys_.push_back(tenant.name + "/" + o.name + "/" + o.servers[i].text);
        server_tls_.push_back(o.servers[i].tls ? octx : nullptr);
        for (int v = 0; v < kPointsPerServer; ++v) {
          g.ring.emplace_back(hash64(o.servers[i].text + "#" + std::to_string(v)), i);
        }
      }
      std::sort(g.ring.begin(), g.ring.end());
      groups_.push_back(std::move(g));
    }
  }
}

int Snapshot::find_tenant(std::string_view host) const {
  if (auto it = exact_.find(host); it != exact_.end()) return static_cast<int>(it->second);
  // Longest wildcard first: for a.b.example.com try .b.example.com, then .example.com, ...
  for (size_t dot = host.find('.'); dot != std::string_view::npos; dot = host.find('.', dot + 1)) {
    if (auto it = wildcard_.find(host.substr(dot)); it != wildcard_.end()) {
      return static_cast<int>(it->second);
    }
  }
  return -1;
}

const config::Route* Snapshot::find_route(uint32_t t, std::string_view path) const {
  for (const config::Route& r : cfg_.tenants[t].routes) {  // sorted longest first
    if (path.substr(0, r.path.size()) == r.path) return &r;
  }
  return nullptr;
}

}  // namespace parapet
