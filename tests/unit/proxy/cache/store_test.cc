// Unit tests of the shared cache store (proxy/cache/store.h): lookups and variants, the byte
// bound, S3-FIFO, purges, streaming fills read from other threads, and request coalescing.
#include "proxy/cache/store.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <latch>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace parapet::cache {
namespace {

using H = std::vector<Field>;
constexpr int64_t kNow = 1'700'000'000;

CacheKey key_of(std::string_view tenant, std::string_view path, H req = {}) {
  return make_key(tenant, "https", "example.com", path, KeyOptions{}, req);
}

EntryMeta meta_of(H resp) { return make_meta(200, resp, kNow, kNow, Policy{}); }

// Fills `key` completely through the Fill API; returns what lookup() said first.
Store::Lookup::Kind put(Store& st, const CacheKey& key, H req, H resp, std::string_view body) {
  auto r = st.lookup(key, req, nullptr);
  if (r.kind != Store::Lookup::Kind::Miss) return r.kind;
  if (!r.fill->begin(200, resp, meta_of(resp), req, body.size())) return r.kind;
  if (!r.fill->append(body.data(), body.size())) return r.kind;
  r.fill->finish();
  return r.kind;
}

std::string get(Store& st, const CacheKey& key, H req = {}) {
  auto r = st.lookup(key, req, nullptr);
  if (r.kind != Store::Lookup::Kind::Hit)
    return "<" + std::to_string(static_cast<int>(r.kind)) + ">";
  return r.entry->body().to_string();
}
constexpr const char* kMissStr = "<2>";

// Wakes a waiting test thread: the stand-in for a worker's uv_async.
class CvObserver : public FillObserver {
 public:
  void on_entry_update(const Entry&) override {
    {
      std::lock_guard lk(mu_);
      ++events_;
    }
    cv_.notify_all();
  }
  // Waits until an update after `seen` arrives (or a timeout); returns the new count.
  int wait_after(int seen) {
    std::unique_lock lk(mu_);
    cv_.wait_for(lk, std::chrono::seconds(5), [&] { return events_ > seen; });
    return events_;
  }
  int events() {
    std::lock_guard lk(mu_);
    return events_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int events_ = 0;
};

// Reads an entry to its end as a worker would: everything available, then wait for news.
// Returns the body, or "<aborted>".
std::string read_streaming(const Entry& e, CvObserver& obs) {
  std::string out;
  Body::Reader rd = e.body().reader();
  int seen = 0;
  for (;;) {
    seen = obs.events();
    Entry::State st = e.state();
    if (st == Entry::State::Aborted) return "<aborted>";
    if (st != Entry::State::Pending) {
      for (std::string_view v = rd.next(); !v.empty(); v = rd.next()) out.append(v);
      if (st == Entry::State::Complete && rd.offset() == e.body().size()) return out;
    }
    obs.wait_after(seen);
  }
}

StoreOptions small_store(uint64_t cap = 1 << 20) {
  StoreOptions o;
  o.capacity_bytes = cap;
  o.max_object_bytes = cap / 4;
  o.shards = 4;
  return o;
}

TEST(CacheStore, HitAfterInsert) {
  Store st(small_store());
  CacheKey k = key_of("t1", "/a");
  H resp{{"Cache-Control", "max-age=60"}, {"Connection", "close"}, {"Content-Type", "text/plain"}};
  EXPECT_EQ(put(st, k, {}, resp, "hello"), Store::Lookup::Kind::Miss);
  auto r = st.lookup(k, {}, nullptr);
  ASSERT_EQ(r.kind, Store::Lookup::Kind::Hit);
  EXPECT_EQ(r.entry->body().to_string(), "hello");
  EXPECT_EQ(r.entry->state(), Entry::State::Complete);
  // Hop-by-hop fields are not stored; a Date is added when the origin sent none.
  EXPECT_FALSE(has_field(r.entry->headers(), "connection"));
  EXPECT_EQ(first_value(r.entry->headers(), "content-type"), "text/plain");
  EXPECT_EQ(first_value(r.entry->headers(), "date"), format_http_date(kNow));
  CacheStats s = st.stats("t1");
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.misses, 1u);
  EXPECT_EQ(s.objects, 1u);
  EXPECT_EQ(s.bytes, st.bytes_used());
}

// A lookup without fill (request no-store or only-if-cached) finds stored responses only: no
// Fill, no pending entry others would wait for, and it never waits for a fill in flight.
TEST(CacheStore, LookupWithoutFillNeverFillsNorWaits) {
  Store st(small_store());
  CacheKey k = key_of("t", "/nf");
  auto r = st.lookup(k, {}, nullptr, false);
  EXPECT_EQ(r.kind, Store::Lookup::Kind::Miss);
  EXPECT_EQ(r.fill, nullptr);
  auto filler = st.lookup(k, {}, nullptr);
  ASSERT_EQ(filler.kind, Store::Lookup::Kind::Miss);  // nobody was filling
  ASSERT_NE(filler.fill, nullptr);
  auto during = st.lookup(k, {}, nullptr, false);
  EXPECT_EQ(during.kind, Store::Lookup::Kind::Miss);  // not Wait
  EXPECT_EQ(during.fill, nullptr);
  EXPECT_EQ(st.stats("t").misses, 3u);
  EXPECT_EQ(st.stats("t").coalesced, 0u);
  filler.fill.reset();
  put(st, k, {}, {}, "body");
  EXPECT_EQ(st.lookup(k, {}, nullptr, false).kind, Store::Lookup::Kind::Hit);
}

// Each lookup is counted once, by how it was answered: a Hit that was served stale, or went to
// the origin, is moved out of the hits.
TEST(CacheStore, RecountMovesOneLookup) {
  Store st(small_store());
  CacheKey k = key_of("t", "/rc");
  put(st, k, {}, {}, "x");
  for (int i = 0; i < 3; ++i) ASSERT_EQ(st.lookup(k, {}, nullptr).kind, Store::Lookup::Kind::Hit);
  st.recount(k, Store::Result::Hit, Store::Result::Stale);
  st.recount(k, Store::Result::Hit, Store::Result::Miss);
  st.recount(k, Store::Result::Miss, Store::Result::Revalidated);
  CacheStats s = st.stats("t");
  EXPECT_EQ(s.hits, 1u);
  EXPECT_EQ(s.stale, 1u);
  EXPECT_EQ(s.revalidated, 1u);
  EXPECT_EQ(s.misses, 1u);  // the fill's own lookup
}

// An invalid Date is replaced by the receipt time, not kept beside it.
TEST(CacheStore, InvalidDateIsReplacedNotDuplicated) {
  Store st(small_store());
  CacheKey k = key_of("t", "/d");
  H resp{{"Date", "yesterday"}, {"Cache-Control", "max-age=60"}};
  put(st, k, {}, resp, "d");
  auto r = st.lookup(k, {}, nullptr);
  ASSERT_EQ(r.kind, Store::Lookup::Kind::Hit);
  EXPECT_EQ(count_fields(r.entry->headers(), "date"), 1u);
  EXPECT_EQ(first_value(r.entry->headers(), "date"), format_http_date(kNow));
}

// RFC 9111 4.4: Location / Content-Location references are resolved against the request's URI
// (RFC 3986 5.2) before they are invalidated, and only on the request's host.
TEST(CacheKey, ResolveReference) {
  auto at = [](std::string_view ref, std::string_view base = "/a/b/c?q=1") {
    auto r = resolve_reference("http", "Example.com", base, ref);
    return r ? r->scheme + "://" + r->authority + r->target : std::string("<none>");
  };
  EXPECT_EQ(at("/x/y"), "http://Example.com/x/y");
  EXPECT_EQ(at("d"), "http://Example.com/a/b/d");
  EXPECT_EQ(at("./d?z"), "http://Example.com/a/b/d?z");
  EXPECT_EQ(at("../d"), "http://Example.com/a/d");
  EXPECT_EQ(at("../../../../d"), "http://Example.com/d");
  EXPECT_EQ(at("/a/./b/../e"), "http://Example.com/a/e");
  EXPECT_EQ(at("?r=2"), "http://Example.com/a/b/c?r=2");
  EXPECT_EQ(at(""), "http://Example.com/a/b/c?q=1");
  EXPECT_EQ(at("#frag"), "http://Example.com/a/b/c?q=1");
  EXPECT_EQ(at("d#frag"), "http://Example.com/a/b/d");
  EXPECT_EQ(at("d", "/top"), "http://Example.com/d");
  EXPECT_EQ(at("//other.org/p"), "http://other.org/p");
  EXPECT_EQ(at("HTTPS://other.org"), "https://other.org/");
  EXPECT_EQ(at("https://h:8443/p/../q"), "https://h:8443/q");
  EXPECT_EQ(at("mailto:someone@example.com"), "<none>");
  EXPECT_EQ(at("ftp://example.com/x"), "<none>");
  EXPECT_TRUE(same_host("Example.COM", "example.com:8080"));
  EXPECT_TRUE(same_host("example.com.", "example.com"));
  EXPECT_TRUE(same_host("[::1]:80", "[::1]"));
  EXPECT_FALSE(same_host("evil.com", "example.com"));
  EXPECT_FALSE(same_host("", ""));
}

TEST(CacheStore, TenantsNeverShareEntries) {
  Store st(small_store());
  put(st, key_of("alpha", "/same"), {}, {}, "alpha's");
  EXPECT_EQ(get(st, key_of("beta", "/same")), kMissStr);
  EXPECT_EQ(get(st, key_of("alpha", "/same")), "alpha's");
}

TEST(CacheStore, QueryAndKeyOptions) {
  Store st(small_store());
  KeyOptions ignore;
  ignore.ignore_query = true;
  put(st, make_key("t", "https", "Example.COM", "/p?x=1", ignore, {}), {}, {}, "q");
  EXPECT_EQ(get(st, make_key("t", "HTTPS", "example.com", "/p?y=2", ignore, {})), "q");
  EXPECT_EQ(get(st, key_of("t", "/p?y=2")), kMissStr);
  KeyOptions by_cookie;
  by_cookie.cookies = {"lang"};
  H en{{"Cookie", "a=1; lang=en"}}, fr{{"Cookie", "lang=fr"}};
  put(st, make_key("t", "https", "h", "/c", by_cookie, en), en, {}, "english");
  put(st, make_key("t", "https", "h", "/c", by_cookie, fr), fr, {}, "french");
  EXPECT_EQ(get(st, make_key("t", "https", "h", "/c", by_cookie, en), en), "english");
  EXPECT_EQ(get(st, make_key("t", "https", "h", "/c", by_cookie, fr), fr), "french");
}

TEST(CacheVary, TwoEncodingsCoexist) {
  Store st(small_store());
  CacheKey k = key_of("t", "/v");
  H gz{{"Accept-Encoding", "gzip"}}, id{{"Accept-Encoding", "identity"}};
  H resp{{"Vary", "Accept-Encoding"}, {"Cache-Control", "max-age=60"}};
  EXPECT_EQ(put(st, k, gz, resp, "GZ"), Store::Lookup::Kind::Miss);
  EXPECT_EQ(put(st, k, id, resp, "ID"), Store::Lookup::Kind::Miss);
  EXPECT_EQ(get(st, k, gz), "GZ");
  EXPECT_EQ(get(st, k, id), "ID");
  EXPECT_EQ(get(st, k, {{"Accept-Encoding", "br"}}), kMissStr);
  // Normalization: whitespace and several field lines.
  EXPECT_EQ(get(st, k, {{"accept-encoding", "  gzip "}}), "GZ");
  EXPECT_EQ(st.stats("t").objects, 2u);
}

// RFC 9211 fwd=vary-miss: the lookup says when the URL has variants, none for this request.
TEST(CacheVary, MissSaysWhetherOtherVariantsExist) {
  Store st(small_store());
  CacheKey k = key_of("t", "/vm");
  H gz{{"Accept-Encoding", "gzip"}};
  auto first = st.lookup(k, gz, nullptr);
  ASSERT_EQ(first.kind, Store::Lookup::Kind::Miss);
  EXPECT_FALSE(first.other_variants);
  H resp{{"Vary", "Accept-Encoding"}, {"Cache-Control", "max-age=60"}};
  ASSERT_TRUE(first.fill->begin(200, resp, meta_of(resp), gz, 2));
  first.fill->append("GZ", 2);
  first.fill->finish();
  H br{{"Accept-Encoding", "br"}};
  auto other = st.lookup(k, br, nullptr);
  ASSERT_EQ(other.kind, Store::Lookup::Kind::Miss);
  EXPECT_TRUE(other.other_variants);
  other.fill.reset();
  EXPECT_TRUE(st.lookup(k, br, nullptr, false).other_variants);
}

TEST(CacheVary, AbsentAndEmptyDiffer) {
  Store st(small_store());
  CacheKey k = key_of("t", "/ae");
  H resp{{"Vary", "X-A"}};
  put(st, k, {}, resp, "absent");
  EXPECT_EQ(get(st, k, {{"X-A", ""}}), kMissStr);
  put(st, k, {{"X-A", ""}}, resp, "empty");
  EXPECT_EQ(get(st, k, {}), "absent");
  EXPECT_EQ(get(st, k, {{"X-A", ""}}), "empty");
}

TEST(CacheVary, MultipleVaryLinesAndCombinedValues) {
  Store st(small_store());
  CacheKey k = key_of("t", "/m");
  H resp{{"Vary", "Accept-Language"}, {"vary", "X-B, accept-language"}};
  H req{{"Accept-Language", "en"}, {"Accept-Language", "fr"}, {"X-B", "1"}};
  put(st, k, req, resp, "both");
  EXPECT_EQ(get(st, k, {{"Accept-Language", "en, fr"}, {"X-B", "1"}}), "both");
  EXPECT_EQ(get(st, k, {{"Accept-Language", "en,fr"}, {"X-B", "2"}}), kMissStr);
  EXPECT_EQ(get(st, k, {{"Accept-Language", "en"}, {"X-B", "1"}}), kMissStr);
  std::vector<std::string> names;
  EXPECT_TRUE(vary_names(resp, &names));
  EXPECT_EQ(names, (std::vector<std::string>{"accept-language", "x-b"}));
}

TEST(CacheVary, StarNeverMatches) {
  Store st(small_store());
  CacheKey k = key_of("t", "/star");
  auto r = st.lookup(k, {}, nullptr);
  ASSERT_EQ(r.kind, Store::Lookup::Kind::Miss);
  H resp{{"Vary", "*"}};
  EXPECT_FALSE(r.fill->begin(200, resp, meta_of(resp), {}, 1));
  EXPECT_EQ(r.fill->entry()->abort_reason(), AbortReason::NotStorable);
  EXPECT_EQ(st.lookup(k, {}, nullptr).kind, Store::Lookup::Kind::Miss);
  std::vector<std::string> names;
  EXPECT_FALSE(vary_names(H{{"Vary", "Accept"}, {"Vary", "*"}}, &names));
}

TEST(CacheVary, NewestResponseReplacesTheVariantItSelects) {
  Store st(small_store());
  CacheKey k = key_of("t", "/n");
  put(st, k, {}, {}, "old");
  auto r = st.revalidate(k);
  ASSERT_EQ(r.kind, Store::Lookup::Kind::Miss);
  EXPECT_EQ(get(st, k), "old");  // still served while the fill has no head
  ASSERT_TRUE(r.fill->begin(200, {}, meta_of({}), {}, 3));
  r.fill->append("new", 3);
  r.fill->finish();
  EXPECT_EQ(get(st, k), "new");
  EXPECT_EQ(st.stats("t").objects, 1u);
}

TEST(CacheStore, ByteBoundHoldsUnderManyKeys) {
  const uint64_t cap = 512 * 1024;
  Store st(small_store(cap));
  std::string body(10'000, 'x');
  for (int i = 0; i < 2000; ++i) {
    put(st, key_of("t", "/k" + std::to_string(i)), {}, {{"Cache-Control", "max-age=60"}}, body);
    ASSERT_LE(st.bytes_used(), cap) << i;
  }
  CacheStats s = st.stats("t");
  EXPECT_GT(s.evictions, 1000u);
  EXPECT_EQ(s.bytes, st.bytes_used());
  EXPECT_GT(s.objects, 20u);
  EXPECT_LT(s.objects, 52u);  // 512 KiB / (10 KB + overhead)
}

TEST(CacheStore, ByteBoundHoldsWithConcurrentFillers) {
  const uint64_t cap = 256 * 1024;
  Store st(small_store(cap));
  std::atomic<bool> over{false};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t) {
    ts.emplace_back([&, t] {
      std::string body(3000 + t * 1000, 'y');
      for (int i = 0; i < 500; ++i) {
        put(st, key_of("t", "/c" + std::to_string(t) + "-" + std::to_string(i)), {}, {}, body);
        if (st.bytes_used() > cap) over = true;
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_FALSE(over.load());
  EXPECT_EQ(st.stats("t").bytes, st.bytes_used());
}

TEST(CacheStore, ObjectsOverMaxSizeAreRefused) {
  Store st(small_store(1 << 20));  // max object 256 KiB
  CacheKey k = key_of("t", "/big");
  auto r = st.lookup(k, {}, nullptr);
  EXPECT_FALSE(r.fill->begin(200, {}, meta_of({}), {}, 300 * 1024));  // by Content-Length
  EXPECT_EQ(r.fill->entry()->abort_reason(), AbortReason::TooBig);
  r = st.lookup(k, {}, nullptr);
  ASSERT_EQ(r.kind, Store::Lookup::Kind::Miss);
  ASSERT_TRUE(r.fill->begin(200, {}, meta_of({}), {}, std::nullopt));  // chunked: found late
  std::string piece(100 * 1024, 'z');
  EXPECT_TRUE(r.fill->append(piece.data(), piece.size()));
  EXPECT_TRUE(r.fill->append(piece.data(), piece.size()));
  EXPECT_FALSE(r.fill->append(piece.data(), piece.size()));
  EXPECT_EQ(r.fill->entry()->state(), Entry::State::Aborted);
  EXPECT_EQ(get(st, k), kMissStr);
  EXPECT_EQ(st.bytes_used(), 0u);
}

TEST(CacheStore, UnlinkedEntryStaysReadableByItsHolder) {
  Store st(small_store(64 * 1024));
  CacheKey k = key_of("t", "/held");
  put(st, k, {}, {}, std::string(8000, 'h'));
  auto held = st.lookup(k, {}, nullptr).entry;
  EXPECT_EQ(st.purge_url("t", "https://example.com/held"), 1u);
  EXPECT_EQ(get(st, k), kMissStr);
  EXPECT_TRUE(held->body().to_string() == std::string(8000, 'h'));
  EXPECT_EQ(held->state(), Entry::State::Complete);
}

// The hit ratio of a hot set that was used a few times, while scans of one-hit wonders larger
// than the cache sweep through between its uses.
double hot_hit_ratio(StoreOptions::Eviction policy) {
  StoreOptions o = small_store(200 * 1024);
  o.shards = 1;
  o.eviction = policy;
  Store st(o);
  std::string body(1000, 'b');  // ~1.4 KB per entry: ~140 fit
  auto hot = [&](int h) { return key_of("t", "/hot" + std::to_string(h)); };
  for (int pass = 0; pass < 3; ++pass) {
    for (int h = 0; h < 20; ++h) put(st, hot(h), {}, {}, body);
  }
  int hits = 0, total = 0, scan = 0;
  for (int round = 0; round < 50; ++round) {
    // 200 one-hit wonders between two uses of the hot set: more than the cache holds.
    for (int i = 0; i < 200; ++i)
      put(st, key_of("t", "/scan" + std::to_string(scan++)), {}, {}, body);
    for (int h = 0; h < 20; ++h) {
      hits += put(st, hot(h), {}, {}, body) == Store::Lookup::Kind::Hit;
      ++total;
    }
  }
  return static_cast<double>(hits) / total;
}

TEST(CacheEviction, S3FifoKeepsHotSetUnderScan) {
  double s3 = hot_hit_ratio(StoreOptions::Eviction::S3Fifo);
  double lru = hot_hit_ratio(StoreOptions::Eviction::Lru);
  EXPECT_GT(s3, 0.9);
  EXPECT_LT(lru, 0.1);  // LRU flushes the hot set on every scan
}

TEST(CacheEviction, GhostHitGoesToMain) {
  StoreOptions o = small_store(40 * 1024);
  o.shards = 1;
  Store st(o);
  std::string body(1000, 'g');
  put(st, key_of("t", "/g"), {}, {}, body);
  for (int i = 0; i < 60; ++i) put(st, key_of("t", "/x" + std::to_string(i)), {}, {}, body);
  ASSERT_EQ(get(st, key_of("t", "/g")), kMissStr);  // evicted from small into the ghost
  // Inserted again: the ghost sends it to main, where the next scan does not reach it at once.
  auto r = st.lookup(key_of("t", "/g"), {}, nullptr);
  ASSERT_EQ(r.kind, Store::Lookup::Kind::Miss);
  r.fill->begin(200, {}, meta_of({}), {}, body.size());
  r.fill->append(body.data(), body.size());
  r.fill->finish();
  for (int i = 0; i < 10; ++i) put(st, key_of("t", "/y" + std::to_string(i)), {}, {}, body);
  EXPECT_EQ(get(st, key_of("t", "/g")), body);
}

TEST(CachePurge, UrlPrefixTagTenant) {
  Store st(small_store());
  H gz{{"Accept-Encoding", "gzip"}};
  H vary{{"Vary", "Accept-Encoding"}, {"Cache-Tag", "product, p-1"}};
  put(st, key_of("t", "/shop/1"), {}, vary, "1");
  put(st, key_of("t", "/shop/1"), gz, vary, "1gz");
  put(st, key_of("t", "/shop/2"), {}, {{"Cache-Tag", "product,p-2"}}, "2");
  put(st, key_of("t", "/blog/1"), {}, {{"Cache-Tag", "blog"}}, "b");
  put(st, key_of("u", "/shop/1"), {}, vary, "other tenant");

  EXPECT_EQ(st.purge_url("t", "https://EXAMPLE.com/shop/1"), 2u);  // both variants
  EXPECT_EQ(get(st, key_of("t", "/shop/1")), kMissStr);
  EXPECT_EQ(get(st, key_of("t", "/shop/1"), gz), kMissStr);
  EXPECT_EQ(get(st, key_of("u", "/shop/1")), "other tenant");
  st.purge_url("t", "https://example.com/shop/1");  // clears the pending fills made by get()

  put(st, key_of("t", "/shop/1"), {}, vary, "1");
  EXPECT_EQ(st.purge_tag("t", "p-2"), 1u);
  EXPECT_EQ(get(st, key_of("t", "/shop/2")), kMissStr);
  EXPECT_EQ(get(st, key_of("t", "/shop/1")), "1");
  EXPECT_EQ(st.purge_tag("t", "p-"), 0u);  // whole tags only
  EXPECT_EQ(get(st, key_of("u", "/shop/1")), "other tenant");

  EXPECT_GE(st.purge_prefix("t", "https://example.com/shop/"), 1u);
  EXPECT_EQ(get(st, key_of("t", "/shop/1")), kMissStr);
  EXPECT_EQ(get(st, key_of("t", "/blog/1")), "b");

  EXPECT_GE(st.purge_tenant("t"), 1u);
  EXPECT_EQ(get(st, key_of("t", "/blog/1")), kMissStr);
  EXPECT_EQ(get(st, key_of("u", "/shop/1")), "other tenant");
  st.purge_tenant("t");
  EXPECT_EQ(st.stats("t").objects, 0u);
  EXPECT_EQ(st.stats("t").bytes, 0u);
}

TEST(CachePurge, FillInFlightIsNotStoredButFeedsItsWaiters) {
  Store st(small_store());
  CacheKey k = key_of("t", "/inflight");
  auto filler = st.lookup(k, {}, nullptr);
  ASSERT_EQ(filler.kind, Store::Lookup::Kind::Miss);
  CvObserver obs;
  auto waiter = st.lookup(k, {}, &obs);
  ASSERT_EQ(waiter.kind, Store::Lookup::Kind::Wait);
  EXPECT_EQ(st.purge_url("t", "https://example.com/inflight"), 1u);
  ASSERT_TRUE(filler.fill->begin(200, {}, meta_of({}), {}, 4));
  filler.fill->append("data", 4);
  filler.fill->finish();
  EXPECT_EQ(read_streaming(*waiter.entry, obs), "data");
  waiter.entry->unsubscribe(&obs);
  EXPECT_EQ(get(st, k), kMissStr);
  EXPECT_EQ(st.bytes_used(), 0u);
}

TEST(CacheFill, StreamedToWaiterOnAnotherThread) {
  Store st(small_store());
  CacheKey k = key_of("t", "/stream");
  auto filler = st.lookup(k, {}, nullptr);
  ASSERT_EQ(filler.kind, Store::Lookup::Kind::Miss);
  std::string expect;
  for (int i = 0; i < 200; ++i) expect += "chunk" + std::to_string(i) + ";";
  std::atomic<int> got_before_finish{0};
  std::atomic<bool> finished{false};
  std::string seen;
  std::thread reader([&] {
    CvObserver obs;
    auto w = st.lookup(k, {}, &obs);
    ASSERT_EQ(w.kind, Store::Lookup::Kind::Wait);
    // Read as it streams: count the bytes seen before the filler finished.
    std::string out;
    Body::Reader rd = w.entry->body().reader();
    for (;;) {
      int ev = obs.events();
      auto state = w.entry->state();
      if (state == Entry::State::Aborted) break;
      if (state != Entry::State::Pending) {
        for (auto v = rd.next(); !v.empty(); v = rd.next()) {
          out.append(v);
          if (!finished) got_before_finish = static_cast<int>(out.size());
        }
        if (state == Entry::State::Complete && rd.offset() == w.entry->body().size()) break;
      }
      obs.wait_after(ev);
    }
    w.entry->unsubscribe(&obs);
    seen = out;
  });
  // Wait until the reader is subscribed as a waiter, then stream slowly.
  while (st.stats("t").coalesced == 0) std::this_thread::yield();
  ASSERT_TRUE(filler.fill->begin(200, {}, meta_of({}), {}, std::nullopt));
  for (int i = 0; i < 200; ++i) {
    std::string c = "chunk" + std::to_string(i) + ";";
    ASSERT_TRUE(filler.fill->append(c.data(), c.size()));
    if (i % 20 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  finished = true;
  filler.fill->finish();
  reader.join();
  EXPECT_EQ(seen, expect);
  EXPECT_GT(got_before_finish.load(), 0);  // streamed, not delivered at the end
}

TEST(CacheFill, AbortWakesWaiters) {
  Store st(small_store());
  CacheKey k = key_of("t", "/abort");
  auto filler = st.lookup(k, {}, nullptr);
  std::vector<std::thread> ts;
  std::atomic<int> aborted{0};
  std::latch subscribed(3);
  for (int i = 0; i < 3; ++i) {
    ts.emplace_back([&] {
      CvObserver obs;
      auto w = st.lookup(k, {}, &obs);
      subscribed.count_down();
      if (w.kind != Store::Lookup::Kind::Wait) return;
      if (read_streaming(*w.entry, obs) == "<aborted>") ++aborted;
      w.entry->unsubscribe(&obs);
    });
  }
  subscribed.wait();
  filler.fill->abort(AbortReason::Origin);
  for (auto& t : ts) t.join();
  EXPECT_EQ(aborted.load(), 3);
  EXPECT_EQ(filler.fill->entry()->abort_reason(), AbortReason::Origin);
  // The key is free again: the next request becomes a filler.
  EXPECT_EQ(st.lookup(k, {}, nullptr).kind, Store::Lookup::Kind::Miss);
}

TEST(CacheFill, AbortMidBodyTellsStreamingReaders) {
  Store st(small_store());
  CacheKey k = key_of("t", "/midabort");
  auto filler = st.lookup(k, {}, nullptr);
  ASSERT_TRUE(filler.fill->begin(200, {}, meta_of({}), {}, 100));
  filler.fill->append("part", 4);
  CvObserver obs;
  auto hit = st.lookup(k, {}, &obs);  // visible while streaming
  ASSERT_EQ(hit.kind, Store::Lookup::Kind::Hit);
  EXPECT_EQ(hit.entry->state(), Entry::State::Streaming);
  filler.fill.reset();  // the filler went away: Cancelled
  EXPECT_EQ(read_streaming(*hit.entry, obs), "<aborted>");
  EXPECT_EQ(hit.entry->abort_reason(), AbortReason::Cancelled);
  hit.entry->unsubscribe(&obs);
  EXPECT_EQ(get(st, k), kMissStr);
}

TEST(CacheFill, HundredConcurrentMissesMakeOneFiller) {
  Store st(small_store());
  CacheKey k = key_of("t", "/herd");
  constexpr int kN = 100;
  std::latch start(kN);
  std::atomic<int> misses{0}, waits{0}, complete{0};
  std::mutex fill_mu;
  std::unique_ptr<Fill> the_fill;
  std::latch looked_up(kN);
  std::vector<std::thread> ts;
  for (int i = 0; i < kN; ++i) {
    ts.emplace_back([&] {
      CvObserver obs;
      start.arrive_and_wait();
      auto r = st.lookup(k, {}, &obs);
      if (r.kind == Store::Lookup::Kind::Miss) {
        ++misses;
        std::lock_guard lk(fill_mu);
        the_fill = std::move(r.fill);
        looked_up.count_down();
        return;
      }
      looked_up.count_down();
      if (r.kind != Store::Lookup::Kind::Wait) return;
      ++waits;
      if (read_streaming(*r.entry, obs) == "the one response") ++complete;
      r.entry->unsubscribe(&obs);
    });
  }
  looked_up.wait();
  {
    std::lock_guard lk(fill_mu);
    ASSERT_TRUE(the_fill);
    ASSERT_TRUE(the_fill->begin(200, {}, meta_of({}), {}, 16));
    the_fill->append("the one ", 8);
    the_fill->append("response", 8);
    the_fill->finish();
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(misses.load(), 1);
  EXPECT_EQ(waits.load(), kN - 1);
  EXPECT_EQ(complete.load(), kN - 1);
  EXPECT_EQ(st.stats("t").coalesced, static_cast<uint64_t>(kN - 1));
}

TEST(CacheFill, TooManyWaitersPass) {
  StoreOptions o = small_store();
  o.max_waiters = 2;
  Store st(o);
  CacheKey k = key_of("t", "/busy");
  auto f = st.lookup(k, {}, nullptr);
  EXPECT_EQ(st.lookup(k, {}, nullptr).kind, Store::Lookup::Kind::Wait);
  EXPECT_EQ(st.lookup(k, {}, nullptr).kind, Store::Lookup::Kind::Wait);
  EXPECT_EQ(st.lookup(k, {}, nullptr).kind, Store::Lookup::Kind::Pass);
}

TEST(CacheFill, RevalidatedEntrySharesTheBody) {
  Store st(small_store());
  CacheKey k = key_of("t", "/reval");
  put(st, k, {}, {{"ETag", "\"v1\""}, {"Cache-Control", "max-age=1"}}, "payload");
  auto old = st.lookup(k, {}, nullptr).entry;
  auto r = st.revalidate(k);
  ASSERT_EQ(r.kind, Store::Lookup::Kind::Miss);
  EXPECT_EQ(st.revalidate(k).kind, Store::Lookup::Kind::Wait);  // coalesced
  H merged{{"ETag", "\"v1\""}, {"Cache-Control", "max-age=100"}};
  ASSERT_TRUE(r.fill->begin_revalidated(*old, merged, meta_of(merged), {}));
  auto now = st.lookup(k, {}, nullptr);
  ASSERT_EQ(now.kind, Store::Lookup::Kind::Hit);
  EXPECT_NE(now.entry.get(), old.get());
  EXPECT_EQ(now.entry->meta().lifetime, 100);
  EXPECT_EQ(&now.entry->body(), &old->body());
  EXPECT_EQ(now.entry->state(), Entry::State::Complete);
  EXPECT_EQ(st.stats("t").objects, 1u);
}

}  // namespace
}  // namespace parapet::cache
