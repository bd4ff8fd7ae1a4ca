// Zero heap allocations per evaluation (filters/rules.h contract): a typical 100-rule set (eq,
// contains, matches, in-list, wildcard, any(), IP sets, and a group of contains answered by a
// ContainsIndex) evaluated many times on a warmed-up context allocates nothing.
//
// Its own executable: it replaces the global operator new to count every allocation of the
// process, which the other unit tests should not inherit. Not built under the sanitizers (they
// bring their own operator new).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "filters/request_provider.h"
#include "filters/rules.h"
#include "tests/alloc/counting_new.h"

namespace parapet::filters {
namespace {

// Rule i of a typical mix; the literals vary with i so the rules are distinct.
std::string typical_rule(int i) {
  const std::string n = std::to_string(i);
  switch (i % 10) {
    case 0:
      return "http.host eq \"site" + n + ".example.com\"";
    case 1:
      return "http.user_agent contains \"scanner-" + n + "\"";
    case 2:
      return "http.request.uri.path matches \"^/wp-admin/" + n + "/.*\\\\.php$\"";
    case 3:
      return "ip.src in $blocklist and http.request.uri.path contains \"/login" + n + "\"";
    case 4:
      return "http.request.uri.path wildcard \"/static/" + n + "/*.js\"";
    case 5:
      return "http.request.headers[\"x-api-key\"][0] eq \"key" + n +
             "\" or http.user_agent in $bad_agents";
    case 6:
      return "lower(http.request.uri.query) contains \"union select " + n + "\"";
    case 7:
      return "any(http.request.uri.args.names[*] eq \"debug" + n + "\")";
    case 8:
      return "ip.src in {203.0." + std::to_string(i % 256) + ".0/24 2001:db8:" + n + "::/48}";
    default:
      return "http.request.uri.path.extension in {\"env\" \"git" + n +
             "\"} or http.cookie contains \"theme=dark\"";
  }
}

struct Request {
  std::vector<HeaderPair> headers = {
      {"Host", "shop.example.com"},
      {"User-Agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0.0.0 Safari/537.36"},
      {"Accept", "text/html"},
      {"Cookie", "session=0123456789abcdef; theme=dark"},
      {"X-Forwarded-For", "198.51.100.23"},
  };
  RequestView view;
  RequestFieldProvider provider{&view};
  Request() {
    view.method = "GET";
    view.target = "/products/item-1234?ref=home&utm_source=news&page=2";
    view.host = "shop.example.com";
    view.headers = headers;
    IpAddr::parse("198.51.100.23", &view.src);
    view.has_src = true;
    view.timestamp_sec = 1700000000;
  }
};

TEST(FiltersAllocTest, TheCounterSeesAllocations) {
  const uint64_t before = parapet::testing::allocation_count();
  auto p = std::make_unique<std::string>(100, 'x');
  EXPECT_GT(parapet::testing::allocation_count(), before);
}

TEST(FiltersAllocTest, HundredTypicalRulesEvaluateWithoutHeapAllocation) {
  ListRegistry lists;
  auto blocklist = std::make_shared<IpList>();
  ListLoadError err;
  ASSERT_TRUE(load_ip_list("10.0.0.0/8\n192.0.2.0/24\n2001:db8::/32\n", blocklist.get(), &err));
  lists.add_ip_list("blocklist", blocklist);
  auto agents = std::make_shared<StringList>();
  for (int i = 0; i < 50; ++i) agents->add("BadBot/" + std::to_string(i));
  agents->finalize();
  lists.add_string_list("bad_agents", agents);
  std::vector<RuleSource> rules;
  for (int i = 0; i < 100; ++i) rules.push_back({"r" + std::to_string(i), typical_rule(i)});
  for (size_t min : {size_t{8}, size_t{0}}) {  // with the ContainsIndex (10 scanner-N), without
    CompileOptions opt;
    opt.lists = &lists;
    opt.contains_index_min = min;
    RuleSetResult rs = RuleSet::compile(rules, opt);
    ASSERT_TRUE(rs.ok()) << rs.errors[0].id << ": " << rs.errors[0].error.to_string();
    Request req;
    ExecContext ctx(&req.provider);
    std::vector<uint32_t> matched;
    matched.reserve(rules.size());
    for (int i = 0; i < 3; ++i) {  // warm up: buffers grow, RE2 fills its DFA cache
      ctx.reset(&req.provider);
      rs.set->evaluate(ctx, matched);
    }
    // The rules ran: the cookie rules (every 10th from 9) match, nothing else.
    ASSERT_EQ(matched.size(), 10u);
    EXPECT_EQ(matched[0], 9u);
    const uint64_t before = parapet::testing::allocation_count();
    for (int i = 0; i < 1000; ++i) {
      ctx.reset(&req.provider);
      rs.set->evaluate(ctx, matched);
    }
    EXPECT_EQ(parapet::testing::allocation_count() - before, 0u) << "contains_index_min " << min;
    EXPECT_EQ(matched.size(), 10u);
  }
}

}  // namespace
}  // namespace parapet::filters
