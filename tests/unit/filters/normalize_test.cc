// Path normalization (filters/normalize.cc): RFC 3986 dot-segment removal, percent-encoding
// normalization and slash merging.
#include "filters/normalize.h"

#include <gtest/gtest.h>

namespace parapet::filters {
namespace {

TEST(FilterNormalizeTest, Rfc3986RemoveDotSegmentsExamples) {
  // RFC 3986 5.2.4 and the 5.4 reference resolution results (paths only).
  EXPECT_EQ(normalize_path("/a/b/c/./../../g"), "/a/g");
  EXPECT_EQ(normalize_path("mid/content=5/../6"), "mid/6");
  EXPECT_EQ(normalize_path("/b/c/./g"), "/b/c/g");
  EXPECT_EQ(normalize_path("/b/c/."), "/b/c/");
  EXPECT_EQ(normalize_path("/b/c/./"), "/b/c/");
  EXPECT_EQ(normalize_path("/b/c/.."), "/b/");
  EXPECT_EQ(normalize_path("/b/c/../"), "/b/");
  EXPECT_EQ(normalize_path("/b/c/../g"), "/b/g");
  EXPECT_EQ(normalize_path("/b/c/../.."), "/");
  EXPECT_EQ(normalize_path("/b/c/../../g"), "/g");
  EXPECT_EQ(normalize_path("/b/c/g."), "/b/c/g.");
  EXPECT_EQ(normalize_path("/b/c/.g"), "/b/c/.g");
  EXPECT_EQ(normalize_path("/b/c/g.."), "/b/c/g..");
  EXPECT_EQ(normalize_path("/b/c/..g"), "/b/c/..g");
  EXPECT_EQ(normalize_path("/b/c/./../g"), "/b/g");
  EXPECT_EQ(normalize_path("/b/c/g/./h"), "/b/c/g/h");
  EXPECT_EQ(normalize_path("/b/c/g/../h"), "/b/c/h");
  EXPECT_EQ(normalize_path("./a"), "a");
  EXPECT_EQ(normalize_path("../a"), "a");
}

TEST(FilterNormalizeTest, AboveRootStaysAtRoot) {
  EXPECT_EQ(normalize_path("/../a"), "/a");
  EXPECT_EQ(normalize_path("/../../../etc/passwd"), "/etc/passwd");
  EXPECT_EQ(normalize_path("/a/../../b"), "/b");
  EXPECT_EQ(normalize_path("/.."), "/");
  EXPECT_EQ(normalize_path("/."), "/");
  EXPECT_EQ(normalize_path("/"), "/");
  EXPECT_EQ(normalize_path(""), "");
}

TEST(FilterNormalizeTest, PercentEncoding) {
  EXPECT_EQ(normalize_path("/%41%62%63"), "/Abc");           // unreserved decoded
  EXPECT_EQ(normalize_path("/%7e%2D%2e%5F"), "/~-._");
  EXPECT_EQ(normalize_path("/a%2Fb"), "/a%2Fb");             // %2F stays encoded
  EXPECT_EQ(normalize_path("/a%2fb"), "/a%2Fb");             // with uppercase hex
  EXPECT_EQ(normalize_path("/a%3cb%3E"), "/a%3Cb%3E");
  EXPECT_EQ(normalize_path("/%zz/%4"), "/%zz/%4");           // malformed kept as is
  EXPECT_EQ(normalize_path("/%25"), "/%25");                 // '%' itself is not unreserved
  // Dot segments spelled with escapes are decoded first, then removed.
  EXPECT_EQ(normalize_path("/a/%2e%2E/b"), "/b");
  EXPECT_EQ(normalize_path("/a/%2e/b"), "/a/b");
  // An encoded slash never becomes a separator for dot removal.
  EXPECT_EQ(normalize_path("/a/..%2F..%2Fetc"), "/a/..%2F..%2Fetc");
}

TEST(FilterNormalizeTest, RepeatedSlashes) {
  EXPECT_EQ(normalize_path("//a///b//"), "/a/b/");
  EXPECT_EQ(normalize_path("/a//../b"), "/b");
  EXPECT_EQ(normalize_path("///"), "/");
  EXPECT_EQ(normalize_path("/a/.//./b"), "/a/b");
}

TEST(FilterNormalizeTest, ReusesBuffer) {
  std::string out = "garbage that is long enough";
  normalize_path("/x/../y", out);
  EXPECT_EQ(out, "/y");
}

TEST(FilterNormalizeTest, PercentDecode) {
  std::string out;
  percent_decode("a%20b+c%zz%4", true, out);
  EXPECT_EQ(out, "a b c%zz%4");
  out.clear();
  percent_decode("a+b", false, out);
  EXPECT_EQ(out, "a+b");
}

}  // namespace
}  // namespace parapet::filters
