// Unit tests of the write path (proxy/outbox.h) over a real socket pair: one end is a uv_pipe_t
// the Outbox writes to, the other a plain non-blocking fd the test reads.
#include "proxy/outbox.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <string>
#include <vector>

namespace parapet {
namespace {

struct Events {
  std::vector<Outbox::Event> seen;
  std::vector<int> status;
  static void fn(void* owner, Outbox* box, Outbox::Event ev, int st) {
    auto* self = static_cast<Events*>(owner);
    self->seen.push_back(ev);
    self->status.push_back(st);
    (void)box;
  }
  int count(Outbox::Event ev) const {
    return static_cast<int>(std::count(seen.begin(), seen.end(), ev));
  }
};

class OutboxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    int fds[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    ASSERT_EQ(uv_pipe_init(&loop_, &pipe_, 0), 0);
    ASSERT_EQ(uv_pipe_open(&pipe_, fds[0]), 0);
    peer_ = fds[1];
    ASSERT_EQ(fcntl(peer_, F_SETFL, fcntl(peer_, F_GETFL) | O_NONBLOCK), 0);
  }

  void TearDown() override {
    close_pipe();
    if (peer_ >= 0) close(peer_);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }

  void close_pipe() {
    if (pipe_closed_) return;
    uv_close(reinterpret_cast<uv_handle_t*>(&pipe_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    pipe_closed_ = true;
  }

  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&pipe_); }

  // Reads whatever the peer has now.
  void drain_peer() {
    char buf[65536];
    for (;;) {
      ssize_t n = read(peer_, buf, sizeof buf);
      if (n > 0) {
        received_.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      break;
    }
  }

  // Runs the loop without blocking, reading the peer (when `read`) until `done()` or `ms` passed.
  bool pump(const std::function<bool()>& done, uint64_t ms = 2000, bool read_peer = true) {
    const uint64_t deadline = uv_hrtime() + ms * 1'000'000;
    while (!done()) {
      if (uv_hrtime() > deadline) return false;
      if (read_peer) drain_peer();
      uv_run(&loop_, UV_RUN_NOWAIT);
      if (read_peer) drain_peer();
      if (!done()) usleep(200);
    }
    return true;
  }

  // Lets the loop run for `ms` (reading the peer), whatever happens.
  void settle(uint64_t ms) {
    pump([] { return false; }, ms);
  }

  uv_loop_t loop_;
  uv_pipe_t pipe_;
  bool pipe_closed_ = false;
  int peer_ = -1;
  std::string received_;
  Events events_;
};

std::string pattern(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint32_t x = seed;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1103515245u + 12345u;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

TEST_F(OutboxTest, StageRefAndCopyThenFlushDeliversInOrder) {
  Outbox box(&events_, Events::fn);
  box.attach(stream());
  EXPECT_TRUE(box.empty());
  std::string head = "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
  std::string body = "hello world";
  box.stage_ref(head.data(), head.size());
  box.stage_copy("b\r\n");
  box.stage_ref(body.data(), body.size());
  box.stage_copy("\r\n", 2);
  box.stage_copy("0\r\n\r\n");  // adjacent copies merge
  box.stage_ref("", 0);         // empty pieces are ignored
  box.stage_copy("", 0);
  EXPECT_FALSE(box.empty());
  box.flush();
  // Small enough for the socket buffer: written at once, nothing kept.
  EXPECT_EQ(box.queued(), 0u);
  EXPECT_FALSE(box.writing());
  EXPECT_TRUE(box.empty());
  // The borrowed bytes are not needed after flush().
  head.assign(head.size(), 'X');
  body.assign(body.size(), 'Y');
  const std::string expected =
      "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nb\r\nhello "
      "world\r\n0\r\n\r\n";
  ASSERT_TRUE(pump([&] { return received_.size() >= expected.size(); }));
  EXPECT_EQ(received_, expected);
  settle(10);
  EXPECT_EQ(events_.count(Outbox::Event::Error), 0);
}

TEST_F(OutboxTest, SeveralFlushesKeepOrder) {
  Outbox box(&events_, Events::fn);
  box.attach(stream());
  std::string expected;
  for (int i = 0; i < 50; ++i) {
    std::string piece = "piece-" + std::to_string(i) + ";";
    box.stage_copy(piece);
    expected += piece;
    if (i % 7 == 0) box.flush();
  }
  box.flush();
  ASSERT_TRUE(pump([&] { return received_.size() >= expected.size(); }));
  EXPECT_EQ(received_, expected);
}

TEST_F(OutboxTest, ManyPiecesInOneFlush) {
  // More pieces than one writev takes (64): everything still goes, in order.
  Outbox box(&events_, Events::fn);
  box.attach(stream());
  std::vector<std::string> pieces;
  std::string expected;
  for (int i = 0; i < 200; ++i) pieces.push_back("<" + std::to_string(i) + ">");
  for (size_t i = 0; i < pieces.size(); ++i) {
    box.stage_ref(pieces[i].data(), pieces[i].size());
    box.stage_copy("|");
    expected += pieces[i] + "|";
  }
  box.flush();
  for (std::string& p : pieces) p.assign(p.size(), '#');  // borrowed bytes may go away
  ASSERT_TRUE(pump([&] { return received_.size() >= expected.size() && box.empty(); }));
  EXPECT_EQ(received_, expected);
  EXPECT_EQ(events_.count(Outbox::Event::Error), 0);
}

TEST_F(OutboxTest, LargeWriteIsQueuedAndDrains) {
  const size_t kBig = 8u << 20;
  std::string big = pattern(kBig, 7);
  const std::string expected = big + "tail";
  Outbox box(&events_, Events::fn);
  box.attach(stream());
  box.stage_ref(big.data(), big.size());
  box.flush();
  // The kernel took part of it; the rest is copied and written in the background.
  EXPECT_GT(box.queued(), 0u);
  EXPECT_LT(box.queued(), kBig);
  EXPECT_TRUE(box.writing());
  EXPECT_FALSE(box.empty());
  big.assign(big.size(), '\0');  // the queued part is a copy

  // More bytes while a write is in flight wait behind it.
  const size_t before = box.queued();
  box.stage_copy("tail");
  box.flush();
  EXPECT_EQ(box.queued(), before + 4);
  EXPECT_TRUE(events_.seen.empty()) << "no event from inside flush()";

  ASSERT_TRUE(pump([&] { return received_.size() >= expected.size() && !events_.seen.empty(); }))
      << "received " << received_.size() << " of " << expected.size() << ", queued "
      << box.queued();
  EXPECT_EQ(received_.size(), expected.size());
  EXPECT_TRUE(received_ == expected) << "the bytes differ";
  EXPECT_EQ(events_.seen, (std::vector<Outbox::Event>{Outbox::Event::Drained}));
  EXPECT_EQ(events_.status, (std::vector<int>{0}));
  EXPECT_EQ(box.queued(), 0u);
  EXPECT_FALSE(box.writing());
  EXPECT_TRUE(box.empty());
}

TEST_F(OutboxTest, NothingMovesWhileThePeerDoesNotRead) {
  const size_t kBig = 8u << 20;
  std::string big = pattern(kBig, 3);
  Outbox box(&events_, Events::fn);
  box.attach(stream());
  box.stage_ref(big.data(), big.size());
  box.flush();
  const size_t q = box.queued();
  ASSERT_GT(q, 0u);
  // Run the loop without reading: the socket stays full.
  pump([] { return false; }, 30, /*read_peer=*/false);
  EXPECT_GT(box.queued(), 0u);
  EXPECT_TRUE(box.writing());
  EXPECT_TRUE(events_.seen.empty());
  // Now read: it completes.
  ASSERT_TRUE(pump([&] { return received_.size() >= kBig && !events_.seen.empty(); }));
  EXPECT_TRUE(received_ == pattern(kBig, 3));
  EXPECT_EQ(events_.count(Outbox::Event::Drained), 1);
}

TEST_F(OutboxTest, FlushBeforeAttachOnlyQueues) {
  Outbox box(&events_, Events::fn);
  std::string head = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  box.stage_ref(head.data(), head.size());
  box.stage_copy("extra");
  box.flush();
  EXPECT_EQ(box.queued(), head.size() + 5);
  EXPECT_FALSE(box.writing());
  EXPECT_FALSE(box.empty());
  const std::string expected = head + "extra";
  head.assign(head.size(), 'Z');  // copied into the queue
  settle(20);
  EXPECT_EQ(received_, "");
  EXPECT_TRUE(events_.seen.empty());

  // More while unattached: appended.
  box.stage_copy("more");
  box.flush();
  EXPECT_EQ(box.queued(), expected.size() + 4);

  box.attach(stream());
  ASSERT_TRUE(pump([&] { return received_.size() >= expected.size() + 4 && box.empty(); }));
  EXPECT_EQ(received_, expected + "more");
  EXPECT_EQ(events_.count(Outbox::Event::Drained), 1);
  EXPECT_EQ(events_.count(Outbox::Event::Error), 0);
}

TEST_F(OutboxTest, AttachWithNothingQueuedDoesNothing) {
  Outbox box(&events_, Events::fn);
  box.attach(stream());
  box.flush();
  EXPECT_TRUE(box.empty());
  settle(10);
  EXPECT_TRUE(events_.seen.empty());
  EXPECT_EQ(received_, "");
}

TEST_F(OutboxTest, TakeQueuedMovesBytesToAnotherOutbox) {
  Events other_events;
  Outbox first(&other_events, Events::fn);  // e.g. a connection that failed to connect
  std::string head = "GET /retry HTTP/1.1\r\nHost: a\r\n\r\n";
  first.stage_ref(head.data(), head.size());
  first.stage_copy("body");
  first.flush();
  ASSERT_EQ(first.queued(), head.size() + 4);

  Outbox second(&events_, Events::fn);  // the retry, not connected yet
  second.take_queued(&first);
  EXPECT_EQ(first.queued(), 0u);
  EXPECT_TRUE(first.empty());
  EXPECT_EQ(second.queued(), head.size() + 4);
  const std::string expected = head + "body";
  head.assign(head.size(), 'Q');

  second.attach(stream());
  ASSERT_TRUE(pump([&] { return received_.size() >= expected.size() && second.empty(); }));
  EXPECT_EQ(received_, expected);
  EXPECT_TRUE(other_events.seen.empty());
}

TEST_F(OutboxTest, TakeQueuedIncludesStagedBytes) {
  Outbox first(&events_, Events::fn);
  first.stage_copy("staged-not-flushed");
  Outbox second(&events_, Events::fn);
  second.stage_copy("own;");
  second.flush();  // unattached: queued
  second.take_queued(&first);
  EXPECT_TRUE(first.empty());
  EXPECT_EQ(second.queued(), 4u + 18u);
  second.attach(stream());
  ASSERT_TRUE(pump([&] { return received_.size() >= 22u && second.empty(); }));
  EXPECT_EQ(received_, "own;staged-not-flushed");
}

TEST_F(OutboxTest, TakeQueuedFromAnEmptyOutbox) {
  Outbox first(&events_, Events::fn);
  Outbox second(&events_, Events::fn);
  second.take_queued(&first);
  EXPECT_TRUE(first.empty());
  EXPECT_TRUE(second.empty());
  EXPECT_EQ(second.queued(), 0u);
}

// A retry can land on a pooled connection whose outbox is already attached and idle
// (phase_upstream.cc: upstream_failed -> attach_origin reuses ss.idle -> take_queued -> flush).
// The moved bytes must then be written.
TEST_F(OutboxTest, TakeQueuedIntoAnAttachedIdleOutboxIsWritten) {
  Outbox first(&events_, Events::fn);
  const std::string req = "GET /retry HTTP/1.1\r\nHost: a\r\n\r\n";
  first.stage_copy(req);
  first.flush();
  ASSERT_EQ(first.queued(), req.size());

  Outbox pooled(&events_, Events::fn);
  pooled.attach(stream());
  pooled.take_queued(&first);
  pooled.flush();
  const bool got = pump([&] { return received_.size() >= req.size(); }, 200);
  EXPECT_TRUE(got) << "bytes moved by take_queued() into an attached, idle outbox were never "
                      "written; queued()="
                   << pooled.queued() << " writing()=" << pooled.writing();
  EXPECT_EQ(received_, req);

  // And later bytes must not be stuck behind them either.
  pooled.stage_copy("next");
  pooled.flush();
  pump([&] { return received_.size() >= req.size() + 4; }, 200);
  EXPECT_EQ(received_, req + "next");
}

// Same, when more bytes are staged before the first flush after take_queued().
TEST_F(OutboxTest, TakeQueuedIntoAnAttachedIdleOutboxThenStageMore) {
  Outbox first(&events_, Events::fn);
  const std::string req = "POST /retry HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n";
  first.stage_copy(req);
  first.flush();
  ASSERT_EQ(first.queued(), req.size());

  Outbox pooled(&events_, Events::fn);
  pooled.attach(stream());
  pooled.take_queued(&first);
  pooled.stage_copy("body");
  pooled.flush();
  const bool got = pump([&] { return received_.size() >= req.size() + 4; }, 200);
  EXPECT_TRUE(got) << "queued()=" << pooled.queued() << " writing()=" << pooled.writing();
  EXPECT_EQ(received_, req + "body");
}

TEST_F(OutboxTest, WriteErrorIsReportedAsynchronously) {
  struct sigaction ign {
  }, old{};
  ign.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ign, &old);
  close(peer_);
  peer_ = -1;
  Outbox box(&events_, Events::fn);
  box.attach(stream());
  box.stage_copy("to nowhere");
  box.flush();
  EXPECT_TRUE(events_.seen.empty()) << "flush() must not call back";
  EXPECT_TRUE(pump([&] { return !events_.seen.empty(); }, 1000, /*read_peer=*/false));
  ASSERT_EQ(events_.seen.size(), 1u);
  EXPECT_EQ(events_.seen[0], Outbox::Event::Error);
  EXPECT_LT(events_.status[0], 0);
  EXPECT_EQ(box.queued(), 0u);
  EXPECT_FALSE(box.writing());
  sigaction(SIGPIPE, &old, nullptr);
}

TEST_F(OutboxTest, ClosingTheStreamCancelsAWriteInFlight) {
  const size_t kBig = 4u << 20;
  std::string big = pattern(kBig, 11);
  Outbox box(&events_, Events::fn);
  box.attach(stream());
  box.stage_ref(big.data(), big.size());
  box.flush();
  ASSERT_TRUE(box.writing());
  close_pipe();  // the owner tears down: the write is cancelled before the box is destroyed
  ASSERT_EQ(events_.seen.size(), 1u);
  EXPECT_EQ(events_.seen[0], Outbox::Event::Error);
  EXPECT_EQ(events_.status[0], UV_ECANCELED);
  EXPECT_FALSE(box.writing());
}

}  // namespace
}  // namespace parapet
