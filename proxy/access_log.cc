#include "proxy/access_log.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "proxy/log.h"

namespace parapet {
namespace {

constexpr int kOpenFlags = O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC;
constexpr size_t kMinBuffer = 64;
constexpr size_t kHeader = sizeof(uint32_t);  // the length prefix of a record
// The writer writes once this much is batched (and at the end of every pass).
constexpr size_t kBatchBytes = 64 * 1024;
constexpr long kIdleWaitNs = 50 * 1000 * 1000;
// A stdout that keeps answering EAGAIN: 50 polls of 100 ms, then the batch is given up.
constexpr int kMaxStalls = 50;
constexpr int kStallPollMs = 100;

// The writer sleeps on a futex rather than a condition variable: the kernel compares the word
// and sleeps atomically, so a wake-up sent after the writer read the word is never lost, and
// the producer side needs no mutex (a condition variable without its mutex loses wake-ups).
static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) &&
              std::atomic<uint32_t>::is_always_lock_free);

void futex_wait(std::atomic<uint32_t>* word, uint32_t expected, long timeout_ns) {
  timespec ts{0, timeout_ns};  // relative, CLOCK_MONOTONIC
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, &ts,
            nullptr, 0);
}

void futex_wake(std::atomic<uint32_t>* word) {
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr,
            0);
}

bool is_stdout(const std::string& path) { return path == "-" || path == "stdout"; }

// Copies n bytes into the ring at position pos (a record may be split at the end of buf).
void ring_put(char* buf, size_t cap, uint64_t pos, const void* src, size_t n) {
  size_t off = static_cast<size_t>(pos % cap);
  size_t first = std::min(n, cap - off);
  std::memcpy(buf + off, src, first);
  std::memcpy(buf, static_cast<const char*>(src) + first, n - first);
}

void ring_get(const char* buf, size_t cap, uint64_t pos, void* dst, size_t n) {
  size_t off = static_cast<size_t>(pos % cap);
  size_t first = std::min(n, cap - off);
  std::memcpy(dst, buf + off, first);
  std::memcpy(static_cast<char*>(dst) + first, buf, n - first);
}

void ring_append(const char* buf, size_t cap, uint64_t pos, size_t n, std::string* out) {
  size_t off = static_cast<size_t>(pos % cap);
  size_t first = std::min(n, cap - off);
  out->append(buf + off, first);
  out->append(buf, n - first);
}

}  // namespace

std::unique_ptr<AccessLog> AccessLog::open(const std::string& path, unsigned workers,
                                           size_t buffer_bytes, std::string* err) {
  if (path.empty()) {
    *err = "access log: empty path";
    return nullptr;
  }
  if (workers == 0) {
    *err = "access log: no workers";
    return nullptr;
  }
  if (buffer_bytes < kMinBuffer) {
    *err = "access log: buffer of " + std::to_string(buffer_bytes) + " bytes (at least " +
           std::to_string(kMinBuffer) + ")";
    return nullptr;
  }
  int fd = STDOUT_FILENO;
  bool owns = !is_stdout(path);
  if (owns) {
    fd = ::open(path.c_str(), kOpenFlags, 0644);
    if (fd < 0) {
      *err = "access log " + path + ": " + std::strerror(errno);
      return nullptr;
    }
  }
  std::unique_ptr<AccessLog> log(new AccessLog(path, fd, owns, workers, buffer_bytes));
  try {
    log->thread_ = std::thread([p = log.get()] { p->run(); });
  } catch (const std::system_error& e) {
    *err = std::string("access log: cannot start the writer thread: ") + e.what();
    return nullptr;  // ~AccessLog closes fd; no thread to join
  }
  return log;
}

AccessLog::AccessLog(std::string path, int fd, bool owns_fd, unsigned workers, size_t buffer_bytes)
    : path_(std::move(path)), fd_(fd), owns_fd_(owns_fd), rings_(workers) {
  for (Ring& r : rings_) {
    r.cap = buffer_bytes;
    r.buf = std::make_unique<char[]>(buffer_bytes);
  }
  batch_.reserve(kBatchBytes);
}

AccessLog::~AccessLog() {
  if (thread_.joinable()) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stop_ = true;
    }
    signal_writer();
    thread_.join();  // the writer drains every ring once more after seeing stop_
  }
  if (owns_fd_ && fd_ >= 0) ::close(fd_);
}

bool AccessLog::append(unsigned w, std::string_view line) {
  Ring& r = rings_[w];
  const size_t need = kHeader + line.size();
  const uint64_t tail = r.tail.load(std::memory_order_relaxed);  // only this thread stores it
  if (need > r.cap) {
    r.dropped.store(r.dropped.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return false;
  }
  if (tail + need - r.head_cache > r.cap) {
    r.head_cache = r.head.load(std::memory_order_acquire);  // the writer is done with those bytes
    if (tail + need - r.head_cache > r.cap) {
      r.dropped.store(r.dropped.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      wake_writer();  // the ring may have filled while the writer was going to sleep
      return false;
    }
  }
  const uint32_t len = static_cast<uint32_t>(line.size());
  ring_put(r.buf.get(), r.cap, tail, &len, kHeader);
  ring_put(r.buf.get(), r.cap, tail + kHeader, line.data(), line.size());
  r.tail.store(tail + need, std::memory_order_release);  // publishes the whole record

  // Wake the writer early only when this ring is half full and the writer sleeps; otherwise its
  // 50 ms timeout comes first. head_cache is only a lower bound of head: refresh it before
  // deciding, so a stale view does not make every append look half full.
  if ((tail + need - r.head_cache) * 2 >= r.cap) {
    r.head_cache = r.head.load(std::memory_order_acquire);
    if ((tail + need - r.head_cache) * 2 >= r.cap) wake_writer();
  }
  return true;
}

void AccessLog::wake_writer() {
  // sleeping_ is the token: the producer that turns it from true to false sends the one wake of
  // this sleep, the others send nothing. The writer read the futex word before setting
  // sleeping_, so that wake is never lost. A producer that looks just before the writer sets
  // sleeping_ sends nothing: its line waits for the timeout, or for the next append that finds
  // the ring half full.
  if (sleeping_.load() && sleeping_.exchange(false)) signal_writer();
}

void AccessLog::signal_writer() {
  wake_seq_.fetch_add(1, std::memory_order_release);
  futex_wake(&wake_seq_);
}

void AccessLog::reopen() { reopen_.store(true, std::memory_order_release); }

void AccessLog::flush() {
  std::unique_lock<std::mutex> lk(mu_);
  const uint64_t target = ++flush_requested_;
  signal_writer();
  // The writer reads flush_requested_ under mu_ before a pass and checks it again under mu_
  // before sleeping, and signal_writer() ends a sleep already begun: no request is missed.
  done_cv_.wait(lk, [&] { return flush_done_ >= target; });
}

uint64_t AccessLog::dropped() const {
  uint64_t n = write_failed_.load(std::memory_order_relaxed);
  for (const Ring& r : rings_) n += r.dropped.load(std::memory_order_relaxed);
  return n;
}

uint64_t AccessLog::written() const { return written_.load(std::memory_order_relaxed); }

void AccessLog::run() {
  for (;;) {
    uint64_t gen;
    bool stopping;
    {
      std::lock_guard<std::mutex> lk(mu_);
      gen = flush_requested_;
      stopping = stop_;
    }
    maybe_reopen();
    drain_all();  // everything published before we read gen/stop_ is written now
    std::unique_lock<std::mutex> lk(mu_);
    if (flush_done_ != gen) {
      flush_done_ = gen;
      done_cv_.notify_all();
    }
    if (stopping) return;
    // Read the futex word before the last checks: any signal_writer() after this point changes
    // it, and futex_wait then returns at once.
    const uint32_t seq = wake_seq_.load(std::memory_order_acquire);
    sleeping_.store(true);
    const bool idle = flush_requested_ == gen && !stop_;
    lk.unlock();
    if (idle) futex_wait(&wake_seq_, seq, kIdleWaitNs);
    sleeping_.store(false);
  }
}

uint64_t AccessLog::drain_all() {
  uint64_t lines = 0;
  for (Ring& r : rings_) {
    uint64_t head = r.head.load(std::memory_order_relaxed);  // only this thread stores it
    const uint64_t tail = r.tail.load(std::memory_order_acquire);
    while (head != tail) {
      uint32_t len;
      ring_get(r.buf.get(), r.cap, head, &len, kHeader);
      ring_append(r.buf.get(), r.cap, head + kHeader, len, &batch_);
      batch_.push_back('\n');
      head += kHeader + len;
      ++batch_lines_;
      ++lines;
      if (batch_.size() >= kBatchBytes) {
        r.head.store(head, std::memory_order_release);  // copied out: the producer may reuse it
        write_batch();
      }
    }
    r.head.store(head, std::memory_order_release);
  }
  if (!batch_.empty()) write_batch();
  return lines;
}

bool AccessLog::write_all(const char* p, size_t n, size_t* done, int* error) {
  *done = 0;
  int stalls = 0;
  while (*done < n) {
    ssize_t w = ::write(fd_, p + *done, n - *done);
    if (w > 0) {
      *done += static_cast<size_t>(w);
      stalls = 0;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && ++stalls <= kMaxStalls) {
      // A non-blocking stdout (a pipe someone else set O_NONBLOCK on): wait for room here, on
      // the writer thread; the workers only see their rings fill up.
      pollfd pfd{fd_, POLLOUT, 0};
      ::poll(&pfd, 1, kStallPollMs);
      continue;
    }
    *error = w < 0 ? errno : EIO;
    return false;
  }
  return true;
}

void AccessLog::write_batch() {
  maybe_reopen();
  size_t done = 0;
  int error = 0;
  // A line cut by an earlier failed write is ended first, so no good line is glued onto it.
  if (cut_line_ && write_all("\n", 1, &done, &error)) cut_line_ = false;
  if (!cut_line_ && write_all(batch_.data(), batch_.size(), &done, &error)) {
    written_.fetch_add(batch_lines_, std::memory_order_relaxed);
    failing_ = false;
  } else {
    // The whole batch counts as lost even if a part reached the file, so that
    // dropped + written == appended holds.
    write_failed_.fetch_add(batch_lines_, std::memory_order_relaxed);
    if (!failing_) {
      log_error("access log %s: write failed: %s (lines are counted as dropped)", path_.c_str(),
                std::strerror(error));
    }
    failing_ = true;
    if (done > 0) cut_line_ = true;
  }
  batch_.clear();
  batch_lines_ = 0;
}

void AccessLog::maybe_reopen() {
  if (!reopen_.load(std::memory_order_relaxed) || !reopen_.exchange(false)) return;
  if (!owns_fd_) return;
  int fd = ::open(path_.c_str(), kOpenFlags, 0644);
  if (fd < 0) {
    log_error("access log %s: reopen failed: %s (still writing to the old file)", path_.c_str(),
              std::strerror(errno));
    return;
  }
  ::close(fd_);
  fd_ = fd;
  cut_line_ = false;  // a fresh file: no fragment to end
}

namespace {

// Length of the valid UTF-8 sequence (RFC 3629) starting at p[0] >= 0x80, or 0 if invalid.
size_t utf8_sequence(const unsigned char* p, size_t n) {
  auto cont = [&](size_t i, unsigned lo = 0x80, unsigned hi = 0xbf) {
    return i < n && p[i] >= lo && p[i] <= hi;
  };
  const unsigned c = p[0];
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c == 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;        // no overlong
  if (c == 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0;  // no surrogates
  if (c >= 0xe1 && c <= 0xef) return cont(1) && cont(2) ? 3 : 0;
  if (c == 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;  // no overlong
  if (c >= 0xf1 && c <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c == 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;  // <= U+10FFFF
  return 0;  // 0x80..0xc1 (continuation or overlong lead), 0xf5..0xff
}

}  // namespace

void json_escape(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t run = 0;  // start of the bytes not yet copied (copied in runs, not byte by byte)
  size_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      ++i;
      continue;
    }
    if (c >= 0x80) {
      if (size_t len = utf8_sequence(p + i, n - i)) {
        i += len;
        continue;
      }
    }
    out.append(s.data() + run, i - run);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default: {
        const char esc[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xf]};
        out.append(esc, sizeof(esc));
      }
    }
    ++i;
    run = i;
  }
  out.append(s.data() + run, n - run);
}

}  // namespace parapet
