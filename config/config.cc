// YAML -> Config. Every error names the file, the line and column of the offending node, and
// the reason; unknown keys are errors (a typo must not silently turn a setting off).
#include "config/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <string_view>
#include <thread>

namespace parapet::config {
namespace {

class Loader {
 public:
  Loader(std::string file, std::string_view text) : file_(std::move(file)) {
    size_t start = 0;
    while (start <= text.size()) {
      size_t nl = text.find('\n', start);
      if (nl == std::string_view::npos) nl = text.size();
      lines_.push_back(text.substr(start, nl - start));
      start = nl + 1;
    }
  }

  void error(const YAML::Node& node, const std::string& reason) {
    const YAML::Mark m = node.Mark();
    std::ostringstream os;
    os << file_ << ':' << (m.line + 1) << ':' << (m.column + 1) << ": " << reason;
    errors_.push_back(os.str());
  }
  void error(const YAML::Mark& m, const std::string& reason) {
    std::ostringstream os;
    os << file_ << ':' << (m.line + 1) << ':' << (m.column + 1) << ": " << reason;
    errors_.push_back(os.str());
  }

  // Reports keys of `map` not in `known`. `where` names the section in the message.
  bool check_keys(const YAML::Node& map, const char* where,
                  std::initializer_list<const char*> known) {
    if (!map.IsMap()) {
      error(map, std::string(where) + " must be a mapping");
      return false;
    }
    for (const auto& kv : map) {
      const std::string key = kv.first.as<std::string>();
      bool found = std::any_of(known.begin(), known.end(), [&](const char* k) { return key == k; });
      if (!found) {
        std::string list;
        for (const char* k : known) list += std::string(list.empty() ? "" : ", ") + k;
        error(kv.first, "unknown key '" + key + "' in " + where + " (known: " + list + ")");
      }
    }
    return true;
  }

  bool nonempty(const YAML::Node& n, const char* what, std::string* out) {
    if (!scalar(n, what, out)) return false;
    if (out->empty()) {
      error(n, std::string(what) + " must not be empty (leave it out for the default)");
      return false;
    }
    return true;
  }

  bool scalar(const YAML::Node& n, const char* what, std::string* out) {
    if (!n.IsScalar()) {
      error(n, std::string(what) + " must be a scalar");
      return false;
    }
    *out = n.Scalar();
    return true;
  }

  template <typename T>
  void number(const YAML::Node& n, const char* what, T* out, uint64_t min, uint64_t max) {
    std::string s;
    if (!scalar(n, what, &s)) return;
    if (s.empty() || s.size() > 19 || s.find_first_not_of("0123456789") != std::string::npos) {
      error(n, std::string(what) + " must be a non-negative integer, got '" + s + "'");
      return;
    }
    uint64_t v = std::stoull(s);
    if (v < min || v > max) {
      error(n, std::string(what) + " must be between " + std::to_string(min) + " and " +
                   std::to_string(max) + ", got " + s);
      return;
    }
    *out = static_cast<T>(v);
  }

  void duration(const YAML::Node& n, const char* what, uint32_t* out_ms) {
    std::string s;
    if (!scalar(n, what, &s)) return;
    uint64_t ms = 0;
    if (!parse_duration_ms(s, &ms) || ms == 0 || ms > 86'400'000ull) {
      error(n, std::string(what) + ": bad duration '" + s +
                   "' (expected e.g. 500ms, 10s, 2m, 1h; more than 0 and at most 24h)");
      return;
    }
    *out_ms = static_cast<uint32_t>(ms);
  }

  void address(const YAML::Node& n, const char* what, Address* out) {
    std::string s, why;
    if (!scalar(n, what, &s)) return;
    if (!parse_address(s, out, &why)) error(n, std::string(what) + " '" + s + "': " + why);
  }

  void load(const YAML::Node& root, Config* c) {
    c->file = file_;
    if (!root.IsMap()) {
      error(root, "the top level must be a mapping");
      return;
    }
    check_keys(root, "the top level",
               {"workers", "listeners", "admin", "limits", "timeouts", "access_log", "cache",
                "lists", "tenants", "policies"});
    if (auto w = root["workers"]) {
      std::string s;
      if (scalar(w, "workers", &s)) {
        if (s == "auto") {
          c->workers = 0;
        } else {
          number(w, "workers", &c->workers, 1, 256);
        }
      }
    }
    if (auto ls = root["listeners"]) {
      listeners(ls, c);
    } else {
      error(root, "'listeners' is required");
    }
    if (auto a = root["admin"]) {
      if (check_keys(a, "admin", {"address", "idle_timeout"})) {
        if (auto it = a["idle_timeout"]) duration(it, "admin.idle_timeout", &c->admin_idle_ms);
        if (auto addr = a["address"]) {
          address(addr, "admin.address", &c->admin);
          c->has_admin = true;
        } else {
          error(a, "admin.address is required");
        }
      }
    }
    if (auto l = root["limits"]) limits(l, &c->limits);
    if (auto t = root["timeouts"]) timeouts(t, &c->timeouts);
    if (auto a = root["access_log"]) access_log(a, &c->access_log);
    if (auto a = root["cache"]) cache_store(a, &c->cache);
    if (auto l = root["lists"]) lists(l, &c->lists);
    if (auto p = root["policies"]) policies(p, c);
    if (auto ts = root["tenants"]) {
      tenants(ts, c);
    } else {
      error(root, "'tenants' is required");
    }
  }

  void listeners(const YAML::Node& ls, Config* c) {
    if (!ls.IsSequence() || ls.size() == 0) {
      error(ls, "listeners must be a non-empty list");
      return;
    }
    std::set<std::string> names;
    for (const auto& n : ls) {
      if (!check_keys(n, "a listener", {"name", "address", "tls"})) continue;
      Listener l;
      if (auto name = n["name"]) {
        scalar(name, "listener name", &l.name);
        if (!names.insert(l.name).second) error(name, "duplicate listener name '" + l.name + "'");
      } else {
        error(n, "listener name is required");
      }
      if (auto addr = n["address"]) {
        address(addr, "listener address", &l.address);
      } else {
        error(n, "listener address is required");
      }
      if (auto tls = n["tls"]) {
        l.tls = true;
        if (tls.IsMap()) {
          check_keys(tls, "listener tls",
                     {"no_sni", "ciphers", "ciphersuites", "curves", "session_tickets"});
          l.tls_settings.where = where(tls);
          if (auto v = tls["ciphers"]) nonempty(v, "tls.ciphers", &l.tls_settings.ciphers);
          if (auto v = tls["ciphersuites"])
            nonempty(v, "tls.ciphersuites", &l.tls_settings.ciphersuites);
          if (auto v = tls["curves"]) nonempty(v, "tls.curves", &l.tls_settings.curves);
          if (auto v = tls["session_tickets"]) {
            std::string b;
            if (scalar(v, "tls.session_tickets", &b)) {
              if (b == "false")
                l.tls_settings.session_tickets = false;
              else if (b != "true")
                error(v, "tls.session_tickets must be true or false, got '" + b + "'");
            }
          }
          if (auto ns = tls["no_sni"]) {
            std::string v;
            if (scalar(ns, "tls.no_sni", &v)) {
              if (v == "reject")
                l.tls_reject_no_sni = true;
              else if (v != "default")
                error(ns, "tls.no_sni must be default or reject, got '" + v + "'");
            }
          }
        } else if (!tls.IsNull()) {
          error(tls, "listener tls must be a mapping ({} for the defaults)");
        }
      }
      c->listeners.push_back(std::move(l));
    }
  }

  void limits(const YAML::Node& n, Limits* l) {
    if (!check_keys(n, "limits",
                    {"max_header_bytes", "max_header_count", "max_uri_bytes", "max_body_bytes"}))
      return;
    if (auto v = n["max_header_bytes"])
      number(v, "max_header_bytes", &l->max_header_bytes, 256, 1 << 20);
    if (auto v = n["max_header_count"])
      number(v, "max_header_count", &l->max_header_count, 1, 10000);
    if (auto v = n["max_uri_bytes"]) number(v, "max_uri_bytes", &l->max_uri_bytes, 16, 1 << 20);
    if (auto v = n["max_body_bytes"])
      number(v, "max_body_bytes", &l->max_body_bytes, 0, ~0ull >> 1);
    // The request line is part of the head: the smaller limit answers first (431 or 414).
  }

  void timeouts(const YAML::Node& n, Timeouts* t) {
    if (!check_keys(n, "timeouts",
                    {"client_header", "client_body", "client_send", "keepalive", "shutdown"}))
      return;
    if (auto v = n["client_header"]) duration(v, "client_header", &t->client_header_ms);
    if (auto v = n["client_body"]) duration(v, "client_body", &t->client_body_ms);
    if (auto v = n["client_send"]) duration(v, "client_send", &t->client_send_ms);
    if (auto v = n["keepalive"]) duration(v, "keepalive", &t->keepalive_ms);
    if (auto v = n["shutdown"]) duration(v, "shutdown", &t->shutdown_ms);
  }

  void access_log(const YAML::Node& n, AccessLogConfig* a) {
    if (!check_keys(n, "access_log", {"path", "format", "buffer_bytes"})) return;
    if (auto p = n["path"]) {
      if (scalar(p, "access_log.path", &a->path) && !a->path.empty()) a->enabled = true;
    } else {
      error(n, "access_log.path is required (a file, or - for stdout)");
    }
    if (auto f = n["format"]) {
      std::string s;
      if (scalar(f, "access_log.format", &s)) {
        if (s == "json")
          a->format = AccessLogConfig::Json;
        else if (s == "combined")
          a->format = AccessLogConfig::Combined;
        else
          error(f, "access_log.format must be json or combined, got '" + s + "'");
      }
    }
    if (auto b = n["buffer_bytes"])
      number(b, "access_log.buffer_bytes", &a->buffer_bytes, 4096, 1ull << 30);
  }

  void tenants(const YAML::Node& ts, Config* c) {
    if (!ts.IsSequence()) {
      error(ts, "tenants must be a list");
      return;
    }
    std::set<std::string> names, hosts;
    for (const auto& n : ts) {
      if (!check_keys(n, "a tenant",
                      {"name", "hosts", "origins", "routes", "tls", "cache", "lists", "policies",
                       "policy_overrides", "rules", "lua"}))
        continue;
      Tenant t;
      if (auto name = n["name"]) {
        scalar(name, "tenant name", &t.name);
        if (!names.insert(t.name).second) error(name, "duplicate tenant name '" + t.name + "'");
      } else {
        error(n, "tenant name is required");
      }
      if (auto tls = n["tls"]) tenant_tls(tls, &t);
      if (auto cache = n["cache"]) tenant_cache(cache, &t.cache);
      if (auto l = n["lists"]) tenant_lists(l, *c, &t);
      if (auto ps = n["policies"]) tenant_policies(ps, *c, &t);
      if (auto os = n["policy_overrides"]) overrides(os, &t);
      if (auto rs = n["rules"]) rule_list(rs, "tenant rules", &t.rules);
      if (auto l = n["lua"]) tenant_lua(l, &t.lua);
      tenant_hosts(n["hosts"], n, &t, &hosts);
      origins(n["origins"], n, &t);
      routes(n["routes"], n, &t);
      c->tenants.push_back(std::move(t));
    }
  }

  void tenant_tls(const YAML::Node& tls, Tenant* t) {
    if (!check_keys(tls, "tenant tls",
                    {"certificates", "hsts", "redirect_http", "client_ca", "client_cert_failure"}))
      return;
    if (auto ca = tls["client_ca"]) {
      if (scalar(ca, "tls.client_ca", &t->client_ca)) relative_to_file(&t->client_ca);
    }
    if (auto f = tls["client_cert_failure"]) {
      std::string v;
      if (scalar(f, "tls.client_cert_failure", &v)) {
        if (v == "status")
          t->client_cert_403 = true;
        else if (v != "handshake")
          error(f, "tls.client_cert_failure must be handshake or status");
      }
      if (t->client_ca.empty()) error(f, "tls.client_cert_failure needs tls.client_ca");
    }
    if (auto h = tls["hsts"]) {
      if (scalar(h, "tls.hsts", &t->hsts) && (t->hsts.rfind("max-age=", 0) != 0 ||
                                              t->hsts.find_first_of("\r\n") != std::string::npos)) {
        error(h, "tls.hsts must be a Strict-Transport-Security value starting with max-age=");
      }
    }
    if (auto r = tls["redirect_http"]) {
      std::string v;
      if (scalar(r, "tls.redirect_http", &v)) {
        if (v == "true")
          t->redirect_http = true;
        else if (v != "false")
          error(r, "tls.redirect_http must be true or false");
      }
    }
    auto cs = tls["certificates"];
    if (!cs || !cs.IsSequence() || cs.size() == 0) {
      error(cs ? cs : tls, "tls.certificates must be a non-empty list of {cert, key}");
      return;
    }
    for (const auto& c : cs) {
      if (!check_keys(c, "a certificate", {"cert", "key"})) continue;
      Certificate cert;
      cert.where = where(c);
      if (!c["cert"] || !scalar(c["cert"], "cert", &cert.cert))
        error(c, "certificate 'cert' (a PEM file) is required");
      if (!c["key"] || !scalar(c["key"], "key", &cert.key))
        error(c, "certificate 'key' (a PEM file) is required");
      relative_to_file(&cert.cert);
      relative_to_file(&cert.key);
      t->certificates.push_back(std::move(cert));
    }
  }

  void tenant_hosts(const YAML::Node& hs, const YAML::Node& tenant, Tenant* t,
                    std::set<std::string>* seen) {
    if (!hs || !hs.IsSequence() || hs.size() == 0) {
      error(hs ? hs : tenant, "tenant hosts must be a non-empty list");
      return;
    }
    for (const auto& h : hs) {
      std::string s;
      if (!scalar(h, "host", &s)) continue;
      std::transform(s.begin(), s.end(), s.begin(),
                     [](unsigned char ch) { return std::tolower(ch); });
      std::string bare = s.rfind("*.", 0) == 0 ? s.substr(2) : s;
      if (bare.empty() ||
          bare.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-.") != std::string::npos ||
          bare.find('*') != std::string::npos) {
        error(h, "bad host '" + s + "' (a DNS name, optionally starting with '*.')");
        continue;
      }
      if (!seen->insert(s).second) {
        error(h, "host '" + s + "' belongs to two tenants");
        continue;
      }
      t->hosts.push_back(s);
    }
  }

  void origins(const YAML::Node& os, const YAML::Node& tenant, Tenant* t) {
    if (!os || !os.IsSequence() || os.size() == 0) {
      error(os ? os : tenant, "tenant origins must be a non-empty list");
      return;
    }
    std::set<std::string> names;
    for (const auto& n : os) {
      if (!check_keys(n, "an origin",
                      {"name", "servers", "balance", "hash_key", "connect_timeout",
                       "response_timeout", "keepalive", "health", "tls"}))
        continue;
      Origin o;
      o.tls.where = where(n);
      if (auto name = n["name"]) {
        scalar(name, "origin name", &o.name);
        if (!names.insert(o.name).second) error(name, "duplicate origin name '" + o.name + "'");
      } else {
        error(n, "origin name is required");
      }
      auto ss = n["servers"];
      if (!ss || !ss.IsSequence() || ss.size() == 0) {
        error(ss ? ss : YAML::Node(n), "origin servers must be a non-empty list of host:port");
      } else {
        for (const auto& s : ss) {
          Address a;
          size_t before = errors_.size();
          address(s, "server", &a);
          if (errors_.size() == before) o.servers.push_back(std::move(a));
        }
      }
      if (auto b = n["balance"]) {
        std::string s;
        if (scalar(b, "balance", &s)) {
          if (s == "round_robin")
            o.balance = Balance::RoundRobin;
          else if (s == "least_conn")
            o.balance = Balance::LeastConn;
          else if (s == "hash")
            o.balance = Balance::Hash;
          else
            error(b, "balance must be round_robin, least_conn or hash, got '" + s + "'");
        }
      }
      if (auto k = n["hash_key"]) {
        std::string s;
        if (scalar(k, "hash_key", &s)) {
          if (s == "uri")
            o.hash_key.kind = HashKey::Uri;
          else if (s == "client_ip")
            o.hash_key.kind = HashKey::ClientIp;
          else if (s.rfind("header:", 0) == 0 && s.size() > 7) {
            o.hash_key.kind = HashKey::Header;
            o.hash_key.header = s.substr(7);
          } else {
            error(k, "hash_key must be uri, client_ip or header:NAME, got '" + s + "'");
          }
        }
        if (o.balance != Balance::Hash) error(k, "hash_key needs balance: hash");
      }
      if (auto v = n["connect_timeout"]) duration(v, "connect_timeout", &o.connect_timeout_ms);
      if (auto v = n["response_timeout"]) duration(v, "response_timeout", &o.response_timeout_ms);
      if (auto ka = n["keepalive"]) {
        if (check_keys(ka, "origin keepalive", {"max_idle", "idle_timeout"})) {
          if (auto v = ka["max_idle"]) number(v, "max_idle", &o.max_idle, 0, 100000);
          if (auto v = ka["idle_timeout"]) duration(v, "idle_timeout", &o.idle_timeout_ms);
        }
      }
      if (auto h = n["health"]) {
        if (check_keys(h, "origin health", {"max_fails", "fail_timeout"})) {
          if (auto v = h["max_fails"]) number(v, "max_fails", &o.max_fails, 0, 1000);
          if (auto v = h["fail_timeout"]) duration(v, "fail_timeout", &o.fail_timeout_ms);
        }
      }
      bool any_tls = false;
      for (const Address& a : o.servers) any_tls |= a.tls;
      if (auto tls = n["tls"]) {
        origin_tls(tls, &o.tls);
        if (!any_tls) error(tls, "origin tls needs at least one https:// server");
      }
      t->origins.push_back(std::move(o));
    }
  }

  void size(const YAML::Node& n, const char* what, uint64_t* out, uint64_t min) {
    std::string s;
    if (!scalar(n, what, &s)) return;
    uint64_t v = 0;
    if (!parse_size(s, &v) || v < min || v > (1ull << 40)) {
      error(n, std::string(what) + ": bad size '" + s + "' (e.g. 64KiB, 256MiB, 1GiB; at least " +
                   std::to_string(min) + " bytes)");
      return;
    }
    *out = v;
  }

  void boolean(const YAML::Node& n, const char* what, bool* out) {
    std::string s;
    if (!scalar(n, what, &s)) return;
    if (s == "true") {
      *out = true;
    } else if (s == "false") {
      *out = false;
    } else {
      error(n, std::string(what) + " must be true or false");
    }
  }

  void string_list(const YAML::Node& n, const char* what, std::vector<std::string>* out,
                   bool lower) {
    if (!n.IsSequence()) {
      error(n, std::string(what) + " must be a list");
      return;
    }
    for (const auto& e : n) {
      std::string s;
      if (!scalar(e, what, &s)) continue;
      if (s.empty() || s.find_first_of(" \t\r\n:;,=") != std::string::npos) {
        error(e, std::string(what) + ": bad name '" + s + "'");
        continue;
      }
      if (lower) {
        for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      }
      out->push_back(s);
    }
  }

  void seconds(const YAML::Node& n, const char* what, int64_t* out) {
    std::string s;
    if (!scalar(n, what, &s)) return;
    uint64_t ms = 0;
    if (!parse_duration_ms(s, &ms) || ms > 10ull * 365 * 86'400'000) {
      error(n, std::string(what) + ": bad duration '" + s + "' (e.g. 30s, 10m, 1h)");
      return;
    }
    *out = static_cast<int64_t>(ms / 1000);
  }

  void tenant_lua(const YAML::Node& n, TenantLua* l) {
    if (!check_keys(n, "tenant lua",
                    {"script", "access", "header_filter", "log", "on_error", "error_status",
                     "max_memory", "max_time", "max_instructions", "breaker", "shared_dicts"}))
      return;
    l->where = where(n);
    static const char* const kPhaseKeys[3] = {"access", "header_filter", "log"};
    bool phases = false;
    for (int i = 0; i < 3; ++i) {
      if (auto v = n[kPhaseKeys[i]]) {
        const std::string what = std::string("lua.") + kPhaseKeys[i];
        if (!scalar(v, what.c_str(), &l->phase_files[i]) || l->phase_files[i].empty()) {
          error(v, what + " must name a file");
          return;
        }
        relative_to_file(&l->phase_files[i]);
        phases = true;
      }
    }
    if (auto v = n["script"]) {
      if (phases) {
        error(v,
              "lua.script (a module) and per-phase files (access, header_filter, log) "
              "exclude each other");
        return;
      }
      if (!scalar(v, "lua.script", &l->script) || l->script.empty()) {
        error(v, "lua.script must name a file");
        return;
      }
      relative_to_file(&l->script);
    } else if (!phases) {
      error(n, "lua needs script (a module file) or per-phase files (access, header_filter, log)");
      return;
    }
    if (auto v = n["on_error"]) {
      std::string s;
      if (scalar(v, "lua.on_error", &s)) {
        if (s == "fail_open")
          l->fail_open = true;
        else if (s != "fail_closed")
          error(v, "lua.on_error must be fail_closed or fail_open");
      }
    }
    if (auto v = n["error_status"]) number(v, "lua.error_status", &l->error_status, 400, 599);
    if (auto v = n["max_memory"]) size(v, "lua.max_memory", &l->memory_bytes, 1 << 20);
    if (auto v = n["max_time"]) {
      std::string s;
      uint64_t ms = 0;
      if (scalar(v, "lua.max_time", &s) && (!parse_duration_ms(s, &ms) || ms == 0 || ms > 1000)) {
        error(v, "lua.max_time must be a duration from 1ms to 1s");
      } else {
        l->time_us = static_cast<uint32_t>(ms * 1000);
      }
    }
    if (auto v = n["max_instructions"]) {
      number(v, "lua.max_instructions", &l->instructions, 10'000, 10'000'000'000ull);
    }
    if (auto b = n["breaker"]) {
      if (check_keys(b, "lua.breaker", {"failures", "cooldown"})) {
        if (auto v = b["failures"])
          number(v, "lua.breaker.failures", &l->breaker_failures, 0, 1000);
        if (auto v = b["cooldown"]) {
          std::string s;
          uint64_t ms = 0;
          if (scalar(v, "lua.breaker.cooldown", &s) &&
              (!parse_duration_ms(s, &ms) || ms < 100 || ms > 3'600'000)) {
            error(v, "lua.breaker.cooldown must be a duration from 100ms to 1h");
          } else {
            l->breaker_cooldown_ms = static_cast<uint32_t>(ms);
          }
        }
      }
    }
    if (auto d = n["shared_dicts"]) {
      if (!d.IsMap()) {
        error(d, "lua.shared_dicts must map names to sizes, e.g. {counters: 1MiB}");
      } else {
        for (const auto& kv : d) {
          std::string name;
          uint64_t bytes = 0;
          if (!scalar(kv.first, "shared dict name", &name)) continue;
          size(kv.second, "shared dict size", &bytes, 4096);
          l->shared_dicts.emplace_back(name, bytes);
        }
      }
    }
  }

  void cache_store(const YAML::Node& n, CacheStoreConfig* c) {
    if (!check_keys(n, "cache", {"max_size", "max_object_size"})) return;
    if (auto v = n["max_size"]) size(v, "cache.max_size", &c->max_bytes, 1 << 20);
    if (auto v = n["max_object_size"]) size(v, "cache.max_object_size", &c->max_object_bytes, 1);
    if (c->max_object_bytes > c->max_bytes) {
      error(n, "cache.max_object_size must not exceed cache.max_size");
    }
  }

  void tenant_cache(const YAML::Node& n, TenantCache* c) {
    if (!check_keys(n, "tenant cache",
                    {"enabled", "key", "store_set_cookie", "heuristic_fraction", "ttl_by_status",
                     "stale_if_error", "rules"}))
      return;
    c->enabled = true;
    if (auto v = n["enabled"]) boolean(v, "cache.enabled", &c->enabled);
    if (auto k = n["key"]) {
      if (check_keys(k, "cache key", {"ignore_query", "headers", "cookies"})) {
        if (auto v = k["ignore_query"]) boolean(v, "cache.key.ignore_query", &c->ignore_query);
        if (auto v = k["headers"]) string_list(v, "cache.key.headers", &c->key_headers, true);
        if (auto v = k["cookies"]) string_list(v, "cache.key.cookies", &c->key_cookies, false);
      }
    }
    if (auto v = n["store_set_cookie"]) boolean(v, "cache.store_set_cookie", &c->store_set_cookie);
    if (auto v = n["heuristic_fraction"]) {
      std::string s;
      if (scalar(v, "cache.heuristic_fraction", &s)) {
        char* end = nullptr;
        double d = std::strtod(s.c_str(), &end);
        if (s.empty() || *end != '\0' || !(d >= 0 && d <= 1)) {
          error(v, "cache.heuristic_fraction must be a number between 0 and 1");
        } else {
          c->heuristic_fraction = d;
        }
      }
    }
    if (auto m = n["ttl_by_status"]) {
      if (!m.IsMap()) {
        error(m, "cache.ttl_by_status must map statuses to durations, e.g. {404: 60s}");
      } else {
        for (const auto& kv : m) {
          uint16_t st = 0;
          number(kv.first, "cache.ttl_by_status status", &st, 100, 599);
          int64_t ttl = 0;
          seconds(kv.second, "cache.ttl_by_status ttl", &ttl);
          c->ttl_by_status.emplace_back(st, ttl);
        }
      }
    }
    if (auto v = n["stale_if_error"]) seconds(v, "cache.stale_if_error", &c->stale_if_error_s);
    if (auto rs = n["rules"]) {
      if (!rs.IsSequence()) {
        error(rs, "cache.rules must be a list");
        return;
      }
      for (const auto& r : rs) {
        if (!check_keys(
                r, "a cache rule",
                {"path", "bypass", "bypass_cookie", "bypass_header", "cache_everything", "ttl"}))
          continue;
        CacheRule rule;
        if (auto v = r["path"]) {
          if (scalar(v, "cache rule path", &rule.path) && rule.path.rfind('/', 0) != 0) {
            error(v, "cache rule path must start with '/'");
          }
        }
        if (auto v = r["bypass_cookie"]) scalar(v, "cache rule bypass_cookie", &rule.bypass_cookie);
        if (auto v = r["bypass_header"]) {
          if (scalar(v, "cache rule bypass_header", &rule.bypass_header)) {
            for (char& ch : rule.bypass_header)
              ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
          }
        }
        if (auto v = r["bypass"]) boolean(v, "cache rule bypass", &rule.bypass);
        if (!rule.bypass_cookie.empty() || !rule.bypass_header.empty()) rule.bypass = true;
        if (auto v = r["cache_everything"]) {
          boolean(v, "cache rule cache_everything", &rule.cache_everything);
        }
        if (auto v = r["ttl"]) seconds(v, "cache rule ttl", &rule.ttl_s);
        if (rule.bypass && rule.cache_everything) {
          error(r, "a cache rule cannot both bypass and cache_everything");
        }
        c->rules.push_back(std::move(rule));
      }
    }
  }

  void lists(const YAML::Node& ls, std::vector<ListConfig>* out) {
    if (!ls.IsSequence()) {
      error(ls, "lists must be a list of {name, kind, items | file}");
      return;
    }
    std::set<std::string> names;
    for (const auto& n : ls) {
      if (!check_keys(n, "a list", {"name", "kind", "items", "file"})) continue;
      ListConfig l;
      l.where = where(n);
      if (!n["name"] || !scalar(n["name"], "list name", &l.name) || l.name.empty()) {
        error(n, "list name is required");
        continue;
      }
      if (!names.insert(l.name).second) error(n["name"], "duplicate list name '" + l.name + "'");
      std::string kind = "ip";
      if (auto k = n["kind"]) scalar(k, "list kind", &kind);
      if (kind != "ip" && kind != "string") error(n["kind"], "list kind must be ip or string");
      l.ip = kind == "ip";
      if (auto items = n["items"]) {
        if (!items.IsSequence()) {
          error(items, "list items must be a list");
        } else {
          for (const auto& i : items) {
            std::string v;
            if (scalar(i, "list item", &v)) l.items.push_back(v);
          }
        }
      }
      if (auto f = n["file"]) {
        if (scalar(f, "list file", &l.file)) relative_to_file(&l.file);
      }
      if (n["items"] && n["file"]) error(n, "a list has items or a file, not both");
      out->push_back(std::move(l));
    }
  }

  void policies(const YAML::Node& ps, Config* c) {
    if (!ps.IsSequence()) {
      error(ps, "policies must be a list of {name, rules}");
      return;
    }
    std::set<std::string> names;
    for (const auto& n : ps) {
      if (!check_keys(n, "a policy", {"name", "rules"})) continue;
      PolicyConfig p;
      if (!n["name"] || !scalar(n["name"], "policy name", &p.name) || p.name.empty()) {
        error(n, "policy name is required");
        continue;
      }
      if (!names.insert(p.name).second) error(n["name"], "duplicate policy name '" + p.name + "'");
      if (p.name.find_first_not_of(
              "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") !=
          std::string::npos) {
        error(n["name"], "policy name must be letters, digits, '-', '_' or '.'");
      }
      if (auto rs = n["rules"]) {
        rule_list(rs, "policy rules", &p.rules);
      } else {
        error(n, "policy rules are required");
      }
      c->policies.push_back(std::move(p));
    }
  }

  // A tenant's own lists: for its own rules only. A shared list's name is refused rather than
  // shadowed, so `$name` means one list wherever it is read in the file.
  void tenant_lists(const YAML::Node& ls, const Config& c, Tenant* t) {
    lists(ls, &t->lists);
    for (const ListConfig& l : t->lists) {
      for (const ListConfig& shared : c.lists) {
        if (shared.name != l.name) continue;
        errors_.push_back(l.where + ": tenant list '" + l.name +
                          "' has the name of a shared list (" + shared.where +
                          "); a tenant's lists add names, they do not replace");
      }
    }
  }

  void tenant_policies(const YAML::Node& ps, const Config& c, Tenant* t) {
    if (!ps.IsSequence()) {
      error(ps, "tenant policies must be a list of policy names");
      return;
    }
    for (const auto& n : ps) {
      std::string name;
      if (!scalar(n, "policy name", &name)) continue;
      bool known = false;
      for (const PolicyConfig& p : c.policies) known |= p.name == name;
      if (!known) {
        error(n, "unknown policy '" + name + "'");
        continue;
      }
      t->policies.push_back(name);
    }
  }

  static bool parse_action(const std::string& s, RuleConfig::Action* a) {
    static const std::pair<const char*, RuleConfig::Action> kActions[] = {
        {"block", RuleConfig::Action::Block},
        {"allow", RuleConfig::Action::Allow},
        {"skip", RuleConfig::Action::Skip},
        {"log", RuleConfig::Action::Log},
        {"redirect", RuleConfig::Action::Redirect},
        {"rewrite", RuleConfig::Action::Rewrite},
        {"set_cache_settings", RuleConfig::Action::SetCacheSettings},
        {"rate_limit", RuleConfig::Action::RateLimit},
        {"challenge", RuleConfig::Action::Challenge}};
    for (const auto& [name, action] : kActions) {
      if (s == name) {
        *a = action;
        return true;
      }
    }
    return false;
  }

  void overrides(const YAML::Node& os, Tenant* t) {
    if (!os.IsSequence()) {
      error(os, "policy_overrides must be a list of {id, action | enabled | log_only}");
      return;
    }
    for (const auto& n : os) {
      if (!check_keys(n, "a policy override",
                      {"id", "action", "action_parameters", "enabled", "log_only"}))
        continue;
      RuleOverride o;
      o.where = where(n);
      if (!n["id"] || !scalar(n["id"], "override id", &o.id)) {
        error(n, "a policy override needs the id of the rule it changes");
        continue;
      }
      if (auto a = n["action"]) {
        std::string s;
        if (scalar(a, "override action", &s)) {
          if (!parse_action(s, &o.action) ||
              (o.action != RuleConfig::Action::Block && o.action != RuleConfig::Action::Log &&
               o.action != RuleConfig::Action::Allow)) {
            error(a, "an override action must be block, log or allow");
          }
          o.has_action = true;
        }
      }
      if (auto ap = n["action_parameters"]) {
        if (!o.has_action || o.action != RuleConfig::Action::Block) {
          error(ap,
                "override action_parameters are for action: block (status, content_type, "
                "body)");
        } else if (check_keys(ap, "override action_parameters",
                              {"status", "content_type", "body"})) {
          block_answer(ap, &o.block);
          o.has_block = true;
        }
      }
      if (auto e = n["enabled"]) {
        boolean(e, "override enabled", &o.enabled);
        o.has_enabled = true;
      }
      if (auto e = n["log_only"]) {
        boolean(e, "override log_only", &o.log_only);
        o.has_log_only = true;
      }
      t->policy_overrides.push_back(std::move(o));
    }
  }

  // Where the scalar `n` (already known to be a scalar) and each byte of its value are.
  ScalarPos scalar_pos(const YAML::Node& n) const {
    const YAML::Mark m = n.Mark();
    ScalarPos p;
    p.line = m.line + 1;
    p.column = m.column + 1;
    if (m.line < 0 || static_cast<size_t>(m.line) >= lines_.size()) return p;
    const std::string_view l = lines_[static_cast<size_t>(m.line)];
    if (m.column < 0 || static_cast<size_t>(m.column) >= l.size()) return p;
    const char q = l[static_cast<size_t>(m.column)];
    if (q == '|') {
      // The content starts on the next line, at the indentation of its first non-empty line.
      for (size_t i = static_cast<size_t>(m.line) + 1; i < lines_.size(); ++i) {
        const size_t indent = lines_[i].find_first_not_of(' ');
        if (indent == std::string_view::npos || lines_[i][indent] == '\r') continue;
        p.block_indent = static_cast<int>(indent);
        break;
      }
      return p;
    }
    if (q != '"' && q != '\'') return p;
    // Walk the quoted scalar as YAML decodes it: each escape yields the UTF-8 bytes of one code
    // point, all placed at its backslash. Checked against the decoded length; on any doubt
    // (e.g. the scalar goes on over the next line) no columns are given.
    std::vector<int> cols;
    size_t i = static_cast<size_t>(m.column) + 1;
    auto utf8_len = [](uint32_t cp) {
      return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    };
    while (i < l.size()) {
      const char c = l[i];
      const int col = static_cast<int>(i) + 1;
      if (c == q) {
        if (q == '\'' && i + 1 < l.size() && l[i + 1] == '\'') {  // '' is one quote
          cols.push_back(col);
          i += 2;
          continue;
        }
        cols.push_back(col);  // the closing quote
        if (cols.size() == n.Scalar().size() + 1) p.byte_columns = std::move(cols);
        return p;
      }
      if (q == '"' && c == '\\' && i + 1 < l.size()) {
        const char e = l[i + 1];
        size_t hex = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
        uint32_t cp = 0;
        if (hex > 0) {
          if (i + 2 + hex > l.size()) return p;
          for (size_t k = 0; k < hex; ++k) {
            const char h = l[i + 2 + k];
            const int d = h >= '0' && h <= '9'   ? h - '0'
                          : h >= 'a' && h <= 'f' ? h - 'a' + 10
                          : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                                 : -1;
            if (d < 0) return p;
            cp = cp * 16 + static_cast<uint32_t>(d);
          }
        } else {
          cp = e == 'N' ? 0x85 : e == '_' ? 0xa0 : e == 'L' ? 0x2028 : e == 'P' ? 0x2029 : 'x';
        }
        for (int k = utf8_len(cp); k > 0; --k) cols.push_back(col);
        i += 2 + hex;
        continue;
      }
      cols.push_back(col);
      ++i;
    }
    return p;
  }

  // A literal ("value") or an expression ("expression") of an action parameter.
  bool rule_value(const YAML::Node& n, const char* what, RuleValue* v) {
    if (n.IsScalar()) {
      v->pos = scalar_pos(n);
      return scalar(n, what, &v->value);
    }
    if (!check_keys(n, what, {"value", "expression"})) return false;
    YAML::Node x = n["expression"] ? n["expression"] : n["value"];
    if (!x || (n["expression"] && n["value"])) {
      error(n, std::string(what) + " needs one of value or expression");
      return false;
    }
    v->expression = static_cast<bool>(n["expression"]);
    if (x.IsScalar()) v->pos = scalar_pos(x);
    return scalar(x, what, &v->value);
  }

  void rule_list(const YAML::Node& rs, const char* what, std::vector<RuleConfig>* out) {
    if (!rs.IsSequence()) {
      error(rs, std::string(what) + " must be a list of rules");
      return;
    }
    std::set<std::string> ids;
    for (const auto& n : rs) {
      if (!check_keys(n, "a rule",
                      {"id", "expression", "action", "action_parameters", "enabled", "description",
                       "log_only", "phase"}))
        continue;
      RuleConfig r;
      r.where = where(n);
      if (auto id = n["id"]) {
        if (scalar(id, "rule id", &r.id) &&
            (r.id.empty() || r.id.find_first_not_of("abcdefghijklmnopqrstuvwxyz"
                                                    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") !=
                                 std::string::npos)) {
          error(id, "rule id must be letters, digits, '-', '_' or '.'");
        }
      } else {
        r.id = "rule" + std::to_string(out->size() + 1);
      }
      if (!ids.insert(r.id).second) error(n["id"], "duplicate rule id '" + r.id + "'");
      if (auto e = n["expression"]) {
        if (e.IsScalar()) r.pos = scalar_pos(e);
        scalar(e, "rule expression", &r.expression);
      } else {
        error(n, "rule expression is required");
      }
      if (auto d = n["description"]) scalar(d, "rule description", &r.description);
      if (auto e = n["enabled"]) boolean(e, "rule enabled", &r.enabled);
      if (auto e = n["log_only"]) boolean(e, "rule log_only", &r.log_only);
      if (auto p = n["phase"]) {
        std::string s;
        if (scalar(p, "rule phase", &s)) {
          if (s == "response")
            r.phase = RuleConfig::Phase::Response;
          else if (s != "request")
            error(p, "rule phase must be request or response");
        }
      }
      std::string action = "block";
      if (auto a = n["action"]) scalar(a, "rule action", &action);
      if (!parse_action(action, &r.action)) {
        error(n["action"], "unknown action '" + action +
                               "' (block, allow, skip, log, redirect, rewrite, "
                               "set_cache_settings, rate_limit, challenge)");
        continue;
      }
      YAML::Node ap = n["action_parameters"];
      if (ap && !ap.IsMap()) {
        error(ap, "action_parameters must be a mapping");
        ap = YAML::Node();
      }
      action_parameters(ap, n, &r);
      out->push_back(std::move(r));
    }
  }

  // A block's action_parameters (keys already checked): status, content_type, body.
  void block_answer(const YAML::Node& ap, BlockAnswer* b) {
    if (ap["status"]) number(ap["status"], "block status", &b->status, 400, 599);
    if (ap["content_type"]) scalar(ap["content_type"], "content_type", &b->content_type);
    if (ap["body"]) scalar(ap["body"], "block body", &b->body);
  }

  void action_parameters(const YAML::Node& ap, const YAML::Node& rule, RuleConfig* r) {
    using A = RuleConfig::Action;
    auto keys = [&](std::initializer_list<const char*> known) {
      return !ap || check_keys(ap, "action_parameters", known);
    };
    switch (r->action) {
      case A::Block:
        if (!keys({"status", "content_type", "body"})) return;
        if (ap) block_answer(ap, &r->block);
        return;
      case A::Allow:
      case A::Log:
        keys({});
        return;
      case A::Skip: {
        if (!keys({"ruleset", "rules", "phases", "products"})) return;
        if (!ap) {
          error(rule, "skip needs action_parameters (ruleset, rules, phases or products)");
          return;
        }
        if (auto v = ap["ruleset"]) {
          std::string s;
          if (scalar(v, "skip ruleset", &s) && s != "current") {
            error(v, "skip ruleset must be current");
          }
          r->skip_ruleset = true;
        }
        if (auto v = ap["rules"]) string_list(v, "skip rules", &r->skip_rules, false);
        if (auto v = ap["phases"]) {
          std::vector<std::string> phases;
          string_list(v, "skip phases", &phases, false);
          for (const std::string& p : phases) {
            if (p == "response")
              r->skip_response_phase = true;
            else
              error(v, "skip phases can name response");
          }
        }
        if (auto v = ap["products"]) {
          std::vector<std::string> products;
          string_list(v, "skip products", &products, false);
          for (const std::string& p : products) {
            if (p == "cache")
              r->skip_cache = true;
            else if (p == "lua")
              r->skip_lua = true;
            else
              error(v, "skip products can name cache and lua");
          }
        }
        return;
      }
      case A::Redirect:
        if (!keys({"target_url", "status_code", "preserve_query_string"})) return;
        if (!ap || !ap["target_url"]) {
          error(rule, "redirect needs action_parameters.target_url");
          return;
        }
        rule_value(ap["target_url"], "target_url", &r->target);
        if (auto v = ap["status_code"]) {
          number(v, "redirect status_code", &r->redirect_status, 301, 308);
          const uint16_t st = r->redirect_status;
          if (st != 301 && st != 302 && st != 303 && st != 307 && st != 308) {
            error(v, "redirect status_code must be 301, 302, 303, 307 or 308");
          }
        }
        if (auto v = ap["preserve_query_string"]) {
          boolean(v, "preserve_query_string", &r->preserve_query);
        }
        return;
      case A::Rewrite: {
        if (!keys({"uri", "headers"})) return;
        if (!ap) {
          error(rule, "rewrite needs action_parameters (uri or headers)");
          return;
        }
        if (auto u = ap["uri"]) {
          if (check_keys(u, "rewrite uri", {"path", "query"})) {
            if (auto p = u["path"]) r->has_path = rule_value(p, "rewrite path", &r->path);
            if (auto q = u["query"]) r->has_query = rule_value(q, "rewrite query", &r->query);
          }
        }
        if (auto hs = ap["headers"]) {
          if (!hs.IsMap()) {
            error(hs, "rewrite headers must map names to {operation, value | expression}");
          } else {
            for (const auto& kv : hs) {
              HeaderRewrite h;
              if (!scalar(kv.first, "header name", &h.name)) continue;
              if (h.name.empty() || h.name.find_first_of(" \t\r\n:;,\"") != std::string::npos) {
                error(kv.first, "bad header name '" + h.name + "'");
                continue;
              }
              const YAML::Node& spec = kv.second;
              if (!check_keys(spec, "a header rewrite", {"operation", "value", "expression"})) {
                continue;
              }
              std::string op = "set";
              if (auto o = spec["operation"]) scalar(o, "operation", &op);
              if (op == "set")
                h.op = HeaderRewrite::Op::Set;
              else if (op == "add")
                h.op = HeaderRewrite::Op::Add;
              else if (op == "remove")
                h.op = HeaderRewrite::Op::Remove;
              else
                error(spec["operation"], "header operation must be set, add or remove");
              if (h.op != HeaderRewrite::Op::Remove) {
                if (!spec["expression"] && !spec["value"]) {
                  error(spec, "header " + op + " needs a value or an expression");
                  continue;
                }
                YAML::Node x = spec["expression"] ? spec["expression"] : spec["value"];
                h.value.expression = static_cast<bool>(spec["expression"]);
                if (x.IsScalar()) h.value.pos = scalar_pos(x);
                scalar(x, "header value", &h.value.value);
                if (h.value.value.find_first_of("\r\n") != std::string::npos) {
                  error(x, "header value must not contain CR or LF");
                }
              }
              r->headers.push_back(std::move(h));
            }
          }
        }
        return;
      }
      case A::SetCacheSettings:
        if (!keys({"cache", "edge_ttl"})) return;
        if (ap && ap["cache"]) {
          bool on = true;
          boolean(ap["cache"], "cache", &on);
          r->cache_bypass = !on;
        }
        if (ap && ap["edge_ttl"]) seconds(ap["edge_ttl"], "edge_ttl", &r->cache_ttl_s);
        return;
      case A::Challenge:
        if (!keys({"ttl"})) return;
        if (ap && ap["ttl"]) {
          int64_t s = 0;
          seconds(ap["ttl"], "challenge ttl", &s);
          if (s < 1 || s > 7 * 86400) error(ap["ttl"], "challenge ttl must be between 1s and 7d");
          r->challenge_ttl_s = static_cast<uint32_t>(s);
        }
        return;
      case A::RateLimit:
        if (!keys({"characteristics", "period", "requests_per_period", "mitigation_timeout",
                   "counting_expression"})) {
          return;
        }
        if (!ap || !ap["requests_per_period"]) {
          error(rule, "rate_limit needs action_parameters.requests_per_period");
          return;
        }
        if (auto v = ap["characteristics"]) {
          if (!v.IsSequence()) {
            error(v, "characteristics must be a list of fields");
          } else {
            for (const auto& e : v) {
              std::string f;
              if (scalar(e, "characteristic", &f)) r->characteristics.push_back(f);
            }
          }
        } else {
          r->characteristics.push_back("ip.src");
        }
        if (auto v = ap["period"]) {
          int64_t s = 0;
          seconds(v, "period", &s);
          if (s < 1) error(v, "period must be at least 1s");
          r->period_s = static_cast<uint32_t>(std::max<int64_t>(s, 1));
        }
        number(ap["requests_per_period"], "requests_per_period", &r->requests_per_period, 1,
               1000000000);
        if (auto v = ap["mitigation_timeout"]) {
          int64_t s = 0;
          seconds(v, "mitigation_timeout", &s);
          r->mitigation_timeout_s = static_cast<uint32_t>(s);
        }
        if (auto v = ap["counting_expression"]) {
          if (!v.IsScalar()) {
            error(v, "counting_expression must be an expression (a string)");
          } else {
            rule_value(v, "counting_expression", &r->counting);
            r->counting.expression = !r->counting.value.empty();
          }
        }
        return;
    }
  }

  void origin_tls(const YAML::Node& tls, OriginTls* o) {
    if (!check_keys(tls, "origin tls", {"ca", "server_name", "verify", "cert", "key"})) return;
    if (auto v = tls["ca"]) {
      if (scalar(v, "origin tls.ca", &o->ca)) relative_to_file(&o->ca);
    }
    if (auto v = tls["server_name"]) {
      if (scalar(v, "origin tls.server_name", &o->server_name) &&
          (o->server_name.empty() ||
           o->server_name.find_first_not_of("abcdefghijklmnopqrstuvwxyz"
                                            "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.") !=
               std::string::npos)) {
        error(v, "origin tls.server_name must be a DNS name, got '" + o->server_name + "'");
      }
    }
    if (auto v = tls["verify"]) {
      std::string s;
      if (scalar(v, "origin tls.verify", &s)) {
        if (s == "false")
          o->verify = false;
        else if (s != "true")
          error(v, "origin tls.verify must be true or false");
      }
    }
    if (auto v = tls["cert"]) {
      if (scalar(v, "origin tls.cert", &o->cert)) relative_to_file(&o->cert);
    }
    if (auto v = tls["key"]) {
      if (scalar(v, "origin tls.key", &o->key)) relative_to_file(&o->key);
    }
    if (o->cert.empty() != o->key.empty()) error(tls, "origin tls.cert and tls.key go together");
  }

  // "file:line:col" of a node, for errors found later (loading the files it names).
  std::string where(const YAML::Node& n) const {
    std::ostringstream w;
    w << file_ << ':' << (n.Mark().line + 1) << ':' << (n.Mark().column + 1);
    return w.str();
  }

  // Relative paths are relative to the config file's folder.
  void relative_to_file(std::string* path) const {
    if (path->empty() || (*path)[0] == '/') return;
    size_t slash = file_.rfind('/');
    if (slash != std::string::npos) *path = file_.substr(0, slash + 1) + *path;
  }

  void routes(const YAML::Node& rs, const YAML::Node& tenant, Tenant* t) {
    if (!rs || !rs.IsSequence() || rs.size() == 0) {
      error(rs ? rs : tenant, "tenant routes must be a non-empty list");
      return;
    }
    std::set<std::string> paths;
    for (const auto& n : rs) {
      if (!check_keys(n, "a route", {"path", "origin"})) continue;
      Route r;
      if (auto p = n["path"]) {
        if (scalar(p, "route path", &r.path)) {
          if (r.path.empty() || r.path[0] != '/')
            error(p, "route path must start with '/'");
          else if (!paths.insert(r.path).second)
            error(p, "duplicate route path '" + r.path + "'");
        }
      } else {
        error(n, "route path is required");
      }
      if (auto o = n["origin"]) {
        if (scalar(o, "route origin", &r.origin)) {
          auto it = std::find_if(t->origins.begin(), t->origins.end(),
                                 [&](const Origin& x) { return x.name == r.origin; });
          if (it == t->origins.end()) {
            error(o,
                  "route origin '" + r.origin + "' is not an origin of tenant '" + t->name + "'");
          } else {
            r.origin_index = static_cast<size_t>(it - t->origins.begin());
          }
        }
      } else {
        error(n, "route origin is required");
      }
      t->routes.push_back(std::move(r));
    }
    std::stable_sort(t->routes.begin(), t->routes.end(),
                     [](const Route& a, const Route& b) { return a.path.size() > b.path.size(); });
  }

  std::vector<std::string> take_errors() { return std::move(errors_); }

 private:
  std::string file_;
  std::vector<std::string_view> lines_;  // of the text being loaded
  std::vector<std::string> errors_;
};

LoadResult parse(const std::string& text, const std::string& name) {
  LoadResult r;
  Loader loader(name, text);
  try {
    YAML::Node root = YAML::Load(text);
    loader.load(root, &r.config);
  } catch (const YAML::Exception& e) {
    loader.error(e.mark, "YAML: " + e.msg);
  }
  r.errors = loader.take_errors();
  if (r.ok() && r.config.workers == 0) {
    r.config.workers = std::max(1u, std::thread::hardware_concurrency());
  }
  return r;
}

}  // namespace

LoadResult load_text(const std::string& text, const std::string& name) { return parse(text, name); }

std::pair<int, int> ScalarPos::locate(int value_line, int value_column) const {
  if (block_indent > 0) return {line + value_line, block_indent + value_column};
  if (value_line > 1) return {line + value_line - 1, value_column};
  const size_t offset = static_cast<size_t>(std::max(value_column, 1) - 1);
  if (!byte_columns.empty()) return {line, byte_columns[std::min(offset, byte_columns.size() - 1)]};
  return {line, column + static_cast<int>(offset)};
}

LoadResult load_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    LoadResult r;
    r.errors.push_back(path + ":0:0: cannot open the file");
    return r;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path);
}

}  // namespace parapet::config
