// The public API around compiled expressions (filters/rules.h, context.h): lazy, cached field
// fetching, RuleSet walking and errors, value expressions, and concurrent evaluation.
#include "filters/rules.h"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <thread>
#include <vector>

#include "tests/unit/filters/test_request.h"

namespace parapet::filters {
namespace {

using testing::TestRequest;

// Wraps the test request's provider and counts fetches per field.
class CountingProvider : public FieldProvider {
 public:
  explicit CountingProvider(FieldProvider* inner) : inner_(inner) {}
  bool fetch(Field f, FieldWriter& out) override {
    ++count[static_cast<size_t>(f)];
    return inner_->fetch(f, out);
  }
  int of(Field f) const { return count[static_cast<size_t>(f)]; }
  std::array<int, kFieldCount> count{};

 private:
  FieldProvider* inner_;
};

TEST(FilterContextTest, FieldsFetchedLazilyOnceAcrossRulesAndRuleSets) {
  TestRequest req;
  CountingProvider counting(&req.provider);
  std::vector<RuleSource> a = {{"r1", R"(http.host eq "x")"},
                               {"r2", R"(http.host contains "example" and ssl)"},
                               {"r3", R"(http.request.uri.path eq "/nope")"}};
  std::vector<RuleSource> b = {{"s1", R"(http.host wildcard "*.example.com")"},
                               {"s2", R"(http.user_agent contains "bot")"}};
  RuleSetResult ra = RuleSet::compile(a), rb = RuleSet::compile(b);
  ASSERT_TRUE(ra.ok());
  ASSERT_TRUE(rb.ok());
  ExecContext ctx(&counting);
  std::vector<uint32_t> m;
  ra.set->evaluate(ctx, m);
  EXPECT_EQ(m, std::vector<uint32_t>({1}));
  rb.set->evaluate(ctx, m);
  EXPECT_EQ(m, std::vector<uint32_t>({0}));
  EXPECT_EQ(counting.of(Field::HttpHost), 1);
  EXPECT_EQ(counting.of(Field::Ssl), 1);
  EXPECT_EQ(counting.of(Field::HttpRequestUriPath), 1);
  EXPECT_EQ(counting.of(Field::HttpUserAgent), 1);
  EXPECT_EQ(counting.of(Field::IpSrc), 0);  // never named, never fetched
  EXPECT_EQ(counting.of(Field::HttpRequestHeaders), 0);
  // Short-circuit: ssl is not fetched when the left side of `and` is false.
  CountingProvider c2(&req.provider);
  ExecContext ctx2(&c2);
  auto f = compile_filter(R"(http.host eq "nope" and ssl)");
  ASSERT_TRUE(f.ok());
  EXPECT_FALSE(f.value->matches(ctx2));
  EXPECT_EQ(c2.of(Field::Ssl), 0);
  // reset() starts a new request: fetched again.
  ctx.reset(&counting);
  ra.set->evaluate(ctx, m);
  EXPECT_EQ(counting.of(Field::HttpHost), 2);
}

TEST(FilterContextTest, MissingFieldFromProvider) {
  ExecContext ctx;  // no provider: every field missing
  for (const char* e : {R"(http.host eq "")", R"(http.host ne "")", "ssl", "ssl eq false",
                        R"(ip.src in {0.0.0.0/0})", R"(len(http.host) ge 0)"}) {
    auto f = compile_filter(e);
    ASSERT_TRUE(f.ok()) << e;
    EXPECT_FALSE(f.value->matches(ctx)) << e;
  }
  auto f = compile_filter(R"(not http.host eq "")");
  ASSERT_TRUE(f.ok());
  EXPECT_TRUE(f.value->matches(ctx));
}

TEST(FilterRuleSetTest, NextMatchWalksInOrder) {
  TestRequest req;
  std::vector<RuleSource> rules = {{"a", "ssl"},
                                   {"b", R"(http.host eq "nope")"},
                                   {"c", R"(ip.src in {192.0.2.0/24})"},
                                   {"d", "false"}};
  RuleSetResult r = RuleSet::compile(rules);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.set->size(), 4u);
  EXPECT_EQ(r.set->id(2), "c");
  ExecContext ctx(&req.provider);
  size_t i = r.set->next_match(ctx);
  EXPECT_EQ(i, 0u);
  i = r.set->next_match(ctx, i + 1);
  EXPECT_EQ(i, 2u);
  EXPECT_EQ(r.set->next_match(ctx, i + 1), RuleSet::npos);
  EXPECT_TRUE(r.set->filter(0).matches(ctx));
}

TEST(FilterRuleSetTest, AllErrorsReportedAndNoSet) {
  std::vector<RuleSource> rules = {{"ok", "ssl"},
                                   {"bad1", R"(http.hots eq "a")"},
                                   {"bad2", R"(http.host matches "(")"}};
  RuleSetResult r = RuleSet::compile(rules);
  EXPECT_FALSE(r.ok());
  ASSERT_EQ(r.errors.size(), 2u);
  EXPECT_EQ(r.errors[0].index, 1u);
  EXPECT_EQ(r.errors[0].id, "bad1");
  EXPECT_EQ(r.errors[0].error.to_string(), R"(1:1: unknown field "http.hots")");
  EXPECT_EQ(r.errors[1].id, "bad2");
  EXPECT_EQ(r.errors[1].error.column, 19);
}

std::string value_of(std::string_view expr, TestRequest& req, bool rewrite = true) {
  CompileOptions opt;
  opt.allow_rewrite_functions = rewrite;
  Compiled<ValueExpr> v = compile_value(expr, opt);
  EXPECT_TRUE(v.ok()) << expr << " -> " << v.error.to_string();
  if (!v.ok()) return "<error>";
  ExecContext ctx(&req.provider);
  std::string out;
  if (!v.value->eval(ctx, out)) return "<missing>";
  return out;
}

TEST(FilterValueExprTest, RewriteValues) {
  TestRequest req;
  EXPECT_EQ(value_of(R"(concat("/v2", http.request.uri.path))", req), "/v2/api/v1/users.JSON");
  EXPECT_EQ(value_of("http.host", req), "www.example.com");
  EXPECT_EQ(value_of(R"("/static")", req), "/static");
  EXPECT_EQ(value_of(R"(regex_replace(http.request.uri.path, "^/api/v([0-9]+)/", "/v${1}/x/"))",
                     req),
            "/v1/x/users.JSON");
  EXPECT_EQ(value_of(R"(regex_replace(http.host, "^nomatch", "x"))", req), "www.example.com");
  EXPECT_EQ(value_of(R"(regex_replace(http.host, "e", "E"))", req), "www.Example.com");
  EXPECT_EQ(value_of(R"(wildcard_replace(http.request.full_uri, "https://*.example.com/*", "https://example.com/${1}/${2}"))",
                     req),
            "https://example.com/www/api/v1/users.JSON?id=42&tag=a&tag=b&q=hello+world&enc=%2Fetc");
  EXPECT_EQ(value_of(R"(wildcard_replace(http.host, "WWW.*", "${1}"))", req), "example.com");
  EXPECT_EQ(value_of(R"(wildcard_replace(http.host, "WWW.*", "${1}", "s"))", req),
            "www.example.com");
  EXPECT_EQ(value_of(R"(http.request.headers["x-missing"][0])", req), "<missing>");
  EXPECT_EQ(value_of(R"(lower(http.request.uri.path))", req), "/api/v1/users.json");
}

TEST(FilterValueExprTest, Errors) {
  CompileOptions opt;
  EXPECT_EQ(compile_value("http.request.timestamp.sec", opt).error.to_string(),
            "1:1: value expression must be String, found Int");
  EXPECT_EQ(compile_value(R"(regex_replace(http.host, "a", "b"))", opt).error.to_string(),
            "1:1: function regex_replace() is only allowed in rewrite value expressions");
  opt.allow_rewrite_functions = true;
  EXPECT_EQ(compile_value(R"x(regex_replace(http.host, "(a)", "${2}"))x", opt).error.to_string(),
            "1:33: replacement refers to ${2} but the pattern has only 1");
  EXPECT_EQ(compile_value(R"(wildcard_replace(http.host, "*", "${2}"))", opt).error.to_string(),
            "1:34: replacement refers to ${2} but the pattern has only 1");
  EXPECT_EQ(compile_value(R"(regex_replace(http.host, "a{2,1}", ""))", opt).error.to_string(),
            "1:26: invalid regex: invalid repetition size: {2,1}");
  EXPECT_EQ(compile_value(R"(http.host x)", opt).error.to_string(), "1:11: unexpected \"x\"");
}

TEST(FilterThreadTest, ConcurrentEvaluationSharesCompiledRules) {
  std::vector<RuleSource> rules;
  for (int i = 0; i < 50; ++i) {
    rules.push_back({"r" + std::to_string(i),
                     R"(http.user_agent matches "Firefox/1[0-9]+" and lower(http.host) eq "www.example.com" and ip.src in {192.0.2.0/24})"});
  }
  RuleSetResult r = RuleSet::compile(rules);
  ASSERT_TRUE(r.ok());
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      TestRequest req;
      ExecContext ctx(&req.provider);
      std::vector<uint32_t> m;
      for (int k = 0; k < 200; ++k) {
        ctx.reset(&req.provider);
        r.set->evaluate(ctx, m);
        if (m.size() != 50) ++bad;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
}

}  // namespace
}  // namespace parapet::filters

namespace parapet::filters {
namespace {

// Regression: a single-header field of an absent header is an empty string whose data() is
// null; `contains` passed it to memmem (UBSan: null argument declared nonnull).
TEST(FilterRegressionTest, ContainsOnAnAbsentHeaderIsFalse) {
  RequestView view;
  view.method = "GET";
  view.target = "/";
  RequestFieldProvider provider(&view);
  ExecContext ctx(&provider);
  Compiled<Filter> f = compile_filter(R"(http.user_agent contains "sqlmap")");
  ASSERT_TRUE(f.ok()) << f.error.to_string();
  EXPECT_FALSE(f.value->matches(ctx));
  Compiled<Filter> empty = compile_filter(R"(http.referer contains "")");
  ASSERT_TRUE(empty.ok());
  ctx.reset(&provider);
  EXPECT_TRUE(empty.value->matches(ctx));
}

}  // namespace
}  // namespace parapet::filters
