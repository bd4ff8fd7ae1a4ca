// Metrics written by one worker thread and read by the admin listener. Every counter has one
// writer (its worker), so an increment is a relaxed load + store (no locked instruction); the
// admin thread sums relaxed loads. Maps of per-tenant, per-route and per-server state change
// only on the worker thread, under the worker's stats mutex, which the admin thread also takes
// to walk them; the hot path never takes it.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

namespace parapet {

struct Counter {
  std::atomic<uint64_t> v{0};
  void add(uint64_t n = 1) {
    v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void sub(uint64_t n = 1) {
    v.store(v.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
  }
  void set(uint64_t n) { v.store(n, std::memory_order_relaxed); }
  uint64_t get() const { return v.load(std::memory_order_relaxed); }
};

// Latency histogram in microseconds; buckets are Prometheus' `le` bounds (seconds) below.
struct Histogram {
  static constexpr std::array<uint64_t, 13> kBoundsUs = {
      1'000,   2'500,   5'000,     10'000,    25'000,    50'000,    100'000,
      250'000, 500'000, 1'000'000, 2'500'000, 5'000'000, 10'000'000};
  void observe(uint64_t us) {
    size_t i = 0;
    while (i < kBoundsUs.size() && us > kBoundsUs[i]) ++i;
    buckets[i].add();
    sum_us.add(us);
  }
  Counter buckets[kBoundsUs.size() + 1];  // the last one is +Inf
  Counter sum_us;
};

struct TenantStats {
  Counter responses[6];  // by status / 100; [0]: no response (client gone)
  Counter bytes_in, bytes_out;
  Histogram total, upstream;  // request start -> end; upstream attempt -> response head
};

struct RouteStats {
  Counter responses[6];
};

}  // namespace parapet
