// Live tail: the admin listener streams a tenant's own exchanges as they end (GET /tail),
// the way `wrangler tail` does for Workers. Workers publish only while someone is tailing
// (one relaxed load per exchange otherwise); publishing never blocks a worker: it try-locks a
// bounded queue and drops (counted) when it cannot. The main thread filters per subscriber
// (tenant, status, path prefix, sampling) and writes NDJSON chunks; a subscriber that reads
// too slowly loses lines instead of growing memory.
#pragma once

#include <uv.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/stats.h"

namespace parapet {

struct TailFilter {
  std::string tenant;       // required: a tenant sees only its own traffic
  int status_class = 0;     // 1..5 (e.g. status=5xx), 0: any
  int status = 0;           // exact status, 0: any
  std::string path_prefix;  // empty: any
  double sample = 1.0;      // fraction of matching lines kept
};

class TailSubscriber {
 public:
  virtual ~TailSubscriber() = default;
  // Main thread. Returns false when the subscriber could not take the line (slow reader).
  virtual bool deliver(std::string_view ndjson_line) = 0;
  TailFilter filter;
  double credit = 0;  // sampling accumulator
  uint64_t dropped = 0;
};

class TailHub {
 public:
  explicit TailHub(uv_loop_t* main_loop);
  void close();  // main thread, at shutdown

  bool active() const { return subscribers_.load(std::memory_order_relaxed) > 0; }
  // Worker threads. Copies the line; never blocks.
  void publish(std::string_view tenant, uint16_t status, std::string_view path,
               std::string_view line);
  // Main thread.
  void subscribe(TailSubscriber* s);
  void unsubscribe(TailSubscriber* s);
  uint64_t dropped() const { return dropped_.get(); }

 private:
  struct Item {
    std::string tenant;
    uint16_t status;
    std::string path;
    std::string line;
  };
  static void on_async(uv_async_t* a);
  void deliver_all();

  uv_async_t async_;
  std::mutex mu_;
  std::vector<Item> queue_;  // guarded by mu_, bounded
  std::vector<TailSubscriber*> subs_;
  std::atomic<int> subscribers_{0};
  Counter dropped_;
};

// Parses "tenant=demo&status=5xx&path=/api&sample=0.1". False with *err on a bad value.
bool parse_tail_query(std::string_view query, TailFilter* f, std::string* err);

}  // namespace parapet
