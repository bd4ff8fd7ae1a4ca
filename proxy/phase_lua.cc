#include "proxy/phase_lua.h"

#include <array>
#include <atomic>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "lua/breaker.h"
#include "lua/shared_dict.h"
#include "proxy/log.h"
#include "proxy/phase_policy.h"
#include "proxy/worker.h"

namespace parapet {

namespace {

lua::SharedDictStore& dicts() {
  static lua::SharedDictStore store;  // process-wide: every worker, every reload
  return store;
}

// What the script may change goes through the same edit lists as the policies' rewrites.
ExchangePolicy& edits(Exchange* ex) {
  if (!ex->policy) ex->policy.reset(new ExchangePolicy());
  if (!ex->policy_active) {
    ex->policy->clear();
    ex->policy_active = true;
  }
  return *ex->policy;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool clean(std::string_view v) { return v.find_first_of("\r\n") == std::string_view::npos; }

std::atomic<uint64_t> g_live_states{0};

// One tenant's script on one worker: its state and its breaker.
struct WorkerTenant {
  WorkerTenant(std::unique_ptr<lua::LuaTenant> t, const TenantLuaRuntime& rt)
      : tenant(std::move(t)), breaker(rt.breaker_failures, rt.breaker_cooldown) {
    g_live_states.fetch_add(1, std::memory_order_relaxed);
  }
  ~WorkerTenant() { g_live_states.fetch_sub(1, std::memory_order_relaxed); }
  WorkerTenant(const WorkerTenant&) = delete;
  WorkerTenant& operator=(const WorkerTenant&) = delete;

  std::unique_ptr<lua::LuaTenant> tenant;  // holds its LuaScript: the map's key stays valid
  lua::LuaBreaker breaker;
};

// One worker's Lua states, by script. A reload with a new script makes new states; states of
// scripts that neither the worker's snapshot nor the requesting exchange's use go once no
// exchange holds them (checked whenever a new state is made).
thread_local std::unordered_map<const lua::LuaScript*, std::shared_ptr<WorkerTenant>> t_states;

std::shared_ptr<WorkerTenant> tenant_for(Exchange* ex, const TenantLuaRuntime& rt,
                                         std::string* err) {
  auto it = t_states.find(rt.script.get());
  if (it != t_states.end()) return it->second;
  const LuaRuntime* mine = ex->snap->lua();
  const LuaRuntime* current = ex->client->wk()->snapshot()->lua();
  std::erase_if(t_states, [&](const auto& kv) {
    return kv.second.use_count() == 1 && !(mine && mine->uses(kv.first)) &&
           !(current && current->uses(kv.first));
  });
  lua::TenantOptions opt;
  opt.tenant = ex->snap->cfg().tenants[ex->tenant].name;
  opt.limits = rt.limits;
  opt.dicts = &dicts();
  opt.log = [](int level, std::string_view tenant, std::string_view msg) {
    log_error("tenant=%.*s lua[%d]: %.*s", static_cast<int>(tenant.size()), tenant.data(), level,
              static_cast<int>(msg.size()), msg.data());
  };
  std::unique_ptr<lua::LuaTenant> t = lua::LuaTenant::create(rt.script, std::move(opt), err);
  if (!t) return nullptr;
  auto wt = std::make_shared<WorkerTenant>(std::move(t), rt);
  t_states.emplace(rt.script.get(), wt);
  return wt;
}

}  // namespace

// The request as the script sees it (ngx.var, ngx.req, ngx.header).
struct ExchangeLua final : lua::LuaRequest {
  ExchangeLua(Exchange* e, std::shared_ptr<WorkerTenant> t) : ex(e), state(std::move(t)) {}

  std::string_view method() override {
    return llhttp_method_name(static_cast<llhttp_method_t>(ex->req.method));
  }
  std::string_view uri() override { return ex->target.substr(0, ex->target.find('?')); }
  std::string_view request_uri() override { return ex->target; }
  std::string_view args() override {
    size_t q = ex->target.find('?');
    return q == std::string_view::npos ? std::string_view() : ex->target.substr(q + 1);
  }
  std::string_view scheme() override { return ex->client->tls() != nullptr ? "https" : "http"; }
  std::string_view host() override {
    std::string_view h = ex->host;
    if (!h.empty() && h.front() != '[') h = h.substr(0, h.find(':'));
    return h;
  }
  std::string_view remote_addr() override {
    if (remote.empty()) {
      char ip[64];
      ex->format_peer(ip, sizeof ip);
      remote = ip;
    }
    return remote;
  }
  size_t request_header_count() override { return ex->req.headers.size(); }
  lua::HeaderView request_header(size_t i) override {
    const HeaderSpan& h = ex->req.headers[i];
    return {ex->req.name(h), ex->req.value(h)};
  }
  void set_request_header(std::string_view name,
                          std::span<const std::string_view> values) override {
    ExchangePolicy& p = edits(ex);
    std::string n = lower(name);
    p.req_remove.push_back(n);
    std::erase_if(p.req_add, [&](const auto& kv) { return lower(kv.first) == n; });
    for (std::string_view v : values) {
      if (clean(v) && clean(name)) p.req_add.emplace_back(std::string(name), std::string(v));
    }
  }
  void set_uri(std::string_view path) override {
    ExchangePolicy& p = edits(ex);
    std::string a(args());
    p.target = std::string(path);
    if (!a.empty()) p.target += "?" + a;
    ex->target = p.target;
  }
  void set_args(std::string_view a) override {
    ExchangePolicy& p = edits(ex);
    std::string path(uri());
    p.target = path;
    if (!a.empty()) p.target += "?" + std::string(a);
    ex->target = p.target;
  }
  int response_status() override {
    if (ex->policy_active && ex->policy->resp_status != 0) return ex->policy->resp_status;
    return ex->resp.status;
  }
  void set_response_status(int status) override {
    // Applied when the head is built (build_response_head); the origin's status stays in
    // ex->resp for the cache and the response policies.
    edits(ex).resp_status = static_cast<uint16_t>(status);
  }
  size_t response_header_count() override { return ex->resp.headers.size(); }
  lua::HeaderView response_header(size_t i) override {
    const HeaderSpan& h = ex->resp.headers[i];
    return {ex->resp.name(h), ex->resp.value(h)};
  }
  void set_response_header(std::string_view name,
                           std::span<const std::string_view> values) override {
    ExchangePolicy& p = edits(ex);
    std::string n = lower(name);
    p.resp_remove.push_back(n);
    std::erase_if(p.resp_add, [&](const auto& kv) { return lower(kv.first) == n; });
    for (std::string_view v : values) {
      if (clean(v) && clean(name)) p.resp_add.emplace_back(std::string(name), std::string(v));
    }
  }
  bool variable(std::string_view name, std::string* out) override {
    if (name == "request_id") {
      *out = std::string(ex->request_id);
      return true;
    }
    if (name == "tenant") {
      *out = ex->snap->cfg().tenants[ex->tenant].name;
      return true;
    }
    return false;
  }

  Exchange* ex;
  std::shared_ptr<WorkerTenant> state;
  lua::LuaExchangeCtx ctx;  // declared after `state`: released before it
  lua::RunResult result;
  std::string remote;
};

void ExchangeLuaDeleter::operator()(ExchangeLua* l) const { delete l; }

namespace {

const std::string& tenant_name(const Exchange* ex) {
  return ex->snap->cfg().tenants[ex->tenant].name;
}

// A run that failed: logged with the tenant, the script's version and the traceback.
void report(Exchange* ex, const TenantLuaRuntime& rt, lua::Phase phase, const lua::RunResult& r) {
  rt.failures->fetch_add(1, std::memory_order_relaxed);
  log_error("worker=%u request_id=%.*s tenant=%s script=%s version=%s phase=%s lua %s: %s%s%s",
            ex->client->wk()->index(), static_cast<int>(ex->request_id.size()),
            ex->request_id.data(), tenant_name(ex).c_str(), rt.script->name().c_str(),
            rt.script->version().c_str(), lua::phase_name(phase), lua::run_status_name(r.status),
            r.error.c_str(), r.traceback.empty() ? "" : "\n", r.traceback.c_str());
}

enum class Outcome { Ok, Failed, Skipped };

// Runs one phase through the state's breaker. Skipped: the breaker is open (nothing ran).
Outcome run_phase(Exchange* ex, lua::Phase phase) {
  const TenantLuaRuntime& rt = ex->snap->lua()->tenant(ex->tenant);
  ExchangeLua& l = *ex->lua;
  if (!rt.script->has_phase(phase)) return Outcome::Ok;
  lua::LuaBreaker& breaker = l.state->breaker;
  // The clock is read only where the breaker needs it (open, or a stop to record): a run of a
  // healthy script costs no clock read here.
  const bool was_open = breaker.is_open();
  if (was_open && !breaker.allow(lua::LuaBreaker::Clock::now())) {
    rt.breaker_skips->fetch_add(1, std::memory_order_relaxed);
    return Outcome::Skipped;
  }
  l.result.clear();
  l.state->tenant->run(phase, l, &l.ctx, l.result);
  rt.runs->fetch_add(1, std::memory_order_relaxed);
  const bool stopped =
      l.result.status == lua::RunStatus::Timeout || l.result.status == lua::RunStatus::OutOfMemory;
  if (breaker.record(stopped, stopped ? lua::LuaBreaker::Clock::now()
                                      : lua::LuaBreaker::Clock::time_point{})) {
    // A trip: logged once (the breaker stays open for the cooldown), and counted.
    rt.breaker_trips->fetch_add(1, std::memory_order_relaxed);
    log_error(
        "worker=%u tenant=%s script=%s version=%s lua breaker open: %s; the script is skipped "
        "for %lld ms (requests get the tenant's failure outcome)",
        ex->client->wk()->index(), tenant_name(ex).c_str(), rt.script->name().c_str(),
        rt.script->version().c_str(),
        was_open ? "the probe run was stopped again"
                 : "consecutive runs stopped by the CPU budget or memory cap",
        static_cast<long long>(rt.breaker_cooldown.count()));
  } else if (was_open) {
    log_error("worker=%u tenant=%s script=%s version=%s lua breaker closed: the probe run ended %s",
              ex->client->wk()->index(), tenant_name(ex).c_str(), rt.script->name().c_str(),
              rt.script->version().c_str(), lua::run_status_name(l.result.status));
  }
  if (l.result.ok()) return Outcome::Ok;
  report(ex, rt, phase, l.result);
  return Outcome::Failed;
}

std::string read_file(const std::string& path, bool* ok) {
  std::ifstream in(path, std::ios::binary);
  *ok = static_cast<bool>(in);
  std::stringstream ss;
  if (*ok) ss << in.rdbuf();
  return ss.str();
}

}  // namespace

bool LuaRuntime::uses(const lua::LuaScript* s) const {
  for (const TenantLuaRuntime& t : tenants_) {
    if (t.script.get() == s) return true;
  }
  return false;
}

uint64_t LuaRuntime::live_states() { return g_live_states.load(std::memory_order_relaxed); }

std::shared_ptr<const LuaRuntime> LuaRuntime::build(const config::Config& cfg,
                                                    std::vector<std::string>* errors) {
  const size_t before = errors->size();
  auto out = std::make_shared<LuaRuntime>();
  for (const config::Tenant& t : cfg.tenants) {
    TenantLuaRuntime& rt = out->tenants_.emplace_back();
    if (!t.lua.any()) continue;
    rt.fail_open = t.lua.fail_open;
    rt.error_status = t.lua.error_status;
    rt.limits.memory_bytes = t.lua.memory_bytes;
    rt.limits.cpu_time = std::chrono::microseconds(t.lua.time_us);
    rt.limits.instructions = t.lua.instructions;
    rt.breaker_failures = t.lua.breaker_failures;
    rt.breaker_cooldown = std::chrono::milliseconds(t.lua.breaker_cooldown_ms);
    bool readable = true;
    auto read = [&](const std::string& path) {
      bool ok = false;
      std::string text = read_file(path, &ok);
      if (!ok) {
        readable = false;
        errors->push_back(t.lua.where + ": tenant '" + t.name + "': cannot read lua script '" +
                          path + "'");
      }
      return text;
    };
    lua::LuaScript::CompileResult c;
    if (!t.lua.script.empty()) {
      std::string text = read(t.lua.script);
      if (!readable) continue;
      c = lua::LuaScript::compile(t.lua.script, std::move(text), rt.limits);
    } else {
      std::array<lua::LuaSource, lua::kPhaseCount> files;
      for (size_t i = 0; i < lua::kPhaseCount; ++i) {
        if (t.lua.phase_files[i].empty()) continue;
        files[i].name = t.lua.phase_files[i];
        files[i].text = read(files[i].name);
      }
      if (!readable) continue;
      c = lua::LuaScript::compile_phases(std::move(files), rt.limits);
    }
    if (!c.ok()) {
      errors->push_back(c.error + " (lua script of tenant '" + t.name + "')");
      continue;
    }
    rt.script = std::move(c.script);
  }
  if (errors->size() != before) return nullptr;
  // Only a valid config defines dicts (they live for the process; reloads keep their data).
  for (const config::Tenant& t : cfg.tenants) {
    for (const auto& [name, bytes] : t.lua.shared_dicts) dicts().define(t.name, name, bytes);
  }
  return out;
}

Flow phase_lua(Exchange* ex) {
  const LuaRuntime* lr = ex->snap->lua();
  if (lr == nullptr) return Flow::Continue;
  const TenantLuaRuntime& rt = lr->tenant(ex->tenant);
  if (!rt.script) return Flow::Continue;
  if (ex->policy_active && ex->policy->skip_lua) return Flow::Continue;  // skip: products
  ClientConn* c = ex->client;
  std::string err;
  std::shared_ptr<WorkerTenant> state = tenant_for(ex, rt, &err);
  if (!state) {
    rt.failures->fetch_add(1, std::memory_order_relaxed);
    log_error("worker=%u tenant=%s lua state: %s", c->wk()->index(), tenant_name(ex).c_str(),
              err.c_str());
    if (rt.fail_open) return Flow::Continue;
    c->reply(rt.error_status, "lua.error", false);
    return Flow::Respond;
  }
  ex->lua.reset(new ExchangeLua(ex, std::move(state)));
  if (Outcome o = run_phase(ex, lua::Phase::Access); o != Outcome::Ok) {
    if (rt.fail_open) return Flow::Continue;
    c->reply(rt.error_status, o == Outcome::Skipped ? "lua.breaker_open" : "lua.error", false);
    return Flow::Respond;
  }
  const lua::RunResult& r = ex->lua->result;
  if (r.action == lua::Action::Continue) {
    // ngx.header set in access applies to the response that comes back (as in OpenResty).
    for (const auto& [name, value] : r.response.headers) {
      std::string_view v = value;
      ex->lua->set_response_header(name, std::span<const std::string_view>(&v, 1));
    }
    return Flow::Continue;
  }
  const int status = r.response.status != 0 ? r.response.status : 200;
  std::string extra;
  std::string_view type;
  for (const auto& [name, value] : r.response.headers) {
    if (!clean(name) || !clean(value) || name.empty()) continue;
    if (iequals(name, "content-length") || iequals(name, "connection") ||
        iequals(name, "transfer-encoding"))
      continue;
    if (iequals(name, "content-type")) {
      type = value;
      continue;
    }
    extra.append(name).append(": ").append(value).append("\r\n");
  }
  if (r.response.body.empty() && r.action != lua::Action::Redirect) {
    c->reply_with(status, "lua.exit", false, extra, {}, {});  // the default page for the status
  } else {
    if (type.empty()) type = "text/plain";
    c->reply_with(status, r.action == lua::Action::Redirect ? "lua.redirect" : "lua.response",
                  false, extra, type, r.response.body);
  }
  return Flow::Respond;
}

void phase_lua_header_filter(Exchange* ex) {
  if (!ex->lua) return;
  run_phase(ex, lua::Phase::HeaderFilter);  // a failure is logged; the response goes on
}

void phase_lua_log(Exchange* ex) {
  if (!ex->lua) return;
  run_phase(ex, lua::Phase::Log);
}

}  // namespace parapet
