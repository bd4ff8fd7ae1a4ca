#include "proxy/phase_lua.h"

#include <fstream>
#include <sstream>
#include <unordered_map>

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

// One worker's Lua states, by script (a reload with a new script makes new states; states of
// scripts no snapshot uses any more go once no exchange holds them).
struct WorkerStates {
  struct Slot {
    std::shared_ptr<const lua::LuaScript> script;
    std::shared_ptr<lua::LuaTenant> tenant;
  };
  std::unordered_map<const lua::LuaScript*, Slot> map;
};
thread_local WorkerStates t_states;

std::shared_ptr<lua::LuaTenant> tenant_for(const TenantLuaRuntime& rt, const std::string& name,
                                           std::string* err) {
  auto it = t_states.map.find(rt.script.get());
  if (it != t_states.map.end()) return it->second.tenant;
  std::erase_if(t_states.map, [](const auto& kv) {
    return kv.second.script.use_count() == 1 && kv.second.tenant.use_count() == 1;
  });
  lua::TenantOptions opt;
  opt.tenant = name;
  opt.limits = rt.limits;
  opt.dicts = &dicts();
  opt.log = [](int level, std::string_view tenant, std::string_view msg) {
    log_error("tenant=%.*s lua[%d]: %.*s", static_cast<int>(tenant.size()), tenant.data(), level,
              static_cast<int>(msg.size()), msg.data());
  };
  std::unique_ptr<lua::LuaTenant> t = lua::LuaTenant::create(rt.script, std::move(opt), err);
  if (!t) return nullptr;
  std::shared_ptr<lua::LuaTenant> shared(std::move(t));
  t_states.map.emplace(rt.script.get(), WorkerStates::Slot{rt.script, shared});
  return shared;
}

}  // namespace

// The request as the script sees it (ngx.var, ngx.req, ngx.header).
struct ExchangeLua final : lua::LuaRequest {
  ExchangeLua(Exchange* e, std::shared_ptr<lua::LuaTenant> t) : ex(e), tenant(std::move(t)) {}

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
  std::shared_ptr<lua::LuaTenant> tenant;
  lua::LuaExchangeCtx ctx;
  lua::RunResult result;
  std::string remote;
};

void ExchangeLuaDeleter::operator()(ExchangeLua* l) const { delete l; }

namespace {

// A run that failed: logged with the tenant, the script's version and the traceback.
void report(Exchange* ex, const TenantLuaRuntime& rt, lua::Phase phase, const lua::RunResult& r) {
  rt.failures->fetch_add(1, std::memory_order_relaxed);
  const std::string& tenant = ex->snap->cfg().tenants[ex->tenant].name;
  log_error("worker=%u request_id=%.*s tenant=%s script=%s version=%s phase=%s lua %s: %s%s%s",
            ex->client->wk()->index(), static_cast<int>(ex->request_id.size()),
            ex->request_id.data(), tenant.c_str(), rt.script->name().c_str(),
            rt.script->version().c_str(), lua::phase_name(phase), lua::run_status_name(r.status),
            r.error.c_str(), r.traceback.empty() ? "" : "\n", r.traceback.c_str());
}

bool run_phase(Exchange* ex, lua::Phase phase) {
  const TenantLuaRuntime& rt = ex->snap->lua()->tenant(ex->tenant);
  ExchangeLua& l = *ex->lua;
  if (!rt.script->has_phase(phase)) return true;
  l.result.clear();
  l.tenant->run(phase, l, &l.ctx, l.result);
  rt.runs->fetch_add(1, std::memory_order_relaxed);
  if (l.result.ok()) return true;
  report(ex, rt, phase, l.result);
  return false;
}

}  // namespace

std::shared_ptr<const LuaRuntime> LuaRuntime::build(const config::Config& cfg,
                                                    std::vector<std::string>* errors) {
  const size_t before = errors->size();
  auto out = std::make_shared<LuaRuntime>();
  for (const config::Tenant& t : cfg.tenants) {
    TenantLuaRuntime& rt = out->tenants_.emplace_back();
    if (t.lua.script.empty()) continue;
    rt.fail_open = t.lua.fail_open;
    rt.error_status = t.lua.error_status;
    rt.limits.memory_bytes = t.lua.memory_bytes;
    rt.limits.cpu_time = std::chrono::microseconds(t.lua.time_us);
    std::ifstream in(t.lua.script);
    if (!in) {
      errors->push_back(t.lua.where + ": tenant '" + t.name + "': cannot read lua script '" +
                        t.lua.script + "'");
      continue;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    lua::LuaScript::CompileResult c = lua::LuaScript::compile(t.lua.script, ss.str(), rt.limits);
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
  std::shared_ptr<lua::LuaTenant> tenant =
      tenant_for(rt, ex->snap->cfg().tenants[ex->tenant].name, &err);
  if (!tenant) {
    rt.failures->fetch_add(1, std::memory_order_relaxed);
    log_error("worker=%u tenant=%s lua state: %s", c->wk()->index(),
              ex->snap->cfg().tenants[ex->tenant].name.c_str(), err.c_str());
    if (rt.fail_open) return Flow::Continue;
    c->reply(rt.error_status, "lua.error", false);
    return Flow::Respond;
  }
  ex->lua.reset(new ExchangeLua(ex, std::move(tenant)));
  if (!run_phase(ex, lua::Phase::Access)) {
    if (rt.fail_open) return Flow::Continue;
    c->reply(rt.error_status, "lua.error", false);
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
  std::string extra, type;
  for (const auto& [name, value] : r.response.headers) {
    if (!clean(name) || !clean(value) || name.empty()) continue;
    std::string n = lower(name);
    if (n == "content-length" || n == "connection" || n == "transfer-encoding") continue;
    if (n == "content-type") {
      type = value;
      continue;
    }
    extra += name + ": " + value + "\r\n";
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
