// Microbenchmarks of the shared cache store (proxy/cache/store.h).
//
//   BM_HitRatio      hit ratio of S3-FIFO and of plain LRU (the same store, eviction switched)
//                    on a Zipf key stream: 1M requests over 100k keys, equal-sized objects, a
//                    cache holding ~10% of them. The counters are the result; time is secondary.
//   BM_Fixture       the request generator alone (sampling + key choice), to subtract.
//   BM_LookupHit     lookup() of keys that are all stored (1 and 2 threads): the hot path.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "proxy/cache/store.h"

namespace parapet::cache {
namespace {

constexpr int kKeys = 100'000;
constexpr int kRequests = 1'000'000;
constexpr size_t kBody = 1000;

// Zipf(s) over [0, n) by inverse CDF; key 0 is the most popular.
class Zipf {
 public:
  Zipf(int n, double s) : cdf_(n) {
    double sum = 0;
    for (int i = 0; i < n; ++i) {
      sum += 1.0 / std::pow(i + 1, s);
      cdf_[i] = sum;
    }
    for (double& c : cdf_) c /= sum;
  }
  int operator()(std::mt19937_64& rng) {
    double u = std::uniform_real_distribution<double>(0, 1)(rng);
    return static_cast<int>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
  }

 private:
  std::vector<double> cdf_;
};

const std::vector<CacheKey>& keys() {
  static const std::vector<CacheKey> k = [] {
    std::vector<CacheKey> v;
    v.reserve(kKeys);
    // Scatter popularity over the key space so the hash spreads hot keys over shards.
    for (int i = 0; i < kKeys; ++i) {
      v.push_back(make_key("bench", "https", "example.com",
                           "/obj/" + std::to_string((i * 7919) % kKeys), KeyOptions{}, {}));
    }
    return v;
  }();
  return k;
}

const std::string& body() {
  static const std::string b(kBody, 'x');
  return b;
}

// Fills a missing key through the Fill API, as a worker would.
bool fill(Store::Lookup& r, const EntryMeta& meta) {
  if (!r.fill->begin(200, {}, meta, {}, kBody)) return false;
  if (!r.fill->append(body().data(), body().size())) return false;
  r.fill->finish();
  return true;
}

// Bytes the store accounts for one of our objects.
uint64_t entry_cost() {
  StoreOptions o;
  o.capacity_bytes = 1 << 20;
  Store st(o);
  EntryMeta meta;
  auto r = st.lookup(keys()[0], {}, nullptr);
  fill(r, meta);
  return st.bytes_used();
}

void BM_HitRatio(benchmark::State& state) {
  const auto policy = static_cast<StoreOptions::Eviction>(state.range(0));
  const double s = static_cast<double>(state.range(1)) / 100.0;
  const uint64_t capacity = entry_cost() * (kKeys / 10);
  uint64_t hits = 0, requests = 0, failed = 0;
  for (auto _ : state) {
    StoreOptions o;
    o.capacity_bytes = capacity;
    o.eviction = policy;
    o.shards = 16;
    Store st(o);
    Zipf zipf(kKeys, s);
    std::mt19937_64 rng(42);
    EntryMeta meta;
    hits = requests = 0;
    for (int i = 0; i < kRequests; ++i) {
      auto r = st.lookup(keys()[zipf(rng)], {}, nullptr);
      ++requests;
      if (r.kind == Store::Lookup::Kind::Hit) {
        ++hits;
      } else if (r.kind == Store::Lookup::Kind::Miss) {
        failed += fill(r, meta) ? 0 : 1;
      } else {
        ++failed;
      }
    }
    if (st.bytes_used() > capacity) ++failed;
  }
  if (failed != 0) state.SkipWithError("a fill failed or the byte bound was exceeded");
  state.counters["hit_ratio"] = static_cast<double>(hits) / static_cast<double>(requests);
  state.counters["capacity_objects"] = kKeys / 10;
  state.SetLabel(policy == StoreOptions::Eviction::S3Fifo ? "s3fifo" : "lru");
}
BENCHMARK(BM_HitRatio)
    ->ArgNames({"policy", "zipf_x100"})
    ->Args({0, 80})
    ->Args({1, 80})
    ->Args({0, 100})
    ->Args({1, 100})
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

void BM_Fixture(benchmark::State& state) {
  Zipf zipf(kKeys, 1.0);
  std::mt19937_64 rng(42);
  for (auto _ : state) benchmark::DoNotOptimize(&keys()[zipf(rng)]);
}
BENCHMARK(BM_Fixture);

Store* hit_store() {
  static Store* st = [] {
    StoreOptions o;
    o.capacity_bytes = 64ull << 20;
    auto* s = new Store(o);
    EntryMeta meta;
    for (int i = 0; i < 1000; ++i) {
      auto r = s->lookup(keys()[i], {}, nullptr);
      fill(r, meta);
    }
    return s;
  }();
  return st;
}

void BM_LookupHit(benchmark::State& state) {
  Store* st = hit_store();
  std::mt19937_64 rng(state.thread_index() + 1);
  uint64_t misses = 0;
  for (auto _ : state) {
    auto r = st->lookup(keys()[rng() % 1000], {}, nullptr);
    misses += r.kind != Store::Lookup::Kind::Hit;
    benchmark::DoNotOptimize(r.entry.get());
  }
  if (misses != 0) state.SkipWithError("a lookup missed");
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_LookupHit)->Threads(1)->Threads(2)->UseRealTime();

}  // namespace
}  // namespace parapet::cache

BENCHMARK_MAIN();
