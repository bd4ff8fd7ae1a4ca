#include "proxy/timer.h"

namespace parapet {

Timers::Timers(uv_loop_t* loop) : loop_(loop) {
  uv_timer_init(loop, &timer_);
  timer_.data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(&timer_));  // timers alone do not keep a loop alive
}

Timers::Queue* Timers::queue_for(uint32_t ms) {
  for (auto& q : queues_) {
    if (q->ms == ms) return q.get();
  }
  auto q = std::make_unique<Queue>();
  q->ms = ms;
  q->head.prev = q->head.next = &q->head;
  queues_.push_back(std::move(q));
  return queues_.back().get();
}

void Timers::arm(TimerNode* node, uint32_t ms, TimerNode::Callback cb) {
  disarm(node);
  Queue* q = queue_for(ms);
  node->deadline = uv_now(loop_) + ms;
  node->cb = cb;
  node->prev = q->head.prev;
  node->next = &q->head;
  q->head.prev->next = node;
  q->head.prev = node;
  if (scheduled_ == 0 || node->deadline < scheduled_) schedule(node->deadline);
}

void Timers::disarm(TimerNode* node) {
  if (!node->armed()) return;
  node->prev->next = node->next;
  node->next->prev = node->prev;
  node->prev = node->next = nullptr;
  node->cb = nullptr;
}

void Timers::schedule(uint64_t deadline) {
  uint64_t now = uv_now(loop_);
  scheduled_ = deadline;
  uv_timer_start(&timer_, on_timer, deadline > now ? deadline - now : 0, 0);
}

void Timers::on_timer(uv_timer_t* t) { static_cast<Timers*>(t->data)->expire(); }

void Timers::expire() {
  scheduled_ = 0;
  const uint64_t now = uv_now(loop_);
  for (size_t i = 0; i < queues_.size(); ++i) {
    Queue* q = queues_[i].get();
    // Callbacks may arm nodes into this same queue (at its tail, with a later deadline), so
    // re-read the head each time and stop at the first node not yet due.
    while (q->head.next != &q->head && q->head.next->deadline <= now) {
      TimerNode* n = q->head.next;
      TimerNode::Callback cb = n->cb;
      disarm(n);
      cb(n);
    }
  }
  uint64_t earliest = 0;
  for (auto& q : queues_) {
    if (q->head.next != &q->head && (earliest == 0 || q->head.next->deadline < earliest)) {
      earliest = q->head.next->deadline;
    }
  }
  if (earliest != 0 && (scheduled_ == 0 || earliest < scheduled_)) schedule(earliest);
}

void Timers::close() {
  uv_timer_stop(&timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
}

}  // namespace parapet
