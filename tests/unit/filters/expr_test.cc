// Table-driven evaluation tests of the rules language (filters/compiler.cc, functions.cc):
// expressions against one realistic request, with the expected result.
#include <gtest/gtest.h>

#include <string>

#include "tests/unit/filters/test_request.h"

namespace parapet::filters {
namespace {

using testing::TestRequest;

struct Case {
  const char* expr;
  bool want;
};

// Request: GET /Admin/../api/v1/users.JSON?id=42&tag=a&tag=b&q=hello+world&enc=%2Fetc
// host www.example.com, from 192.0.2.10 over TLS; headers in tests/unit/filters/test_request.h.
const Case kCases[] = {
    // Equality and ordering on strings.
    {R"(http.host eq "www.example.com")", true},
    {R"(http.host == "example.com")", false},
    {R"(http.host ne "example.com")", true},
    {R"(http.host != "www.example.com")", false},
    {R"(http.host lt "www.f")", true},
    {R"(http.host le "www.example.com")", true},
    {R"(http.host gt "www.example.com")", false},
    {R"(http.host ge "www.e")", true},
    {R"(http.request.method in {"GET" "HEAD"})", true},
    {R"(http.request.method in {"POST" "PUT"})", false},
    {R"(http.request.method in $safe_methods)", true},
    {R"(http.host in $safe_methods)", false},
    // Paths: normalized vs raw.
    {R"(http.request.uri.path eq "/api/v1/users.JSON")", true},
    {R"(raw.http.request.uri.path eq "/Admin/../api/v1/users.JSON")", true},
    {R"(http.request.uri.path contains "Admin")", false},
    {R"(http.request.uri.path.extension eq "json")", true},
    {R"(http.request.uri.query contains "tag=a")", true},
    {R"(http.request.uri eq "/api/v1/users.JSON?id=42&tag=a&tag=b&q=hello+world&enc=%2Fetc")",
     true},
    {R"(starts_with(raw.http.request.uri, "/Admin/.."))", true},
    {R"(http.request.full_uri eq "https://www.example.com/api/v1/users.JSON?id=42&tag=a&tag=b&q=hello+world&enc=%2Fetc")",
     true},
    // Maps, arrays, indexes and missing values.
    {R"(http.request.uri.args["id"][0] eq "42")", true},
    {R"(http.request.uri.args["tag"][1] eq "b")", true},
    {R"(http.request.uri.args["tag"][2] eq "b")", false},
    {R"(http.request.uri.args["tag"][2] ne "b")", false},
    {R"(not http.request.uri.args["tag"][2] eq "b")", true},
    {R"(http.request.uri.args["q"][0] eq "hello world")", true},
    {R"(http.request.uri.args["enc"][0] eq "/etc")", true},
    {R"(any(http.request.uri.args.names[*] eq "enc"))", true},
    {R"(any(http.request.uri.args.values[*] eq "hello world"))", true},
    {R"(any(http.request.uri.args["tag"][*] eq "b"))", true},
    {R"(all(http.request.uri.args["tag"][*] in {"a" "b"}))", true},
    {R"(all(http.request.uri.args["tag"][*] eq "a"))", false},
    {R"(any(http.request.uri.args["nope"][*] eq "a"))", false},
    {R"(all(http.request.uri.args["nope"][*] eq "a"))", false},
    {R"(any(http.request.uri.args["tag"][*] ne "zzz"))", true},
    {R"(http.request.headers["user-agent"][0] contains "Firefox")", true},
    {R"(http.request.headers["User-Agent"][0] contains "Firefox")", false},
    {R"(http.request.headers["x-missing"][0] eq "")", false},
    {R"(http.request.headers["x-missing"][0] ne "x")", false},
    {R"(http.request.headers["x-missing"][0] contains "")", false},
    {R"(http.request.headers["x-empty"][0] eq "")", true},
    {R"(any(http.request.headers["x-multi"][*] eq "two"))", true},
    {R"(all(http.request.headers["x-multi"][*] matches "^(one|two)$"))", true},
    {R"(len(http.request.headers["x-multi"]) eq 2)", true},
    {R"(len(http.request.headers["x-missing"]) eq 0)", true},
    {R"(any(http.request.headers.names[*] eq "x-forwarded-for"))", true},
    {R"(any(http.request.headers.values[*] contains "text/html"))", true},
    {R"(any(lower(http.request.headers.values[*]) contains "firefox"))", true},
    {R"(http.request.cookies["session"][0] eq "s3cr3t")", true},
    {R"(http.request.cookies["lang"][0] in {"en" "fr"})", true},
    {R"(http.request.cookies["nope"][0] in {"en" "fr"})", false},
    {R"(http.cookie contains "lang=en")", true},
    // Regexes.
    {R"(http.user_agent matches "Firefox/[0-9]+")", true},
    {R"(http.user_agent ~ "^curl")", false},
    {R"(http.user_agent matches "(?i)firefox")", true},
    {R"(http.user_agent matches "firefox")", false},
    // Single-header fields: "" when absent.
    {R"(http.referer eq "")", true},
    {R"(http.x_forwarded_for eq "203.0.113.7")", true},
    {R"(http.request.version eq "HTTP/1.1")", true},
    {R"(parapet.tenant eq "acme")", true},
    // Ints, sets and ranges.
    {R"(http.request.timestamp.sec gt 1600000000)", true},
    {R"(http.request.timestamp.sec lt 1600000000)", false},
    {R"(http.request.timestamp.sec >= 1700000000)", true},
    {R"(http.request.timestamp.sec <= 1699999999)", false},
    {R"(http.request.timestamp.sec == 1700000000)", true},
    {R"(http.request.timestamp.sec in {1..5 1700000000})", true},
    {R"(http.request.timestamp.sec in {1600000000..1800000000})", true},
    {R"(http.request.timestamp.sec in {1..5 10..20})", false},
    {R"(http.request.timestamp.sec in {-5..-1 1699999999..1700000000})", true},
    // IPs.
    {R"(ip.src eq 192.0.2.10)", true},
    {R"(ip.src ne 192.0.2.10)", false},
    {R"(ip.src == 192.0.2.0/24)", true},
    {R"(ip.src in {192.0.2.0/24})", true},
    {R"(ip.src in {10.0.0.0/8 2001:db8::/32})", false},
    {R"(ip.src in {192.0.2.1..192.0.2.20})", true},
    {R"(ip.src in {192.0.2.11..192.0.2.20})", false},
    {R"(ip.src in {192.0.2.10})", true},
    {R"(ip.src in {::ffff:192.0.2.0/120})", true},
    {R"(ip.src in $office)", true},
    {R"(not ip.src in {0.0.0.0/0})", false},
    // Booleans and logic.
    {R"(ssl)", true},
    {R"(not ssl)", false},
    {R"(!ssl)", false},
    {R"(ssl eq true)", true},
    {R"(ssl ne true)", false},
    {R"(ssl == false)", false},
    {R"(true)", true},
    {R"(false)", false},
    {R"(http.host eq "x" or ssl)", true},
    {R"(http.host eq "x" and ssl)", false},
    {R"(ssl xor ssl)", false},
    {R"(ssl ^^ not ssl)", true},
    {R"(not ssl or ssl)", true},
    {R"(not (ssl or ssl))", false},
    {R"(ssl or ssl and false)", true},
    {R"((ssl or ssl) and false)", false},
    {R"(ssl xor ssl or ssl)", true},
    {R"(false and false xor true)", true},
    {R"(! ssl || ssl && false)", false},
    {R"(ssl && ssl ^^ ssl || false)", false},
    {"ssl\n and\n\tnot false", true},
    // Wildcards: case, stars at the ends, escapes, empty.
    {R"(http.host wildcard "*.example.com")", true},
    {R"(http.host wildcard "*.EXAMPLE.com")", true},
    {R"(http.host strict wildcard "*.EXAMPLE.com")", false},
    {R"(http.host strict wildcard "www.*")", true},
    {R"(http.host wildcard "*")", true},
    {R"(http.host wildcard "**")", true},
    {R"(http.host wildcard "")", false},
    {R"(http.referer wildcard "")", true},
    {R"(http.referer wildcard "*")", true},
    {R"(http.host wildcard "www.example.com")", true},
    {R"(http.host wildcard "www")", false},
    {R"(http.host wildcard "*example*")", true},
    {R"(http.host wildcard "w*w*w*.com")", true},
    {R"(http.host wildcard "*.*.*.*")", false},
    {R"(http.host wildcard "www.*.com.*")", false},
    {R"(http.request.headers["x-star"][0] wildcard "a\\*b")", true},
    {R"(http.request.headers["x-star"][0] wildcard r"a\*b")", true},
    {R"(http.request.headers["x-star"][0] wildcard "a*b")", true},
    {R"(http.request.uri.args["tag"][0] wildcard r"a\*")", false},
    {R"(http.request.headers["x-bs"][0] wildcard r"a\\b")", true},
    {R"(http.request.headers["x-bs"][0] strict wildcard r"A\\*")", false},
    // Functions.
    {R"(lower(http.request.uri.path) eq "/api/v1/users.json")", true},
    {R"(upper(http.request.uri.path.extension) eq "JSON")", true},
    {R"(len(http.host) eq 15)", true},
    {R"(len(http.request.headers.names) gt 3)", true},
    {R"(starts_with(http.request.uri.path, "/api/"))", true},
    {R"(ends_with(http.request.uri.path, ".JSON"))", true},
    {R"(ends_with(http.request.uri.path, ".json"))", false},
    {R"(ends_with(http.request.headers["x-missing"][0], ""))", false},
    {R"(concat(http.request.method, " ", http.host) eq "GET www.example.com")", true},
    {R"(concat(http.request.headers["x-missing"][0], "a") eq "a")", false},
    {R"(substring(http.host, 4) eq "example.com")", true},
    {R"(substring(http.host, 4, 11) eq "example")", true},
    {R"(substring(http.host, -3) eq "com")", true},
    {R"(substring(http.host, 0, -4) eq "www.example")", true},
    {R"(substring(http.host, 100) eq "")", true},
    {R"(url_decode(http.request.uri.query) contains "enc=/etc")", true},
    {R"(url_decode(http.request.uri.query) contains "hello world")", true},
    {R"(url_decode("%2541", "r") eq "A")", true},
    {R"(url_decode("%2541") eq "%41")", true},
    {R"(url_decode("%u0041%u00e9", "u") eq "A\xc3\xa9")", true},
    {R"(decode_base64(substring(http.request.headers["authorization"][0], 6)) eq "user:pass")",
     true},
    {R"(decode_base64("aGk") eq "hi")", true},
    {R"(decode_base64("!!!") eq "")", false},
    {R"(remove_bytes(http.host, ".w") eq "examplecom")", true},
    {R"(cidr(ip.src, 24, 64) eq 192.0.2.0)", true},
    {R"(cidr(ip.src, 16, 64) in {192.0.0.0/16})", true},
    {R"(cidr(ip.src, 32, 128) eq 192.0.2.10)", true},
    {R"(join(http.request.uri.args["tag"], ",") eq "a,b")", true},
    {R"(any(split(http.cookie, "; ")[*] eq "lang=en"))", true},
    {R"(split(http.host, ".")[1] eq "example")", true},
    {R"(split(http.host, ".", 2)[1] eq "example.com")", true},
    {R"(len(split(http.host, ".")) eq 3)", true},
    {R"(to_string(http.request.timestamp.sec) eq "1700000000")", true},
    {R"(to_string(ip.src) eq "192.0.2.10")", true},
    {R"(to_string(ssl) eq "true")", true},
    {R"(lookup_json_string(http.request.headers["x-json"][0], "user", "name") eq "bob")", true},
    {R"(lookup_json_string(http.request.headers["x-json"][0], "user", "roles", 1) eq "dev")", true},
    {R"(lookup_json_string(http.request.headers["x-json"][0], "q") eq "a\"b")", true},
    {R"(lookup_json_string(http.request.headers["x-json"][0], "user", "age") eq "")", false},
    {R"(lookup_json_string(http.request.headers["x-json"][0], "user") eq "")", false},
    {R"(lookup_json_string(http.request.headers["x-json"][0], "user", "roles", 5) ne "")", false},
    {R"(any(lower(http.request.headers.names[*]) eq "accept"))", true},
    {R"(any(starts_with(http.request.headers.names[*], "x-m")))", true},
};

class ExprTableTest : public ::testing::TestWithParam<Case> {};

TEST_P(ExprTableTest, Evaluates) {
  TestRequest req;
  EXPECT_EQ(testing::eval(GetParam().expr, req), GetParam().want) << GetParam().expr;
}

INSTANTIATE_TEST_SUITE_P(Expr, ExprTableTest, ::testing::ValuesIn(kCases));

TEST(ExprTableSize, HasAtLeastAHundredCases) { EXPECT_GE(std::size(kCases), 100u); }

TEST(ExprV6Test, Ipv6AndMappedSources) {
  TestRequest req;
  ASSERT_TRUE(IpAddr::parse("2001:db8::1", &req.view.src));
  EXPECT_TRUE(testing::eval("ip.src in {2001:db8::/32}", req));
  EXPECT_FALSE(testing::eval("ip.src in {2001:db9::/32}", req));
  EXPECT_TRUE(testing::eval("ip.src eq 2001:db8::1", req));
  EXPECT_TRUE(testing::eval("ip.src eq 2001:DB8:0:0:0:0:0:1", req));
  EXPECT_FALSE(testing::eval("ip.src eq 192.0.2.10", req));
  EXPECT_TRUE(testing::eval("ip.src in {2001:db8::..2001:db8::ff}", req));
  EXPECT_TRUE(testing::eval("cidr(ip.src, 24, 32) eq 2001:db8::", req));
  EXPECT_TRUE(testing::eval("ip.src in $office", req));
  EXPECT_TRUE(testing::eval(R"(to_string(ip.src) eq "2001:db8::1")", req));
  // A client on a dual-stack socket: v4-mapped counts as v4.
  ASSERT_TRUE(IpAddr::parse("::ffff:192.0.2.10", &req.view.src));
  EXPECT_TRUE(req.view.src.v4);
  EXPECT_TRUE(testing::eval("ip.src in {192.0.2.0/24}", req));
  EXPECT_TRUE(testing::eval("ip.src eq 192.0.2.10", req));
  // No source address at all: missing, every comparison false.
  req.view.has_src = false;
  EXPECT_FALSE(testing::eval("ip.src in {0.0.0.0/0 ::/0}", req));
  EXPECT_FALSE(testing::eval("ip.src ne 1.2.3.4", req));
}

// The same evaluation table approach for a request from an IPv6 client
// (2001:db8:abcd:12::5): prefixes of every length class, ranges, lists, mixed families,
// functions over the address, and v4-mapped v6 ranges.
const Case kV6Cases[] = {
    {"ip.src in {2001:db8:abcd:12::5/128}", true},
    {"ip.src in {2001:db8:abcd:12::4/128}", false},
    {"ip.src in {2001:db8:abcd:12::4/127}", true},
    {"ip.src in {2001:db8:abcd:12::6/127}", false},
    {"ip.src in {2001:db8:abcd:12::/64}", true},
    {"ip.src in {2001:db8:abcd:13::/64}", false},
    {"ip.src in {2001:db8:abcd::/48}", true},
    {"ip.src in {2001:db8:abce::/48}", false},
    {"ip.src in {2001:db8::/32}", true},
    {"ip.src in {2000::/3}", true},
    {"ip.src in {::/0}", true},
    {"ip.src in {0.0.0.0/0}", false},                          // a v6 address is never in v4 space
    {"ip.src in {192.0.2.0/24 2001:db8:abcd:12::/64}", true},  // mixed families in one set
    {"ip.src in {192.0.2.0/24 10.0.0.0/8}", false},
    {"ip.src in {2001:db8:abcd:12::1..2001:db8:abcd:12::9}", true},
    {"ip.src in {2001:db8:abcd:12::6..2001:db8:abcd:12::9}", false},
    {"ip.src in {2001:db8:abcd:12::5..2001:db8:abcd:12::5}", true},
    {"ip.src in {2001:DB8:ABCD:12:0:0:0:5/128}", true},  // case and zero compression
    {"ip.src in {2001:db8:abcd:12:ffff::/80}", false},
    {"ip.src eq 2001:db8:abcd:12::5", true},
    {"ip.src ne 2001:db8:abcd:12::5", false},
    {"ip.src ne 2001:db8:abcd:12::6", true},
    {"ip.src eq 192.0.2.10", false},
    {"ip.src ne 192.0.2.10", true},
    {"ip.src in $office", true},  // the list holds 2001:db8::/32
    {"not ip.src in $office", false},
    {"ip.src in {::ffff:0:0/96}", false},  // the v4-mapped range holds v4 clients only
    {R"(to_string(ip.src) eq "2001:db8:abcd:12::5")", true},
    {R"(starts_with(to_string(ip.src), "2001:db8:"))", true},
    {"cidr(ip.src, 24, 64) eq 2001:db8:abcd:12::", true},
    {"cidr(ip.src, 24, 48) eq 2001:db8:abcd::", true},
    {"cidr(ip.src, 24, 48) eq 2001:db8:abcd:12::", false},
    {"cidr(ip.src, 24, 128) eq 2001:db8:abcd:12::5", true},
    {"cidr(ip.src, 8, 3) eq 2000::", true},
    {"cidr(ip.src, 8, 1) eq ::", true},  // 0x2001 starts with a 0 bit
    {R"(ip.src in {2001:db8:abcd:12::/64} and http.host eq "www.example.com")", true},
    {R"(ip.src in {2001:db8:abcd:12::/64} xor ssl)", false},
};

class ExprV6TableTest : public ::testing::TestWithParam<Case> {};

TEST_P(ExprV6TableTest, Evaluates) {
  TestRequest req;
  ASSERT_TRUE(IpAddr::parse("2001:db8:abcd:12::5", &req.view.src));
  ASSERT_FALSE(req.view.src.v4);
  EXPECT_EQ(testing::eval(GetParam().expr, req), GetParam().want) << GetParam().expr;
}

INSTANTIATE_TEST_SUITE_P(ExprV6, ExprV6TableTest, ::testing::ValuesIn(kV6Cases));

TEST(ExprResponseTest, ResponseFields) {
  TestRequest req;
  req.with_response();
  EXPECT_TRUE(testing::eval("http.response.code eq 404", req, Phase::Response));
  EXPECT_TRUE(testing::eval("http.response.code in {400..499}", req, Phase::Response));
  EXPECT_TRUE(testing::eval(R"(http.response.headers["content-type"][0] eq "text/html")", req,
                            Phase::Response));
  EXPECT_TRUE(testing::eval(R"(any(http.response.headers.names[*] eq "set-cookie"))", req,
                            Phase::Response));
  EXPECT_TRUE(testing::eval(R"(http.host eq "www.example.com")", req, Phase::Response));
}

}  // namespace
}  // namespace parapet::filters
