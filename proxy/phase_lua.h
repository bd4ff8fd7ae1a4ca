// Phase "lua" (DESIGN.md: after the request-phase policies, before the cache): the tenant's
// script (lua/sandbox.h) runs its access handler, which may rewrite the request or answer it;
// header_filter runs on the origin's response head; log after the response.
//
// Scripts are compiled per snapshot (syntax errors refuse the config with file:line); each
// worker makes its own LuaTenant per script the first time a request needs it (one lua_State
// per tenant per worker, whatever the number of routes). A failing run (error, CPU budget,
// memory cap) fails only its own request, as the tenant configured: `error_status` (500), or
// `fail_open`; it is logged with tenant, script version and traceback, and counted.
//
// Each worker keeps a circuit breaker per state (lua/breaker.h): after `breaker_failures`
// consecutive runs stopped by the CPU budget or memory cap, the script is not run for
// `breaker_cooldown` (its requests get the failure outcome at once), then one run probes.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "lua/sandbox.h"
#include "proxy/conn.h"

namespace parapet {

struct TenantLuaRuntime {
  using Counter = std::unique_ptr<std::atomic<uint64_t>>;
  std::shared_ptr<const lua::LuaScript> script;  // null: no script
  lua::LuaLimits limits;
  bool fail_open = false;
  uint16_t error_status = 500;
  uint32_t breaker_failures = 5;  // 0: no breaker
  std::chrono::milliseconds breaker_cooldown{10'000};
  // Since this snapshot: runs (any phase) and failed ones; breaker trips; requests whose
  // script the open breaker skipped.
  Counter runs = std::make_unique<std::atomic<uint64_t>>(0);
  Counter failures = std::make_unique<std::atomic<uint64_t>>(0);
  Counter breaker_trips = std::make_unique<std::atomic<uint64_t>>(0);
  Counter breaker_skips = std::make_unique<std::atomic<uint64_t>>(0);
};

class LuaRuntime {
 public:
  // Compiles every tenant's script; nullptr and errors ("file:line: message") when one is
  // refused. Also defines the tenants' shared dicts in the process-wide store.
  static std::shared_ptr<const LuaRuntime> build(const config::Config& cfg,
                                                 std::vector<std::string>* errors);
  const TenantLuaRuntime& tenant(uint32_t t) const { return tenants_[t]; }
  size_t tenant_count() const { return tenants_.size(); }
  bool uses(const lua::LuaScript* s) const;
  // Lua states alive in all workers now (a worker drops the states of scripts its snapshots
  // no longer use, once no request holds them).
  static uint64_t live_states();

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
