#include "proxy/outbox.h"

#include <sys/uio.h>

#include <algorithm>
#include <cassert>
#include <cstring>
#include <memory>

#include "proxy/tls_records.h"

namespace parapet {
namespace {

// Write states are recycled per thread: each worker is one thread, so no locking.
struct FreeList {
  std::vector<void*> items;
  ~FreeList();
};
thread_local FreeList t_free;
constexpr size_t kMaxFree = 4096;
constexpr size_t kMaxKeptCapacity = 64 * 1024;

}  // namespace

Outbox::~Outbox() {
  // The owning handle is closed: a write in flight was cancelled before we get here.
  delete st_;
}

Outbox::State* Outbox::state() {
  if (st_ == nullptr) {
    if (!t_free.items.empty()) {
      st_ = static_cast<State*>(t_free.items.back());
      t_free.items.pop_back();
    } else {
      st_ = new State();
    }
    st_->box = this;
    st_->req.data = st_;
  }
  return st_;
}

FreeList::~FreeList() {
  for (void* p : items) delete static_cast<Outbox::State*>(p);
}

void Outbox::maybe_release() {
  State* s = st_;
  if (s == nullptr || s->writing || !s->queued.empty() || !s->staged.empty() || !s->held.empty())
    return;
  s->scratch.clear();
  s->inflight.clear();
  if (s->inflight.capacity() > kMaxKeptCapacity) std::string().swap(s->inflight);
  if (s->queued.capacity() > kMaxKeptCapacity) std::string().swap(s->queued);
  if (s->scratch.capacity() > kMaxKeptCapacity) std::string().swap(s->scratch);
  if (s->held.capacity() > kMaxKeptCapacity) std::string().swap(s->held);
  s->box = nullptr;
  st_ = nullptr;
  if (t_free.items.size() < kMaxFree) {
    t_free.items.push_back(s);
  } else {
    delete s;
  }
}

void Outbox::attach(uv_stream_t* stream) {
  stream_ = stream;
  if (st_ != nullptr && !st_->writing && !st_->queued.empty()) start_write();
}

void Outbox::stage_ref(const char* p, size_t n) {
  if (n == 0) return;
  state()->staged.push_back(Piece{p, 0, n});
}

void Outbox::stage_copy(const char* p, size_t n) {
  if (n == 0) return;
  State* s = state();
  // Merge with the previous scratch piece when adjacent.
  if (!s->staged.empty() && s->staged.back().p == nullptr &&
      s->staged.back().off + s->staged.back().len == s->scratch.size()) {
    s->staged.back().len += n;
  } else {
    s->staged.push_back(Piece{nullptr, s->scratch.size(), n});
  }
  s->scratch.append(p, n);
}

size_t Outbox::queued() const {
  return st_ == nullptr ? 0 : st_->queued.size() + st_->inflight.size() + st_->held.size();
}

bool Outbox::writing() const { return st_ != nullptr && st_->writing; }

void Outbox::flush() {
  if (rec_ != nullptr) {
    flush_records();
    return;
  }
  if (ssl_ != nullptr) {
    flush_tls();
    return;
  }
  flush_plain();
}

void Outbox::flush_tls() {
  // Encrypt what is staged (one record per piece, at most 16 KiB each), then hand the
  // ciphertext to the plaintext path as one piece borrowed from the BIO until it returns.
  if (st_ != nullptr && hold_) {
    // Handshake in progress: staged pieces borrow bytes only until this flush, keep a copy.
    for (const Piece& pc : st_->staged) {
      st_->held.append(pc.p ? pc.p : st_->scratch.data() + pc.off, pc.len);
    }
    st_->staged.clear();
    st_->scratch.clear();
  } else if (st_ != nullptr && !st_->held.empty()) {
    SSL_write(ssl_, st_->held.data(), static_cast<int>(st_->held.size()));
    st_->held.clear();
  }
  if (st_ != nullptr && !st_->staged.empty()) {
    // Small pieces (a head, a body, chunk framing) go out as one record: one AEAD seal and
    // one record header instead of one per piece.
    size_t total = 0;
    for (const Piece& pc : st_->staged) total += pc.len;
    if (st_->staged.size() > 1 && total <= 16 * 1024) {
      thread_local std::string record;
      record.clear();
      for (const Piece& pc : st_->staged) {
        record.append(pc.p ? pc.p : st_->scratch.data() + pc.off, pc.len);
      }
      SSL_write(ssl_, record.data(), static_cast<int>(record.size()));
    } else {
      for (const Piece& pc : st_->staged) {
        const char* p = pc.p ? pc.p : st_->scratch.data() + pc.off;
        SSL_write(ssl_, p, static_cast<int>(pc.len));  // a memory BIO takes everything
      }
    }
    st_->staged.clear();
    st_->scratch.clear();
  }
  BIO* wbio = SSL_get_wbio(ssl_);
  char* data = nullptr;
  long n = BIO_get_mem_data(wbio, &data);
  if (n > 0) {
    state()->staged.push_back(Piece{data, 0, static_cast<size_t>(n)});
    flush_plain();  // copies whatever the kernel does not take
    (void)BIO_reset(wbio);
  } else {
    flush_plain();
  }
}

void Outbox::flush_records() {
  // Seal every staged piece straight into one buffer (the plaintext is read once, the
  // ciphertext written once), then write that buffer like plaintext: one writev, and only
  // what the kernel does not take is copied.
  if (st_ == nullptr && !rec_->has_pending()) return;
  State* s = state();
  if (s->staged.empty() && !rec_->has_pending()) {
    flush_plain();
    return;
  }
  thread_local std::vector<iovec> iov;
  thread_local std::unique_ptr<char[]> sealed;
  thread_local size_t sealed_cap = 0;
  iov.clear();
  size_t total = 0;
  for (const Piece& pc : s->staged) {
    iov.push_back(iovec{const_cast<char*>(pc.p ? pc.p : s->scratch.data() + pc.off), pc.len});
    total += pc.len;
  }
  const size_t need = rec_->sealed_size(total);
  if (need > sealed_cap) {
    sealed_cap = std::max(need, size_t{64 * 1024});
    sealed = std::make_unique<char[]>(sealed_cap);
  }
  const size_t n = rec_->seal(iov.data(), iov.size(), sealed.get());
  s->staged.clear();
  s->scratch.clear();
  s->staged.push_back(Piece{sealed.get(), 0, n});
  flush_plain();
}

void Outbox::close_notify() {
  if (rec_ != nullptr) {
    flush();
    State* s = state();
    char alert[TlsRecords::kAlertSize];
    const size_t n = rec_->seal_close_notify(alert);
    s->staged.push_back(Piece{nullptr, s->scratch.size(), n});
    s->scratch.append(alert, n);
    flush_plain();  // already sealed
  } else if (ssl_ != nullptr) {
    SSL_shutdown(ssl_);
    flush();
  }
}

void Outbox::flush_plain() {
  State* s = st_;
  if (s == nullptr) return;
  if (s->staged.empty()) {
    // Bytes handed over by take_queued() may be waiting for a write to start.
    if (stream_ != nullptr && !s->writing && !s->queued.empty())
      start_write();
    else
      maybe_release();
    return;
  }
  if (stream_ == nullptr || s->writing || !s->queued.empty()) {
    for (const Piece& pc : s->staged) {
      s->queued.append(pc.p ? pc.p : s->scratch.data() + pc.off, pc.len);
    }
    s->staged.clear();
    s->scratch.clear();
    if (stream_ != nullptr && !s->writing) start_write();  // queued by take_queued()
    return;
  }
  constexpr size_t kMaxIov = 64;
  uv_buf_t bufs[kMaxIov];
  size_t n = 0, total = 0, written = 0;
  if (s->staged.size() <= kMaxIov) {
    for (const Piece& pc : s->staged) {
      const char* p = pc.p ? pc.p : s->scratch.data() + pc.off;
      bufs[n++] = uv_buf_init(const_cast<char*>(p), static_cast<unsigned>(pc.len));
      total += pc.len;
    }
    int r = uv_try_write(stream_, bufs, static_cast<unsigned>(n));
    if (r > 0) written = static_cast<size_t>(r);
    // On EAGAIN or a hard error the bytes are queued: uv_write reports the error, later.
  }
  if (written < total || s->staged.size() > kMaxIov) {
    size_t skip = written;
    for (const Piece& pc : s->staged) {
      const char* p = pc.p ? pc.p : s->scratch.data() + pc.off;
      if (skip >= pc.len) {
        skip -= pc.len;
        continue;
      }
      s->queued.append(p + skip, pc.len - skip);
      skip = 0;
    }
  }
  s->staged.clear();
  s->scratch.clear();
  if (!s->queued.empty()) {
    start_write();
  } else {
    maybe_release();
  }
}

void Outbox::start_write() {
  State* s = st_;
  assert(!s->writing && s->inflight.empty());
  s->inflight.swap(s->queued);
  s->writing = true;
  uv_buf_t b = uv_buf_init(s->inflight.data(), static_cast<unsigned>(s->inflight.size()));
  int r = uv_write(&s->req, stream_, &b, 1, on_write);
  if (r != 0) {
    // The stream is closing or broken; report like a failed write, asynchronously enough:
    // the owner is told through its event function at the next opportunity.
    // The stream is already closing: its owner is tearing down, the bytes have nowhere to go.
    s->writing = false;
    s->inflight.clear();
  }
}

void Outbox::on_write(uv_write_t* req, int status) {
  State* s = static_cast<State*>(req->data);
  Outbox* box = s->box;
  s->writing = false;
  s->inflight.clear();
  if (status < 0) {
    s->queued.clear();
    box->fn_(box->owner_, box, Event::Error, status);
    return;
  }
  if (!s->queued.empty()) {
    box->start_write();
    return;
  }
  box->maybe_release();
  box->fn_(box->owner_, box, Event::Drained, 0);
}

void Outbox::take_queued(Outbox* other) {
  if (other->st_ == nullptr) return;
  other->flush();
  State* o = other->st_;
  if (o == nullptr) return;
  std::string* plain = &o->queued;
  if (other->ssl_ != nullptr) {
    if (!other->hold_) return;  // its queue is ciphertext for its own session
    plain = &o->held;
  } else if (o->writing) {
    return;
  }
  if (!plain->empty()) {
    State* s = state();
    if (ssl_ == nullptr) {
      s->queued.append(*plain);
    } else if (hold_) {
      s->held.append(*plain);
    } else {
      stage_copy(*plain);
    }
    plain->clear();
  }
  other->maybe_release();
}

}  // namespace parapet
