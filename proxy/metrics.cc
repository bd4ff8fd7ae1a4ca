// /metrics: the workers' counters summed into Prometheus text (exposition format 0.0.4).
// Runs on the main thread; reads relaxed counters and walks the per-worker maps under each
// worker's stats mutex (never taken on the hot path).
#include <map>
#include <string>

#include "proxy/access_log.h"
#include "proxy/cache/store.h"
#include "proxy/phase_lua.h"
#include "proxy/phase_policy.h"
#include "proxy/policy.h"
#include "proxy/server.h"

namespace parapet {

namespace {

const char* kClass[6] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};

std::string label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

struct Sums {
  uint64_t responses[6] = {};
  uint64_t bytes_in = 0, bytes_out = 0;
  uint64_t total[Histogram::kBoundsUs.size() + 1] = {}, total_sum = 0;
  uint64_t upstream[Histogram::kBoundsUs.size() + 1] = {}, upstream_sum = 0;
};

struct ServerSums {
  uint64_t connect = 0, timeout = 0, reset = 0, retries = 0, resting = 0;
};

void header(std::string& m, const char* name, const char* type, const char* help) {
  m += "# HELP ";
  m += name;
  m += ' ';
  m += help;
  m += "\n# TYPE ";
  m += name;
  m += ' ';
  m += type;
  m += '\n';
}

void sample(std::string& m, const char* name, const std::string& labels, uint64_t v) {
  m += name;
  if (!labels.empty()) m += "{" + labels + "}";
  m += ' ';
  m += std::to_string(v);
  m += '\n';
}

void histogram(std::string& m, const char* name, const std::string& labels, const uint64_t* b,
               uint64_t sum_us) {
  uint64_t cum = 0;
  for (size_t i = 0; i <= Histogram::kBoundsUs.size(); ++i) {
    cum += b[i];
    std::string le = i < Histogram::kBoundsUs.size() ? std::to_string(Histogram::kBoundsUs[i] / 1e6)
                                                     : std::string("+Inf");
    if (le != "+Inf") {
      while (le.back() == '0') le.pop_back();
      if (le.back() == '.') le.pop_back();
    }
    m += std::string(name) + "_bucket{" + labels + ",le=\"" + le + "\"} " + std::to_string(cum) +
         "\n";
  }
  char sum[64];
  std::snprintf(sum, sizeof sum, "%.6f", sum_us / 1e6);
  m += std::string(name) + "_sum{" + labels + "} " + sum + "\n";
  m += std::string(name) + "_count{" + labels + "} " + std::to_string(cum) + "\n";
}

}  // namespace

std::string Server::metrics_text() const {
  uint64_t req = 0, resp[6] = {}, conns = 0, active = 0, accepted = 0, connects = 0, reused = 0,
           up_tls = 0, up_tls_resumed = 0, tls = 0, tls_resumed = 0, tls_own = 0, tls_failed = 0,
           tls_timeouts = 0, tls_abandoned = 0, failures = 0, retries = 0, idle_up = 0, refused = 0;
  std::map<std::string, Sums> tenants;
  std::map<std::string, uint64_t[6]> routes;
  std::map<std::string, ServerSums> servers;
  const uint64_t now_ms = uv_hrtime() / 1'000'000;  // the clock of uv_now()
  for (const auto& w : workers_) {
    WorkerStats& s = w->stats();
    req += s.requests.get();
    for (int i = 0; i < 6; ++i) resp[i] += s.responses[i].get();
    conns += s.client_conns.get();
    active += s.client_active.get();
    accepted += s.client_accepted.get();
    connects += s.upstream_connects.get();
    reused += s.upstream_reused.get();
    up_tls += s.upstream_tls_handshakes.get();
    tls += s.tls_handshakes.get();
    tls_resumed += s.tls_resumed.get();
    tls_own += s.tls_own.get();
    tls_failed += s.tls_failures.get();
    tls_timeouts += s.tls_timeouts.get();
    tls_abandoned += s.tls_abandoned.get();
    up_tls_resumed += s.upstream_tls_resumed.get();
    failures += s.upstream_failures.get();
    retries += s.upstream_retries.get();
    idle_up += s.upstream_idle.get();
    refused += s.refused.get();
    w->visit_stats(
        [&](const std::string& name, const TenantStats& t) {
          Sums& x = tenants[name];
          for (int i = 0; i < 6; ++i) x.responses[i] += t.responses[i].get();
          x.bytes_in += t.bytes_in.get();
          x.bytes_out += t.bytes_out.get();
          for (size_t i = 0; i <= Histogram::kBoundsUs.size(); ++i) {
            x.total[i] += t.total.buckets[i].get();
            x.upstream[i] += t.upstream.buckets[i].get();
          }
          x.total_sum += t.total.sum_us.get();
          x.upstream_sum += t.upstream.sum_us.get();
        },
        [&](const std::string& key, const RouteStats& r) {
          auto& x = routes[key];
          for (int i = 0; i < 6; ++i) x[i] += r.responses[i].get();
        },
        [&](const std::string& key, const ServerState& st) {
          ServerSums& x = servers[key];
          x.connect += st.connect_failures.get();
          x.timeout += st.timeouts.get();
          x.reset += st.resets.get();
          x.retries += st.retries.get();
          if (st.down_until.get() > now_ms) ++x.resting;
        });
  }

  std::string m;
  header(m, "parapet_requests_total", "counter", "Requests started (heads begun).");
  sample(m, "parapet_requests_total", "", req);
  header(m, "parapet_responses_total", "counter", "Exchanges ended, by status class.");
  for (int i = 0; i < 6; ++i)
    sample(m, "parapet_responses_total", std::string("class=\"") + kClass[i] + "\"", resp[i]);
  header(m, "parapet_tenant_responses_total", "counter",
         "Exchanges ended, by tenant and status class.");
  for (auto& [name, t] : tenants) {
    for (int i = 0; i < 6; ++i) {
      sample(m, "parapet_tenant_responses_total",
             "tenant=\"" + label(name) + "\",class=\"" + kClass[i] + "\"", t.responses[i]);
    }
  }
  header(m, "parapet_route_responses_total", "counter",
         "Exchanges ended, by tenant, route and status class.");
  for (auto& [key, r] : routes) {
    size_t sp = key.find(' ');
    for (int i = 0; i < 6; ++i) {
      sample(m, "parapet_route_responses_total",
             "tenant=\"" + label(key.substr(0, sp)) + "\",route=\"" + label(key.substr(sp + 1)) +
                 "\",class=\"" + kClass[i] + "\"",
             r[i]);
    }
  }
  header(m, "parapet_tenant_received_bytes_total", "counter",
         "Request bytes from clients (head and body).");
  for (auto& [name, t] : tenants)
    sample(m, "parapet_tenant_received_bytes_total", "tenant=\"" + label(name) + "\"", t.bytes_in);
  header(m, "parapet_tenant_sent_bytes_total", "counter", "Response bytes to clients.");
  for (auto& [name, t] : tenants)
    sample(m, "parapet_tenant_sent_bytes_total", "tenant=\"" + label(name) + "\"", t.bytes_out);
  header(m, "parapet_request_duration_seconds", "histogram",
         "From the first request byte to the end of the exchange.");
  for (auto& [name, t] : tenants)
    histogram(m, "parapet_request_duration_seconds", "tenant=\"" + label(name) + "\"", t.total,
              t.total_sum);
  header(m, "parapet_upstream_response_seconds", "histogram",
         "From choosing a server to the response head.");
  for (auto& [name, t] : tenants)
    histogram(m, "parapet_upstream_response_seconds", "tenant=\"" + label(name) + "\"", t.upstream,
              t.upstream_sum);
  header(m, "parapet_client_connections", "gauge",
         "Open client connections: active (an exchange in progress) or idle.");
  sample(m, "parapet_client_connections", "state=\"active\"", active);
  sample(m, "parapet_client_connections", "state=\"idle\"", conns >= active ? conns - active : 0);
  header(m, "parapet_client_connections_accepted_total", "counter", "Client connections accepted.");
  sample(m, "parapet_client_connections_accepted_total", "", accepted);
  header(m, "parapet_upstream_connections_idle", "gauge", "Pooled idle upstream connections.");
  sample(m, "parapet_upstream_connections_idle", "", idle_up);
  header(m, "parapet_upstream_connects_total", "counter", "Upstream connections opened.");
  sample(m, "parapet_upstream_connects_total", "", connects);
  header(m, "parapet_upstream_reused_total", "counter",
         "Exchanges that reused a pooled upstream connection.");
  sample(m, "parapet_upstream_reused_total", "", reused);
  header(m, "parapet_tls_handshakes_total", "counter",
         "Client TLS handshakes completed, by whether a ticket resumed the session.");
  sample(m, "parapet_tls_handshakes_total", "resumed=\"false\"", tls - tls_resumed);
  sample(m, "parapet_tls_handshakes_total", "resumed=\"true\"", tls_resumed);
  header(m, "parapet_tls_own_handshakes_total", "counter",
         "Client TLS 1.3 full handshakes done by parapet's own handshake code instead of OpenSSL "
         "(listeners without session tickets; included in parapet_tls_handshakes_total).");
  sample(m, "parapet_tls_own_handshakes_total", "", tls_own);
  header(m, "parapet_tls_handshake_failures_total", "counter",
         "Client TLS handshakes that did not complete: refused or malformed (error), unfinished "
         "after client_header (timeout), abandoned by the client (closed).");
  sample(m, "parapet_tls_handshake_failures_total", "reason=\"error\"", tls_failed);
  sample(m, "parapet_tls_handshake_failures_total", "reason=\"timeout\"", tls_timeouts);
  sample(m, "parapet_tls_handshake_failures_total", "reason=\"closed\"", tls_abandoned);
  header(m, "parapet_upstream_tls_handshakes_total", "counter",
         "TLS handshakes with https origins, by whether the session was resumed.");
  sample(m, "parapet_upstream_tls_handshakes_total", "resumed=\"false\"", up_tls - up_tls_resumed);
  sample(m, "parapet_upstream_tls_handshakes_total", "resumed=\"true\"", up_tls_resumed);
  header(m, "parapet_upstream_failures_total", "counter",
         "Upstream failures counted against a server.");
  sample(m, "parapet_upstream_failures_total", "", failures);
  header(m, "parapet_upstream_retries_total", "counter",
         "Requests retried on another connection or server.");
  sample(m, "parapet_upstream_retries_total", "", retries);
  std::string f, r, d;
  for (auto& [key, x] : servers) {
    size_t a = key.find('/'), b = key.find('/', a + 1);
    std::string l = "tenant=\"" + label(key.substr(0, a)) + "\",origin=\"" +
                    label(key.substr(a + 1, b - a - 1)) + "\",server=\"" +
                    label(key.substr(b + 1)) + "\"";
    sample(f, "parapet_upstream_server_failures_total", l + ",kind=\"connect\"", x.connect);
    sample(f, "parapet_upstream_server_failures_total", l + ",kind=\"timeout\"", x.timeout);
    sample(f, "parapet_upstream_server_failures_total", l + ",kind=\"reset\"", x.reset);
    sample(r, "parapet_upstream_server_retries_total", l, x.retries);
    sample(d, "parapet_upstream_server_resting_workers", l, x.resting);
  }
  header(m, "parapet_upstream_server_failures_total", "counter", "Failures per server, by kind.");
  m += f;
  header(m, "parapet_upstream_server_retries_total", "counter", "Retries away from a server.");
  m += r;
  header(m, "parapet_upstream_server_resting_workers", "gauge",
         "Workers in which the server rests (passive health).");
  m += d;
  header(m, "parapet_refused_requests_total", "counter",
         "Malformed requests refused by the codec.");
  sample(m, "parapet_refused_requests_total", "", refused);
  header(m, "parapet_config_generation", "gauge",
         "Configuration generation being served (1 = the first).");
  sample(m, "parapet_config_generation", "", generation_);
  header(m, "parapet_config_reloads_total", "counter", "Reloads by result.");
  sample(m, "parapet_config_reloads_total", "result=\"ok\"", reloads_ok_);
  sample(m, "parapet_config_reloads_total", "result=\"failed\"", reloads_failed_);
  header(m, "parapet_access_log_lines_total", "counter", "Access log lines written or dropped.");
  sample(m, "parapet_access_log_lines_total", "result=\"written\"",
         access_log_ ? access_log_->written() : 0);
  sample(m, "parapet_access_log_lines_total", "result=\"dropped\"",
         access_log_ ? access_log_->dropped() : 0);
  if (const Policies* pol = snap_->policies()) {
    std::string rules;
    for (size_t t = 0; t < pol->tenant_count(); ++t) {
      const std::string l = "tenant=\"" + label(snap_->cfg().tenants[t].name) + "\",rule=\"";
      for (const auto* phase : {&pol->tenant(t).request, &pol->tenant(t).response}) {
        for (const CompiledRule& rule : *phase) {
          sample(rules, "parapet_rule_matches_total",
                 l + label(rule.key) + "\",action=\"" + action_name(rule.action) + "\",mode=\"" +
                     (rule.log_only ? "log_only" : "enforce") + "\"",
                 rule.matches->load(std::memory_order_relaxed));
        }
      }
    }
    header(m, "parapet_rule_matches_total", "counter",
           "Requests each rule matched (since the configuration was loaded).");
    m += rules;
  }
  if (const LuaRuntime* lua = snap_->lua()) {
    std::string runs, trips, skips;
    for (size_t t = 0; t < lua->tenant_count(); ++t) {
      const TenantLuaRuntime& rt = lua->tenant(t);
      if (!rt.script) continue;
      const std::string tv = "tenant=\"" + label(snap_->cfg().tenants[t].name) + "\",version=\"" +
                             rt.script->version() + "\"";
      const std::string l = tv + ",result=";
      const uint64_t all = rt.runs->load(std::memory_order_relaxed);
      const uint64_t failed = rt.failures->load(std::memory_order_relaxed);
      sample(runs, "parapet_lua_runs_total", l + "\"ok\"", all >= failed ? all - failed : 0);
      sample(runs, "parapet_lua_runs_total", l + "\"failed\"", failed);
      sample(trips, "parapet_lua_breaker_trips_total", tv,
             rt.breaker_trips->load(std::memory_order_relaxed));
      sample(skips, "parapet_lua_breaker_skipped_total", tv,
             rt.breaker_skips->load(std::memory_order_relaxed));
    }
    header(m, "parapet_lua_runs_total", "counter",
           "Tenant script runs by result (failed: error, CPU budget or memory cap).");
    m += runs;
    header(m, "parapet_lua_breaker_trips_total", "counter",
           "Times a worker's breaker stopped running a tenant's script (consecutive runs "
           "stopped by the CPU budget or memory cap).");
    m += trips;
    header(m, "parapet_lua_breaker_skipped_total", "counter",
           "Script runs an open breaker skipped (the request got the failure outcome).");
    m += skips;
    header(m, "parapet_lua_states", "gauge", "Tenant Lua states alive in all workers.");
    sample(m, "parapet_lua_states", "", LuaRuntime::live_states());
  }
  if (cache_) {
    std::string req_s, events, objects, bytes;
    for (const auto& [tenant, c] : cache_->all_stats()) {
      const std::string l = "tenant=\"" + label(tenant) + "\"";
      sample(req_s, "parapet_cache_lookups_total", l + ",result=\"hit\"", c.hits);
      sample(req_s, "parapet_cache_lookups_total", l + ",result=\"miss\"", c.misses);
      sample(req_s, "parapet_cache_lookups_total", l + ",result=\"coalesced\"", c.coalesced);
      sample(req_s, "parapet_cache_lookups_total", l + ",result=\"pass\"", c.passes);
      sample(req_s, "parapet_cache_lookups_total", l + ",result=\"stale\"", c.stale);
      sample(req_s, "parapet_cache_lookups_total", l + ",result=\"revalidated\"", c.revalidated);
      sample(events, "parapet_cache_events_total", l + ",event=\"store\"", c.stores);
      sample(events, "parapet_cache_events_total", l + ",event=\"eviction\"", c.evictions);
      sample(events, "parapet_cache_events_total", l + ",event=\"purge\"", c.purges);
      sample(events, "parapet_cache_events_total", l + ",event=\"abort\"", c.aborts);
      sample(objects, "parapet_cache_objects", l, c.objects);
      sample(bytes, "parapet_cache_bytes", l, c.bytes);
    }
    header(m, "parapet_cache_lookups_total", "counter",
           "Cache lookups by how they were answered: hit (fresh from the cache), stale (stale "
           "from the cache, unvalidated), revalidated (stale, then a 304 from the origin), miss "
           "(by the origin), coalesced (waited for another request's fill), pass (unstored).");
    m += req_s;
    header(m, "parapet_cache_events_total", "counter", "Cache stores, evictions, purges, aborts.");
    m += events;
    header(m, "parapet_cache_objects", "gauge", "Objects stored, per tenant.");
    m += objects;
    header(m, "parapet_cache_bytes", "gauge", "Bytes stored, per tenant.");
    m += bytes;
    header(m, "parapet_cache_used_bytes", "gauge", "Bytes the cache holds (all tenants).");
    sample(m, "parapet_cache_used_bytes", "", cache_->bytes_used());
    header(m, "parapet_cache_capacity_bytes", "gauge", "The cache's configured size.");
    sample(m, "parapet_cache_capacity_bytes", "", cache_->capacity());
  }
  return m;
}

}  // namespace parapet
