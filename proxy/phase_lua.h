// Phase "lua" (DESIGN.md: after the request-phase policies, before the cache): the tenant's
// script (lua/sandbox.h) runs its access handler, which may rewrite the request or answer it;
// header_filter runs on the origin's response head; log after the response.
//
// Scripts are compiled per snapshot (syntax errors refuse the config with file:line); each
// worker makes its own LuaTenant per script the first time a request needs it (one lua_State
// per tenant per worker, whatever the number of routes). A failing run (error, CPU budget,
// memory cap) fails only its own request, as the tenant configured: `error_status` (500), or
// `fail_open`; it is logged with tenant, script version and traceback, and counted.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "lua/sandbox.h"
#include "proxy/conn.h"

namespace parapet {

struct TenantLuaRuntime {
  std::shared_ptr<const lua::LuaScript> script;  // null: no script
  lua::LuaLimits limits;
  bool fail_open = false;
  uint16_t error_status = 500;
  std::unique_ptr<std::atomic<uint64_t>> runs = std::make_unique<std::atomic<uint64_t>>(0);
  std::unique_ptr<std::atomic<uint64_t>> failures = std::make_unique<std::atomic<uint64_t>>(0);
};

class LuaRuntime {
 public:
  // Compiles every tenant's script; nullptr and errors ("file:line: message") when one is
  // refused. Also defines the tenants' shared dicts in the process-wide store.
  static std::shared_ptr<const LuaRuntime> build(const config::Config& cfg,
                                                 std::vector<std::string>* errors);
  const TenantLuaRuntime& tenant(uint32_t t) const { return tenants_[t]; }
  size_t tenant_count() const { return tenants_.size(); }

 private:
  std::vector<TenantLuaRuntime> tenants_;
};

struct ExchangeLua;
Flow phase_lua(Exchange* ex);
// The origin's final response head, before it is relayed (after the response policies).
void phase_lua_header_filter(Exchange* ex);
// The exchange is over (before its access log line).
void phase_lua_log(Exchange* ex);

}  // namespace parapet
