// Unit tests of the access log sink (proxy/access_log.h) against real files in a temporary
// directory, and of json_escape.
#include "proxy/access_log.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace parapet {
namespace {

class AccessLogTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = testing::TempDir() + "parapet_access_log_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/access.log";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static std::string read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  static std::vector<std::string> read_lines(const std::string& path) {
    std::string all = read_all(path);
    std::vector<std::string> lines;
    size_t start = 0;
    while (start < all.size()) {
      size_t nl = all.find('\n', start);
      if (nl == std::string::npos) {
        ADD_FAILURE() << "last line has no newline";
        break;
      }
      lines.push_back(all.substr(start, nl - start));
      start = nl + 1;
    }
    return lines;
  }

  std::string dir_;
  std::string path_;
};

TEST_F(AccessLogTest, OpenErrors) {
  std::string err;
  EXPECT_EQ(AccessLog::open(dir_ + "/no/such/dir/log", 1, 4096, &err), nullptr);
  EXPECT_NE(err.find("no/such/dir"), std::string::npos) << err;
  err.clear();
  EXPECT_EQ(AccessLog::open(path_, 0, 4096, &err), nullptr);
  EXPECT_FALSE(err.empty());
  err.clear();
  EXPECT_EQ(AccessLog::open(path_, 1, 8, &err), nullptr);
  EXPECT_FALSE(err.empty());
}

TEST_F(AccessLogTest, TwoProducersEveryLineIntactAndInOrder) {
  constexpr int kLines = 20000;
  std::string err;
  auto log = AccessLog::open(path_, 2, 64 * 1024, &err);
  ASSERT_NE(log, nullptr) << err;

  uint64_t refused[2] = {0, 0};
  auto produce = [&](unsigned w) {
    // Lines of varying length so that records wrap around the ring end at many offsets.
    std::string line;
    for (int i = 0; i < kLines; ++i) {
      line = "{\"w\":" + std::to_string(w) + ",\"seq\":" + std::to_string(i) + ",\"pad\":\"" +
             std::string(static_cast<size_t>(i % 97), static_cast<char>('a' + w)) + "\"}";
      while (!log->append(w, line)) {  // full: this test wants every line, so try again
        ++refused[w];
        std::this_thread::yield();
      }
    }
  };
  std::thread a(produce, 0);
  std::thread b(produce, 1);
  a.join();
  b.join();
  log->flush();
  EXPECT_EQ(log->written(), 2u * kLines);
  EXPECT_EQ(log->dropped(), refused[0] + refused[1]);

  std::vector<std::string> lines = read_lines(path_);
  ASSERT_EQ(lines.size(), 2u * kLines);
  int next[2] = {0, 0};
  for (const std::string& l : lines) {
    unsigned w = 0;
    int seq = 0;
    ASSERT_EQ(std::sscanf(l.c_str(), "{\"w\":%u,\"seq\":%d,", &w, &seq), 2) << l;
    ASSERT_LT(w, 2u) << l;
    ASSERT_EQ(seq, next[w]) << "producer " << w << " out of order: " << l;
    std::string want =
        "{\"w\":" + std::to_string(w) + ",\"seq\":" + std::to_string(seq) + ",\"pad\":\"" +
        std::string(static_cast<size_t>(seq % 97), static_cast<char>('a' + w)) + "\"}";
    ASSERT_EQ(l, want);
    ++next[w];
  }
  EXPECT_EQ(next[0], kLines);
  EXPECT_EQ(next[1], kLines);
}

TEST_F(AccessLogTest, FullBufferDropsAreCountedExactly) {
  std::string err;
  // 64 bytes hold two or three of these lines; the writer sleeps up to 50 ms between passes,
  // so a tight loop of appends outruns it.
  auto log = AccessLog::open(path_, 1, 64, &err);
  ASSERT_NE(log, nullptr) << err;
  constexpr uint64_t kAppends = 20000;
  uint64_t refused = 0;
  for (uint64_t i = 0; i < kAppends; ++i) {
    if (!log->append(0, "line " + std::to_string(i))) ++refused;
  }
  // Longer than the ring can ever hold: refused, counted.
  EXPECT_FALSE(log->append(0, std::string(61, 'x')));
  ++refused;
  log->flush();
  EXPECT_TRUE(log->append(0, std::string(60, 'y')));  // buffer - 4: fits an empty ring
  log->flush();
  EXPECT_GT(refused, 1u);
  EXPECT_EQ(log->dropped(), refused);
  EXPECT_EQ(log->written() + log->dropped(), kAppends + 2);
  EXPECT_EQ(log->write_failed(), 0u);

  std::vector<std::string> lines = read_lines(path_);
  ASSERT_EQ(lines.size(), log->written());
  uint64_t prev = 0;
  bool first = true;
  for (size_t i = 0; i + 1 < lines.size(); ++i) {
    uint64_t n = 0;
    ASSERT_EQ(std::sscanf(lines[i].c_str(), "line %" SCNu64, &n), 1) << lines[i];
    EXPECT_TRUE(first || n > prev) << "order kept despite drops";
    prev = n;
    first = false;
  }
  EXPECT_EQ(lines.back(), std::string(60, 'y'));
}

TEST_F(AccessLogTest, ReopenWritesToANewFileAtThePath) {
  std::string err;
  auto log = AccessLog::open(path_, 1, 4096, &err);
  ASSERT_NE(log, nullptr) << err;
  ASSERT_TRUE(log->append(0, "before 1"));
  ASSERT_TRUE(log->append(0, "before 2"));
  log->flush();
  const std::string rotated = path_ + ".1";
  std::filesystem::rename(path_, rotated);  // what logrotate does before sending SIGUSR1
  log->reopen();
  ASSERT_TRUE(log->append(0, "after 1"));
  log->flush();
  EXPECT_EQ(read_all(rotated), "before 1\nbefore 2\n");
  EXPECT_EQ(read_all(path_), "after 1\n");
  EXPECT_EQ(log->written(), 3u);

  // Reopen with nothing to write happens too (the old file is let go within ~50 ms), and a
  // second reopen of the same path keeps appending.
  log->reopen();
  ASSERT_TRUE(log->append(0, "after 2"));
  log->flush();
  EXPECT_EQ(read_all(path_), "after 1\nafter 2\n");
}

TEST_F(AccessLogTest, DestructorWritesWhatIsBuffered) {
  std::string err;
  auto log = AccessLog::open(path_, 3, 4096, &err);
  ASSERT_NE(log, nullptr) << err;
  for (unsigned w = 0; w < 3; ++w) ASSERT_TRUE(log->append(w, "w" + std::to_string(w)));
  ASSERT_TRUE(log->append(1, ""));  // an empty line is a line
  log.reset();
  std::vector<std::string> lines = read_lines(path_);
  EXPECT_EQ(lines, (std::vector<std::string>{"w0", "w1", "", "w2"}));
}

TEST_F(AccessLogTest, WriteErrorsAreCountedAsDropped) {
  if (access("/dev/full", W_OK) != 0) GTEST_SKIP() << "no /dev/full";
  std::string err;
  auto log = AccessLog::open("/dev/full", 1, 4096, &err);  // every write fails with ENOSPC
  ASSERT_NE(log, nullptr) << err;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(log->append(0, "lost"));
  log->flush();
  EXPECT_EQ(log->written(), 0u);
  EXPECT_EQ(log->write_failed(), 5u);
  EXPECT_EQ(log->dropped(), 5u);
}

TEST_F(AccessLogTest, FlushWithNothingBufferedReturns) {
  std::string err;
  auto log = AccessLog::open(path_, 1, 4096, &err);
  ASSERT_NE(log, nullptr) << err;
  log->flush();
  log->flush();
  EXPECT_EQ(log->written(), 0u);
  EXPECT_EQ(read_all(path_), "");
}

// A minimal check that `s` is the inside of a valid JSON string: no raw control byte, no raw
// quote, every backslash starts a known escape. (UTF-8 validity is checked by the cases.)
bool valid_json_string_body(const std::string& s) {
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == '"' || c == 0x7f) return false;
    if (c != '\\') continue;
    if (++i == s.size()) return false;
    char e = s[i];
    if (e == 'u') {
      for (int k = 1; k <= 4; ++k) {
        if (i + k >= s.size() || !isxdigit(static_cast<unsigned char>(s[i + k]))) return false;
      }
      i += 4;
    } else if (std::string("\"\\/bfnrt").find(e) == std::string::npos) {
      return false;
    }
  }
  return true;
}

std::string esc(std::string_view s) {
  std::string out = "prefix:";
  json_escape(out, s);
  EXPECT_TRUE(valid_json_string_body(out)) << out;
  return out.substr(7);
}

TEST(JsonEscape, QuotesBackslashAndControlBytes) {
  EXPECT_EQ(esc("plain text /path?q=1"), "plain text /path?q=1");
  EXPECT_EQ(esc(""), "");
  EXPECT_EQ(esc("say \"hi\""), "say \\\"hi\\\"");
  EXPECT_EQ(esc("C:\\dir\\"), "C:\\\\dir\\\\");
  EXPECT_EQ(esc("a\nb\rc\td"), "a\\nb\\rc\\td");
  EXPECT_EQ(esc(std::string_view("\0\x01\x1f\x7f", 4)), "\\u0000\\u0001\\u001f\\u007f");
  EXPECT_EQ(esc("\x1b[31mred"), "\\u001b[31mred");
}

TEST(JsonEscape, ValidUtf8IsKept) {
  EXPECT_EQ(esc("caf\xc3\xa9"), "caf\xc3\xa9");              // U+00E9
  EXPECT_EQ(esc("\xe2\x82\xac 5"), "\xe2\x82\xac 5");        // U+20AC
  EXPECT_EQ(esc("\xf0\x9f\x98\x80!"), "\xf0\x9f\x98\x80!");  // U+1F600
  EXPECT_EQ(esc("\xf4\x8f\xbf\xbf"), "\xf4\x8f\xbf\xbf");    // U+10FFFF, the last one
  EXPECT_EQ(esc("\xed\x9f\xbf"), "\xed\x9f\xbf");            // U+D7FF, below surrogates
}

TEST(JsonEscape, InvalidUtf8IsEscapedByteByByte) {
  EXPECT_EQ(esc("\xff"), "\\u00ff");
  EXPECT_EQ(esc("a\x80z"), "a\\u0080z");                               // lone continuation
  EXPECT_EQ(esc("\xc3"), "\\u00c3");                                   // truncated at the end
  EXPECT_EQ(esc("\xc3("), "\\u00c3(");                                 // bad continuation
  EXPECT_EQ(esc("\xc0\xaf"), "\\u00c0\\u00af");                        // overlong '/'
  EXPECT_EQ(esc("\xe0\x80\xaf"), "\\u00e0\\u0080\\u00af");             // overlong, 3 bytes
  EXPECT_EQ(esc("\xed\xa0\x80"), "\\u00ed\\u00a0\\u0080");             // surrogate U+D800
  EXPECT_EQ(esc("\xf4\x90\x80\x80"), "\\u00f4\\u0090\\u0080\\u0080");  // > U+10FFFF
  EXPECT_EQ(esc("\xe2\x82"), "\\u00e2\\u0082");                        // truncated 3-byte
  // A valid sequence right after an invalid byte is still kept.
  EXPECT_EQ(esc("\xff\xc3\xa9\""), "\\u00ff\xc3\xa9\\\"");
}

TEST(JsonEscape, EveryByteGivesAValidBody) {
  std::string all;
  for (int c = 0; c < 256; ++c) all.push_back(static_cast<char>(c));
  std::string out = esc(all);
  for (unsigned char c : out) EXPECT_TRUE(c >= 0x20 && c < 0x80) << int(c);  // no valid seq here
}

}  // namespace
}  // namespace parapet
