// The per-tenant, per-worker circuit breaker (lua/breaker.h): opens after N consecutive stopped
// runs, skips runs for the cooldown, probes once, closes on a run that was not stopped.
#include "lua/breaker.h"

#include <gtest/gtest.h>

namespace parapet::lua {
namespace {

using std::chrono::milliseconds;
using T = LuaBreaker::Clock::time_point;

TEST(LuaBreaker, OpensAfterConsecutiveStopsOnly) {
  LuaBreaker b(3, milliseconds(1000));
  T now{};
  for (int round = 0; round < 2; ++round) {
    ASSERT_TRUE(b.allow(now));
    EXPECT_FALSE(b.record(true, now));
    ASSERT_TRUE(b.allow(now));
    EXPECT_FALSE(b.record(true, now));
    ASSERT_TRUE(b.allow(now));
    EXPECT_FALSE(b.record(false, now));  // an ok (or error) run resets the count
  }
  EXPECT_EQ(b.consecutive_stops(), 0u);
  EXPECT_FALSE(b.record(true, now));
  EXPECT_FALSE(b.record(true, now));
  EXPECT_TRUE(b.record(true, now));  // the trip
  EXPECT_TRUE(b.is_open());
}

TEST(LuaBreaker, SkipsForTheCooldownThenProbesOnce) {
  LuaBreaker b(2, milliseconds(1000));
  T now{};
  b.record(true, now);
  ASSERT_TRUE(b.record(true, now));
  EXPECT_FALSE(b.allow(now));
  EXPECT_FALSE(b.allow(now + milliseconds(999)));
  // After the cooldown: one probe; a second caller before its outcome is refused.
  ASSERT_TRUE(b.allow(now + milliseconds(1000)));
  EXPECT_FALSE(b.allow(now + milliseconds(1000)));
  // Stopped again: open for another full cooldown (a new trip).
  EXPECT_TRUE(b.record(true, now + milliseconds(1000)));
  EXPECT_FALSE(b.allow(now + milliseconds(1999)));
  ASSERT_TRUE(b.allow(now + milliseconds(2000)));
  // The probe succeeds: closed, every run goes ahead and the count starts over.
  EXPECT_FALSE(b.record(false, now + milliseconds(2000)));
  EXPECT_FALSE(b.is_open());
  EXPECT_TRUE(b.allow(now + milliseconds(2000)));
  EXPECT_FALSE(b.record(true, now + milliseconds(2000)));
  EXPECT_TRUE(b.record(true, now + milliseconds(2000)));
}

TEST(LuaBreaker, ZeroFailuresNeverOpens) {
  LuaBreaker b(0, milliseconds(1000));
  T now{};
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(b.allow(now));
    EXPECT_FALSE(b.record(true, now));
  }
}

}  // namespace
}  // namespace parapet::lua
