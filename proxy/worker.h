// A worker: one thread, one uv loop, its own SO_REUSEPORT listening sockets, its own client
// connections, upstream pools and timers. Nothing here is shared with other workers except the
// immutable Snapshot and the relaxed counters read by the admin listener.
#pragma once

#include <uv.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "proxy/conn.h"
#include "proxy/snapshot.h"
#include "proxy/timer.h"

namespace parapet {

// Counters written by one worker, summed by the admin listener (proxy/stats.h).
struct WorkerStats {
  Counter requests;
  Counter responses[6];   // index status/100 (0: none)
  Counter client_conns;   // open now
  Counter client_active;  // open with an exchange in progress
  Counter client_accepted;
  Counter upstream_connects;
  Counter upstream_reused;
  Counter upstream_failures;
  Counter upstream_retries;
  Counter upstream_idle;                // pooled idle connections now
  Counter refused;                      // malformed requests answered 4xx by the codec
  Counter tls_handshakes, tls_resumed;  // client handshakes completed (resumed: by a ticket)
  Counter tls_own;  // of them, done by parapet's own TLS 1.3 handshake (proxy/tls13_server.h)
  // Client handshakes that did not complete: refused or malformed (error), still unfinished
  // when client_header ran out (timeout), or abandoned by the client (closed).
  Counter tls_failures, tls_timeouts, tls_abandoned;
  Counter upstream_tls_handshakes, upstream_tls_resumed;  // TLS to https:// origins
};

class AccessLog;
class TailHub;
struct ExchangeCache;
namespace cache {
class Store;
}

// A listening socket handed to a worker: `key` is "name@address", stable across reloads.
struct ListenerFd {
  std::string key;
  int fd;
  bool tls = false;
  bool reject_no_sni = false;
  std::string name;  // the listener's name (its TLS settings are kept under it)
};

class Worker {
 public:
  Worker(unsigned index, std::shared_ptr<const Snapshot> snap, std::vector<ListenerFd> listeners);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void start();
  // From any thread: stop accepting, finish in-flight exchanges (up to the shutdown timeout),
  // then end the loop.
  void request_stop();
  // From the main thread: adopt `snap` for every request that starts from now on, open the
  // `add` listeners and close those keyed in `remove`. Applied on the worker's loop; in-flight
  // exchanges keep the snapshot they started with; pools of servers still present are kept.
  void reload(std::shared_ptr<const Snapshot> snap, std::vector<ListenerFd> add,
              std::vector<std::string> remove);
  // The access log sink (owned by the Server; null when off) and this worker's producer index.
  void set_access_log(AccessLog* log) { access_log_ = log; }
  AccessLog* access_log() const { return access_log_; }
  // The process-wide HTTP cache (owned by the Server; null when no tenant caches).
  void set_cache(cache::Store* s) { cache_ = s; }
  cache::Store* cache() const { return cache_; }
  // From any thread: an exchange waiting on a cache entry has news; it is resumed on this
  // worker's loop (cache_resume). forget() (worker thread) drops a queued one being freed.
  void cache_wake(ExchangeCache* c);
  void cache_forget(ExchangeCache* c);
  // The live tail hub (main thread's; workers only publish to it).
  void set_tail(TailHub* t) { tail_ = t; }
  TailHub* tail() const { return tail_; }
  // Per-tenant and per-route stats of snap_'s tenant `t` and route `r` (index in the tenant).
  TenantStats* tenant_stats(uint32_t t) { return tenant_map_[t]; }
  RouteStats* route_stats(uint32_t t, size_t r) { return route_map_[t][r]; }
  // Admin thread: calls fn(tenant, stats), then route(tenant, path, stats), then
  // server(key, state) under the stats mutex.
  template <class T, class R, class S>
  void visit_stats(T&& tenant, R&& route, S&& server) {
    std::lock_guard<std::mutex> lock(stats_mu_);
    for (auto& kv : tenant_stats_) tenant(kv.first, *kv.second);
    for (auto& kv : route_stats_) route(kv.first, *kv.second);
    for (auto& kv : pools_) server(kv.first, *kv.second);
  }
  uint64_t* rng() { return &rng_; }  // per-worker random state (trace ids); no lock
  // Generation of the snapshot this worker serves (1 = the first).
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  void join();

  unsigned index() const { return index_; }
  uv_loop_t* loop() { return &loop_; }
  Timers& timers() { return *timers_; }
  const std::shared_ptr<const Snapshot>& snapshot() const { return snap_; }
  const config::Config& cfg() const { return snap_->cfg(); }
  WorkerStats& stats() { return stats_; }
  bool draining() const { return draining_; }
  bool finished() const { return finished_.load(std::memory_order_acquire); }

  // One read buffer for every socket of the worker: data is consumed inside the read callback.
  static void alloc_cb(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  // The same buffer, for plaintext decrypted from it (TLS: the ciphertext is in a BIO by then).
  static void read_buffer(char** p, size_t* n);

  Exchange* new_exchange(ClientConn* c);
  void free_exchange(Exchange* ex);
  ServerState& server(uint32_t id) { return *server_map_[id]; }
  uint32_t next_rr(const OriginGroup& g);
  void add_client(ClientConn* c);
  void remove_client(ClientConn* c);
  void maybe_finish_stop();
  // The client connections open on this worker's loop (walks the loop's handles).
  std::vector<ClientConn*> client_conns();

 private:
  struct Pending {
    std::shared_ptr<const Snapshot> snap;
    std::vector<ListenerFd> add;
    std::vector<std::string> remove;
  };
  void run();
  void open_listener(const ListenerFd& l);
  void map_servers();  // pools and health of snap_'s servers, by key
  static void on_reload(uv_async_t* a);
  static void on_connection(uv_stream_t* server, int status);
  static void on_stop(uv_async_t* a);
  static void on_drain_timeout(uv_timer_t* t);
  static void on_cache_async(uv_async_t* a);

  unsigned index_;
  std::shared_ptr<const Snapshot> snap_;
  std::vector<ListenerFd> initial_listeners_;
  uv_loop_t loop_;
  std::unique_ptr<Timers> timers_;
  struct Listening {
    std::string key;
    uv_tcp_t* handle;
    bool tls, reject_no_sni;
    std::string name;
  };
  std::vector<Listening> listeners_;
  uv_async_t stop_async_;
  uv_async_t reload_async_;
  uv_async_t cache_async_;
  std::mutex cache_mu_;
  std::vector<ExchangeCache*> cache_inbox_;  // guarded by cache_mu_
  cache::Store* cache_ = nullptr;
  std::mutex reload_mu_;
  std::vector<Pending> pending_;  // guarded by reload_mu_
  std::atomic<uint64_t> generation_{1};
  uv_timer_t drain_timer_;
  std::thread thread_;
  std::vector<char> read_buf_;
  std::vector<Exchange*> free_exchanges_;
  std::unordered_map<std::string, std::unique_ptr<ServerState>> pools_;  // by server key
  std::vector<std::unique_ptr<ServerState>> retired_;  // removed by a reload, connections left
  std::vector<ServerState*> server_map_;               // snap_'s server id -> state
  std::vector<uint32_t> rr_;
  std::mutex stats_mu_;  // guards the structure of the maps below and pools_ (not counters)
  std::unordered_map<std::string, std::unique_ptr<TenantStats>> tenant_stats_;
  std::unordered_map<std::string, std::unique_ptr<RouteStats>> route_stats_;  // "tenant path"
  std::vector<TenantStats*> tenant_map_;
  std::vector<std::vector<RouteStats*>> route_map_;
  AccessLog* access_log_ = nullptr;
  TailHub* tail_ = nullptr;
  uint64_t rng_;
  size_t client_count_ = 0;
  uint64_t id_seed_;
  uint64_t id_counter_ = 0;
  bool draining_ = false;
  bool stopped_ = false;
  std::atomic<bool> finished_{false};
  WorkerStats stats_;
};

}  // namespace parapet
