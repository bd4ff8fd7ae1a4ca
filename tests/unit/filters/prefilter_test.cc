// Guards and the Prefilter (filters/prefilter.h): a guard is a necessary condition of its
// filter, so a rule the prefilter leaves out never matches; these tests check which guard each
// expression gets, and that no match is ever lost, on fixed and randomized requests.
#include "filters/prefilter.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "filters/rules.h"
#include "tests/unit/filters/test_request.h"

namespace parapet::filters {
namespace {

using testing::TestRequest;

std::shared_ptr<const Filter> compile(const std::string& expr) {
  static std::shared_ptr<const ListRegistry> lists = testing::test_lists();
  CompileOptions opt;
  opt.lists = lists.get();
  auto f = compile_filter(expr, opt);
  EXPECT_TRUE(f.ok()) << expr << " -> " << f.error.to_string();
  return f.value;
}

TEST(GuardTest, EachExpressionGetsTheCheapestNecessaryCondition) {
  using K = Guard::Kind;
  struct Case {
    const char* expr;
    K kind;
    std::vector<std::string> values;
    std::string key = "";
    bool nocase = false;
  };
  const Case cases[] = {
      {R"(http.host eq "a.example")", K::Eq, {"a.example"}},
      {R"(http.request.method in {"PUT" "DELETE"})", K::Eq, {"DELETE", "PUT"}},
      {R"(http.request.uri.path contains "/admin" and http.host eq "b")", K::Eq, {"b"}},
      {R"(starts_with(http.request.uri.path, "/internal/"))", K::Prefix, {"/internal/"}},
      {R"(http.request.uri.path wildcard "/Private/*")", K::Prefix, {"/private/"}, "", true},
      {R"(http.request.uri.path strict wildcard "/Private/*.php")", K::Prefix, {"/Private/"}},
      // A bare contains: the ContainsIndex answers it; inside an and(), it is the guard.
      {R"(http.user_agent contains "sqlmap")", K::None, {}},
      {R"(http.user_agent contains "sqlmap" and ssl)", K::Contains, {"sqlmap"}},
      {R"(any(http.request.uri.args.names[*] eq "debug"))", K::Eq, {"debug"}},
      {R"(http.request.uri.path matches "^/admin[0-9]+/x")", K::Contains, {"/admin"}},
      {R"(http.request.uri.path matches "abc")", K::Contains, {"abc"}},
      {R"(any(http.request.headers["x-debug"][*] eq "1"))", K::Eq, {"1"}, "x-debug"},
      {R"(all(http.request.headers["x-debug"][*] eq "1"))", K::Eq, {"1"}, "x-debug"},
      // No cheap necessary condition: no guard.
      {R"(http.host eq "a" or http.host eq "b")", K::None, {}},
      {R"(not http.host eq "a")", K::None, {}},
      {R"(http.host ne "a")", K::None, {}},
      {R"(lower(http.host) eq "a")", K::None, {}},
      {R"(http.request.uri.path matches "^a|b")", K::None, {}},
      {R"(http.request.uri.path matches ".*")", K::None, {}},
      {R"(http.request.uri.path wildcard "*.php")", K::None, {}},
      {R"(any(http.request.headers["x-debug"][*] contains "1"))", K::None, {}},
      {R"(ip.src in {192.0.2.0/24})", K::None, {}},
  };
  for (const Case& c : cases) {
    auto f = compile(c.expr);
    ASSERT_NE(f, nullptr);
    const Guard& g = f->guard();
    EXPECT_EQ(g.kind, c.kind) << c.expr;
    if (c.kind == K::None) continue;
    EXPECT_EQ(g.values, c.values) << c.expr;
    EXPECT_EQ(g.key, c.key) << c.expr;
    EXPECT_EQ(g.nocase, c.nocase) << c.expr;
  }
}

// Expressions over the values the randomized requests vary; many with guards.
const std::vector<std::string>& exprs() {
  static const std::vector<std::string> v = {
      R"(http.host eq "a.example")",
      R"(http.host eq "b.example" and http.request.method eq "POST")",
      R"(http.host in {"a.example" "c.example"})",
      R"(http.request.method eq "DELETE" and http.request.uri.path contains "/v1/")",
      R"(http.request.uri.path eq "/x" and ip.src in {192.0.2.0/24})",
      R"(starts_with(http.request.uri.path, "/internal/"))",
      R"(starts_with(http.request.uri.path, "/Internal/"))",
      R"(http.request.uri.path wildcard "/private/*")",
      R"(http.request.uri.path wildcard "/PRIVATE/*/x")",
      R"(http.request.uri.path strict wildcard "/private/*")",
      R"(http.request.uri.path matches "^/admin[0-9]*/[a-z]+\\.php$")",
      R"(http.request.uri.path matches "(?i)^/ADMIN")",
      R"(http.request.uri.path matches "v1/us")",
      R"(http.user_agent contains "sqlmap")",
      R"(http.user_agent contains "Fire" and not http.host eq "a.example")",
      R"(any(http.request.headers["x-debug"][*] eq "1"))",
      R"(all(http.request.headers["x-debug"][*] eq "1"))",
      R"(any(http.request.headers["x-debug"][*] eq "2") and http.host eq "a.example")",
      R"(http.cookie contains "session=evil")",
      R"(http.cookie contains "session=evil" and http.request.method eq "GET")",
      R"(any(http.request.uri.args.names[*] eq "q"))",
      R"(all(http.request.uri.args.names[*] eq "a"))",
      R"(lower(http.request.uri.query) contains "union")",
      R"(http.host eq "a.example" or http.user_agent contains "curl")",
      R"x(http.request.uri.path matches "^/(?:wp-admin|phpmyadmin)")x",
  };
  return v;
}

TEST(PrefilterTest, RandomizedRequestsNeverLoseAMatch) {
  std::vector<std::shared_ptr<const Filter>> owned;
  std::vector<const Filter*> filters;
  for (const std::string& e : exprs()) {
    owned.push_back(compile(e));
    filters.push_back(owned.back().get());
  }
  bool always[64] = {};
  always[3] = true;  // a rule visited whatever its guard says
  Prefilter pf(filters, std::span<const bool>(always, filters.size()), 1);
  EXPECT_GT(pf.guarded(), filters.size() / 2);

  std::mt19937 rng(7);
  auto pick = [&](std::initializer_list<const char*> xs) {
    return std::string(*(xs.begin() + rng() % xs.size()));
  };
  size_t matched = 0, skipped = 0;
  for (int round = 0; round < 3000; ++round) {
    TestRequest req;
    std::string host = pick({"a.example", "b.example", "c.example", "A.example", ""});
    std::string method = pick({"GET", "POST", "DELETE"});
    std::string path =
        pick({"/", "/x", "/internal/a", "/Internal/a", "/private/b/x", "/PRIVATE/b/x",
              "/admin1/a.php", "/ADMIN/q", "/api/v1/users", "/wp-admin/", "/phpmyadmin"});
    std::string query = pick({"", "q=UNION+select", "a=b"});
    std::string ua = pick({"sqlmap/1.0", "Mozilla Firefox", "curl/8", ""});
    std::string debug = pick({"", "1", "2"});
    req.view.host = host;
    req.view.method = method;
    std::string target = path + (query.empty() ? "" : "?" + query);
    req.view.target = target;
    // HeaderPair holds views: every value lives in a named string until the round ends.
    std::string cookie = pick({"a=1", "session=evil"});
    std::vector<HeaderPair> headers = {{"Host", host}, {"Cookie", cookie}};
    if (!ua.empty()) headers.push_back({"User-Agent", ua});
    if (!debug.empty()) headers.push_back({"X-Debug", debug});
    if (rng() % 4 == 0) headers.push_back({"X-Debug", "1"});
    req.view.headers = headers;
    ExecContext ctx(&req.provider);
    std::vector<uint64_t> bits;
    pf.candidates(ctx, bits);
    for (size_t i = 0; i < filters.size(); ++i) {
      const bool m = filters[i]->matches(ctx);
      const bool cand = Prefilter::has(bits, i);
      if (m) {
        ++matched;
        ASSERT_TRUE(cand) << "round " << round << ": " << exprs()[i] << " matches but was left out"
                          << " (host " << host << ", " << method << " " << target << ")";
        ASSERT_TRUE(filters[i]->guard().test(ctx)) << exprs()[i];
      }
      if (!cand) ++skipped;
      if (i == 3) {
        ASSERT_TRUE(cand) << "an always-visited rule";
      }
    }
  }
  EXPECT_GT(matched, 1000u);   // the requests do exercise the filters
  EXPECT_GT(skipped, 20000u);  // and the prefilter does leave most rules out
}

TEST(PrefilterTest, EqualityGuardsAreIndexed) {
  std::vector<std::shared_ptr<const Filter>> owned;
  std::vector<const Filter*> filters;
  for (int i = 0; i < 100; ++i) {
    owned.push_back(compile("http.host eq \"h" + std::to_string(i) + ".example\""));
    filters.push_back(owned.back().get());
  }
  owned.push_back(compile(R"(http.host ne "x")"));  // no guard: always a candidate
  filters.push_back(owned.back().get());
  bool always[101] = {};
  Prefilter pf(filters, std::span<const bool>(always, filters.size()));
  TestRequest req;
  req.view.host = "h42.example";
  ExecContext ctx(&req.provider);
  std::vector<uint64_t> bits;
  pf.candidates(ctx, bits);
  std::vector<size_t> cands;
  for (size_t i = 0; i < filters.size(); ++i) {
    if (Prefilter::has(bits, i)) cands.push_back(i);
  }
  EXPECT_EQ(cands, (std::vector<size_t>{42, 100}));
}

}  // namespace
}  // namespace parapet::filters
