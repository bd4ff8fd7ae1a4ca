// The access log sink: one line per request, written off the hot path.
//
// Each worker owns a single-producer/single-consumer byte ring; append() copies the line into
// it and publishes it with one release store, so a worker never takes a lock and never makes a
// write syscall. One writer thread drains all rings, copies whole lines into a batch buffer and
// writes each batch with write(2). When a ring is full the line is dropped and counted: the log
// loses lines before a worker waits (the operations issue asks for bounded buffering).
//
// Wake-up: the writer sleeps on a futex word with a 50 ms timeout (Linux), so an idle log costs
// 20 wake-ups a second and a line reaches the file within about 50 ms. A worker whose append
// leaves its ring at least half full (or finds it full) while the writer sleeps bumps the word
// and makes one FUTEX_WAKE syscall (never blocks, no mutex; the sleeping_ flag is a token, so
// there is at most one wake per sleep and busy workers do not hammer the futex). The kernel's
// compare-and-sleep means such a wake is never lost. Size buffer_bytes for ~50 ms of a worker's
// lines (e.g. 10k requests/s per worker with 500-byte lines: 256 KiB; 1 MiB leaves room for
// disk hiccups).
//
// Memory: buffer_bytes + 128 bytes per worker, plus the writer's batch buffer (64 KiB, larger
// only while holding one line longer than that).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace parapet {

class AccessLog {
 public:
  // path: a file (opened O_WRONLY|O_APPEND|O_CREAT|O_CLOEXEC, 0644) or "-"/"stdout" (never
  // closed, reopen() is a no-op for it). `workers` producers (>= 1), numbered 0..workers-1.
  // `buffer_bytes`: capacity of each worker's ring (>= 64); a line takes its length + 4 bytes,
  // so the longest line that can ever be logged is buffer_bytes - 4. Starts the writer thread.
  // nullptr + *err on failure (nothing started).
  static std::unique_ptr<AccessLog> open(const std::string& path, unsigned workers,
                                         size_t buffer_bytes, std::string* err);
  // Writes everything buffered, then stops and joins the writer thread. All producers must have
  // stopped appending (workers joined) before: append() after this starts is undefined.
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  // Worker `w` hands over one complete line (without the trailing newline; the sink adds it).
  // Called only from worker w's thread, w < workers (the ring has one producer). Never blocks,
  // never makes a syscall except, rarely, the futex wake described above. false if dropped
  // (ring full, or line longer than buffer_bytes - 4); the line is counted in dropped().
  bool append(unsigned w, std::string_view line);
  // Any thread, async-signal-safe (one atomic store, no notify): the writer reopens the path
  // before its next write, and within 50 ms anyway. Lines still buffered go to the new file.
  // If the reopen fails, the writer keeps the old descriptor and says so on stderr.
  void reopen();
  // Any thread but a producer that must keep appending (it blocks until the writer has passed):
  // returns once every line appended before the call (happens-before) has been handed to the
  // kernel with write(2). No fsync.
  void flush();
  // Lines lost, all workers: append() returning false, plus lines the writer could not write
  // (write errors, counted in write_failed() as well). Relaxed reads, for metrics.
  uint64_t dropped() const;
  // Lines written (accepted by write(2)).
  uint64_t written() const;
  // Lines lost to write errors (EIO, ENOSPC, a stdout that stays unwritable for seconds).
  uint64_t write_failed() const { return write_failed_.load(std::memory_order_relaxed); }

 private:
  // One worker's ring. head/tail are byte positions that only grow (64-bit: never wrap); the
  // slot of position p is p % cap. Records are [uint32 length][bytes], possibly split across
  // the end of the buffer. tail is stored only by the producer (release, after the bytes),
  // head only by the writer (release, after it copied the bytes out).
  // The producer's fields share one cache line, the writer's head another (no false sharing).
  struct alignas(64) Ring {
    std::atomic<uint64_t> tail{0};
    uint64_t head_cache = 0;  // producer's last view of head: reload only when it looks full
    std::atomic<uint64_t> dropped{0};  // stored only by the producer
    size_t cap = 0;                    // immutable after open()
    std::unique_ptr<char[]> buf;
    alignas(64) std::atomic<uint64_t> head{0};
  };

  AccessLog(std::string path, int fd, bool owns_fd, unsigned workers, size_t buffer_bytes);
  void run();
  // Producer side: signal the writer if it sleeps and nobody has yet.
  void wake_writer();
  // Any thread: bump the futex word and wake the writer.
  void signal_writer();
  // Copies whole lines out of every ring into batch_ and writes them; returns lines moved.
  uint64_t drain_all();
  void write_batch();
  // write(2) until n bytes are taken; false + *error on failure. *done: bytes taken.
  bool write_all(const char* p, size_t n, size_t* done, int* error);
  void maybe_reopen();

  const std::string path_;
  int fd_;              // touched only by the writer thread (and open/~AccessLog)
  const bool owns_fd_;  // false for stdout
  std::vector<Ring> rings_;

  // Writer-thread state.
  std::string batch_;
  uint64_t batch_lines_ = 0;
  bool failing_ = false;   // the last write failed: report the next failure only after a success
  bool cut_line_ = false;  // a failed write left part of a line at the end of the file

  std::atomic<bool> reopen_{false};
  std::atomic<uint32_t> wake_seq_{0};  // the futex word the writer sleeps on
  // The writer is (about to be) asleep on wake_seq_ and nobody has woken it yet.
  std::atomic<bool> sleeping_{false};
  std::atomic<uint64_t> written_{0};
  std::atomic<uint64_t> write_failed_{0};

  // mu_ is taken by the writer (never while it sleeps or writes), flush() and the destructor
  // only, never by append().
  std::mutex mu_;
  std::condition_variable done_cv_;  // wakes flush() callers
  uint64_t flush_requested_ = 0;     // generation asked by flush()
  uint64_t flush_done_ = 0;          // generation the writer has completed
  bool stop_ = false;
  std::thread thread_;
};

// Appends `s` to `out` as the inside of a JSON string (quotes not included): escapes ", \,
// control bytes (< 0x20 and 0x7f) as \u00XX (\n \r \t as such), and bytes >= 0x80 that are not
// part of a valid UTF-8 sequence (RFC 3629: no overlong forms, no surrogates, <= U+10FFFF) as
// \u00XX of the byte, so every line stays valid JSON whatever a client sent. Valid UTF-8 is
// copied as is. Any thread; no allocation beyond growing `out`.
void json_escape(std::string& out, std::string_view s);

}  // namespace parapet
