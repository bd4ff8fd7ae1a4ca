// Parser and type checker tests (filters/compiler.cc): literal forms, every operator spelling,
// precedence, and every compile error with its line:column.
#include <gtest/gtest.h>

#include <string>

#include "tests/unit/filters/test_request.h"

namespace parapet::filters {
namespace {

using testing::error_of;
using testing::TestRequest;

// The value of a literal, through a value expression.
std::string literal(std::string_view src) {
  Compiled<ValueExpr> v = compile_value(src);
  EXPECT_TRUE(v.ok()) << src << " -> " << v.error.to_string();
  if (!v.ok()) return "<error>";
  ExecContext ctx;
  std::string out;
  EXPECT_TRUE(v.value->eval(ctx, out));
  return out;
}

TEST(LexerTest, StringEscapes) {
  EXPECT_EQ(literal(R"("plain")"), "plain");
  EXPECT_EQ(literal(R"("")"), "");
  EXPECT_EQ(literal(R"("a\"b")"), "a\"b");
  EXPECT_EQ(literal(R"("a\\b")"), "a\\b");
  EXPECT_EQ(literal(R"("\x41\x62\x7e")"), "Ab~");
  EXPECT_EQ(literal(R"("\x00z")"), std::string("\0z", 2));
  EXPECT_EQ(literal(R"("\xfF")"), "\xff");
  EXPECT_EQ(literal("\"multi\nline\""), "multi\nline");
}

TEST(LexerTest, RawStrings) {
  EXPECT_EQ(literal(R"(r"a\b\x41")"), R"(a\b\x41)");
  EXPECT_EQ(literal(R"(r"")"), "");
  EXPECT_EQ(literal(R"(r#"say "hi""#)"), R"(say "hi")");
  EXPECT_EQ(literal(R"(r##"a"#b"##)"), R"(a"#b)");
  EXPECT_EQ(literal(R"(r#"\d+"#)"), R"(\d+)");
}

TEST(LexerTest, IntsRangesAndIps) {
  TestRequest req;
  EXPECT_TRUE(testing::eval("http.request.timestamp.sec gt -1", req));
  EXPECT_TRUE(testing::eval("http.request.timestamp.sec lt 9223372036854775807", req));
  EXPECT_TRUE(testing::eval("http.request.timestamp.sec in {0..9223372036854775807}", req));
  EXPECT_TRUE(testing::eval("http.request.timestamp.sec in { 1700000000 }", req));
  EXPECT_TRUE(testing::eval("ip.src in {192.0.2.10/32}", req));
  EXPECT_TRUE(testing::eval("ip.src in {192.0.2.99/24}", req));  // host bits masked
  EXPECT_TRUE(testing::eval("ip.src in {::/0 0.0.0.0/0}", req));
  // ::/0 includes ::ffff:0:0/96, the v4-mapped block, so it covers every v4 address too.
  EXPECT_TRUE(testing::eval("ip.src in {::/0}", req));
  EXPECT_FALSE(testing::eval("ip.src in {2000::/3}", req));
  EXPECT_TRUE(testing::eval("ip.src in {\n  10.0.0.0/8\n  192.0.2.0/24\n}", req));
}

TEST(ParserTest, EveryOperatorSpelling) {
  TestRequest req;
  const char* same[][2] = {
      {R"(http.host eq "www.example.com")", R"(http.host == "www.example.com")"},
      {R"(http.host ne "a")", R"(http.host != "a")"},
      {R"(http.host lt "x")", R"(http.host < "x")"},
      {R"(http.host le "x")", R"(http.host <= "x")"},
      {R"(http.host gt "a")", R"(http.host > "a")"},
      {R"(http.host ge "a")", R"(http.host >= "a")"},
      {R"(http.host matches "ex.mple")", R"(http.host ~ "ex.mple")"},
      {R"(ssl and ssl)", R"(ssl && ssl)"},
      {R"(ssl or false)", R"(ssl || false)"},
      {R"(ssl xor false)", R"(ssl ^^ false)"},
      {R"(not false)", R"(!false)"},
  };
  for (auto& p : same) {
    EXPECT_TRUE(testing::eval(p[0], req)) << p[0];
    EXPECT_TRUE(testing::eval(p[1], req)) << p[1];
  }
  EXPECT_TRUE(testing::eval(R"(http.host contains "example")", req));
  EXPECT_TRUE(testing::eval(R"(http.host wildcard "WWW.*")", req));
  EXPECT_TRUE(testing::eval(R"(http.host strict wildcard "www.*")", req));
  EXPECT_TRUE(testing::eval(R"(http.host in {"a" "www.example.com"})", req));
  EXPECT_TRUE(testing::eval(R"(http.request.method in $safe_methods)", req));
  // No spaces needed around symbols.
  EXPECT_TRUE(testing::eval(R"(http.host=="www.example.com"&&ssl)", req));
  EXPECT_TRUE(testing::eval(R"((ssl)and(ssl))", req));
}

TEST(ParserTest, Precedence) {
  TestRequest req;
  // not > and > xor > or.
  EXPECT_TRUE(testing::eval("true or true and false", req));     // true or (true and false)
  EXPECT_FALSE(testing::eval("(true or true) and false", req));
  EXPECT_TRUE(testing::eval("true xor true or true", req));      // (t xor t) or t
  EXPECT_FALSE(testing::eval("true xor (true or true)", req));
  EXPECT_TRUE(testing::eval("false and false xor true", req));   // (f and f) xor t
  EXPECT_FALSE(testing::eval("false and (false xor true)", req));
  EXPECT_TRUE(testing::eval("not false and true", req));         // (not f) and t
  EXPECT_FALSE(testing::eval("not (true and true)", req));
  EXPECT_TRUE(testing::eval("not not true", req));
  EXPECT_FALSE(testing::eval("true xor true xor false", req));   // left to right
  EXPECT_TRUE(testing::eval("((((ssl))))", req));
}

struct ErrorCase {
  const char* expr;
  const char* error;
};

const ErrorCase kErrors[] = {
    {R"(http.request.urii eq "/")", R"(1:1: unknown field "http.request.urii")"},
    {R"(ssl and http.request.urii eq "/")", R"(1:9: unknown field "http.request.urii")"},
    {"ssl and\n  http.hots eq \"a\"", R"(2:3: unknown field "http.hots")"},
    {R"(lowr(http.host) eq "a")", R"(1:1: unknown function "lowr")"},
    {R"(http.host eq 5)", R"(1:14: expected a String literal after "eq")"},
    {R"(http.request.timestamp.sec eq "5")", R"(1:31: expected an Int literal)"},
    {R"(http.request.timestamp.sec contains "5")",
     R"(1:28: operator "contains" is not defined for Int)"},
    {R"(ip.src lt 1.2.3.4)", R"(1:8: operator "lt" is not defined for IP)"},
    {R"(ssl contains "a")", R"(1:5: operator "contains" is not defined for Bool)"},
    {R"(http.request.headers eq "a")",
     R"(1:22: operator "eq" is not defined for Map<Array<String>>)"},
    {R"(http.host)", R"(1:10: expected a comparison operator after String value)"},
    {R"(http.host matches "(a")", "1:19: invalid regex: missing ): (a"},
    {R"(http.host matches "(a)\\1")", "1:19: invalid regex: invalid escape sequence: \\1"},
    {R"(ip.src in $nope)", R"(1:11: unknown list "$nope")"},
    {R"(http.host in $office)", "1:14: list $office holds IP addresses but the left side is String"},
    {R"(ip.src in $safe_methods)", "1:11: list $safe_methods holds Strings but the left side is IP"},
    {R"(http.response.code eq 200)",
     R"(1:1: field "http.response.code" is only available in the response phase)"},
    {R"(regex_replace(http.host, "a", "b") eq "c")",
     "1:1: function regex_replace() is only allowed in rewrite value expressions"},
    {R"(http.host eq "abc)", "1:14: unterminated string"},
    {R"(http.host eq "a\qb")", R"(1:16: invalid escape "\q")"},
    {R"(http.host eq "\x4")", "1:15: invalid \\x escape: expected two hex digits"},
    {R"(http.host eq r#"abc"##)", "1:22: unexpected \"#\""},
    {R"(http.host eq r#"abc")", "1:14: unterminated raw string"},
    {R"(http.request.timestamp.sec eq 99999999999999999999)", "1:31: integer out of range"},
    {R"(http.request.timestamp.sec in {5..1})", "1:32: range start is greater than end"},
    {R"(ip.src eq 1.2.3)", R"(1:11: invalid IP address "1.2.3")"},
    {R"(ip.src in {10.0.0.0/33})", R"(1:12: invalid CIDR prefix "/33")"},
    {R"(ip.src in {10.0.0.9..10.0.0.1})", "1:12: range start is greater than end"},
    {R"(ip.src eq 10.0.0.1..10.0.0.9)", "1:11: an IP range is only allowed inside { }"},
    {R"(http.host in {})", "1:14: empty set"},
    {R"(http.host in {"a" 5})", "1:19: expected a String literal in the set"},
    {R"(http.host in {"a")", "1:14: unterminated set: missing \"}\""},
    {R"(http.request.headers.names[*] eq "a")", "1:27: [*] is only allowed inside any() or all()"},
    {R"(any(http.host eq "a"))", "1:1: any() needs an array element x[*] in its argument"},
    {R"(any(http.request.headers.names[*] eq http.request.headers.values[*]))",
     "1:38: expected a String literal after \"eq\""},
    {R"(any(http.request.headers.names[*] eq "a" or http.request.headers.values[*] eq "b"))",
     "1:72: only one [*] is allowed in one any() or all()"},
    {R"(http.host[0] eq "a")", "1:10: [index] needs an Array, found String"},
    {R"(http.request.headers[0][0] eq "a")", "1:21: [index] needs an Array, found Map<Array<String>>"},
    {R"(http.request.headers.names["a"] eq "a")",
     "1:27: [\"key\"] needs a Map, found Array<String>"},
    {R"(lower(http.host, "x") eq "a")", "1:1: function lower() takes 1 argument, got 2"},
    {R"(substring(http.host) eq "a")", "1:1: function substring() takes 2 to 3 arguments, got 1"},
    {R"(lower(ip.src) eq "a")", "1:7: argument 1 of lower() must be String, found IP"},
    {R"(len(ssl) eq 1)", "1:5: argument 1 of len() must be String or Array<String>, found Bool"},
    {R"(split(http.host, http.host)[0] eq "a")", "1:18: argument 2 of split() must be a literal"},
    {R"(cidr(ip.src, 33, 64) eq 1.2.3.4)", "1:14: cidr() IPv4 bits must be 1 to 32"},
    {R"(url_decode(http.host, "x") eq "a")", R"(1:23: url_decode() options are "r" and "u", found "x")"},
    {R"(http.host wildcard r"a\b")", R"(1:20: invalid escape in wildcard pattern (only \* and \\))"},
    {R"(lower(http.host) eq "a" or)", "1:27: unexpected end of expression"},
    {R"(ssl ssl)", R"(1:5: unexpected "ssl")"},
    {R"((ssl)", "1:5: expected \")\", found end of expression"},
    {"ssl and (ssl or false))", "1:23: unexpected \")\""},
    {R"("a" eq http.host)", "1:1: a comparison must start with a field or a function"},
    {R"(http.host strict "a")", R"(1:18: expected "wildcard" after "strict")"},
    {R"(ssl eq 1)", "1:8: expected true or false"},
    {"", "1:1: empty expression"},
    {"   \n  ", "2:3: empty expression"},
    {R"(http.request.timestamp.sec in $safe_methods)", "1:31: lists hold IPs or Strings, not Int"},
    {R"(http.host in "a")", "1:14: expected \"{\" or a $list after \"in\""},
};

class ParserErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ParserErrorTest, ReportsLineColumnAndReason) {
  EXPECT_EQ(error_of(GetParam().expr), GetParam().error) << GetParam().expr;
}

INSTANTIATE_TEST_SUITE_P(Parser, ParserErrorTest, ::testing::ValuesIn(kErrors));

TEST(ParserTest, Limits) {
  std::string long_expr = "http.host eq \"" + std::string(5000, 'a') + "\"";
  EXPECT_EQ(error_of(long_expr), "1:1: expression is 5015 bytes, over the 4096-byte limit");
  std::string deep = std::string(100, '(') + "ssl" + std::string(100, ')');
  EXPECT_EQ(error_of(deep), "1:65: expression nested deeper than 64 levels");
  std::string nots;
  for (int i = 0; i < 100; ++i) nots += "not ";
  EXPECT_EQ(error_of(nots + "ssl"), "1:257: expression nested deeper than 64 levels");
  std::string ok = std::string(60, '(') + "ssl" + std::string(60, ')');
  EXPECT_EQ(error_of(ok), "");
  // Many rules chained flat are not "deep".
  std::string flat = "ssl";
  for (int i = 0; i < 500; ++i) flat += " or ssl";
  EXPECT_EQ(error_of(flat), "");
}

TEST(ParserTest, ResponseFieldsAllowedInResponsePhase) {
  CompileOptions opt;
  opt.phase = Phase::Response;
  EXPECT_EQ(error_of("http.response.code in {500..599}", opt), "");
}

TEST(ParserTest, CompileErrorToString) {
  CompileError e{1, 17, "unknown field \"http.request.urii\""};
  EXPECT_EQ(e.to_string(), "1:17: unknown field \"http.request.urii\"");
}

}  // namespace
}  // namespace parapet::filters
