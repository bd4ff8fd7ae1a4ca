// Unit tests of the RFC 9111 rules in proxy/cache/freshness.h: Cache-Control parsing,
// storability, freshness lifetime, age and the reuse decision.
#include "proxy/cache/freshness.h"

#include <gtest/gtest.h>

#include <deque>
#include <string>
#include <vector>

namespace parapet::cache {
namespace {

using H = std::vector<Field>;

// A fixed "now" well after the epoch; dates below are relative to it.
constexpr int64_t kNow = 1'700'000'000;
// Field holds views: the formatted dates live until the end of the test program.
std::string_view date(int64_t t) {
  static std::deque<std::string> keep;
  return keep.emplace_back(format_http_date(t));
}

TEST(CacheHeaders, HttpDateFormats) {
  // The three forms of RFC 9110 5.6.7 name the same instant.
  EXPECT_EQ(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), 784111777);
  EXPECT_EQ(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), 784111777);
  EXPECT_EQ(parse_http_date("Sun Nov  6 08:49:37 1994"), 784111777);
  EXPECT_EQ(format_http_date(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
  EXPECT_EQ(parse_http_date(format_http_date(kNow)), kNow);
  EXPECT_FALSE(parse_http_date("0").has_value());
  EXPECT_FALSE(parse_http_date("Sun, 06 Nov 1994 08:49:37").has_value());
  EXPECT_FALSE(parse_http_date("").has_value());
}

TEST(CacheHeaders, DeltaSecondsClampsAndRejects) {
  EXPECT_EQ(parse_delta_seconds("0"), 0);
  EXPECT_EQ(parse_delta_seconds("60"), 60);
  EXPECT_EQ(parse_delta_seconds("99999999999999999999999"), kMaxDelta);
  EXPECT_FALSE(parse_delta_seconds("-1").has_value());
  EXPECT_FALSE(parse_delta_seconds("1.5").has_value());
  EXPECT_FALSE(parse_delta_seconds("").has_value());
  EXPECT_FALSE(parse_delta_seconds("+5").has_value());
}

TEST(CacheControlParse, EveryDirective) {
  H h{{"Cache-Control",
       "max-age=10, s-maxage=\"20\", no-store, no-cache, private, public, must-revalidate"},
      {"cache-control",
       "proxy-revalidate, immutable, stale-while-revalidate=30, stale-if-error=40, "
       "no-transform, must-understand, only-if-cached, max-stale=5, min-fresh=6, x-ext=1"}};
  CacheControl cc = parse_cache_control(h);
  EXPECT_TRUE(cc.present);
  EXPECT_EQ(cc.max_age, 10);
  EXPECT_EQ(cc.s_maxage, 20);  // quoted form accepted
  EXPECT_TRUE(cc.no_store);
  EXPECT_TRUE(cc.no_cache);
  EXPECT_TRUE(cc.private_);
  EXPECT_TRUE(cc.public_);
  EXPECT_TRUE(cc.must_revalidate);
  EXPECT_TRUE(cc.proxy_revalidate);
  EXPECT_TRUE(cc.immutable);
  EXPECT_EQ(cc.stale_while_revalidate, 30);
  EXPECT_EQ(cc.stale_if_error, 40);
  EXPECT_TRUE(cc.no_transform);
  EXPECT_TRUE(cc.must_understand);
  EXPECT_TRUE(cc.only_if_cached);
  EXPECT_EQ(cc.max_stale, 5);
  EXPECT_EQ(cc.min_fresh, 6);
}

TEST(CacheControlParse, CaseInsensitiveNamesAndWhitespace) {
  H h{{"CACHE-CONTROL", "  MAX-AGE=7 ,NO-CACHE  "}};
  CacheControl cc = parse_cache_control(h);
  EXPECT_EQ(cc.max_age, 7);
  EXPECT_TRUE(cc.no_cache);
}

// RFC 9111 4.2.1: a directive present twice with different values: the first is used or the
// response is considered stale. parapet considers it stale (0); the same value twice is fine.
TEST(CacheControlParse, ConflictingFreshnessDuplicatesMeanStale) {
  H same{{"Cache-Control", "max-age=10, max-age=10"}};
  EXPECT_EQ(parse_cache_control(same).max_age, 10);
  H differ{{"Cache-Control", "max-age=100"}, {"Cache-Control", "max-age=5"}};
  EXPECT_EQ(parse_cache_control(differ).max_age, 0);
  H differ_line{{"Cache-Control", "max-age=1, max-age=1800"}};
  EXPECT_EQ(parse_cache_control(differ_line).max_age, 0);
  H smax{{"Cache-Control", "s-maxage=60, max-age=10, s-maxage=30"}};
  EXPECT_EQ(parse_cache_control(smax).s_maxage, 0);
  EXPECT_EQ(parse_cache_control(smax).max_age, 10);
  // Other ages keep the smaller (more restrictive) value.
  H swr{{"Cache-Control", "stale-while-revalidate=30, stale-while-revalidate=10"}};
  EXPECT_EQ(parse_cache_control(swr).stale_while_revalidate, 10);
  // A response with conflicting max-age values is stale on arrival.
  Policy p;
  EntryMeta m = make_meta(200, differ, kNow, kNow, p);
  EXPECT_EQ(m.lifetime, 0);
  EXPECT_EQ(decide(m, {}, p, kNow).verdict, Verdict::MustRevalidate);
}

// cache-directive = token [ "=" ( token / quoted-string ) ]: no whitespace around "=".
TEST(CacheControlParse, NoWhitespaceAroundEquals) {
  H before{{"Cache-Control", "max-age =3600"}};
  EXPECT_EQ(parse_cache_control(before).max_age, -1);  // another directive: no freshness
  H after{{"Cache-Control", "max-age= 3600"}};
  EXPECT_EQ(parse_cache_control(after).max_age, 0);  // invalid argument: stale
}

TEST(CacheControlParse, InvalidArgumentMeansStale) {
  for (const char* v : {"max-age=1.5", "max-age=-1", "max-age", "max-age=abc", "max-age="}) {
    H h{{"Cache-Control", v}};
    EXPECT_EQ(parse_cache_control(h).max_age, 0) << v;
  }
}

TEST(CacheControlParse, QualifiedNoCacheAndPrivate) {
  H h{{"Cache-Control", "no-cache=\"Set-Cookie, X-Foo\", private=\"X-User\""}};
  CacheControl cc = parse_cache_control(h);
  EXPECT_FALSE(cc.no_cache);
  EXPECT_FALSE(cc.private_);
  EXPECT_EQ(cc.no_cache_fields, (std::vector<std::string>{"set-cookie", "x-foo"}));
  EXPECT_EQ(cc.private_fields, (std::vector<std::string>{"x-user"}));
  EXPECT_TRUE(excluded_from_storage("X-Foo", h, cc));
  EXPECT_TRUE(excluded_from_storage("x-user", h, cc));
  EXPECT_FALSE(excluded_from_storage("Content-Type", h, cc));
}

TEST(CacheControlParse, BareMaxStaleAcceptsAnything) {
  H h{{"Cache-Control", "max-stale"}};
  EXPECT_EQ(parse_cache_control(h).max_stale, kMaxDelta);
}

TEST(CacheControlParse, PragmaNoCacheOnlyWithoutCacheControl) {
  H p{{"Pragma", "no-cache"}};
  EXPECT_TRUE(parse_request_cache_control(p).no_cache);
  H both{{"Pragma", "no-cache"}, {"Cache-Control", "max-age=5"}};
  EXPECT_FALSE(parse_request_cache_control(both).no_cache);
}

TEST(CacheExclusion, HopByHopAndConnectionListed) {
  H h{{"Connection", "close, X-Hop"}, {"X-Hop", "1"}};
  CacheControl cc;
  for (const char* n : {"Connection", "Keep-Alive", "Transfer-Encoding", "TE", "Upgrade",
                        "Proxy-Connection", "Age", "x-hop"}) {
    EXPECT_TRUE(excluded_from_storage(n, h, cc)) << n;
  }
  EXPECT_FALSE(excluded_from_storage("ETag", h, cc));
}

class CacheStorable : public ::testing::Test {
 protected:
  Storability check(uint16_t status, H resp, H req = {}, std::string_view method = "GET") {
    return storable(method, status, req, parse_request_cache_control(req), resp, policy);
  }
  Policy policy;
};

TEST_F(CacheStorable, MethodAndStatus) {
  EXPECT_TRUE(check(200, {{"Cache-Control", "max-age=60"}}).ok);
  EXPECT_FALSE(check(200, {{"Cache-Control", "max-age=60"}}, {}, "POST").ok);
  EXPECT_FALSE(check(200, {{"Cache-Control", "max-age=60"}}, {}, "HEAD").ok);
  EXPECT_FALSE(check(206, {{"Cache-Control", "max-age=60"}}).ok);
  EXPECT_FALSE(check(304, {{"Cache-Control", "max-age=60"}}).ok);
  EXPECT_FALSE(check(100, {}).ok);
}

TEST_F(CacheStorable, HeuristicStatusesNeedNothingElse) {
  for (uint16_t s : {200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501}) {
    EXPECT_TRUE(check(s, {}).ok) << s;
  }
  // Not heuristically cacheable: needs explicit freshness.
  for (uint16_t s : {302, 307, 400, 403, 500, 502, 503}) {
    EXPECT_FALSE(check(s, {}).ok) << s;
    EXPECT_STREQ(check(s, {}).reason, "no-freshness");
    EXPECT_TRUE(check(s, {{"Cache-Control", "max-age=5"}}).ok) << s;
    EXPECT_TRUE(check(s, {{"Expires", date(kNow + 60)}}).ok) << s;
    EXPECT_TRUE(check(s, {{"Cache-Control", "s-maxage=5"}}).ok) << s;
    EXPECT_TRUE(check(s, {{"Cache-Control", "public"}}).ok) << s;
  }
  // Last-Modified alone does not make a 302 storable (RFC 9111 3).
  EXPECT_FALSE(check(302, {{"Last-Modified", date(kNow - 3600)}}).ok);
}

TEST_F(CacheStorable, NoStoreAndPrivate) {
  EXPECT_STREQ(check(200, {{"Cache-Control", "max-age=60, no-store"}}).reason, "no-store");
  EXPECT_STREQ(
      check(200, {{"Cache-Control", "max-age=60"}}, {{"Cache-Control", "no-store"}}).reason,
      "request-no-store");
  EXPECT_STREQ(check(200, {{"Cache-Control", "max-age=60, private"}}).reason, "private");
  // Qualified private: storable, the named fields are dropped.
  EXPECT_TRUE(check(200, {{"Cache-Control", "max-age=60, private=\"x-user\""}}).ok);
  // A private cache may store private responses.
  policy.shared = false;
  EXPECT_TRUE(check(200, {{"Cache-Control", "max-age=60, private"}}).ok);
}

TEST_F(CacheStorable, MustUnderstand) {
  // must-understand + understood status overrides no-store.
  EXPECT_TRUE(check(200, {{"Cache-Control", "max-age=60, no-store, must-understand"}}).ok);
  EXPECT_FALSE(check(299, {{"Cache-Control", "max-age=60, no-store, must-understand"}}).ok);
  EXPECT_FALSE(check(299, {{"Cache-Control", "max-age=60, must-understand"}}).ok);
}

TEST_F(CacheStorable, AuthorizationNeedsExplicitPermission) {
  H auth{{"Authorization", "Bearer x"}};
  EXPECT_STREQ(check(200, {{"Cache-Control", "max-age=60"}}, auth).reason, "authorization");
  EXPECT_TRUE(check(200, {{"Cache-Control", "max-age=60, public"}}, auth).ok);
  EXPECT_TRUE(check(200, {{"Cache-Control", "s-maxage=60"}}, auth).ok);
  EXPECT_TRUE(check(200, {{"Cache-Control", "max-age=60, must-revalidate"}}, auth).ok);
}

TEST_F(CacheStorable, SetCookieOnlyWhenAllowed) {
  H r{{"Cache-Control", "max-age=60"}, {"Set-Cookie", "a=b"}};
  EXPECT_STREQ(check(200, r).reason, "set-cookie");
  policy.store_set_cookie = true;
  EXPECT_TRUE(check(200, r).ok);
}

TEST_F(CacheStorable, VaryStarNeverStored) {
  EXPECT_STREQ(check(200, {{"Cache-Control", "max-age=60"}, {"Vary", "Accept, *"}}).reason,
               "vary-star");
}

TEST_F(CacheStorable, CacheEverythingPolicy) {
  policy.cache_everything = true;
  policy.cache_everything_ttl = 30;
  EXPECT_TRUE(check(200, {{"Cache-Control", "private, no-cache"}}).ok);
  EXPECT_TRUE(check(302, {}).ok);
  EXPECT_FALSE(check(200, {{"Cache-Control", "no-store"}}).ok);
  policy.respect_no_store = false;
  EXPECT_TRUE(check(200, {{"Cache-Control", "no-store"}}).ok);
  EntryMeta m = make_meta(200, H{{"Cache-Control", "no-cache, max-age=999"}}, kNow, kNow, policy);
  EXPECT_EQ(m.lifetime, 30);
  EXPECT_FALSE(m.no_cache);
}

TEST(CacheLifetime, Precedence) {
  Policy p;
  const int64_t d = kNow;
  H all{{"Date", date(d)},
        {"Cache-Control", "max-age=100, s-maxage=200"},
        {"Expires", date(d + 300)}};
  EXPECT_EQ(freshness_lifetime(200, parse_cache_control(all), all, d, p).seconds, 200);
  p.shared = false;  // a private cache ignores s-maxage
  EXPECT_EQ(freshness_lifetime(200, parse_cache_control(all), all, d, p).seconds, 100);
  p.shared = true;
  H no_smax{{"Date", date(d)}, {"Cache-Control", "max-age=100"}, {"Expires", date(d + 300)}};
  EXPECT_EQ(freshness_lifetime(200, parse_cache_control(no_smax), no_smax, d, p).seconds, 100);
  H exp{{"Date", date(d)}, {"Expires", date(d + 300)}};
  EXPECT_EQ(freshness_lifetime(200, parse_cache_control(exp), exp, d, p).seconds, 300);
  H past{{"Date", date(d)}, {"Expires", date(d - 300)}};
  EXPECT_EQ(freshness_lifetime(200, parse_cache_control(past), past, d, p).seconds, 0);
}

TEST(CacheLifetime, InvalidExpiresIsAlreadyExpired) {
  Policy p;
  H h{{"Date", date(kNow)}, {"Expires", "0"}, {"Last-Modified", date(kNow - 100000)}};
  Lifetime lt = freshness_lifetime(200, parse_cache_control(h), h, kNow, p);
  EXPECT_EQ(lt.seconds, 0);
  EXPECT_FALSE(lt.heuristic);  // Expires present: no heuristic
}

TEST(CacheLifetime, ExpiresWithoutDateUsesResponseTime) {
  Policy p;
  H h{{"Expires", date(kNow + 120)}};
  EntryMeta m = make_meta(200, h, kNow - 1, kNow, p);
  EXPECT_FALSE(m.has_date);
  EXPECT_EQ(m.date_value, kNow);
  EXPECT_EQ(m.lifetime, 120);
}

TEST(CacheLifetime, Heuristic) {
  Policy p;
  H h{{"Date", date(kNow)}, {"Last-Modified", date(kNow - 10000)}};
  Lifetime lt = freshness_lifetime(200, parse_cache_control(h), h, kNow, p);
  EXPECT_TRUE(lt.heuristic);
  EXPECT_EQ(lt.seconds, 1000);  // 10% of 10000 s
  p.heuristic_fraction = 0.5;
  EXPECT_EQ(freshness_lifetime(200, parse_cache_control(h), h, kNow, p).seconds, 5000);
  p.heuristic_max = 600;
  EXPECT_EQ(freshness_lifetime(200, parse_cache_control(h), h, kNow, p).seconds, 600);
  // Not heuristically cacheable, not public: no heuristic.
  EXPECT_EQ(freshness_lifetime(302, parse_cache_control(h), h, kNow, p).seconds, 0);
  H pub{{"Date", date(kNow)}, {"Last-Modified", date(kNow - 1000)}, {"Cache-Control", "public"}};
  EXPECT_EQ(freshness_lifetime(302, parse_cache_control(pub), pub, kNow, p).seconds, 500);
  // No Last-Modified: nothing to base a heuristic on.
  H none{{"Date", date(kNow)}};
  EXPECT_EQ(freshness_lifetime(200, parse_cache_control(none), none, kNow, p).seconds, 0);
}

TEST(CacheLifetime, TtlOverrideByStatus) {
  Policy p;
  p.ttl_by_status = {{404, 60}};
  EntryMeta m = make_meta(404, H{{"Cache-Control", "max-age=5"}}, kNow, kNow, p);
  EXPECT_EQ(m.lifetime, 60);
  EXPECT_EQ(make_meta(200, H{{"Cache-Control", "max-age=5"}}, kNow, kNow, p).lifetime, 5);
}

TEST(CacheAge, RfcFormulas) {
  // apparent_age = max(0, response_time - date_value) = 10
  // response_delay = response_time - request_time = 2
  // corrected_age_value = age_value + response_delay = 5 + 2 = 7
  // corrected_initial_age = max(10, 7) = 10
  EXPECT_EQ(corrected_initial_age(5, kNow - 10, kNow - 2, kNow), 10);
  // Age header dominates when the clocks agree: max(0, 30 + 2) = 32.
  EXPECT_EQ(corrected_initial_age(30, kNow, kNow - 2, kNow), 32);
  // Date in the future (origin clock ahead): apparent age clamps at 0.
  EXPECT_EQ(corrected_initial_age(0, kNow + 100, kNow, kNow), 0);
  Policy p;
  H h{{"Date", date(kNow - 10)}, {"Age", "5"}, {"Cache-Control", "max-age=60"}};
  EntryMeta m = make_meta(200, h, kNow - 2, kNow, p);
  EXPECT_EQ(m.age_value, 5);
  EXPECT_EQ(m.corrected_initial_age, 10);
  // current_age = corrected_initial_age + resident_time
  EXPECT_EQ(current_age(m, kNow + 20), 30);
  Decision d = decide(m, {}, p, kNow + 20);
  EXPECT_EQ(d.age, 30);
  EXPECT_EQ(d.ttl, 30);
  EXPECT_EQ(d.verdict, Verdict::Fresh);
}

// A 304's Age and Date govern the freshened entry (RFC 9111 4.3.4, 4.2.3): the merged head
// never holds Age (not stored), so it comes from the 304 itself.
TEST(CacheAge, FreshenedMetaTakesThe304sAgeAndDate) {
  Policy p;
  H merged{{"Date", date(kNow - 2)}, {"Cache-Control", "max-age=100"}, {"ETag", "\"x\""}};
  H nm{{"Date", date(kNow - 2)}, {"Cache-Control", "max-age=100"}, {"Age", "40"}};
  EntryMeta m = freshened_meta(200, merged, nm, kNow - 1, kNow, p);
  EXPECT_EQ(m.age_value, 40);
  // max(apparent 2, 40 + delay 1)
  EXPECT_EQ(m.corrected_initial_age, 41);
  EXPECT_EQ(decide(m, {}, p, kNow).age, 41);
  // A 304 without Date: the merged head has none (merge_304 drops the stored one), so the
  // receipt time is the date and the apparent age is 0.
  H merged_no_date{{"Cache-Control", "max-age=100"}, {"ETag", "\"x\""}};
  m = freshened_meta(200, merged_no_date, H{{"Cache-Control", "max-age=100"}}, kNow, kNow, p);
  EXPECT_FALSE(m.has_date);
  EXPECT_EQ(m.date_value, kNow);
  EXPECT_EQ(m.corrected_initial_age, 0);
  EXPECT_EQ(decide(m, {}, p, kNow + 50).verdict, Verdict::Fresh);
}

TEST(CacheAge, InvalidAgeIgnored) {
  Policy p;
  EntryMeta m = make_meta(200, H{{"Date", date(kNow)}, {"Age", "abc"}}, kNow, kNow, p);
  EXPECT_EQ(m.age_value, 0);
  m = make_meta(200, H{{"Age", "99999999999999"}}, kNow, kNow, p);
  EXPECT_EQ(m.age_value, kMaxDelta);
}

class CacheDecide : public ::testing::Test {
 protected:
  EntryMeta meta(H resp) { return make_meta(200, resp, kNow, kNow, policy); }
  Verdict at(const EntryMeta& m, int64_t t, H req = {}) {
    return decide(m, parse_request_cache_control(req), policy, t).verdict;
  }
  Policy policy;
};

TEST_F(CacheDecide, FreshThenStale) {
  EntryMeta m = meta({{"Date", date(kNow)}, {"Cache-Control", "max-age=60"}});
  EXPECT_EQ(at(m, kNow), Verdict::Fresh);
  EXPECT_EQ(at(m, kNow + 59), Verdict::Fresh);
  EXPECT_EQ(at(m, kNow + 60), Verdict::MustRevalidate);  // age == lifetime: stale
}

TEST_F(CacheDecide, ResponseNoCacheAlwaysRevalidates) {
  EntryMeta m = meta({{"Cache-Control", "max-age=60, no-cache"}});
  EXPECT_EQ(at(m, kNow), Verdict::MustRevalidate);
}

TEST_F(CacheDecide, RequestNoCacheAndPragma) {
  EntryMeta m = meta({{"Cache-Control", "max-age=60"}});
  EXPECT_EQ(at(m, kNow, {{"Cache-Control", "no-cache"}}), Verdict::MustRevalidate);
  EXPECT_EQ(at(m, kNow, {{"Pragma", "no-cache"}}), Verdict::MustRevalidate);
}

TEST_F(CacheDecide, RequestMaxAgeAndMinFresh) {
  EntryMeta m = meta({{"Cache-Control", "max-age=60"}});
  EXPECT_EQ(at(m, kNow + 10, {{"Cache-Control", "max-age=5"}}), Verdict::MustRevalidate);
  EXPECT_EQ(at(m, kNow + 10, {{"Cache-Control", "max-age=10"}}), Verdict::Fresh);
  EXPECT_EQ(at(m, kNow + 50, {{"Cache-Control", "min-fresh=20"}}), Verdict::MustRevalidate);
  EXPECT_EQ(at(m, kNow + 30, {{"Cache-Control", "min-fresh=20"}}), Verdict::Fresh);
}

TEST_F(CacheDecide, MaxStale) {
  EntryMeta m = meta({{"Cache-Control", "max-age=60"}});
  EXPECT_EQ(at(m, kNow + 70, {{"Cache-Control", "max-stale=20"}}), Verdict::StaleAcceptable);
  EXPECT_EQ(at(m, kNow + 90, {{"Cache-Control", "max-stale=20"}}), Verdict::MustRevalidate);
  EXPECT_EQ(at(m, kNow + 9999, {{"Cache-Control", "max-stale"}}), Verdict::StaleAcceptable);
}

TEST_F(CacheDecide, MustRevalidateForbidsStale) {
  for (const char* cc : {"max-age=60, must-revalidate, stale-while-revalidate=100",
                         "max-age=60, proxy-revalidate, stale-if-error=100",
                         "s-maxage=60, stale-while-revalidate=100"}) {
    EntryMeta m = meta({{"Cache-Control", cc}});
    EXPECT_EQ(at(m, kNow + 30), Verdict::Fresh) << cc;
    EXPECT_EQ(at(m, kNow + 70), Verdict::MustRevalidate) << cc;
    EXPECT_EQ(at(m, kNow + 70, {{"Cache-Control", "max-stale"}}), Verdict::MustRevalidate) << cc;
  }
}

TEST_F(CacheDecide, StaleWhileRevalidateAndStaleIfError) {
  EntryMeta m = meta({{"Cache-Control",
                       "max-age=60, stale-while-revalidate=30, "
                       "stale-if-error=300"}});
  EXPECT_EQ(at(m, kNow + 70), Verdict::StaleWhileRevalidate);
  EXPECT_EQ(at(m, kNow + 90), Verdict::StaleWhileRevalidate);
  EXPECT_EQ(at(m, kNow + 91), Verdict::StaleIfError);
  EXPECT_EQ(at(m, kNow + 360), Verdict::StaleIfError);
  EXPECT_EQ(at(m, kNow + 361), Verdict::MustRevalidate);
  // The request's own stale-if-error counts too (RFC 5861 4).
  EntryMeta plain = meta({{"Cache-Control", "max-age=60"}});
  EXPECT_EQ(at(plain, kNow + 100, {{"Cache-Control", "stale-if-error=60"}}), Verdict::StaleIfError);
  // And the operator's default.
  policy.default_stale_while_revalidate = 10;
  EXPECT_EQ(at(plain, kNow + 65), Verdict::StaleWhileRevalidate);
}

TEST_F(CacheDecide, HeuristicFreshness) {
  EntryMeta m = meta({{"Date", date(kNow)}, {"Last-Modified", date(kNow - 1000)}});
  EXPECT_TRUE(m.heuristic);
  EXPECT_EQ(at(m, kNow + 99), Verdict::Fresh);
  EXPECT_EQ(at(m, kNow + 100), Verdict::MustRevalidate);
}

}  // namespace
}  // namespace parapet::cache
