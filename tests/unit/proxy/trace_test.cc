// Unit tests of W3C trace context parsing and generation (proxy/trace.h), with the examples of
// the Trace Context level 1 specification.
#include "proxy/trace.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace parapet {
namespace {

constexpr const char* kValid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

std::string traceparent(const TraceContext& t) {
  char buf[55];
  format_traceparent(t, buf);
  return std::string(buf, sizeof(buf));
}

std::string trace_id(const TraceContext& t) {
  char buf[32];
  format_trace_id(t, buf);
  return std::string(buf, sizeof(buf));
}

TEST(TraceParse, ValidVersion00) {
  TraceContext t;
  ASSERT_TRUE(parse_traceparent(kValid, &t));
  EXPECT_EQ(trace_id(t), "4bf92f3577b34da6a3ce929d0e0e4736");
  const uint8_t span[8] = {0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7};
  EXPECT_EQ(std::memcmp(t.parent_id, span, 8), 0);
  EXPECT_EQ(t.flags, 0x01);
  ASSERT_TRUE(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", &t));
  EXPECT_EQ(t.flags, 0x00);
}

TEST(TraceParse, UppercaseRejected) {
  TraceContext t;
  EXPECT_FALSE(parse_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", &t));
  EXPECT_FALSE(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A", &t));
  EXPECT_FALSE(parse_traceparent("0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &t));
}

TEST(TraceParse, AllZeroIdsRejected) {
  TraceContext t;
  EXPECT_FALSE(parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01", &t));
  EXPECT_FALSE(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", &t));
}

TEST(TraceParse, VersionFfRejected) {
  TraceContext t;
  EXPECT_FALSE(parse_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &t));
}

TEST(TraceParse, WrongLengthsAndSeparatorsRejected) {
  TraceContext t;
  EXPECT_FALSE(parse_traceparent("", &t));
  EXPECT_FALSE(parse_traceparent("00", &t));
  // One char short in each field, one char long.
  EXPECT_FALSE(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", &t));
  EXPECT_FALSE(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01", &t));
  EXPECT_FALSE(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1", &t));
  EXPECT_FALSE(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736a-00f067aa0ba902b7-01", &t));
  // Version 00 allows nothing after the flags, not even a '-'.
  EXPECT_FALSE(parse_traceparent(std::string(kValid) + "-", &t));
  EXPECT_FALSE(parse_traceparent(std::string(kValid) + "-what", &t));
  EXPECT_FALSE(parse_traceparent(std::string(kValid) + " ", &t));
  // Wrong separators, non-hex.
  EXPECT_FALSE(parse_traceparent("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &t));
  EXPECT_FALSE(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01", &t));
  EXPECT_FALSE(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01", &t));
  EXPECT_FALSE(parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", &t));
}

TEST(TraceParse, FutureVersion) {
  TraceContext t;
  // A later version may add fields after a '-'; we read the level 1 fields.
  ASSERT_TRUE(parse_traceparent(
      "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-will-be-like", &t));
  EXPECT_EQ(trace_id(t), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(t.flags, 0x01);
  EXPECT_TRUE(parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &t));
  // ... but the char after the flags must be a '-', and the level 1 rules still hold.
  EXPECT_FALSE(parse_traceparent(
      "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.what-the-future-will-be-like", &t));
  EXPECT_FALSE(parse_traceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0", &t));
  EXPECT_FALSE(parse_traceparent("cc-00000000000000000000000000000000-00f067aa0ba902b7-01", &t));
}

TEST(TraceContext, ChildKeepsTraceIdAndFlags) {
  TraceContext parent;
  ASSERT_TRUE(parse_traceparent(kValid, &parent));
  uint64_t rng = 42;
  TraceContext a = child_context(&parent, &rng);
  TraceContext b = child_context(&parent, &rng);
  EXPECT_EQ(std::memcmp(a.trace_id, parent.trace_id, 16), 0);
  EXPECT_EQ(a.flags, parent.flags);
  EXPECT_NE(std::memcmp(a.parent_id, parent.parent_id, 8), 0);
  EXPECT_NE(std::memcmp(a.parent_id, b.parent_id, 8), 0);  // the state advanced

  // Flags level 1 does not define are not propagated.
  ASSERT_TRUE(
      parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff", &parent));
  EXPECT_EQ(parent.flags, 0xff);
  EXPECT_EQ(child_context(&parent, &rng).flags, kTraceFlagSampled);
}

TEST(TraceContext, NewTraceIsRandomAndValid) {
  uint64_t rng = 0;  // even a zero seed gives valid ids
  TraceContext a = child_context(nullptr, &rng);
  TraceContext b = child_context(nullptr, &rng);
  EXPECT_NE(std::memcmp(a.trace_id, b.trace_id, 16), 0);
  EXPECT_EQ(a.flags, 0);
  TraceContext back;
  ASSERT_TRUE(parse_traceparent(traceparent(a), &back));
}

TEST(TraceFormat, RoundTrip) {
  TraceContext t;
  ASSERT_TRUE(parse_traceparent(kValid, &t));
  EXPECT_EQ(traceparent(t), kValid);

  uint64_t rng = 0x1234;
  for (int i = 0; i < 100; ++i) {
    TraceContext c = child_context(i % 2 ? &t : nullptr, &rng);
    std::string s = traceparent(c);
    TraceContext back;
    ASSERT_TRUE(parse_traceparent(s, &back)) << s;
    EXPECT_EQ(std::memcmp(&back, &c, sizeof(c)), 0) << s;
    EXPECT_EQ(s.substr(3, 32), trace_id(c));
  }
  // A future version is re-emitted as 00.
  ASSERT_TRUE(
      parse_traceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more", &t));
  EXPECT_EQ(traceparent(t), kValid);
}

}  // namespace
}  // namespace parapet
