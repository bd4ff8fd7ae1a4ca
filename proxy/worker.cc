#include "proxy/worker.h"

#include <unistd.h>

#include <cstdio>
#include <random>

#include "proxy/log.h"

namespace parapet {

namespace {
constexpr size_t kReadBufSize = 64 * 1024;
thread_local char* t_read_buf = nullptr;
}  // namespace

Worker::Worker(unsigned index, std::shared_ptr<const Snapshot> snap, std::vector<int> listen_fds)
    : index_(index), snap_(std::move(snap)), listen_fds_(std::move(listen_fds)) {
  uv_loop_init(&loop_);
  loop_.data = this;
  timers_ = std::make_unique<Timers>(&loop_);
  uv_async_init(&loop_, &stop_async_, on_stop);
  stop_async_.data = this;
  uv_timer_init(&loop_, &drain_timer_);
  drain_timer_.data = this;
  read_buf_.resize(kReadBufSize);
  servers_.resize(snap_->server_count());
  rr_.resize(snap_->group_count());
  std::random_device rd;
  id_seed_ = (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ (static_cast<uint64_t>(index) << 56);
}

Worker::~Worker() {
  for (Exchange* e : free_exchanges_) delete e;
  for (uv_tcp_t* l : listeners_) delete l;
  uv_loop_close(&loop_);
}

void Worker::start() {
  thread_ = std::thread([this] { run(); });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::request_stop() { uv_async_send(&stop_async_); }

void Worker::alloc_cb(uv_handle_t*, size_t, uv_buf_t* buf) {
  *buf = uv_buf_init(t_read_buf, static_cast<unsigned>(kReadBufSize));
}

void Worker::run() {
  t_read_buf = read_buf_.data();
  for (int fd : listen_fds_) {
    auto* l = new uv_tcp_t;
    uv_tcp_init(&loop_, l);
    l->data = this;
    int r = uv_tcp_open(l, fd);
    if (r == 0) r = uv_listen(reinterpret_cast<uv_stream_t*>(l), 4096, on_connection);
    if (r != 0) log_error("worker %u: listen failed: %s", index_, uv_strerror(r));
    listeners_.push_back(l);
  }
  uv_run(&loop_, UV_RUN_DEFAULT);
  // Loop ended: close what is left (connections, idle pools, timers) and let the close
  // callbacks run, so every object is freed by its owner.
  for (ClientConn* c : client_conns()) c->close_now();
  for (ServerState& s : servers_) {
    while (s.idle != nullptr) s.idle->close();
  }
  timers_->close();
  uv_walk(
      &loop_,
      [](uv_handle_t* h, void*) {
        if (!uv_is_closing(h)) uv_close(h, nullptr);
      },
      nullptr);
  uv_run(&loop_, UV_RUN_DEFAULT);
  finished_.store(true, std::memory_order_release);
}

void Worker::on_connection(uv_stream_t* server, int status) {
  Worker* w = static_cast<Worker*>(server->data);
  if (status < 0 || w->draining_) return;
  auto* c = new ClientConn(w);
  uv_tcp_init(&w->loop_, &c->tcp);
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) {
    c->closed = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp),
             [](uv_handle_t* h) { delete conn_of<ClientConn>(h->data); });
    return;
  }
  w->add_client(c);
  c->start();
}

std::vector<ClientConn*> Worker::client_conns() {
  std::vector<ClientConn*> out;
  struct Ctx {
    Worker* w;
    std::vector<ClientConn*>* out;
  } ctx{this, &out};
  uv_walk(
      &loop_,
      [](uv_handle_t* h, void* arg) {
        auto* x = static_cast<Ctx*>(arg);
        if (h->type != UV_TCP || uv_is_closing(h) || h->data == x->w) return;  // listeners
        if (auto* c = dynamic_cast<ClientConn*>(static_cast<Http1Handler*>(h->data))) {
          if (!c->closed) x->out->push_back(c);
        }
      },
      &ctx);
  return out;
}

void Worker::add_client(ClientConn*) {
  ++client_count_;
  stats_.inc(stats_.client_conns);
  stats_.inc(stats_.client_accepted);
}

void Worker::remove_client(ClientConn*) {
  --client_count_;
  stats_.dec(stats_.client_conns);
  if (draining_) maybe_finish_stop();
}

Exchange* Worker::new_exchange(ClientConn* c) {
  Exchange* ex;
  if (!free_exchanges_.empty()) {
    ex = free_exchanges_.back();
    free_exchanges_.pop_back();
  } else {
    ex = new Exchange();
  }
  ex->reset(c, snap_, id_seed_ + ++id_counter_);
  ex->started_ms = uv_now(&loop_);
  stats_.inc(stats_.requests);
  return ex;
}

void Worker::free_exchange(Exchange* ex) {
  ex->snap.reset();
  ex->client = nullptr;
  ex->origin = nullptr;
  if (free_exchanges_.size() < 1024 && ex->req.buf.capacity() <= 64 * 1024 &&
      ex->resp.buf.capacity() <= 64 * 1024) {
    free_exchanges_.push_back(ex);
  } else {
    delete ex;
  }
}

uint32_t Worker::next_rr(const OriginGroup& g) { return rr_[g.index]++; }

void Worker::on_stop(uv_async_t* a) {
  Worker* w = static_cast<Worker*>(a->data);
  if (w->draining_) {
    // Second request: stop now.
    w->stopped_ = true;
    uv_stop(&w->loop_);
    return;
  }
  w->draining_ = true;
  for (uv_tcp_t* l : w->listeners_) {
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(l)))
      uv_close(reinterpret_cast<uv_handle_t*>(l), nullptr);
  }
  // Idle keep-alive connections go now; busy ones close after their exchange.
  for (ClientConn* c : w->client_conns()) {
    if (c->ex == nullptr && !c->closing)
      c->close_now();
    else
      c->close_after = true;
  }
  uv_timer_start(&w->drain_timer_, on_drain_timeout, w->cfg().timeouts.shutdown_ms, 0);
  w->maybe_finish_stop();
}

void Worker::on_drain_timeout(uv_timer_t* t) {
  Worker* w = static_cast<Worker*>(t->data);
  log_error("worker %u: shutdown timeout, closing the remaining connections", w->index_);
  w->stopped_ = true;
  uv_stop(&w->loop_);
}

void Worker::maybe_finish_stop() {
  if (!draining_ || stopped_ || client_count_ != 0) return;
  stopped_ = true;
  uv_stop(&loop_);
}

}  // namespace parapet
