// One timer facility for a worker: deadline queues over a single uv_timer_t.
//
// Every timeout in the proxy has a duration fixed by config (header, body, keep-alive, upstream
// connect/response, pool idle). Entries of one duration expire in the order they were armed, so
// each duration gets a FIFO list and arming is O(1): unlink, stamp, append. The uv timer fires at
// the earliest head; it is never re-armed on the hot path unless a shorter queue gets an earlier
// entry. A TimerNode is 40 bytes and lives inside the object it times (no allocation).
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace parapet {

class Timers;

struct TimerNode {
  using Callback = void (*)(TimerNode*);
  TimerNode* prev = nullptr;
  TimerNode* next = nullptr;
  uint64_t deadline = 0;
  Callback cb = nullptr;  // non-null while armed
  void* owner = nullptr;  // the object the node lives in
  bool armed() const { return cb != nullptr; }
};

class Timers {
 public:
  explicit Timers(uv_loop_t* loop);
  Timers(const Timers&) = delete;
  Timers& operator=(const Timers&) = delete;

  // (Re)arms `node` to fire `cb(node)` after `ms`. The callback runs on the loop, outside any
  // other callback; it may re-arm or free the owner of the node.
  void arm(TimerNode* node, uint32_t ms, TimerNode::Callback cb);
  void disarm(TimerNode* node);
  // Closes the uv timer; `done` runs from its close callback.
  void close();
  uint64_t now() const { return uv_now(loop_); }

 private:
  struct Queue {
    uint32_t ms;
    TimerNode head;  // sentinel of a circular list
  };
  Queue* queue_for(uint32_t ms);
  void schedule(uint64_t deadline);
  static void on_timer(uv_timer_t* t);
  void expire();

  uv_loop_t* loop_;
  uv_timer_t timer_;
  uint64_t scheduled_ = 0;  // deadline the uv timer is set for; 0 = not running
  std::vector<std::unique_ptr<Queue>> queues_;
};

}  // namespace parapet
