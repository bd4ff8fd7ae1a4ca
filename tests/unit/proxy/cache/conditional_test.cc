// Unit tests of proxy/cache/conditional.h: conditional requests against stored responses,
// revalidation and 304 merging, byte ranges, and Cache-Status values.
#include "proxy/cache/conditional.h"

#include <gtest/gtest.h>

#include <vector>

namespace parapet::cache {
namespace {

using H = std::vector<Field>;
constexpr const char* kLm = "Sun, 06 Nov 1994 08:49:37 GMT";  // 784111777
constexpr int64_t kLmT = 784111777;

const H kStored{{"ETag", "\"abc\""},
                {"Last-Modified", kLm},
                {"Date", "Mon, 07 Nov 1994 08:49:37 GMT"},
                {"Cache-Control", "max-age=60"},
                {"Content-Type", "text/html"},
                {"Content-Length", "1000"}};

CondResult cond(H req, const H& stored = kStored, uint16_t status = 200,
                std::string_view method = "GET") {
  return evaluate_conditional(method, req, status, stored, kLmT + 500);
}

TEST(CacheEtag, WeakAndStrongComparison) {
  EXPECT_TRUE(etag_weak_equal("W/\"1\"", "\"1\""));
  EXPECT_TRUE(etag_weak_equal("W/\"1\"", "W/\"1\""));
  EXPECT_FALSE(etag_strong_equal("W/\"1\"", "\"1\""));
  EXPECT_TRUE(etag_strong_equal("\"1\"", "\"1\""));
  EXPECT_FALSE(etag_weak_equal("\"1\"", "\"2\""));
  EXPECT_FALSE(etag_weak_equal("1", "1"));  // not an entity-tag
}

TEST(CacheConditional, IfNoneMatch) {
  EXPECT_EQ(cond({{"If-None-Match", "\"abc\""}}), CondResult::NotModified);
  EXPECT_EQ(cond({{"If-None-Match", "W/\"abc\""}}), CondResult::NotModified);  // weak compare
  EXPECT_EQ(cond({{"If-None-Match", "\"x\", \"abc\""}}), CondResult::NotModified);
  EXPECT_EQ(cond({{"If-None-Match", "\"x\""}, {"If-None-Match", "\"abc\""}}),
            CondResult::NotModified);
  EXPECT_EQ(cond({{"If-None-Match", "*"}}), CondResult::NotModified);
  EXPECT_EQ(cond({{"If-None-Match", "\"x\""}}), CondResult::Full);
  EXPECT_EQ(cond({{"If-None-Match", "\"abc\""}}, kStored, 200, "HEAD"), CondResult::NotModified);
  EXPECT_EQ(cond({{"If-None-Match", "\"abc\""}}, kStored, 404), CondResult::Full);
  EXPECT_EQ(cond({{"If-None-Match", "\"abc\""}}, kStored, 200, "POST"), CondResult::Full);
}

TEST(CacheConditional, IfNoneMatchTakesPrecedenceOverIfModifiedSince) {
  // The ETag does not match: full, although If-Modified-Since alone would give 304.
  EXPECT_EQ(cond({{"If-None-Match", "\"x\""}, {"If-Modified-Since", kLm}}), CondResult::Full);
  EXPECT_EQ(cond({{"If-None-Match", "\"abc\""},
                  {"If-Modified-Since",
                   "Sat, 01 Jan 1994 "
                   "00:00:00 GMT"}}),
            CondResult::NotModified);
}

TEST(CacheConditional, IfModifiedSince) {
  EXPECT_EQ(cond({{"If-Modified-Since", kLm}}), CondResult::NotModified);
  EXPECT_EQ(cond({{"If-Modified-Since", "Mon, 07 Nov 1994 08:49:37 GMT"}}),
            CondResult::NotModified);
  EXPECT_EQ(cond({{"If-Modified-Since", "Sat, 05 Nov 1994 08:49:37 GMT"}}), CondResult::Full);
  EXPECT_EQ(cond({{"If-Modified-Since", "yesterday"}}), CondResult::Full);  // invalid: ignored
  EXPECT_EQ(cond({{"If-Modified-Since", kLm}, {"If-Modified-Since", kLm}}), CondResult::Full);
  // Without Last-Modified, the Date stands in.
  H no_lm{{"Date", "Mon, 07 Nov 1994 08:49:37 GMT"}};
  EXPECT_EQ(cond({{"If-Modified-Since", kLm}}, no_lm), CondResult::Full);
  EXPECT_EQ(cond({{"If-Modified-Since", "Mon, 07 Nov 1994 08:49:37 GMT"}}, no_lm),
            CondResult::NotModified);
}

TEST(CacheConditional, OriginPreconditionsAreForwarded) {
  EXPECT_EQ(cond({{"If-Match", "\"abc\""}}), CondResult::Forward);
  EXPECT_EQ(cond({{"If-Unmodified-Since", kLm}}), CondResult::Forward);
  EXPECT_EQ(cond({}), CondResult::Full);
}

TEST(CacheConditional, NotModifiedFields) {
  std::vector<Field> f = not_modified_fields(kStored);
  ASSERT_EQ(f.size(), 3u);  // ETag, Date, Cache-Control (Last-Modified only without ETag)
  EXPECT_EQ(f[0].name, "ETag");
  H no_etag{{"Last-Modified", kLm}, {"Content-Type", "x"}};
  f = not_modified_fields(no_etag);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].name, "Last-Modified");
}

TEST(CacheRevalidation, RequestFields) {
  auto f = revalidation_fields(kStored);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0], (std::pair<std::string, std::string>{"If-None-Match", "\"abc\""}));
  EXPECT_EQ(f[1], (std::pair<std::string, std::string>{"If-Modified-Since", kLm}));
  EXPECT_TRUE(revalidation_fields(H{{"Content-Type", "x"}}).empty());
}

TEST(CacheRevalidation, CanFreshen) {
  EXPECT_TRUE(can_freshen(kStored, H{{"ETag", "\"abc\""}}));
  EXPECT_FALSE(can_freshen(kStored, H{{"ETag", "\"other\""}}));
  EXPECT_TRUE(can_freshen(kStored, H{{"ETag", "W/\"abc\""}}));
  EXPECT_FALSE(can_freshen(H{{"ETag", "W/\"abc\""}}, H{{"ETag", "\"abc\""}}));  // strong vs weak
  EXPECT_TRUE(can_freshen(kStored, H{{"Last-Modified", kLm}}));
  EXPECT_FALSE(can_freshen(kStored, H{{"Last-Modified", "Mon, 07 Nov 1994 08:49:37 GMT"}}));
  // A weak ETag identifies the stored response before Last-Modified is looked at.
  EXPECT_FALSE(can_freshen(kStored, H{{"ETag", "W/\"zzz\""}, {"Last-Modified", kLm}}));
}

// RFC 9111 4.3.4, third rule: a 304 without any validator selects a stored response only when
// that response has no validator either.
TEST(CacheRevalidation, NoValidatorIn304SelectsOnlyAResponseWithoutValidators) {
  const H bare{{"Date", "Mon, 07 Nov 1994 09:00:00 GMT"}, {"Cache-Control", "max-age=5"}};
  EXPECT_FALSE(can_freshen(kStored, bare));
  EXPECT_FALSE(can_freshen(H{{"ETag", "\"abc\""}}, bare));
  EXPECT_FALSE(can_freshen(H{{"Last-Modified", kLm}}, bare));
  EXPECT_TRUE(can_freshen(H{{"Content-Type", "text/html"}}, bare));
  // A validator in the 304 the stored response lacks selects nothing.
  EXPECT_FALSE(can_freshen(H{{"Content-Type", "text/html"}}, H{{"ETag", "\"abc\""}}));
  EXPECT_FALSE(can_freshen(H{{"Content-Type", "text/html"}}, H{{"Last-Modified", kLm}}));
}

// RFC 9111 4.3.5: a HEAD's 200 describes the stored GET response when the validators match and
// the Content-Length (if any) is the stored body's.
TEST(CacheRevalidation, HeadCanFreshen) {
  EXPECT_TRUE(head_can_freshen(kStored, 1000, H{{"ETag", "\"abc\""}, {"Content-Length", "1000"}}));
  EXPECT_TRUE(head_can_freshen(kStored, 1000, H{{"ETag", "\"abc\""}}));
  EXPECT_FALSE(head_can_freshen(kStored, 1000, H{{"ETag", "\"abc\""}, {"Content-Length", "9"}}));
  EXPECT_FALSE(head_can_freshen(kStored, 1000, H{{"ETag", "\"new\""}}));
  const H plain{{"Content-Type", "text/html"}};
  EXPECT_TRUE(head_can_freshen(plain, 5, H{{"Content-Length", "5"}}));
  EXPECT_FALSE(head_can_freshen(plain, 5, H{{"Content-Length", "6"}}));
}

TEST(CacheRevalidation, Merge304) {
  H nm{{"Cache-Control", "max-age=600"},
       {"Date", "Mon, 07 Nov 1994 09:00:00 GMT"},
       {"Content-Length", "0"},
       {"Connection", "close"},
       {"X-New", "1"}};
  MergedFields m;
  merge_304(kStored, nm, &m);
  EXPECT_EQ(first_value(m.fields, "cache-control"), "max-age=600");
  EXPECT_EQ(count_fields(m.fields, "cache-control"), 1u);
  EXPECT_EQ(first_value(m.fields, "date"), "Mon, 07 Nov 1994 09:00:00 GMT");
  EXPECT_EQ(first_value(m.fields, "content-length"), "1000");  // never updated
  EXPECT_EQ(first_value(m.fields, "etag"), "\"abc\"");
  EXPECT_EQ(first_value(m.fields, "content-type"), "text/html");
  EXPECT_EQ(first_value(m.fields, "x-new"), "1");
  EXPECT_FALSE(has_field(m.fields, "connection"));
}

// A 304 without Date: the stored Date is dropped (the 304's receipt time stands in for it), so
// the freshened entry's apparent age restarts (RFC 9111 4.3.4, 4.2.3).
TEST(CacheRevalidation, Merge304WithoutDateDropsTheStoredDate) {
  MergedFields m;
  merge_304(kStored, H{{"ETag", "\"abc\""}, {"Cache-Control", "max-age=600"}}, &m);
  EXPECT_FALSE(has_field(m.fields, "date"));
  EXPECT_EQ(first_value(m.fields, "cache-control"), "max-age=600");
}

RangeAnswer range(std::string_view r, uint64_t len = 1000, H extra = {}) {
  H req{{"Range", r}};
  req.insert(req.end(), extra.begin(), extra.end());
  return evaluate_range("GET", req, 200, kStored, len);
}

TEST(CacheRange, SingleRanges) {
  RangeAnswer a = range("bytes=0-99");
  EXPECT_EQ(a.kind, RangeAnswer::Kind::Partial);
  EXPECT_EQ(a.first, 0u);
  EXPECT_EQ(a.last, 99u);
  EXPECT_EQ(a.content_range, "bytes 0-99/1000");
  EXPECT_EQ(range("bytes=500-").content_range, "bytes 500-999/1000");
  EXPECT_EQ(range("bytes=-100").content_range, "bytes 900-999/1000");
  EXPECT_EQ(range("bytes=-5000").content_range, "bytes 0-999/1000");  // whole, as 206
  EXPECT_EQ(range("bytes=990-5000").content_range, "bytes 990-999/1000");
  EXPECT_EQ(range("Bytes = 1-1").content_range, "bytes 1-1/1000");
  EXPECT_EQ(range("bytes=999-999").content_range, "bytes 999-999/1000");
}

TEST(CacheRange, Unsatisfiable) {
  for (const char* r :
       {"bytes=1000-", "bytes=1000-2000", "bytes=-0", "bytes=99999999999999999999-"}) {
    RangeAnswer a = range(r);
    EXPECT_EQ(a.kind, RangeAnswer::Kind::Unsatisfiable) << r;
    EXPECT_EQ(a.content_range, "bytes */1000") << r;
  }
  EXPECT_EQ(range("bytes=0-", 0).kind, RangeAnswer::Kind::Unsatisfiable);
}

TEST(CacheRange, IgnoredMeansFull) {
  for (const char* r :
       {"bytes=5-1", "bytes=a-b", "items=0-1", "bytes=0-1,5-6", "bytes=", "0-1", "bytes=1"}) {
    EXPECT_EQ(range(r).kind, RangeAnswer::Kind::Full) << r;
  }
  H req{{"Range", "bytes=0-1"}};
  EXPECT_EQ(evaluate_range("HEAD", req, 200, kStored, 10).kind, RangeAnswer::Kind::Full);
  EXPECT_EQ(evaluate_range("GET", req, 404, kStored, 10).kind, RangeAnswer::Kind::Full);
  EXPECT_EQ(evaluate_range("GET", {}, 200, kStored, 10).kind, RangeAnswer::Kind::Full);
}

TEST(CacheRange, IfRange) {
  EXPECT_EQ(range("bytes=0-1", 1000, {{"If-Range", "\"abc\""}}).kind, RangeAnswer::Kind::Partial);
  EXPECT_EQ(range("bytes=0-1", 1000, {{"If-Range", "\"old\""}}).kind, RangeAnswer::Kind::Full);
  EXPECT_EQ(range("bytes=0-1", 1000, {{"If-Range", "W/\"abc\""}}).kind,
            RangeAnswer::Kind::Full);  // weak never matches
  EXPECT_EQ(range("bytes=0-1", 1000, {{"If-Range", kLm}}).kind, RangeAnswer::Kind::Partial);
  EXPECT_EQ(range("bytes=0-1", 1000, {{"If-Range", "Mon, 07 Nov 1994 08:49:37 GMT"}}).kind,
            RangeAnswer::Kind::Full);
}

TEST(CacheStatusField, Values) {
  CacheStatus hit;
  hit.hit = true;
  hit.ttl = 42;
  EXPECT_EQ(cache_status_value("parapet", hit), "parapet; hit; ttl=42");
  CacheStatus miss;
  miss.fwd = CacheStatus::Fwd::Miss;
  miss.stored = true;
  EXPECT_EQ(cache_status_value("parapet", miss), "parapet; fwd=miss; stored");
  CacheStatus stale;
  stale.fwd = CacheStatus::Fwd::Stale;
  stale.fwd_status = 304;
  stale.ttl = -5;
  stale.collapsed = true;
  EXPECT_EQ(cache_status_value("parapet", stale),
            "parapet; fwd=stale; fwd-status=304; ttl=-5; collapsed");
  CacheStatus uri;
  uri.fwd = CacheStatus::Fwd::UriMiss;
  uri.key = "t/\"x\"";
  uri.detail = "no room";
  EXPECT_EQ(cache_status_value("parapet", uri),
            "parapet; fwd=uri-miss; key=\"t/\\\"x\\\"\"; detail=\"no room\"");
  CacheStatus bypass;
  bypass.fwd = CacheStatus::Fwd::Bypass;
  bypass.detail = "set-cookie";
  EXPECT_EQ(cache_status_value("edge cache", bypass),
            "\"edge cache\"; fwd=bypass; detail=set-cookie");
}

}  // namespace
}  // namespace parapet::cache
