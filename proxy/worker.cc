#include "proxy/worker.h"

#include <unistd.h>

#include <cstdio>
#include <random>

#include "proxy/log.h"
#include "proxy/phase_cache.h"

namespace parapet {

namespace {
constexpr size_t kReadBufSize = 64 * 1024;
thread_local char* t_read_buf = nullptr;
}  // namespace

Worker::Worker(unsigned index, std::shared_ptr<const Snapshot> snap,
               std::vector<ListenerFd> listeners)
    : index_(index), snap_(std::move(snap)), initial_listeners_(std::move(listeners)) {
  uv_loop_init(&loop_);
  loop_.data = this;
  timers_ = std::make_unique<Timers>(&loop_);
  uv_async_init(&loop_, &stop_async_, on_stop);
  stop_async_.data = this;
  uv_async_init(&loop_, &reload_async_, on_reload);
  reload_async_.data = this;
  uv_async_init(&loop_, &cache_async_, on_cache_async);
  cache_async_.data = this;
  uv_timer_init(&loop_, &drain_timer_);
  drain_timer_.data = this;
  read_buf_.resize(kReadBufSize);
  map_servers();
  std::random_device rd;
  id_seed_ = (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ (static_cast<uint64_t>(index) << 56);
  rng_ = ((static_cast<uint64_t>(rd()) << 32) ^ rd()) | 1;
}

Worker::~Worker() {
  for (Exchange* e : free_exchanges_) delete e;
  for (auto& l : listeners_) delete l.handle;
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

void Worker::read_buffer(char** p, size_t* n) {
  *p = t_read_buf;
  *n = kReadBufSize;
}

void Worker::run() {
  t_read_buf = read_buf_.data();
  for (const ListenerFd& l : initial_listeners_) open_listener(l);
  initial_listeners_.clear();
  uv_run(&loop_, UV_RUN_DEFAULT);
  // Loop ended: close what is left (connections, idle pools, timers) and let the close
  // callbacks run, so every object is freed by its owner.
  for (ClientConn* c : client_conns()) c->close_now();
  for (auto& kv : pools_) {
    while (kv.second->idle != nullptr) kv.second->idle->close();
  }
  for (auto& st : retired_) {
    while (st->idle != nullptr) st->idle->close();
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

void Worker::open_listener(const ListenerFd& l) {
  auto* h = new uv_tcp_t;
  uv_tcp_init(&loop_, h);
  h->data = this;
  int r = uv_tcp_open(h, l.fd);
  if (r == 0) r = uv_listen(reinterpret_cast<uv_stream_t*>(h), 4096, on_connection);
  if (r != 0) log_error("worker %u: listen %s failed: %s", index_, l.key.c_str(), uv_strerror(r));
  listeners_.push_back(Listening{l.key, h, l.tls, l.reject_no_sni, l.name});
}

void Worker::map_servers() {
  std::lock_guard<std::mutex> lock(stats_mu_);
  // Tenant and route stats by name, so counters continue across reloads.
  tenant_map_.assign(snap_->cfg().tenants.size(), nullptr);
  route_map_.assign(snap_->cfg().tenants.size(), {});
  for (size_t t = 0; t < snap_->cfg().tenants.size(); ++t) {
    const config::Tenant& tenant = snap_->cfg().tenants[t];
    auto& ts = tenant_stats_[tenant.name];
    if (!ts) ts = std::make_unique<TenantStats>();
    tenant_map_[t] = ts.get();
    for (const config::Route& r : tenant.routes) {
      auto& rs = route_stats_[tenant.name + " " + r.path];
      if (!rs) rs = std::make_unique<RouteStats>();
      route_map_[t].push_back(rs.get());
    }
  }
  std::unordered_map<std::string, std::unique_ptr<ServerState>> next;
  server_map_.assign(snap_->server_count(), nullptr);
  for (uint32_t id = 0; id < snap_->server_count(); ++id) {
    const std::string& key = snap_->server_key(id);
    std::unique_ptr<ServerState>& slot = next[key];
    if (!slot) {
      auto it = pools_.find(key);
      if (it != pools_.end()) {
        slot = std::move(it->second);
        pools_.erase(it);
      } else {
        slot = std::make_unique<ServerState>();
      }
    }
    slot->configure(snap_->server_origin(id), snap_->server(id), snap_->server_tls(id));
    slot->retired = false;
    server_map_[id] = slot.get();
  }
  // Servers the new snapshot dropped: idle connections go now, busy ones when their exchange
  // ends (upstream_release closes them); the state is freed once nothing points to it.
  for (auto& kv : pools_) {
    kv.second->retired = true;
    while (kv.second->idle != nullptr) kv.second->idle->close();
    retired_.push_back(std::move(kv.second));
  }
  pools_ = std::move(next);
  std::erase_if(retired_, [](const std::unique_ptr<ServerState>& st) {
    return st->active == 0 && st->idle_count == 0;
  });
  rr_.assign(snap_->group_count(), 0);
}

void Worker::reload(std::shared_ptr<const Snapshot> snap, std::vector<ListenerFd> add,
                    std::vector<std::string> remove) {
  {
    std::lock_guard<std::mutex> lock(reload_mu_);
    pending_.push_back(Pending{std::move(snap), std::move(add), std::move(remove)});
  }
  uv_async_send(&reload_async_);
}

void Worker::on_reload(uv_async_t* a) {
  Worker* w = static_cast<Worker*>(a->data);
  std::vector<Pending> todo;
  {
    std::lock_guard<std::mutex> lock(w->reload_mu_);
    todo.swap(w->pending_);
  }
  for (Pending& p : todo) {
    for (const std::string& key : p.remove) {
      for (auto it = w->listeners_.begin(); it != w->listeners_.end(); ++it) {
        if (it->key != key) continue;
        uv_close(reinterpret_cast<uv_handle_t*>(it->handle),
                 [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
        w->listeners_.erase(it);
        break;
      }
    }
    if (w->draining_) {
      for (const ListenerFd& l : p.add) close(l.fd);
      continue;
    }
    for (const ListenerFd& l : p.add) w->open_listener(l);
    w->snap_ = std::move(p.snap);
    w->map_servers();
    w->generation_.fetch_add(1, std::memory_order_acq_rel);
  }
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
  const Listening* from = nullptr;
  for (const Listening& l : w->listeners_) {
    if (reinterpret_cast<uv_stream_t*>(l.handle) == server) from = &l;
  }
  if (from != nullptr && from->tls)
    c->start(w->snap_->tls(), from->name, from->reject_no_sni);
  else
    c->start(nullptr, {}, false);
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
  stats_.client_conns.add();
  stats_.client_accepted.add();
}

void Worker::remove_client(ClientConn*) {
  --client_count_;
  stats_.client_conns.sub();
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
  ex->t_start_ns = uv_hrtime();
  stats_.client_active.add();
  stats_.requests.add();
  return ex;
}

void Worker::free_exchange(Exchange* ex) {
  stats_.client_active.sub();
  ex->cache.reset();  // unsubscribes, drops a fill in progress (aborted), leaves the inbox
  ex->lua.reset();    // ngx.ctx released on this thread, as the Lua state wants
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
  for (auto& l : w->listeners_) {
    auto* h = reinterpret_cast<uv_handle_t*>(l.handle);
    if (!uv_is_closing(h)) uv_close(h, nullptr);
  }
  // Idle keep-alive connections go now; busy ones close after their exchange.
  // A connection accepted but not yet read from has a request on its way: it gets its answer
  // (with Connection: close). Keep-alive connections waiting between requests close now.
  for (ClientConn* c : w->client_conns()) {
    if (c->ex == nullptr && c->used && !c->closing) {
      // Idle, or still writing its last response: close once that is written.
      if (c->out.queued() > 0)
        c->close_gracefully();
      else
        c->close_now();
      continue;
    }
    c->close_after = true;
    if (c->ex == nullptr && !c->closing) c->arm_timer(ClientConn::TimerKind::Linger);  // 2 s grace
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

void Worker::cache_wake(ExchangeCache* c) {
  {
    std::lock_guard<std::mutex> lock(cache_mu_);
    cache_inbox_.push_back(c);
  }
  uv_async_send(&cache_async_);
}

void Worker::cache_forget(ExchangeCache* c) {
  std::lock_guard<std::mutex> lock(cache_mu_);
  std::erase(cache_inbox_, c);
}

void Worker::on_cache_async(uv_async_t* a) {
  Worker* w = static_cast<Worker*>(a->data);
  std::vector<ExchangeCache*> batch;
  {
    std::lock_guard<std::mutex> lock(w->cache_mu_);
    batch.swap(w->cache_inbox_);
  }
  // Resuming one exchange may free another of the batch (never: each exchange belongs to its
  // own connection), but it may free itself: take each out of the batch before resuming.
  for (size_t i = 0; i < batch.size(); ++i) {
    ExchangeCache* c = batch[i];
    c->queued.store(false, std::memory_order_release);
    cache_resume(c->ex);
  }
}

void Worker::maybe_finish_stop() {
  if (!draining_ || stopped_ || client_count_ != 0) return;
  stopped_ = true;
  uv_stop(&loop_);
}

}  // namespace parapet
