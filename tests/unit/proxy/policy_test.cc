// Unit tests of proxy/policy.h: the rate-limit counters (window, mitigation timeout, eviction,
// per-tenant caps, counting without acting) and Policies::build (per-tenant lists, overrides,
// the ContainsIndex wiring).
#include "proxy/policy.h"

#include <gtest/gtest.h>

#include <string>

namespace parapet {
namespace {

using Limit = RateCounter::Limit;

Limit limit(uint32_t period_s, uint32_t requests, uint32_t mitigation_s = 0) {
  Limit l;
  l.period_s = period_s;
  l.requests = requests;
  l.mitigation_s = mitigation_s;
  return l;
}

TEST(RateCounterTest, SlidingWindow) {
  LocalRateCounter c;
  const Limit l = limit(10, 3);
  int64_t t = 1'000'000;
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(c.hit("a", "k", l, true, t + i).limited) << i;
  RateCounter::Result r = c.hit("a", "k", l, true, t + 3);
  EXPECT_TRUE(r.limited);
  // No mitigation timeout: refused until the current fixed window ends (10 s after it began).
  EXPECT_EQ(r.retry_after_s, 10u);
  EXPECT_TRUE(c.hit("a", "k", l, true, t + 9'999).limited);
  // At t+10 s a new window begins; the previous one (4 counted) still weighs almost fully:
  // 4 * 0.95 + 1 > 3.
  EXPECT_TRUE(c.hit("a", "k", l, true, t + 10'500).limited);
  // Two full periods later nothing of the old windows remains.
  EXPECT_FALSE(c.hit("a", "k", l, true, t + 40'000).limited);
  // Keys and tenants count apart.
  EXPECT_FALSE(c.hit("a", "other", l, true, t + 4).limited);
  EXPECT_FALSE(c.hit("b", "k", l, true, t + 4).limited);
}

TEST(RateCounterTest, PreviousWindowWeighsByOverlap) {
  LocalRateCounter c;
  const Limit l = limit(10, 4);
  const int64_t t = 5'000'000;
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(c.hit("a", "k", l, true, t).limited);
  // Halfway through the next window: 4 * 0.5 + 1, 2, 3 <= 4, then 4 * 0.5 + 3 = 5 > 4.
  EXPECT_FALSE(c.hit("a", "k", l, true, t + 15'000).limited);
  EXPECT_FALSE(c.hit("a", "k", l, true, t + 15'000).limited);
  EXPECT_TRUE(c.hit("a", "k", l, true, t + 15'000).limited);
}

TEST(RateCounterTest, MitigationTimeout) {
  LocalRateCounter c;
  const Limit l = limit(10, 1, 60);
  const int64_t t = 1'000'000;
  EXPECT_FALSE(c.hit("a", "k", l, true, t).limited);
  RateCounter::Result r = c.hit("a", "k", l, true, t + 1'000);
  EXPECT_TRUE(r.limited);
  EXPECT_EQ(r.retry_after_s, 60u);
  // Still refused long after the windows are over, until the timeout ends ...
  r = c.hit("a", "k", l, true, t + 60'500);
  EXPECT_TRUE(r.limited);
  EXPECT_EQ(r.retry_after_s, 1u);
  // ... and refused requests do not count: once it ends, the key starts afresh.
  EXPECT_FALSE(c.hit("a", "k", l, true, t + 61'000).limited);
}

TEST(RateCounterTest, UncountedRequestsOnlyLearnTheState) {
  LocalRateCounter c;
  const Limit l = limit(10, 2, 30);
  const int64_t t = 1'000'000;
  // Not counted: never refused, never creates a key.
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(c.hit("a", "k", l, false, t).limited);
  EXPECT_EQ(c.size(), 0u);
  EXPECT_FALSE(c.hit("a", "k", l, true, t).limited);
  EXPECT_FALSE(c.hit("a", "k", l, true, t).limited);
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(c.hit("a", "k", l, false, t).limited);
  EXPECT_TRUE(c.hit("a", "k", l, true, t).limited);  // the third counted one
  // Once refused, uncounted requests are refused too, until the timeout ends.
  EXPECT_TRUE(c.hit("a", "k", l, false, t + 1'000).limited);
  EXPECT_FALSE(c.hit("a", "k", l, false, t + 31'000).limited);
}

// Regression: when every key of a full shard was blocked, make_room() found nothing to evict
// and the map grew past its limit without bound.
TEST(RateCounterTest, CapHoldsWhenEveryKeyIsBlocked) {
  LocalRateCounter c(16);  // one key per shard
  const Limit l = limit(60, 1, 600);
  for (int i = 0; i < 500; ++i) {
    const std::string key = "k" + std::to_string(i);
    EXPECT_FALSE(c.hit("a", key, l, true, 1000).limited);
    EXPECT_TRUE(c.hit("a", key, l, true, 1000).limited);  // over: blocked for 600 s
    ASSERT_LE(c.size(), 16u) << "after key " << i;
  }
}

TEST(RateCounterTest, EvictionKeepsBlockedKeysWhileOthersCanGo) {
  LocalRateCounter c(16 * 8);  // 8 keys per tenant per shard, 128 in all
  const Limit l = limit(60, 1, 600);
  int64_t t = 1'000'000;
  // A blocked key, then a flood of one-request keys of the same tenant.
  EXPECT_FALSE(c.hit("a", "bad", l, true, t).limited);
  EXPECT_TRUE(c.hit("a", "bad", l, true, t).limited);
  for (int i = 0; i < 5000; ++i) {
    c.hit("a", "flood" + std::to_string(i), l, true, ++t);
    ASSERT_LE(c.size("a"), 128u);
  }
  EXPECT_TRUE(c.hit("a", "bad", l, false, t).limited);  // unblocked keys went first
  // Stale keys go before any other: after two periods, room without evicting "bad".
  t += 121'000;
  for (int i = 0; i < 200; ++i) c.hit("a", "later" + std::to_string(i), l, true, t);
  EXPECT_TRUE(c.hit("a", "bad", l, false, t).limited);
}

TEST(RateCounterTest, OneTenantCannotEvictAnother) {
  LocalRateCounter c(16 * 8);
  const Limit l = limit(60, 3);
  const int64_t t = 1'000'000;
  // Tenant b's clients have each used 2 of their 3 requests.
  for (int i = 0; i < 20; ++i) {
    for (int k = 0; k < 2; ++k) c.hit("b", "client" + std::to_string(i), l, true, t);
  }
  EXPECT_EQ(c.size("b"), 20u);
  // Tenant a floods: it stays within its own share and b keeps every key.
  for (int i = 0; i < 10000; ++i) c.hit("a", "k" + std::to_string(i), l, true, t + 1 + i);
  EXPECT_LE(c.size("a"), 128u);
  EXPECT_GE(c.size("a"), 64u);
  EXPECT_EQ(c.size("b"), 20u);
  // b's counters are intact: the third request passes, the fourth is refused.
  for (int i = 0; i < 20; ++i) {
    const std::string key = "client" + std::to_string(i);
    EXPECT_FALSE(c.hit("b", key, l, true, t + 20'000).limited) << key;
    EXPECT_TRUE(c.hit("b", key, l, true, t + 20'000).limited) << key;
  }
}

// ---- Policies::build ----

const char* const kBase = R"(listeners:
  - name: main
    address: 127.0.0.1:0
)";

std::string tenant(const std::string& name, const std::string& extra) {
  return "  - name: " + name + "\n    hosts: [" + name +
         ".local]\n    origins: [{name: o, servers: [\"127.0.0.1:9\"]}]\n"
         "    routes: [{path: /, origin: o}]\n" +
         extra;
}

struct Built {
  std::shared_ptr<const Policies> policies;
  std::vector<std::string> errors;
  config::Config config;
};

Built build(const std::string& yaml) {
  Built b;
  config::LoadResult r = config::load_text(yaml, "t.yaml");
  b.errors = r.errors;
  if (!r.ok()) return b;
  b.config = std::move(r.config);
  b.policies = Policies::build(b.config, &b.errors);
  return b;
}

std::string joined(const std::vector<std::string>& v) {
  std::string all;
  for (const std::string& e : v) all += e + "\n";
  return all;
}

TEST(PoliciesTest, TenantListsAreTheirsAlone) {
  const std::string a = tenant("a", R"(    lists:
      - {name: mine, kind: ip, items: [192.0.2.0/24]}
    rules:
      - {id: r, expression: "ip.src in $mine", action: block}
)");
  Built ok = build(std::string(kBase) + "tenants:\n" + a);
  EXPECT_TRUE(ok.policies) << joined(ok.errors);
  // Tenant b names a's list: refused at its expression, line and column.
  const std::string b = tenant("b", R"(    rules:
      - {id: r, expression: "ip.src in $mine", action: block}
)");
  Built bad = build(std::string(kBase) + "tenants:\n" + a + b);
  EXPECT_FALSE(bad.policies);
  ASSERT_EQ(bad.errors.size(), 1u) << joined(bad.errors);
  EXPECT_EQ(bad.errors[0], "t.yaml:18:40: rule 'r': unknown list \"$mine\" (expression 1:11)");
  // A shared list's name is refused for a tenant list.
  Built clash = build(std::string(kBase) +
                      "lists:\n  - {name: mine, kind: string, items: [x]}\ntenants:\n" + a);
  ASSERT_EQ(clash.errors.size(), 1u) << joined(clash.errors);
  EXPECT_NE(clash.errors[0].find("t.yaml:12:9: tenant list 'mine' has the name of a shared list "
                                 "(t.yaml:5:5)"),
            std::string::npos)
      << clash.errors[0];
}

// Errors inside expressions are placed at their file line:column whatever the scalar style.
TEST(PoliciesTest, ExpressionErrorsAtTheirFilePosition) {
  const std::string rules = R"(    rules:
      - id: blk
        expression: |
          http.host eq "a" and
            http.nope eq "x"
      - id: esc
        expression: "http.host eq \x22\u00e9\x22 or http.nope eq 1"
      - {id: single, expression: 'http.host eq "it''s" or http.nope eq 1'}
)";
  Built b = build(std::string(kBase) + "tenants:\n" + tenant("a", rules));
  ASSERT_EQ(b.errors.size(), 3u) << joined(b.errors);
  // '|': the second line of the block (line 13), after its 12 spaces.
  EXPECT_EQ(b.errors[0], "t.yaml:13:13: rule 'blk': unknown field \"http.nope\" (expression 2:3)");
  // \x22 is one byte, \u00e9 two (UTF-8): http.nope is the expression's byte 22, file column 53.
  EXPECT_EQ(b.errors[1], "t.yaml:15:53: rule 'esc': unknown field \"http.nope\" (expression 1:22)");
  // '' is one quote.
  EXPECT_EQ(b.errors[2],
            "t.yaml:16:59: rule 'single': unknown field \"http.nope\" (expression 1:24)");
}

TEST(PoliciesTest, ManyContainsOfATenantShareOneIndex) {
  std::string rules = "    rules:\n";
  for (int i = 0; i < 10; ++i) {
    rules += "      - {id: r" + std::to_string(i) +
             ", expression: 'http.user_agent contains \"bot" + std::to_string(i) +
             "\"', action: block}\n";
  }
  rules += "      - {id: few, expression: 'http.host contains \"x\"', action: log}\n";
  Built b = build(std::string(kBase) + "tenants:\n" + tenant("a", rules));
  ASSERT_TRUE(b.policies) << joined(b.errors);
  const TenantRules& tr = b.policies->tenant(0);
  ASSERT_TRUE(tr.request_contains);
  EXPECT_EQ(tr.request_contains->groups(), 1u);
  EXPECT_EQ(tr.request_contains->literals(), 10u);
  EXPECT_NE(tr.request[0].contains, nullptr);
  EXPECT_EQ(tr.request[10].contains, nullptr);  // one literal: memmem
}

}  // namespace
}  // namespace parapet
