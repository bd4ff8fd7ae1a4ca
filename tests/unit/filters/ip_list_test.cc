// IP and string lists (filters/ip_list.cc): range merging, boundaries, v4-mapped handling and
// the line-numbered text loader.
#include "filters/ip_list.h"

#include <gtest/gtest.h>

#include <string>

namespace parapet::filters {
namespace {

IpAddr ip(const char* s) {
  IpAddr a;
  EXPECT_TRUE(IpAddr::parse(s, &a)) << s;
  return a;
}

TEST(IpListTest, MergesOverlappingAndAdjacentRanges) {
  IpRangeSet set;
  std::string err;
  for (const char* c : {"10.0.0.0/24", "10.0.0.128/25", "10.0.1.0/24", "10.0.3.0/24", "10.0.2.5",
                        "10.0.2.6"}) {
    ASSERT_TRUE(set.add_text(c, &err)) << err;
  }
  set.finalize();
  // 10.0.0.0-10.0.1.255 (overlap + adjacency), 10.0.2.5-10.0.2.6, 10.0.3.0/24.
  EXPECT_EQ(set.v4_ranges(), 3u);
  EXPECT_TRUE(set.contains(ip("10.0.1.255")));
  EXPECT_FALSE(set.contains(ip("10.0.2.4")));
  EXPECT_TRUE(set.contains(ip("10.0.2.5")));
  EXPECT_TRUE(set.contains(ip("10.0.2.6")));
  EXPECT_FALSE(set.contains(ip("10.0.2.7")));
  EXPECT_FALSE(set.contains(ip("10.0.2.255")));
  EXPECT_TRUE(set.contains(ip("10.0.3.0")));
  EXPECT_TRUE(set.contains(ip("10.0.3.255")));
  EXPECT_FALSE(set.contains(ip("10.0.4.0")));
  EXPECT_FALSE(set.contains(ip("9.255.255.255")));
}

TEST(IpListTest, Boundaries) {
  IpRangeSet set;
  std::string err;
  ASSERT_TRUE(set.add_text("0.0.0.0/32", &err));
  ASSERT_TRUE(set.add_text("255.255.255.255/32", &err));
  ASSERT_TRUE(set.add_text("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", &err));
  ASSERT_TRUE(set.add_text("::/128", &err));
  set.finalize();
  EXPECT_TRUE(set.contains(ip("0.0.0.0")));
  EXPECT_FALSE(set.contains(ip("0.0.0.1")));
  EXPECT_TRUE(set.contains(ip("255.255.255.255")));
  EXPECT_FALSE(set.contains(ip("255.255.255.254")));
  EXPECT_TRUE(set.contains(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
  EXPECT_TRUE(set.contains(ip("::")));
  EXPECT_FALSE(set.contains(ip("::1")));

  IpRangeSet all;
  ASSERT_TRUE(all.add_text("0.0.0.0/0", &err));
  ASSERT_TRUE(all.add_text("::/0", &err));
  ASSERT_TRUE(all.add_text("::/1", &err));  // overlap with the full range must not overflow
  all.finalize();
  EXPECT_EQ(all.v4_ranges(), 1u);
  EXPECT_EQ(all.v6_ranges(), 1u);
  EXPECT_TRUE(all.contains(ip("1.2.3.4")));
  EXPECT_TRUE(all.contains(ip("2001:db8::1")));
}

TEST(IpListTest, Ipv6Prefixes) {
  IpRangeSet set;
  std::string err;
  ASSERT_TRUE(set.add_text("2001:db8::/32", &err));
  ASSERT_TRUE(set.add_text("2001:db8:1::/48", &err));  // inside the /32
  ASSERT_TRUE(set.add_text("fe80::/10", &err));
  set.finalize();
  EXPECT_EQ(set.v6_ranges(), 2u);
  EXPECT_TRUE(set.contains(ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
  EXPECT_FALSE(set.contains(ip("2001:db9::")));
  EXPECT_TRUE(set.contains(ip("febf::1")));
  EXPECT_FALSE(set.contains(ip("fec0::")));
  EXPECT_FALSE(set.contains(ip("10.0.0.1")));  // families do not mix
}

// Decision: a v4-mapped address (::ffff:a.b.c.d) IS the v4 address. Parsing turns it into v4,
// and a v6 range covering part of ::ffff:0:0/96 also matches the corresponding v4 addresses.
TEST(IpListTest, V4MappedIsV4) {
  IpAddr m = ip("::ffff:10.1.2.3");
  EXPECT_TRUE(m.v4);
  EXPECT_EQ(m, ip("10.1.2.3"));
  IpRangeSet set;
  std::string err;
  ASSERT_TRUE(set.add_text("10.0.0.0/8", &err));
  ASSERT_TRUE(set.add_text("::ffff:192.168.0.0/112", &err));  // = 192.168.0.0/16
  set.finalize();
  EXPECT_TRUE(set.contains(ip("::ffff:10.9.9.9")));
  EXPECT_TRUE(set.contains(ip("192.168.4.4")));
  EXPECT_FALSE(set.contains(ip("192.169.0.0")));
  std::string e2;
  EXPECT_FALSE(set.add_text("::ffff:1.2.3.4/95", &e2));
  EXPECT_EQ(e2, "v4-mapped CIDR prefix must be at least /96");

  IpRangeSet wide;  // ::/0 covers the mapped block, hence every v4 address
  ASSERT_TRUE(wide.add_text("::/0", &err));
  wide.finalize();
  EXPECT_TRUE(wide.contains(ip("1.2.3.4")));
}

TEST(IpListTest, LoaderCommentsBlanksAndErrors) {
  IpList list;
  ListLoadError err;
  ASSERT_TRUE(load_ip_list("# office\n10.0.0.0/8  # hq\n\n  2001:db8::/32\r\n192.0.2.1\n", &list,
                           &err));
  EXPECT_TRUE(list.contains(ip("10.200.0.1")));
  EXPECT_TRUE(list.contains(ip("2001:db8::5")));
  EXPECT_TRUE(list.contains(ip("192.0.2.1")));
  EXPECT_FALSE(list.contains(ip("192.0.2.2")));

  IpList bad;
  EXPECT_FALSE(load_ip_list("10.0.0.0/8\n# c\n10.0.0.300\n", &bad, &err));
  EXPECT_EQ(err.to_string(), "3: invalid IP address \"10.0.0.300\"");
  EXPECT_FALSE(load_ip_list("1.2.3.4/40\n", &bad, &err));
  EXPECT_EQ(err.to_string(), "1: invalid CIDR prefix \"/40\"");
  EXPECT_FALSE(load_ip_list("\n\n1.2.3.4/\n", &bad, &err));
  EXPECT_EQ(err.line, 3);
}

TEST(IpListTest, StringListLoader) {
  StringList list;
  ListLoadError err;
  ASSERT_TRUE(load_string_list("# bots\nsqlmap\n nikto \nsqlmap\n", &list, &err));
  EXPECT_EQ(list.size(), 2u);
  EXPECT_TRUE(list.contains("nikto"));
  EXPECT_FALSE(list.contains("Nikto"));
}

TEST(IpListTest, MillionCidrsLoadAndMatch) {
  std::string text;
  text.reserve(20 << 20);
  for (uint32_t i = 0; i < 1000000; ++i) {
    uint32_t a = 0x0B000000u + i * 256 * 4;  // disjoint /24s with gaps, from 11.0.0.0
    text += std::to_string(a >> 24) + "." + std::to_string((a >> 16) & 255) + "." +
            std::to_string((a >> 8) & 255) + ".0/24\n";
  }
  IpList list;
  ListLoadError err;
  ASSERT_TRUE(load_ip_list(text, &list, &err)) << err.to_string();
  EXPECT_EQ(list.set().v4_ranges(), 1000000u);
  EXPECT_TRUE(list.contains(ip("11.0.0.7")));
  EXPECT_FALSE(list.contains(ip("11.0.1.7")));
  EXPECT_TRUE(list.contains(ip("11.0.4.255")));
}

}  // namespace
}  // namespace parapet::filters
