// ContainsIndex (filters/contains_index.h): many `contains` over one value answered by one
// automaton scan. Every test compares against the same filters evaluated by memmem (no
// binding): the index must never change a result.
#include "filters/contains_index.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "filters/rules.h"
#include "tests/unit/filters/test_request.h"

namespace parapet::filters {
namespace {

using testing::TestRequest;

struct Compiled {
  std::vector<std::shared_ptr<const Filter>> owned;
  std::vector<const Filter*> filters;
};

Compiled compile_all(const std::vector<std::string>& exprs) {
  Compiled c;
  for (const std::string& e : exprs) {
    auto f = compile_filter(e);
    EXPECT_TRUE(f.ok()) << e << " -> " << f.error.to_string();
    c.owned.push_back(f.value);
    c.filters.push_back(f.value.get());
  }
  return c;
}

// Each filter with and without its binding, on one context, in order: the same answers.
void expect_same(const Compiled& c, const ContainsIndex& index, FieldProvider* provider,
                 const std::string& what) {
  ExecContext with(provider), without(provider);
  for (size_t i = 0; i < c.filters.size(); ++i) {
    if (c.filters[i] == nullptr) continue;
    EXPECT_EQ(c.filters[i]->matches(with, index.binding(i)), c.filters[i]->matches(without))
        << what << ": filter " << i;
  }
}

ContainsIndex::Options min_literals(size_t n) {
  ContainsIndex::Options o;
  o.min_literals = n;
  return o;
}

TEST(ContainsIndexTest, SameResultsOnARealisticRequest) {
  TestRequest req;
  std::vector<std::string> exprs;
  // Literals that occur in the request (User-Agent "Mozilla/5.0 (X11) Firefox/120", path
  // "/api/v1/users.JSON") and ones that do not, over several values.
  for (const char* lit : {"Firefox", "Mozilla/5.0", "X11", "120", "sqlmap", "nikto", "curl",
                          "zgrab", "Firefox/12", "(X11) F", "0", "firefox"}) {
    exprs.push_back(std::string("http.user_agent contains \"") + lit + "\"");
    exprs.push_back(std::string("lower(http.user_agent) contains \"") + lit + "\"");
  }
  bool spaced = false;
  for (const char* lit : {"/api", "users", ".JSON", ".json", "v1/", "admin", "/", "etc"}) {
    exprs.push_back(std::string("http.request.uri.path contains \"") + lit + "\"");
    spaced = !spaced;
    exprs.push_back(
        std::string(spaced ? "lower( http.request.uri.path )" : "lower(http.request.uri.path)") +
        " contains \"" + lit + "\"");
    exprs.push_back(std::string("http.request.headers[\"x-absent\"][0] contains \"") + lit + "\"");
    exprs.push_back(std::string("not http.request.uri.query contains \"") + lit + "\" and ssl");
  }
  // Over an array element: stays on memmem, and is still right.
  exprs.push_back(R"(any(http.request.headers.values[*] contains "one"))");
  exprs.push_back(R"(any(http.request.headers.values[*] contains "three"))");
  Compiled c = compile_all(exprs);
  auto index = ContainsIndex::build(c.filters, min_literals(4));
  // user_agent, lower(user_agent), path, lower(path) (whitespace does not matter), the absent
  // header and the query: six values.
  EXPECT_EQ(index->groups(), 6u);
  EXPECT_EQ(index->binding(exprs.size() - 1), nullptr);
  expect_same(c, *index, &req.provider, "request");
  // The answers themselves, through the index.
  ExecContext ctx(&req.provider);
  EXPECT_TRUE(c.filters[0]->matches(ctx, index->binding(0)));     // UA contains Firefox
  EXPECT_FALSE(c.filters[8]->matches(ctx, index->binding(8)));    // UA contains sqlmap
  EXPECT_TRUE(c.filters[23]->matches(ctx, index->binding(23)));   // lower(UA) contains firefox
  EXPECT_FALSE(c.filters[22]->matches(ctx, index->binding(22)));  // UA contains firefox
}

TEST(ContainsIndexTest, BelowTheThresholdNothingIsGrouped) {
  Compiled c = compile_all({R"(http.host contains "a")", R"(http.host contains "b")"});
  auto index = ContainsIndex::build(c.filters, min_literals(3));
  EXPECT_EQ(index->groups(), 0u);
  EXPECT_EQ(index->binding(0), nullptr);
  EXPECT_EQ(index->binding(1), nullptr);
  // Duplicated literals count once.
  Compiled d = compile_all(
      {R"(http.host contains "a")", R"(http.host contains "a")", R"(http.host contains "b")"});
  EXPECT_EQ(ContainsIndex::build(d.filters, min_literals(3))->groups(), 0u);
  EXPECT_EQ(ContainsIndex::build(d.filters, min_literals(2))->groups(), 1u);
}

TEST(ContainsIndexTest, EmptyLiteralAndIterationStayOnMemmem) {
  Compiled c = compile_all({R"(http.referer contains "")", R"(http.referer contains "")",
                            R"(any(http.request.headers.names[*] contains "x-"))",
                            R"(any(http.request.headers.names[*] contains "host"))"});
  auto index = ContainsIndex::build(c.filters, min_literals(1));
  EXPECT_EQ(index->groups(), 0u);
  TestRequest req;
  expect_same(c, *index, &req.provider, "request");
}

// One String field the test sets freely (missing when `present` is false).
class OneField : public FieldProvider {
 public:
  std::string value;
  bool present = true;
  bool fetch(Field f, FieldWriter& out) override {
    if (f != Field::HttpUserAgent || !present) return false;
    out.set_string(value);
    return true;
  }
};

std::string random_string(std::mt19937& rng, size_t max_len, const char* alphabet) {
  const size_t n = std::strlen(alphabet);
  std::string s(rng() % (max_len + 1), ' ');
  for (char& ch : s) ch = alphabet[rng() % n];
  return s;
}

// Small alphabets make overlapping literals (prefixes, suffixes, repeats: "a", "aa", "ba"),
// the cases that exercise failure and output links.
TEST(ContainsIndexTest, RandomizedAgainstMemmem) {
  std::mt19937 rng(20240601);
  for (int round = 0; round < 200; ++round) {
    const char* alphabet = round % 3 == 0 ? "ab" : round % 3 == 1 ? "abc" : "aB\x01\xff";
    std::vector<std::string> lits;
    const size_t n = 1 + rng() % 40;
    for (size_t i = 0; i < n; ++i) {
      std::string lit = random_string(rng, 5, alphabet);
      if (lit.empty()) lit = "a";
      lits.push_back(lit);
    }
    std::vector<std::string> exprs;
    for (const std::string& lit : lits) {
      std::string quoted;
      for (unsigned char ch : lit) {
        char buf[8];
        std::snprintf(buf, sizeof(buf), "\\x%02x", ch);
        quoted += buf;
      }
      exprs.push_back("http.user_agent contains \"" + quoted + "\"");
    }
    Compiled c = compile_all(exprs);
    // A tiny table budget in some rounds: the literals that do not fit stay on memmem.
    ContainsIndex::Options opt = min_literals(1);
    if (round % 4 == 3) opt.max_table_bytes = 64 * (1 + round % 7);
    auto index = ContainsIndex::build(c.filters, opt);
    OneField field;
    for (int k = 0; k < 20; ++k) {
      field.value = random_string(rng, 30, alphabet);
      field.present = k != 0;
      ExecContext ctx(&field);
      for (size_t i = 0; i < c.filters.size(); ++i) {
        const bool want = field.present && field.value.find(lits[i]) != std::string::npos;
        ASSERT_EQ(c.filters[i]->matches(ctx, index->binding(i)), want)
            << "round " << round << " literal \"" << lits[i] << "\" in \"" << field.value << "\"";
      }
    }
  }
}

TEST(ContainsIndexTest, OneScanPerRequestAndFreshAfterReset) {
  OneField field;
  field.value = "hello world";
  std::vector<std::string> exprs;
  for (const char* lit : {"hello", "world", "lo w", "xyz", "o", "d"}) {
    exprs.push_back(std::string("http.user_agent contains \"") + lit + "\"");
  }
  Compiled c = compile_all(exprs);
  auto index = ContainsIndex::build(c.filters, min_literals(2));
  ASSERT_EQ(index->groups(), 1u);
  ExecContext ctx(&field);
  EXPECT_TRUE(c.filters[0]->matches(ctx, index->binding(0)));
  EXPECT_FALSE(c.filters[3]->matches(ctx, index->binding(3)));
  // A new request with another value: the earlier bits must not leak into it.
  field.value = "xyz";
  ctx.reset(&field);
  EXPECT_FALSE(c.filters[0]->matches(ctx, index->binding(0)));
  EXPECT_TRUE(c.filters[3]->matches(ctx, index->binding(3)));
  field.present = false;
  ctx.reset(&field);
  EXPECT_FALSE(c.filters[3]->matches(ctx, index->binding(3)));
}

TEST(ContainsIndexTest, TwoIndexesSharingOneContext) {
  OneField field;
  field.value = "abcdef";
  Compiled a =
      compile_all({R"(http.user_agent contains "abc")", R"(http.user_agent contains "zz")"});
  Compiled b = compile_all({R"(http.user_agent contains "zz")", R"(http.user_agent contains "def")",
                            R"(http.user_agent contains "q")"});
  auto ia = ContainsIndex::build(a.filters, min_literals(1));
  auto ib = ContainsIndex::build(b.filters, min_literals(1));
  ExecContext ctx(&field);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(a.filters[0]->matches(ctx, ia->binding(0)));
    EXPECT_TRUE(b.filters[1]->matches(ctx, ib->binding(1)));
    EXPECT_FALSE(a.filters[1]->matches(ctx, ia->binding(1)));
    EXPECT_FALSE(b.filters[2]->matches(ctx, ib->binding(2)));
  }
}

// Regression: a context recognized its index by address; the next config's index may be
// allocated where the last one was, and then read the old index's bits (and its smaller
// tables) as its own within one request.
TEST(ContainsIndexTest, ANewIndexAtAnOldAddressStartsAfresh) {
  OneField field;
  field.value = "abc";
  ExecContext ctx(&field);
  const void* first_address = nullptr;
  {
    Compiled a =
        compile_all({R"(http.user_agent contains "abc")", R"(http.user_agent contains "zzz")"});
    auto ia = ContainsIndex::build(a.filters, min_literals(1));
    first_address = ia.get();
    EXPECT_TRUE(a.filters[0]->matches(ctx, ia->binding(0)));
  }
  // Same value, literals in the other order: bit 0 is now "zzz". No reset in between.
  Compiled b =
      compile_all({R"(http.user_agent contains "zzz")", R"(http.user_agent contains "abc")"});
  auto ib = ContainsIndex::build(b.filters, min_literals(1));
  EXPECT_FALSE(b.filters[0]->matches(ctx, ib->binding(0)));
  EXPECT_TRUE(b.filters[1]->matches(ctx, ib->binding(1)));
  if (ib.get() != first_address) GTEST_LOG_(INFO) << "the allocator did not reuse the address";
}

TEST(ContainsIndexTest, RuleSetUsesTheIndexWithTheSameResults) {
  TestRequest req;
  std::vector<RuleSource> rules;
  for (int i = 0; i < 50; ++i) {
    rules.push_back({"r" + std::to_string(i), "http.user_agent contains \"bot" + std::to_string(i) +
                                                  "\" or " + "http.request.uri.path contains \"/p" +
                                                  std::to_string(i) + "\""});
  }
  rules.push_back({"hit", R"(http.user_agent contains "Firefox/1")"});
  CompileOptions with, without;
  without.contains_index_min = 0;
  RuleSetResult a = RuleSet::compile(rules, with), b = RuleSet::compile(rules, without);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  ExecContext ctx(&req.provider);
  std::vector<uint32_t> ma, mb;
  a.set->evaluate(ctx, ma);
  b.set->evaluate(ctx, mb);
  EXPECT_EQ(ma, std::vector<uint32_t>({50}));
  EXPECT_EQ(ma, mb);
}

}  // namespace
}  // namespace parapet::filters
