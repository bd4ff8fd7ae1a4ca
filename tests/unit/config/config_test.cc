// Unit tests of the configuration loader (config/config.h): a full valid file with its defaults,
// errors that name file:line:col of the offending node, and the duration and address parsers.
#include "config/config.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace parapet::config {
namespace {

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& e : v) s += "  " + e + "\n";
  return s;
}

// "t.yaml:<line>:<col>:" of the `nth` occurrence of `needle` in `text` (1-based, like the loader).
std::string where(const std::string& text, const std::string& needle, int nth = 0) {
  size_t pos = text.find(needle);
  for (int i = 0; i < nth && pos != std::string::npos; ++i) pos = text.find(needle, pos + 1);
  EXPECT_NE(pos, std::string::npos) << "test bug: '" << needle << "' not in the YAML";
  if (pos == std::string::npos) return "?";
  size_t line = 1, col = 1;
  for (size_t i = 0; i < pos; ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return "t.yaml:" + std::to_string(line) + ":" + std::to_string(col) + ":";
}

// Asserts that loading `yaml` fails with an error at `needle` (its nth occurrence) whose text
// contains `reason`.
void expect_error(const std::string& yaml, const std::string& needle, const std::string& reason,
                  int nth = 0) {
  LoadResult r = load_text(yaml, "t.yaml");
  EXPECT_FALSE(r.ok()) << "accepted";
  const std::string loc = where(yaml, needle, nth);
  bool found = false;
  for (const std::string& e : r.errors) {
    if (e.rfind(loc + " ", 0) == 0 && e.find(reason) != std::string::npos) found = true;
  }
  EXPECT_TRUE(found) << "expected an error starting with '" << loc << " ' containing '" << reason
                     << "'; got:\n"
                     << join(r.errors);
}

// A minimal valid configuration the error tests vary.
const std::string kListeners =
    "listeners:\n"
    "  - name: main\n"
    "    address: 127.0.0.1:8080\n";

std::string tenant(const std::string& name, const std::string& host,
                   const std::string& extra = "") {
  return "  - name: " + name +
         "\n"
         "    hosts: [\"" +
         host +
         "\"]\n"
         "    origins:\n"
         "      - name: web\n"
         "        servers: [127.0.0.1:9000]\n"
         "    routes:\n"
         "      - path: /\n"
         "        origin: web\n" +
         extra;
}

const std::string kFull = R"(workers: auto
listeners:
  - name: main
    address: 127.0.0.1:8080
  - name: alt
    address: "http://127.0.0.1:8081"
admin:
  address: 127.0.0.1:9901
limits:
  max_header_bytes: 8192
  max_body_bytes: 1048576
timeouts:
  client_header: 500ms
  client_body: 2s
  client_send: 1m
  keepalive: 3
  shutdown: 1h
tenants:
  - name: app
    hosts: [App.Example.COM, "*.cdn.example.com"]
    origins:
      - name: web
        servers: [127.0.0.1:9000, "http://127.0.0.1:9001/", "[::1]:9002"]
        balance: hash
        hash_key: header:X-User
        connect_timeout: 250ms
        response_timeout: 2m
        keepalive: {max_idle: 8, idle_timeout: 30s}
        health: {max_fails: 5, fail_timeout: 1h}
      - name: api
        servers: [127.0.0.1:9003]
        balance: least_conn
    routes:
      - path: /
        origin: web
      - path: /api/v1
        origin: api
      - path: /api
        origin: api
  - name: other
    hosts: [other.local]
    origins:
      - name: o
        servers: [127.0.0.1:9100]
        balance: hash
    routes:
      - path: /
        origin: o
)";

TEST(ConfigLoad, FullValidConfig) {
  LoadResult r = load_text(kFull, "t.yaml");
  ASSERT_TRUE(r.ok()) << join(r.errors);
  const Config& c = r.config;
  EXPECT_EQ(c.file, "t.yaml");
  EXPECT_GE(c.workers, 1u) << "workers: auto becomes the core count";

  ASSERT_EQ(c.listeners.size(), 2u);
  EXPECT_EQ(c.listeners[0].name, "main");
  EXPECT_EQ(c.listeners[0].address.text, "127.0.0.1:8080");
  EXPECT_EQ(c.listeners[0].address.host, "127.0.0.1");
  EXPECT_EQ(c.listeners[0].address.port, 8080);
  EXPECT_EQ(c.listeners[1].address.port, 8081);
  EXPECT_TRUE(c.has_admin);
  EXPECT_EQ(c.admin.port, 9901);

  // Limits: the given ones and the defaults for the rest.
  EXPECT_EQ(c.limits.max_header_bytes, 8192u);
  EXPECT_EQ(c.limits.max_body_bytes, 1048576u);
  EXPECT_EQ(c.limits.max_header_count, 100u);
  EXPECT_EQ(c.limits.max_uri_bytes, 8192u);

  // Durations in every unit.
  EXPECT_EQ(c.timeouts.client_header_ms, 500u);
  EXPECT_EQ(c.timeouts.client_body_ms, 2'000u);
  EXPECT_EQ(c.timeouts.client_send_ms, 60'000u);
  EXPECT_EQ(c.timeouts.keepalive_ms, 3'000u);
  EXPECT_EQ(c.timeouts.shutdown_ms, 3'600'000u);

  ASSERT_EQ(c.tenants.size(), 2u);
  const Tenant& t = c.tenants[0];
  EXPECT_EQ(t.name, "app");
  EXPECT_EQ(t.hosts, (std::vector<std::string>{"app.example.com", "*.cdn.example.com"}));
  ASSERT_EQ(t.origins.size(), 2u);
  const Origin& web = t.origins[0];
  EXPECT_EQ(web.name, "web");
  ASSERT_EQ(web.servers.size(), 3u);
  EXPECT_EQ(web.servers[1].text, "http://127.0.0.1:9001/");
  EXPECT_EQ(web.servers[1].host, "127.0.0.1");
  EXPECT_EQ(web.servers[1].port, 9001);
  EXPECT_EQ(web.servers[2].host, "::1");
  EXPECT_EQ(web.servers[2].sa.ss_family, AF_INET6);
  EXPECT_EQ(web.balance, Balance::Hash);
  EXPECT_EQ(web.hash_key.kind, HashKey::Header);
  EXPECT_EQ(web.hash_key.header, "X-User");
  EXPECT_EQ(web.connect_timeout_ms, 250u);
  EXPECT_EQ(web.response_timeout_ms, 120'000u);
  EXPECT_EQ(web.max_idle, 8u);
  EXPECT_EQ(web.idle_timeout_ms, 30'000u);
  EXPECT_EQ(web.max_fails, 5u);
  EXPECT_EQ(web.fail_timeout_ms, 3'600'000u);

  // Origin defaults.
  const Origin& api = t.origins[1];
  EXPECT_EQ(api.balance, Balance::LeastConn);
  EXPECT_EQ(api.hash_key.kind, HashKey::Uri);
  EXPECT_EQ(api.connect_timeout_ms, 5'000u);
  EXPECT_EQ(api.response_timeout_ms, 60'000u);
  EXPECT_EQ(api.max_idle, 32u);
  EXPECT_EQ(api.idle_timeout_ms, 60'000u);
  EXPECT_EQ(api.max_fails, 3u);
  EXPECT_EQ(api.fail_timeout_ms, 10'000u);
  // hash without hash_key hashes the URI.
  EXPECT_EQ(c.tenants[1].origins[0].balance, Balance::Hash);
  EXPECT_EQ(c.tenants[1].origins[0].hash_key.kind, HashKey::Uri);

  // Routes: longest path first, origins resolved.
  ASSERT_EQ(t.routes.size(), 3u);
  EXPECT_EQ(t.routes[0].path, "/api/v1");
  EXPECT_EQ(t.routes[1].path, "/api");
  EXPECT_EQ(t.routes[2].path, "/");
  EXPECT_EQ(t.routes[0].origin_index, 1u);
  EXPECT_EQ(t.routes[1].origin_index, 1u);
  EXPECT_EQ(t.routes[2].origin, "web");
  EXPECT_EQ(t.routes[2].origin_index, 0u);
}

TEST(ConfigLoad, MinimalConfigGetsDefaults) {
  LoadResult r = load_text(kListeners + "tenants:\n" + tenant("a", "a.local"), "t.yaml");
  ASSERT_TRUE(r.ok()) << join(r.errors);
  const Config& c = r.config;
  EXPECT_GE(c.workers, 1u);
  EXPECT_FALSE(c.has_admin);
  const Limits def_limits;
  EXPECT_EQ(c.limits.max_header_bytes, def_limits.max_header_bytes);
  EXPECT_EQ(c.limits.max_header_count, def_limits.max_header_count);
  EXPECT_EQ(c.limits.max_uri_bytes, def_limits.max_uri_bytes);
  EXPECT_EQ(c.limits.max_body_bytes, def_limits.max_body_bytes);
  EXPECT_EQ(c.limits.max_header_bytes, 16u * 1024);
  EXPECT_EQ(c.limits.max_body_bytes, 100ull << 20);
  EXPECT_EQ(c.timeouts.client_header_ms, 10'000u);
  EXPECT_EQ(c.timeouts.client_body_ms, 30'000u);
  EXPECT_EQ(c.timeouts.client_send_ms, 60'000u);
  EXPECT_EQ(c.timeouts.keepalive_ms, 60'000u);
  EXPECT_EQ(c.timeouts.shutdown_ms, 10'000u);
  ASSERT_EQ(c.tenants.size(), 1u);
  const Origin& o = c.tenants[0].origins[0];
  EXPECT_EQ(o.balance, Balance::RoundRobin);
  EXPECT_EQ(o.max_idle, 32u);
  EXPECT_EQ(o.idle_timeout_ms, 60'000u);
  EXPECT_EQ(o.max_fails, 3u);
  EXPECT_EQ(o.fail_timeout_ms, 10'000u);
}

TEST(ConfigLoad, ExplicitWorkers) {
  LoadResult r =
      load_text("workers: 4\n" + kListeners + "tenants:\n" + tenant("a", "a.local"), "t.yaml");
  ASSERT_TRUE(r.ok()) << join(r.errors);
  EXPECT_EQ(r.config.workers, 4u);
}

TEST(ConfigLoad, BadWorkers) {
  for (const char* w : {"0", "many", "-1", "257"}) {
    SCOPED_TRACE(w);
    const std::string y =
        std::string("workers: ") + w + "\n" + kListeners + "tenants:\n" + tenant("a", "a.local");
    expect_error(y, w, "workers");
  }
}

TEST(ConfigLoad, MaxBodyZeroIsAllowed) {
  LoadResult r = load_text(
      kListeners + "limits:\n  max_body_bytes: 0\ntenants:\n" + tenant("a", "a.local"), "t.yaml");
  ASSERT_TRUE(r.ok()) << join(r.errors);
  EXPECT_EQ(r.config.limits.max_body_bytes, 0u);
}

TEST(ConfigLoad, LoadFileMissing) {
  LoadResult r = load_file("/nonexistent/parapet-test.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.errors[0].rfind("/nonexistent/parapet-test.yaml:", 0), 0u) << r.errors[0];
}

// ---------------------------------------------------------------------------------------------
// Errors with their location

TEST(ConfigErrors, UnknownTopLevelKey) {
  const std::string y = kListeners + "listner: x\ntenants:\n" + tenant("a", "a.local");
  expect_error(y, "listner", "unknown key 'listner' in the top level");
}

TEST(ConfigErrors, UnknownTenantKey) {
  const std::string y =
      kListeners + "tenants:\n" + tenant("a", "a.local", "    hostz: [b.local]\n");
  expect_error(y, "hostz", "unknown key 'hostz' in a tenant");
}

TEST(ConfigErrors, UnknownOriginKey) {
  const std::string y = kListeners +
                        "tenants:\n"
                        "  - name: a\n"
                        "    hosts: [a.local]\n"
                        "    origins:\n"
                        "      - name: web\n"
                        "        servers: [127.0.0.1:9000]\n"
                        "        conect_timeout: 1s\n"
                        "    routes:\n"
                        "      - path: /\n"
                        "        origin: web\n";
  expect_error(y, "conect_timeout", "unknown key 'conect_timeout' in an origin");
}

TEST(ConfigErrors, UnknownKeysInSections) {
  expect_error(kListeners + "limits:\n  max_headers: 10\ntenants:\n" + tenant("a", "a.local"),
               "max_headers", "unknown key 'max_headers' in limits");
  expect_error(kListeners + "timeouts:\n  idle: 10s\ntenants:\n" + tenant("a", "a.local"),
               "idle:", "unknown key 'idle' in timeouts");
  expect_error(
      "listeners:\n  - name: main\n    adress: 127.0.0.1:1\ntenants:\n" + tenant("a", "a.local"),
      "adress", "unknown key 'adress' in a listener");
}

TEST(ConfigErrors, RouteToUnknownOrigin) {
  const std::string y = kListeners +
                        "tenants:\n"
                        "  - name: a\n"
                        "    hosts: [a.local]\n"
                        "    origins:\n"
                        "      - name: web\n"
                        "        servers: [127.0.0.1:9000]\n"
                        "    routes:\n"
                        "      - path: /\n"
                        "        origin: nowhere\n";
  expect_error(y, "nowhere", "route origin 'nowhere' is not an origin of tenant 'a'");
}

TEST(ConfigErrors, BadAddresses) {
  struct Case {
    const char* addr;
    const char* reason;
  };
  for (const Case& c :
       {Case{"127.0.0.1:99999", "bad port"}, Case{"127.0.0.1", "expected host:port"},
        Case{"127.0.0.1:http", "bad port"}, Case{"https://a/b:443", "expected host:port"},
        Case{"[::1]9000", "expected [ipv6]:port"}}) {
    SCOPED_TRACE(c.addr);
    const std::string y = kListeners +
                          "tenants:\n"
                          "  - name: a\n"
                          "    hosts: [a.local]\n"
                          "    origins:\n"
                          "      - name: web\n"
                          "        servers:\n"
                          "          - 127.0.0.1:9000\n"
                          "          - \"" +
                          c.addr +
                          "\"\n"
                          "    routes:\n"
                          "      - path: /\n"
                          "        origin: web\n";
    expect_error(y, std::string("\"") + c.addr, c.reason);
  }
}

TEST(ConfigErrors, BadListenerAddress) {
  const std::string y =
      "listeners:\n  - name: main\n    address: localhost\ntenants:\n" + tenant("a", "a.local");
  expect_error(y, "localhost", "listener address 'localhost': expected host:port");
}

TEST(ConfigErrors, BadDuration) {
  const std::string y =
      kListeners + "timeouts:\n  client_header: 10x\ntenants:\n" + tenant("a", "a.local");
  expect_error(y, "10x", "client_header: bad duration '10x'");
}

TEST(ConfigErrors, DurationOutOfRange) {
  expect_error(kListeners + "timeouts:\n  keepalive: 0s\ntenants:\n" + tenant("a", "a.local"), "0s",
               "bad duration '0s'");
  expect_error(kListeners + "timeouts:\n  keepalive: 25h\ntenants:\n" + tenant("a", "a.local"),
               "25h", "bad duration '25h'");
}

TEST(ConfigErrors, BadOriginDuration) {
  const std::string y = kListeners +
                        "tenants:\n"
                        "  - name: a\n"
                        "    hosts: [a.local]\n"
                        "    origins:\n"
                        "      - name: web\n"
                        "        servers: [127.0.0.1:9000]\n"
                        "        keepalive: {idle_timeout: 5 s}\n"
                        "    routes:\n"
                        "      - path: /\n"
                        "        origin: web\n";
  expect_error(y, "5 s", "idle_timeout: bad duration '5 s'");
}

TEST(ConfigErrors, DuplicateHostAcrossTenants) {
  const std::string y =
      kListeners + "tenants:\n" + tenant("a", "shared.local") + tenant("b", "Shared.Local");
  expect_error(y, "\"Shared.Local", "host 'shared.local' belongs to two tenants");
}

TEST(ConfigErrors, BadHostNames) {
  for (const char* h : {"a b.local", "a/b", "*.*.local", "a*.local", "*."}) {
    SCOPED_TRACE(h);
    const std::string y = kListeners + "tenants:\n" + tenant("a", h);
    expect_error(y, std::string("\"") + h, "bad host");
  }
}

TEST(ConfigErrors, MissingListeners) {
  const std::string y = "tenants:\n" + tenant("a", "a.local");
  expect_error(y, "tenants", "'listeners' is required");
}

TEST(ConfigErrors, EmptyListeners) {
  const std::string y = "listeners: []\ntenants:\n" + tenant("a", "a.local");
  expect_error(y, "[]", "listeners must be a non-empty list");
}

TEST(ConfigErrors, MissingTenants) {
  expect_error(kListeners, "listeners", "'tenants' is required");
}

TEST(ConfigErrors, YamlSyntaxError) {
  const std::string y = kListeners + "tenants: [unclosed\n";
  LoadResult r = load_text(y, "t.yaml");
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.errors.size(), 1u) << join(r.errors);
  EXPECT_EQ(r.errors[0].rfind("t.yaml:", 0), 0u) << r.errors[0];
  EXPECT_NE(r.errors[0].find(": YAML: "), std::string::npos) << r.errors[0];
  // The mark points into the file: line 4 (the bad line) or the end of the text.
  const int line = std::stoi(r.errors[0].substr(7));
  EXPECT_GE(line, 4);
  EXPECT_LE(line, 5);
}

TEST(ConfigErrors, YamlSyntaxErrorBadIndent) {
  const std::string y = "listeners:\n  - name: a\n   address: 127.0.0.1:1\n";
  LoadResult r = load_text(y, "t.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.errors[0].rfind("t.yaml:", 0), 0u) << r.errors[0];
  EXPECT_NE(r.errors[0].find("YAML: "), std::string::npos) << r.errors[0];
}

TEST(ConfigErrors, TopLevelNotAMapping) {
  expect_error("- a\n- b\n", "- a", "the top level must be a mapping");
}

TEST(Config, TenantCacheLoaded) {
  const std::string y = kListeners +
                        "cache: {max_size: 64MiB, max_object_size: 1MiB}\n"
                        "tenants:\n" +
                        tenant("a", "a.local",
                               "    cache:\n"
                               "      key: {ignore_query: true, headers: [X-Device], "
                               "cookies: [lang]}\n"
                               "      ttl_by_status: {404: 1m}\n"
                               "      stale_if_error: 5m\n"
                               "      rules:\n"
                               "        - {path: /static/, cache_everything: true, ttl: 1h}\n"
                               "        - {bypass_cookie: session}\n");
  LoadResult r = load_text(y, "t.yaml");
  ASSERT_TRUE(r.ok()) << join(r.errors);
  EXPECT_EQ(r.config.cache.max_bytes, 64ull << 20);
  EXPECT_EQ(r.config.cache.max_object_bytes, 1ull << 20);
  const TenantCache& c = r.config.tenants[0].cache;
  EXPECT_TRUE(c.enabled);
  EXPECT_TRUE(c.ignore_query);
  EXPECT_EQ(c.key_headers, std::vector<std::string>{"x-device"});
  EXPECT_EQ(c.key_cookies, std::vector<std::string>{"lang"});
  ASSERT_EQ(c.ttl_by_status.size(), 1u);
  EXPECT_EQ(c.ttl_by_status[0], (std::pair<uint16_t, int64_t>{404, 60}));
  EXPECT_EQ(c.stale_if_error_s, 300);
  ASSERT_EQ(c.rules.size(), 2u);
  EXPECT_EQ(c.rules[0].path, "/static/");
  EXPECT_TRUE(c.rules[0].cache_everything);
  EXPECT_EQ(c.rules[0].ttl_s, 3600);
  EXPECT_TRUE(c.rules[1].bypass);
  EXPECT_EQ(c.rules[1].bypass_cookie, "session");
}

TEST(ConfigErrors, BadCacheSettings) {
  const std::string base = kListeners + "tenants:\n";
  expect_error(kListeners + "cache: {max_size: lots}\n" + "tenants:\n" + tenant("a", "a.local"),
               "lots", "cache.max_size: bad size 'lots'");
  expect_error(base + tenant("a", "a.local", "    cache: {enabled: yes-ish}\n"), "yes-ish",
               "cache.enabled must be true or false");
  expect_error(base + tenant("a", "a.local", "    cache: {rules: [{path: static}]}\n"), "static",
               "cache rule path must start with '/'");
  expect_error(base + tenant("a", "a.local", "    cache: {ttl_by_status: {99: 1m}}\n"), "99",
               "cache.ttl_by_status status must be between 100 and 599");
  expect_error(base + tenant("a", "a.local", "    cache: {heuristic_fraction: 2}\n"), "2}",
               "cache.heuristic_fraction must be a number between 0 and 1");
  expect_error(base + tenant("a", "a.local", "    cache: {ttl: 1m}\n"), "ttl",
               "unknown key 'ttl' in tenant cache");
}

TEST(Config, TenantLuaForms) {
  LoadResult r = load_text(kListeners + "tenants:\n" +
                               tenant("a", "a.local",
                                      "    lua: {access: lua/a.lua, log: /abs/l.lua,\n"
                                      "          max_instructions: 20000,\n"
                                      "          breaker: {failures: 3, cooldown: 2s}}\n") +
                               tenant("b", "b.local", "    lua: {script: m.lua}\n"),
                           "/etc/parapet/t.yaml");
  ASSERT_TRUE(r.ok()) << join(r.errors);
  const TenantLua& a = r.config.tenants[0].lua;
  EXPECT_TRUE(a.script.empty());
  EXPECT_EQ(a.phase_files[0], "/etc/parapet/lua/a.lua");  // relative to the config file
  EXPECT_TRUE(a.phase_files[1].empty());
  EXPECT_EQ(a.phase_files[2], "/abs/l.lua");
  EXPECT_EQ(a.instructions, 20000u);
  EXPECT_EQ(a.breaker_failures, 3u);
  EXPECT_EQ(a.breaker_cooldown_ms, 2000u);
  const TenantLua& b = r.config.tenants[1].lua;
  EXPECT_EQ(b.script, "/etc/parapet/m.lua");
  EXPECT_EQ(b.breaker_failures, 5u);  // the defaults
  EXPECT_EQ(b.breaker_cooldown_ms, 10000u);
  EXPECT_EQ(b.instructions, 50'000'000u);
}

TEST(ConfigErrors, TenantLua) {
  expect_error(kListeners + "tenants:\n" + tenant("a", "a.local", "    lua: {on_error: x}\n"),
               "{on_error",
               "lua needs script (a module file) or per-phase files (access, header_filter, log)");
  expect_error(kListeners + "tenants:\n" +
                   tenant("a", "a.local", "    lua: {access: a.lua, script: m.lua}\n"),
               "m.lua", "lua.script (a module) and per-phase files");
  expect_error(kListeners + "tenants:\n" + tenant("a", "a.local", "    lua: {log: ''}\n"), "''",
               "lua.log must name a file");
  expect_error(kListeners + "tenants:\n" +
                   tenant("a", "a.local", "    lua: {script: a.lua, breaker: {failures: x}}\n"),
               "x}", "lua.breaker.failures must be a non-negative integer");
  expect_error(kListeners + "tenants:\n" +
                   tenant("a", "a.local", "    lua: {script: a.lua, breaker: {cooldown: 1ms}}\n"),
               "1ms", "lua.breaker.cooldown must be a duration from 100ms to 1h");
  expect_error(kListeners + "tenants:\n" +
                   tenant("a", "a.local", "    lua: {script: a.lua, breaker: {open: 1}}\n"),
               "open", "unknown key 'open' in lua.breaker");
  expect_error(kListeners + "tenants:\n" +
                   tenant("a", "a.local", "    lua: {script: a.lua, max_instructions: 5}\n"),
               "5}", "lua.max_instructions must be between 10000 and");
  expect_error(kListeners + "tenants:\n" +
                   tenant("a", "a.local", "    lua: {script: a.lua, on_error: maybe}\n"),
               "maybe", "lua.on_error must be fail_closed or fail_open");
  expect_error(kListeners + "tenants:\n" +
                   tenant("a", "a.local", "    lua: {script: a.lua, max_time: 5s}\n"),
               "5s", "lua.max_time must be a duration from 1ms to 1s");
}

TEST(ConfigErrors, ListenerTlsAndPolicyShapes) {
  expect_error(
      "listeners:\n  - name: main\n    address: 127.0.0.1:1\n    tls: yes-please\ntenants:\n" +
          tenant("a", "a.local"),
      "yes-please", "listener tls must be a mapping");
  expect_error(kListeners + "tenants:\n" + tenant("a", "a.local", "    tls: {certificates: []}\n"),
               "[]", "tls.certificates must be a non-empty list");
  expect_error(kListeners + "policies: [p]\ntenants:\n" + tenant("a", "a.local"), "p]",
               "a policy must be a mapping");
}

TEST(ConfigErrors, HashKeyWithoutBalanceHash) {
  const std::string y = kListeners +
                        "tenants:\n"
                        "  - name: a\n"
                        "    hosts: [a.local]\n"
                        "    origins:\n"
                        "      - name: web\n"
                        "        servers: [127.0.0.1:9000]\n"
                        "        hash_key: client_ip\n"
                        "    routes:\n"
                        "      - path: /\n"
                        "        origin: web\n";
  expect_error(y, "client_ip", "hash_key needs balance: hash");
  std::string y2 = y;
  y2.replace(y2.find("        hash_key"), 0, "        balance: round_robin\n");
  expect_error(y2, "client_ip", "hash_key needs balance: hash");
}

std::string origin_tls_yaml(const std::string& server, const std::string& tls) {
  return kListeners +
         "tenants:\n"
         "  - name: a\n"
         "    hosts: [a.local]\n"
         "    origins:\n"
         "      - name: web\n"
         "        servers: [\"" +
         server +
         "\"]\n"
         "        tls: " +
         tls +
         "\n"
         "    routes:\n"
         "      - path: /\n"
         "        origin: web\n";
}

TEST(ConfigErrors, OriginTls) {
  expect_error(origin_tls_yaml("127.0.0.1:9000", "{verify: false}"), "{verify",
               "origin tls needs at least one https:// server");
  expect_error(origin_tls_yaml("https://127.0.0.1:9000", "{verify: maybe}"), "maybe",
               "origin tls.verify must be true or false");
  expect_error(origin_tls_yaml("https://127.0.0.1:9000", "{cert: c.pem}"), "{cert",
               "origin tls.cert and tls.key go together");
  expect_error(origin_tls_yaml("https://127.0.0.1:9000", "{server_name: \"a b\"}"), "\"a b",
               "origin tls.server_name must be a DNS name");
  expect_error(origin_tls_yaml("https://127.0.0.1:9000", "{sni: x}"), "sni",
               "unknown key 'sni' in origin tls");
}

TEST(Config, OriginTlsLoaded) {
  LoadResult r = load_text(
      origin_tls_yaml("https://127.0.0.1:9443",
                      "{ca: ca.pem, server_name: api.internal, cert: /c.pem, key: k.pem}"),
      "/etc/parapet/t.yaml");
  ASSERT_TRUE(r.ok()) << join(r.errors);
  const Origin& o = r.config.tenants[0].origins[0];
  EXPECT_TRUE(o.servers[0].tls);
  EXPECT_EQ(o.tls.ca, "/etc/parapet/ca.pem");
  EXPECT_EQ(o.tls.server_name, "api.internal");
  EXPECT_EQ(o.tls.cert, "/c.pem");
  EXPECT_EQ(o.tls.key, "/etc/parapet/k.pem");
  EXPECT_TRUE(o.tls.verify);
}

TEST(ConfigErrors, BadBalanceAndHashKey) {
  const std::string base = kListeners +
                           "tenants:\n"
                           "  - name: a\n"
                           "    hosts: [a.local]\n"
                           "    origins:\n"
                           "      - name: web\n"
                           "        servers: [127.0.0.1:9000]\n"
                           "        XXX\n"
                           "    routes:\n"
                           "      - path: /\n"
                           "        origin: web\n";
  std::string y = base;
  y.replace(y.find("XXX"), 3, "balance: random");
  expect_error(y, "random", "balance must be round_robin, least_conn or hash");
  y = base;
  y.replace(y.find("XXX"), 3, "balance: hash\n        hash_key: 'header:'");
  expect_error(y, "'header:'", "hash_key must be uri, client_ip or header:NAME");
}

TEST(ConfigErrors, RoutePathAndDuplicates) {
  std::string y = kListeners +
                  "tenants:\n"
                  "  - name: a\n"
                  "    hosts: [a.local]\n"
                  "    origins:\n"
                  "      - name: web\n"
                  "        servers: [127.0.0.1:9000]\n"
                  "      - name: web\n"
                  "        servers: [127.0.0.1:9001]\n"
                  "    routes:\n"
                  "      - path: api\n"
                  "        origin: web\n"
                  "      - path: /x\n"
                  "        origin: web\n"
                  "      - path: /x\n"
                  "        origin: web\n";
  expect_error(y, "api", "route path must start with '/'");
  expect_error(y, "/x", "duplicate route path '/x'", 1);
  expect_error(y, "web", "duplicate origin name 'web'", 1);
}

TEST(ConfigErrors, LimitsOutOfRange) {
  expect_error(kListeners + "limits:\n  max_header_bytes: 100\ntenants:\n" + tenant("a", "a.local"),
               "100", "max_header_bytes must be between 256");
  expect_error(kListeners + "limits:\n  max_header_count: -3\ntenants:\n" + tenant("a", "a.local"),
               "-3", "max_header_count must be a non-negative integer");
}

TEST(ConfigErrors, ManyErrorsAreAllReported) {
  const std::string y =
      "workers: 0\n"
      "listeners: []\n"
      "bogus: 1\n"
      "timeouts: {keepalive: 1y}\n"
      "tenants:\n" +
      tenant("a", "a.local") + tenant("b", "a.local");
  LoadResult r = load_text(y, "t.yaml");
  EXPECT_FALSE(r.ok());
  EXPECT_GE(r.errors.size(), 5u) << join(r.errors);
}

// ---------------------------------------------------------------------------------------------
// parse_duration_ms

TEST(ParseDuration, Units) {
  struct Case {
    const char* text;
    uint64_t ms;
  };
  for (const Case& c : {Case{"500ms", 500}, Case{"2s", 2'000}, Case{"1m", 60'000},
                        Case{"1h", 3'600'000}, Case{"3", 3'000}, Case{"0", 0}, Case{"0ms", 0},
                        Case{"90m", 5'400'000}, Case{"007s", 7'000}}) {
    SCOPED_TRACE(c.text);
    uint64_t ms = 12345;
    EXPECT_TRUE(parse_duration_ms(c.text, &ms));
    EXPECT_EQ(ms, c.ms);
  }
}

TEST(ParseDuration, Refused) {
  for (const char* t : {"", "10x", "ms", "s", "-1s", "1.5s", " 1s", "1s ", "1 s", "1S", "1sec",
                        "1d", "1ms5", "99999999999999999999", "0x10"}) {
    SCOPED_TRACE(std::string("'") + t + "'");
    uint64_t ms = 12345;
    EXPECT_FALSE(parse_duration_ms(t, &ms));
    EXPECT_EQ(ms, 12345u) << "output untouched on failure";
  }
}

// ---------------------------------------------------------------------------------------------
// parse_address

TEST(ParseAddress, Ipv4) {
  Address a;
  std::string why;
  ASSERT_TRUE(parse_address("127.0.0.1:8080", &a, &why)) << why;
  EXPECT_EQ(a.text, "127.0.0.1:8080");
  EXPECT_EQ(a.host, "127.0.0.1");
  EXPECT_EQ(a.port, 8080);
  ASSERT_EQ(a.sa.ss_family, AF_INET);
  EXPECT_EQ(a.sa_len, sizeof(sockaddr_in));
  const auto* sin = reinterpret_cast<const sockaddr_in*>(&a.sa);
  EXPECT_EQ(ntohs(sin->sin_port), 8080);
  EXPECT_EQ(ntohl(sin->sin_addr.s_addr), 0x7f000001u);
}

TEST(ParseAddress, HttpPrefixAndTrailingSlash) {
  Address a;
  std::string why;
  ASSERT_TRUE(parse_address("http://10.1.2.3:80/", &a, &why)) << why;
  EXPECT_EQ(a.text, "http://10.1.2.3:80/");
  EXPECT_EQ(a.host, "10.1.2.3");
  EXPECT_EQ(a.port, 80);
}

TEST(ParseAddress, HttpsWithAndWithoutPort) {
  Address a;
  std::string why;
  ASSERT_TRUE(parse_address("https://127.0.0.1:8443", &a, &why)) << why;
  EXPECT_TRUE(a.tls);
  EXPECT_EQ(a.host, "127.0.0.1");
  EXPECT_EQ(a.port, 8443);
  ASSERT_TRUE(parse_address("https://localhost", &a, &why)) << why;
  EXPECT_TRUE(a.tls);
  EXPECT_EQ(a.host, "localhost");
  EXPECT_EQ(a.port, 443);
  ASSERT_TRUE(parse_address("https://[::1]", &a, &why)) << why;
  EXPECT_EQ(a.port, 443);
  ASSERT_TRUE(parse_address("http://127.0.0.1", &a, &why)) << why;
  EXPECT_FALSE(a.tls);
  EXPECT_EQ(a.port, 80);
}

TEST(ParseAddress, Ipv6) {
  Address a;
  std::string why;
  ASSERT_TRUE(parse_address("[::1]:9000", &a, &why)) << why;
  EXPECT_EQ(a.host, "::1");
  EXPECT_EQ(a.port, 9000);
  ASSERT_EQ(a.sa.ss_family, AF_INET6);
  EXPECT_EQ(a.sa_len, sizeof(sockaddr_in6));
  EXPECT_EQ(ntohs(reinterpret_cast<const sockaddr_in6*>(&a.sa)->sin6_port), 9000);
}

TEST(ParseAddress, PortBounds) {
  Address a;
  std::string why;
  EXPECT_TRUE(parse_address("127.0.0.1:65535", &a, &why)) << why;
  EXPECT_EQ(a.port, 65535);
  EXPECT_TRUE(parse_address("127.0.0.1:0", &a, &why)) << why;
  EXPECT_EQ(a.port, 0);
}

TEST(ParseAddress, Refused) {
  struct Case {
    const char* text;
    const char* why;
  };
  for (const Case& c :
       {Case{"127.0.0.1", "expected host:port"}, Case{":80", "expected host:port"},
        Case{"", "expected host:port"}, Case{"127.0.0.1:", "bad port ''"},
        Case{"127.0.0.1:65536", "bad port '65536'"}, Case{"127.0.0.1:123456", "bad port"},
        Case{"127.0.0.1:-1", "bad port"}, Case{"127.0.0.1:8o", "bad port"},
        Case{"[::1]", "expected [ipv6]:port"}, Case{"[::1]:", "bad port"},
        Case{"[::1", "expected [ipv6]:port"}, Case{"https://a/b:443", "expected host:port"},
        Case{"https://", "expected host:port"}, Case{"https://[::1]x", "expected [ipv6]:port"}}) {
    SCOPED_TRACE(c.text);
    Address a;
    std::string why;
    EXPECT_FALSE(parse_address(c.text, &a, &why));
    EXPECT_NE(why.find(c.why), std::string::npos) << "why: " << why;
  }
}

}  // namespace
}  // namespace parapet::config
