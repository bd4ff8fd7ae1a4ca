// Unit tests of the runtime snapshot (proxy/snapshot.h): host lookup, routes, origin groups and
// the consistent-hash ring.
#include "proxy/snapshot.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>

namespace parapet {
namespace {

config::Config load(const std::string& yaml) {
  config::LoadResult r = config::load_text(yaml, "t.yaml");
  std::string all;
  for (const std::string& e : r.errors) all += e + "\n";
  EXPECT_TRUE(r.ok()) << all;
  return std::move(r.config);
}

const char* const kYaml = R"(
listeners:
  - name: main
    address: 127.0.0.1:0
tenants:
  - name: app
    hosts: [app.local, WWW.App.Local]
    origins:
      - name: web
        servers: [127.0.0.1:9001, 127.0.0.1:9002, 127.0.0.1:9003]
      - name: api
        servers: ["127.0.0.1:9004"]
        balance: hash
    routes:
      - path: /
        origin: web
      - path: /api/v2
        origin: api
      - path: /api
        origin: web
  - name: demo
    hosts: ["*.demo.local"]
    origins:
      - name: d
        servers: [127.0.0.1:9101, 127.0.0.1:9102]
    routes:
      - path: /static
        origin: d
  - name: example
    hosts: ["*.example.com"]
    origins:
      - name: e
        servers: [127.0.0.1:9201]
    routes:
      - path: /
        origin: e
  - name: deep
    hosts: ["*.a.example.com", "exact.b.example.com"]
    origins:
      - name: x
        servers: [127.0.0.1:9301]
    routes:
      - path: /
        origin: x
)";

constexpr int kApp = 0, kDemo = 1, kExample = 2, kDeep = 3;

TEST(Snapshot, ExactHosts) {
  Snapshot s(load(kYaml));
  EXPECT_EQ(s.find_tenant("app.local"), kApp);
  // Hosts are lowercased at load; lookups are given lowercased hosts.
  EXPECT_EQ(s.find_tenant("www.app.local"), kApp);
  EXPECT_EQ(s.find_tenant("exact.b.example.com"), kDeep);
}

TEST(Snapshot, UnknownHost) {
  Snapshot s(load(kYaml));
  EXPECT_EQ(s.find_tenant("nope.local"), -1);
  EXPECT_EQ(s.find_tenant(""), -1);
  EXPECT_EQ(s.find_tenant("local"), -1);
  EXPECT_EQ(s.find_tenant("app.local.evil"), -1);
  EXPECT_EQ(s.find_tenant("xapp.local"), -1);
}

TEST(Snapshot, WildcardMatchesAnySubdomainDepth) {
  Snapshot s(load(kYaml));
  EXPECT_EQ(s.find_tenant("a.demo.local"), kDemo);
  EXPECT_EQ(s.find_tenant("a.b.demo.local"), kDemo);
  EXPECT_EQ(s.find_tenant("x.y.z.demo.local"), kDemo);
}

TEST(Snapshot, WildcardDoesNotMatchTheBareDomain) {
  Snapshot s(load(kYaml));
  EXPECT_EQ(s.find_tenant("demo.local"), -1);
  EXPECT_EQ(s.find_tenant(".demo.local"), kDemo) << "an empty label still ends in .demo.local";
  EXPECT_EQ(s.find_tenant("xdemo.local"), -1);
  EXPECT_EQ(s.find_tenant("example.com"), -1);
}

TEST(Snapshot, BareDomainMatchesWhenListed) {
  Snapshot s(load(R"(
listeners: [{name: main, address: "127.0.0.1:0"}]
tenants:
  - name: demo
    hosts: ["*.demo.local", demo.local]
    origins: [{name: d, servers: ["127.0.0.1:9101"]}]
    routes: [{path: /, origin: d}]
)"));
  EXPECT_EQ(s.find_tenant("demo.local"), 0);
  EXPECT_EQ(s.find_tenant("a.demo.local"), 0);
}

TEST(Snapshot, LongestWildcardWins) {
  Snapshot s(load(kYaml));
  EXPECT_EQ(s.find_tenant("www.example.com"), kExample);
  EXPECT_EQ(s.find_tenant("b.example.com"), kExample);
  EXPECT_EQ(s.find_tenant("x.b.example.com"), kExample);
  EXPECT_EQ(s.find_tenant("x.a.example.com"), kDeep);
  EXPECT_EQ(s.find_tenant("y.x.a.example.com"), kDeep);
  // "a.example.com" is not under *.a.example.com, but is under *.example.com.
  EXPECT_EQ(s.find_tenant("a.example.com"), kExample);
}

TEST(Snapshot, ExactBeatsWildcard) {
  Snapshot s(load(R"(
listeners: [{name: main, address: "127.0.0.1:0"}]
tenants:
  - name: wild
    hosts: ["*.example.com"]
    origins: [{name: o, servers: ["127.0.0.1:9101"]}]
    routes: [{path: /, origin: o}]
  - name: exact
    hosts: [special.example.com]
    origins: [{name: o, servers: ["127.0.0.1:9102"]}]
    routes: [{path: /, origin: o}]
)"));
  EXPECT_EQ(s.find_tenant("special.example.com"), 1);
  EXPECT_EQ(s.find_tenant("other.example.com"), 0);
  EXPECT_EQ(s.find_tenant("x.special.example.com"), 0);
}

TEST(Snapshot, LongestRoutePrefixWins) {
  Snapshot s(load(kYaml));
  const config::Route* r = s.find_route(kApp, "/");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->path, "/");
  EXPECT_EQ(r->origin, "web");
  EXPECT_EQ(r->origin_index, 0u);

  r = s.find_route(kApp, "/index.html");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->path, "/");

  r = s.find_route(kApp, "/api");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->path, "/api");

  r = s.find_route(kApp, "/api/users");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->path, "/api");
  EXPECT_EQ(r->origin, "web");

  r = s.find_route(kApp, "/api/v2");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->path, "/api/v2");
  EXPECT_EQ(r->origin, "api");
  EXPECT_EQ(r->origin_index, 1u);

  r = s.find_route(kApp, "/api/v2/things?x=1");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->path, "/api/v2");
}

TEST(Snapshot, NoRouteMatches) {
  Snapshot s(load(kYaml));
  EXPECT_EQ(s.find_route(kDemo, "/"), nullptr);
  EXPECT_EQ(s.find_route(kDemo, "/stat"), nullptr);
  EXPECT_EQ(s.find_route(kDemo, ""), nullptr);
  const config::Route* r = s.find_route(kDemo, "/static/app.js");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->path, "/static");
}

TEST(Snapshot, GroupsHaveGlobalServerIds) {
  Snapshot s(load(kYaml));
  EXPECT_EQ(s.group_count(), 5u);
  EXPECT_EQ(s.server_count(), 8u);

  const OriginGroup& web = s.group(kApp, 0);
  ASSERT_NE(web.cfg, nullptr);
  EXPECT_EQ(web.cfg->name, "web");
  EXPECT_EQ(web.tenant, static_cast<uint32_t>(kApp));
  EXPECT_EQ(web.index, 0u);
  EXPECT_EQ(web.server_ids, (std::vector<uint32_t>{0, 1, 2}));

  const OriginGroup& api = s.group(kApp, 1);
  EXPECT_EQ(api.cfg->name, "api");
  EXPECT_EQ(api.cfg->balance, config::Balance::Hash);
  EXPECT_EQ(api.index, 1u);
  EXPECT_EQ(api.server_ids, (std::vector<uint32_t>{3}));

  const OriginGroup& d = s.group(kDemo, 0);
  EXPECT_EQ(d.cfg->name, "d");
  EXPECT_EQ(d.tenant, static_cast<uint32_t>(kDemo));
  EXPECT_EQ(d.index, 2u);
  EXPECT_EQ(d.server_ids, (std::vector<uint32_t>{4, 5}));

  EXPECT_EQ(s.group(kExample, 0).server_ids, (std::vector<uint32_t>{6}));
  EXPECT_EQ(s.group(kDeep, 0).server_ids, (std::vector<uint32_t>{7}));

  // server(id) and server_origin(id) agree with the groups.
  for (size_t g = 0; g < 2; ++g) {
    const OriginGroup& grp = s.group(kApp, g);
    for (size_t i = 0; i < grp.server_ids.size(); ++i) {
      uint32_t id = grp.server_ids[i];
      EXPECT_EQ(&s.server_origin(id), grp.cfg);
      EXPECT_EQ(&s.server(id), &grp.cfg->servers[i]);
    }
  }
  EXPECT_EQ(s.server(4).text, "127.0.0.1:9101");
  EXPECT_EQ(s.server(4).port, 9101);
  EXPECT_EQ(s.server(7).text, "127.0.0.1:9301");
}

TEST(Snapshot, HashRingIsSortedWith160PointsPerServer) {
  Snapshot s(load(kYaml));
  const std::pair<int, size_t> groups[] = {
      {kApp, 0}, {kApp, 1}, {kDemo, 0}, {kExample, 0}, {kDeep, 0}};
  for (auto [t, o] : groups) {
    const OriginGroup& grp = s.group(static_cast<uint32_t>(t), o);
    SCOPED_TRACE(grp.cfg->name);
    const size_t n = grp.server_ids.size();
    ASSERT_EQ(grp.ring.size(), 160 * n);
    EXPECT_TRUE(std::is_sorted(grp.ring.begin(), grp.ring.end()));
    std::map<uint32_t, int> per_server;
    for (const auto& [point, idx] : grp.ring) {
      ASSERT_LT(idx, n);
      ++per_server[idx];
    }
    EXPECT_EQ(per_server.size(), n);
    for (const auto& [idx, count] : per_server) EXPECT_EQ(count, 160) << "server index " << idx;
    // Points are distinct (a collision would make the ring order depend on the server index).
    auto dup = std::adjacent_find(grp.ring.begin(), grp.ring.end(),
                                  [](const auto& a, const auto& b) { return a.first == b.first; });
    EXPECT_EQ(dup, grp.ring.end());
  }
}

TEST(Snapshot, RingIsTheSameForTheSameConfig) {
  Snapshot a(load(kYaml));
  Snapshot b(load(kYaml));
  EXPECT_EQ(a.group(kApp, 0).ring, b.group(kApp, 0).ring);
  EXPECT_EQ(a.group(kDemo, 0).ring, b.group(kDemo, 0).ring);
  EXPECT_NE(a.group(kApp, 0).ring, a.group(kDemo, 0).ring);
}

TEST(Snapshot, Hash64IsDeterministic) {
  EXPECT_EQ(hash64("hello"), hash64("hello"));
  EXPECT_EQ(hash64(std::string("/path?q=1")), hash64(std::string_view("/path?q=1")));
  EXPECT_NE(hash64("hello"), hash64("hellp"));
  EXPECT_NE(hash64(""), hash64("a"));
  // Pinned values (FNV-1a 64 then the splitmix64 finalizer): the ring must not move between
  // builds, or every worker and restart would send keys to other servers.
  EXPECT_EQ(hash64(""), 0xf52a15e9a9b5e89bull);
  EXPECT_EQ(hash64("127.0.0.1:9001#0"), 0x9463eb8cf4f866beull);
}

TEST(Snapshot, Hash64SpreadsSimilarKeys) {
  // Neighbouring keys land far apart: the top bits differ for most pairs.
  int differing_top = 0;
  for (int i = 0; i < 100; ++i) {
    uint64_t a = hash64("key" + std::to_string(i));
    uint64_t b = hash64("key" + std::to_string(i + 1));
    if ((a >> 60) != (b >> 60)) ++differing_top;
  }
  EXPECT_GT(differing_top, 70);
}

}  // namespace
}  // namespace parapet
