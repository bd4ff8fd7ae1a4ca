// Unit tests of the worker timer facility (proxy/timer.h) on a real libuv loop.
#include "proxy/timer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace parapet {
namespace {

// A ref'd one-shot uv timer running `fn` after `ms`, then closing itself. It keeps the loop
// alive until it fired (the Timers' own uv timer is unref'd).
class After {
 public:
  After(uv_loop_t* loop, uint64_t ms, std::function<void()> fn) : fn_(std::move(fn)) {
    uv_timer_init(loop, &t_);
    t_.data = this;
    uv_timer_start(&t_, on_timer, ms, 0);
  }
  bool closed() const { return closed_; }

 private:
  static void on_timer(uv_timer_t* t) {
    auto* self = static_cast<After*>(t->data);
    if (self->fn_) self->fn_();
    uv_close(reinterpret_cast<uv_handle_t*>(&self->t_),
             [](uv_handle_t* h) { static_cast<After*>(h->data)->closed_ = true; });
  }
  uv_timer_t t_;
  std::function<void()> fn_;
  bool closed_ = false;
};

class TimerTest : public ::testing::Test {
 protected:
  struct Item {
    TimerNode node;
    TimerTest* test = nullptr;
    int id = 0;
    int fired = 0;
    uint64_t fired_at = 0;  // ms since start_
    std::function<void(Item*)> on_fire;
  };

  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    timers_ = std::make_unique<Timers>(&loop_);
    uv_update_time(&loop_);
    start_ = uv_now(&loop_);
    wall_start_ = uv_hrtime();
  }

  void TearDown() override {
    timers_->close();
    uv_run(&loop_, UV_RUN_DEFAULT);
    for (auto& a : afters_) EXPECT_TRUE(a->closed());
    EXPECT_EQ(uv_loop_close(&loop_), 0);
    const uint64_t wall_ms = (uv_hrtime() - wall_start_) / 1'000'000;
    EXPECT_LT(wall_ms, 1000u) << "the test took too long";
  }

  Item* item(int id) {
    items_.push_back(std::make_unique<Item>());
    Item* it = items_.back().get();
    it->id = id;
    it->test = this;
    it->node.owner = it;
    return it;
  }

  static void fire(TimerNode* n) {
    auto* it = static_cast<Item*>(n->owner);
    EXPECT_FALSE(n->armed()) << "a node is disarmed before its callback runs";
    ++it->fired;
    it->fired_at = uv_now(&it->test->loop_) - it->test->start_;
    it->test->order_.push_back(it->id);
    if (it->on_fire) it->on_fire(it);
  }

  void arm(Item* it, uint32_t ms) { timers_->arm(&it->node, ms, fire); }

  void after(uint64_t ms, std::function<void()> fn = nullptr) {
    afters_.push_back(std::make_unique<After>(&loop_, ms, std::move(fn)));
  }

  void run() { uv_run(&loop_, UV_RUN_DEFAULT); }

  uv_loop_t loop_;
  std::unique_ptr<Timers> timers_;
  uint64_t start_ = 0;
  uint64_t wall_start_ = 0;
  std::vector<std::unique_ptr<Item>> items_;
  std::vector<std::unique_ptr<After>> afters_;
  std::vector<int> order_;
};

TEST_F(TimerTest, FireInDeadlineOrderExactlyOnce) {
  Item* a = item(1);
  Item* b = item(2);
  Item* c = item(3);
  Item* d = item(4);
  arm(a, 100);
  arm(b, 20);
  arm(c, 60);
  arm(d, 20);  // same duration as b, armed later
  EXPECT_TRUE(a->node.armed());
  after(150);
  run();
  EXPECT_EQ(order_, (std::vector<int>{2, 4, 3, 1}));
  for (Item* it : {a, b, c, d}) {
    EXPECT_EQ(it->fired, 1) << "item " << it->id;
    EXPECT_FALSE(it->node.armed());
  }
  EXPECT_GE(b->fired_at, 20u);
  EXPECT_GE(d->fired_at, 20u);
  EXPECT_GE(c->fired_at, 60u);
  EXPECT_GE(a->fired_at, 100u);
  EXPECT_LT(a->fired_at, 150u);
}

TEST_F(TimerTest, SameDurationIsFifo) {
  std::vector<Item*> its;
  for (int i = 0; i < 5; ++i) {
    its.push_back(item(i));
    arm(its.back(), 10);
  }
  after(40);
  run();
  EXPECT_EQ(order_, (std::vector<int>{0, 1, 2, 3, 4}));
}

// When the loop was held up past several deadlines, every due node fires once in the same turn.
TEST_F(TimerTest, OverdueNodesAllFireOnce) {
  Item* a = item(1);
  Item* b = item(2);
  Item* c = item(3);
  Item* d = item(4);
  arm(a, 30);
  arm(b, 20);
  arm(c, 10);
  arm(d, 10);
  usleep(50'000);  // the loop is busy elsewhere: all four are overdue when it next runs
  after(5);
  run();
  ASSERT_EQ(order_.size(), 4u);
  for (Item* it : {a, b, c, d}) EXPECT_EQ(it->fired, 1) << "item " << it->id;
  // Within one duration the arming order is kept.
  auto pos = [&](int id) { return std::find(order_.begin(), order_.end(), id) - order_.begin(); };
  EXPECT_LT(pos(3), pos(4));
}

TEST_F(TimerTest, DisarmPreventsFiring) {
  Item* a = item(1);
  Item* b = item(2);
  arm(a, 20);
  arm(b, 40);
  timers_->disarm(&a->node);
  EXPECT_FALSE(a->node.armed());
  timers_->disarm(&a->node);  // twice is harmless
  Item* never = item(3);
  timers_->disarm(&never->node);  // never armed: harmless
  after(70);
  run();
  EXPECT_EQ(a->fired, 0);
  EXPECT_EQ(b->fired, 1);
  EXPECT_EQ(never->fired, 0);
  EXPECT_EQ(order_, (std::vector<int>{2}));
}

TEST_F(TimerTest, DisarmTheOnlyNodeThenNothingFires) {
  Item* a = item(1);
  arm(a, 10);
  timers_->disarm(&a->node);
  after(40);
  run();
  EXPECT_EQ(a->fired, 0);
}

TEST_F(TimerTest, CallbackDisarmsAnotherNode) {
  Item* a = item(1);
  Item* b = item(2);
  Item* c = item(3);
  arm(a, 20);
  arm(b, 40);
  arm(c, 20);  // same queue as a, right behind it
  a->on_fire = [&](Item*) {
    timers_->disarm(&b->node);
    timers_->disarm(&c->node);
  };
  after(70);
  run();
  EXPECT_EQ(a->fired, 1);
  EXPECT_EQ(b->fired, 0);
  EXPECT_EQ(c->fired, 0);
}

TEST_F(TimerTest, RearmSameDurationMovesTheDeadline) {
  Item* a = item(1);
  arm(a, 40);
  // At 25 ms re-arm: the deadline moves to about 65 ms.
  after(25, [&] {
    EXPECT_EQ(a->fired, 0);
    arm(a, 40);
  });
  after(110);
  run();
  EXPECT_EQ(a->fired, 1);
  EXPECT_GE(a->fired_at, 65u);
}

TEST_F(TimerTest, RearmLongerMovesTheDeadlineLater) {
  Item* a = item(1);
  arm(a, 20);
  arm(a, 70);
  uint64_t seen_at_40 = 99;
  after(40, [&] { seen_at_40 = static_cast<uint64_t>(a->fired); });
  after(110);
  run();
  EXPECT_EQ(seen_at_40, 0u) << "fired at the old deadline";
  EXPECT_EQ(a->fired, 1);
  EXPECT_GE(a->fired_at, 70u);
}

TEST_F(TimerTest, RearmShorterMovesTheDeadlineEarlier) {
  Item* a = item(1);
  arm(a, 500);
  arm(a, 20);
  after(80);
  run();
  EXPECT_EQ(a->fired, 1);
  EXPECT_GE(a->fired_at, 20u);
  EXPECT_LT(a->fired_at, 80u);
}

TEST_F(TimerTest, EarlierNodeInAnotherQueueReschedules) {
  Item* slow = item(1);
  Item* fast = item(2);
  arm(slow, 80);
  after(10, [&] { arm(fast, 20); });  // due at ~30 ms, before slow
  after(120);
  run();
  EXPECT_EQ(order_, (std::vector<int>{2, 1}));
  EXPECT_GE(fast->fired_at, 30u);
  EXPECT_LT(fast->fired_at, 80u);
}

TEST_F(TimerTest, CallbackRearmsItsOwnNode) {
  Item* a = item(1);
  std::vector<uint64_t> times;
  a->on_fire = [&](Item* it) {
    times.push_back(it->fired_at);
    if (it->fired < 3) arm(it, 15);
  };
  arm(a, 15);
  after(100);
  run();
  EXPECT_EQ(a->fired, 3);
  ASSERT_EQ(times.size(), 3u);
  EXPECT_GE(times[0], 15u);
  EXPECT_GE(times[1], times[0] + 15);
  EXPECT_GE(times[2], times[1] + 15);
  EXPECT_FALSE(a->node.armed());
}

TEST_F(TimerTest, CallbackArmsIntoAnotherQueue) {
  Item* a = item(1);
  Item* b = item(2);
  arm(b, 5);  // creates the 5 ms queue
  timers_->disarm(&b->node);
  a->on_fire = [&](Item*) { arm(b, 5); };
  arm(a, 20);
  after(70);
  run();
  EXPECT_EQ(order_, (std::vector<int>{1, 2}));
  EXPECT_GE(b->fired_at, 25u);
}

TEST_F(TimerTest, TimersAloneDoNotKeepTheLoopAlive) {
  Item* a = item(1);
  arm(a, 1000);
  const uint64_t t0 = uv_hrtime();
  run();
  const uint64_t ms = (uv_hrtime() - t0) / 1'000'000;
  EXPECT_LT(ms, 200u);
  EXPECT_EQ(a->fired, 0);
  EXPECT_TRUE(a->node.armed());
  timers_->disarm(&a->node);
}

TEST_F(TimerTest, NowFollowsTheLoop) {
  const uint64_t t0 = timers_->now();
  EXPECT_EQ(t0, uv_now(&loop_));
  after(20);
  run();
  EXPECT_GE(timers_->now(), t0 + 20);
}

}  // namespace
}  // namespace parapet
