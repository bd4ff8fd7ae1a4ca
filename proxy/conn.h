// The three lifetimes of the data path (HAProxy's connection/stream, Envoy's connection/stream):
//
//   ClientConn  a downstream socket; lives across keep-alive requests; owns the current Exchange.
//   Exchange    one request and its response; borrows an OriginConn for the time it needs one.
//   OriginConn  an upstream socket; lives in its server's pool between exchanges.
//
// All three belong to one worker and are only touched from its loop thread. ClientConn and
// OriginConn are freed from their uv_close callbacks, never from inside another callback;
// exchanges return to the worker's free list as soon as both directions are complete.
//
// Phases (DESIGN.md's request flow) are functions over an Exchange, one file each:
// phase_route.cc (Host -> tenant, path -> origin group) and phase_upstream.cc (server choice,
// pooled connection, forwarding both ways). Each returns a Flow.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>

#include "proxy/http1.h"
#include "proxy/outbox.h"
#include "proxy/snapshot.h"
#include "proxy/stats.h"
#include "proxy/timer.h"
#include "proxy/tls.h"
#include "proxy/trace.h"

namespace parapet {

class Worker;
struct Exchange;
struct OriginConn;
struct ExchangeCache;
struct ExchangeCacheDeleter {
  void operator()(ExchangeCache* c) const;
};
struct ExchangePolicy;
struct ExchangePolicyDeleter {
  void operator()(ExchangePolicy* p) const;
};
struct ExchangeLua;
struct ExchangeLuaDeleter {
  void operator()(ExchangeLua* l) const;
};

enum class Flow { Continue, Respond };

// Backpressure: a side stops reading while the other side's outbox holds more than this.
constexpr size_t kHighWater = 256 * 1024;

// The uv handles of ClientConn and OriginConn carry their Http1Handler base in `data`, so the
// worker can tell them apart when it walks its loop (shutdown) without keeping a list.
template <class T>
T* conn_of(void* data) {
  return static_cast<T*>(static_cast<Http1Handler*>(data));
}

// Per-worker, per-server state: the idle pool, passive health, and the server's settings as of
// the worker's current snapshot. Owned by the worker, keyed by Snapshot::server_key(), so pools
// and health survive a reload that keeps the server; a server a reload removed is retired (its
// idle connections closed, busy ones closed when their exchange ends).
struct ServerState {
  ServerState() = default;
  ServerState(const ServerState&) = delete;
  ServerState& operator=(const ServerState&) = delete;
  ~ServerState() {
    if (tls_ctx != nullptr) SSL_CTX_free(tls_ctx);
  }
  // `ctx`: the client TLS context of an https:// server, or nullptr.
  void configure(const config::Origin& o, const config::Address& a, SSL_CTX* ctx) {
    if (ctx != tls_ctx) {
      // A new snapshot's context may trust other CAs: sessions verified under the old one
      // must not be resumed under the new one.
      if (tls_ctx != nullptr) SSL_CTX_free(tls_ctx);
      if (ctx != nullptr) SSL_CTX_up_ref(ctx);
      tls_ctx = ctx;
      tls_session.reset();
    }
    tls_name = o.tls.server_name.empty() ? a.host : o.tls.server_name;
    addr = a;
    connect_timeout_ms = o.connect_timeout_ms;
    response_timeout_ms = o.response_timeout_ms;
    idle_timeout_ms = o.idle_timeout_ms;
    max_idle = o.max_idle;
    max_fails = o.max_fails;
    fail_timeout_ms = o.fail_timeout_ms;
  }

  config::Address addr;
  SSL_CTX* tls_ctx = nullptr;  // https:// server: client context (a reference of ours)
  std::string tls_name;        // SNI and the name its certificate must carry
  TlsSessionSlot tls_session;  // resumption of the next connection
  uint32_t connect_timeout_ms = 0, response_timeout_ms = 0, idle_timeout_ms = 0;
  uint32_t max_idle = 0, max_fails = 0, fail_timeout_ms = 0;
  OriginConn* idle = nullptr;  // most recently used first
  uint32_t idle_count = 0;
  uint32_t active = 0;  // connections lent to exchanges (least_conn)
  uint32_t fails = 0;   // consecutive failures
  Counter down_until;   // resting until (loop ms); read by the admin listener
  Counter connect_failures, timeouts, resets, retries;  // retries: attempts moved elsewhere
  bool retired = false;
};

struct ClientConn final : Http1Handler {
  enum class TimerKind : uint8_t { Header, Body, Keepalive, Send, Linger, CacheWait };

  explicit ClientConn(Worker* w);
  ~ClientConn() override;

  // Http1Handler, for the request parser.
  MessageHead* on_message_begin() override;
  int on_head() override;
  void on_body(const char* p, size_t n) override;
  bool on_message_complete() override;

  // After uv_accept. `tls`: the connection came on a TLS listener.
  void start(const std::shared_ptr<const TlsContexts>& tls, std::string_view listener,
             bool reject_no_sni);
  TlsConn* tls() const { return extras ? extras->tls.get() : nullptr; }
  // Plaintext from the socket (or from TLS): tunnel, backlog or parser.
  void on_plain(const char* data, size_t len);
  void on_cipher(char* data, size_t len);
  void on_fast_handshake(char* data, size_t len);  // parapet's own TLS 1.3 handshake
  // After the handshake: records opened by TlsRecords, in place.
  void on_records(char* data, size_t len);
  void consume(const char* data, size_t len);
  // Writes a complete local response (error or otherwise) for the current exchange.
  // `extra`: preformatted header lines ("Location: ...\r\n") for the response.
  void reply(int status, const char* reason, bool close, std::string_view extra = {});
  // The same with the caller's body and content type (an empty type: the standard body).
  // A 204 or 304 goes without body, type or length.
  void reply_with(int status, const char* reason, bool close, std::string_view extra,
                  std::string_view content_type, std::string_view body);
  // Both directions of the current exchange are done: next request, or close.
  void finish_exchange();
  // Frees the current exchange; true if the connection may take another request.
  bool end_exchange();
  void on_parse_error();
  void on_eof();
  void start_shutdown();
  void after_flush();  // closing and nothing left to write: FIN and linger, or close
  void set_nodelay();
  // Counts the exchange in the metrics and writes its access log line.
  void record(Exchange* e, const char* ended_by);
  // Polite close: flush, FIN, then read and discard for a short while (lingering close), so the
  // last response is not destroyed by a reset when the client had sent more.
  void close_gracefully();
  void close_now();
  void arm_timer(TimerKind kind);
  void pause_reading();
  void resume_reading();
  void flush_all();

  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void on_timer(TimerNode* n);
  static void on_out_event(void* owner, Outbox* box, Outbox::Event ev, int status);
  static void on_closed(uv_handle_t* h);
  static void on_shutdown(uv_shutdown_t* req, int status);

  // The worker: the loop's data (one pointer less per idle connection).
  Worker* wk() const { return static_cast<Worker*>(tcp.loop->data); }

  uv_tcp_t tcp;
  Http1Parser parser;
  Outbox out;
  TimerNode timer;
  Exchange* ex = nullptr;
  // What only some connections need (an IPv6 peer address, TLS), allocated for those only.
  struct Extras {
    sockaddr_storage peer6{};
    bool v6 = false;
    std::unique_ptr<TlsConn> tls;
    std::string backlog;  // read while the parser waits (pipelining, upgrade)
  };
  std::unique_ptr<Extras> extras;
  Extras& ext() {
    if (!extras) extras = std::make_unique<Extras>();
    return *extras;
  }
  bool has_backlog() const { return extras && !extras->backlog.empty(); }
  std::string& backlog() { return ext().backlog; }
  uint32_t peer_v4 = 0;  // network order
  TimerKind timer_kind = TimerKind::Header;
  bool closing = false;
  bool closed = false;
  bool shutdown_started = false;
  bool read_stopped = false;
  bool eof = false;
  bool close_after = false;  // close once the current exchange is done
  bool linger = false;       // closing must drain the client's unread input first
  bool nodelay = false;      // TCP_NODELAY set (on the first keep-alive wait)
  bool used = false;         // a request has begun on this connection
};

struct Exchange {
  void reset(ClientConn* c, std::shared_ptr<const Snapshot> s, uint64_t id_num);
  bool done() const { return req_done && resp_done; }
  void format_peer(char* out, size_t n) const;

  ClientConn* client = nullptr;
  std::shared_ptr<const Snapshot> snap;
  MessageHead req;
  MessageHead resp;
  std::string fwd;        // request head as sent upstream (kept for a retry)
  std::string resp_head;  // response head(s) sent to the client
  char id[17] = {};
  uint32_t tenant = 0;
  const OriginGroup* group = nullptr;
  uint32_t server = UINT32_MAX;  // server id of the current attempt
  uint32_t failed_server = UINT32_MAX;
  OriginConn* origin = nullptr;
  // For metrics and the access log.
  uint64_t t_start_ns = 0, t_upstream_ns = 0, t_connected_ns = 0, t_first_byte_ns = 0;
  uint64_t bytes_out = 0;
  uint16_t status = 0;             // sent to the client (0: none)
  const char* reason = nullptr;    // stable reason of a local answer
  const char* upstream = nullptr;  // address text of the last server tried (its ServerState)
  TenantStats* tstats = nullptr;
  RouteStats* rstats = nullptr;
  TraceContext trace{};
  bool has_trace = false;
  bool in_head_phase = false;  // the phases of on_head are running
  uint8_t attempts = 0;
  bool req_done = false;      // request fully read from the client (and staged upstream)
  bool resp_done = false;     // response fully staged to the client
  bool resp_started = false;  // bytes of a final response went to the client
  bool replied = false;       // answered locally (error, or a phase that finished it)
  bool has_body = false;
  bool idempotent = false;
  bool own_id = true;  // `id` was generated here (no valid X-Request-Id came)
  bool is_head = false;
  bool client_chunked = false;  // response re-framed as chunked for the client
  bool tunnel = false;          // after a 101: raw bytes both ways
  bool absolute_form = false;   // request target was http://authority/path
  std::string_view target;      // origin-form target to forward (into req.buf)
  std::string_view host;        // Host (or authority) as received (into req.buf)
  std::string_view request_id;  // the client's valid X-Request-Id, or `id`
  bool client_keep = true;
  // The cache's state for this request (tenants with a cache only; proxy/phase_cache.h).
  std::unique_ptr<ExchangeCache, ExchangeCacheDeleter> cache;
  // What the tenant's rules matched and changed (phase_policy.h): allocated the first time a
  // tenant with rules uses this exchange and kept across requests; valid when policy_active.
  std::unique_ptr<ExchangePolicy, ExchangePolicyDeleter> policy;
  bool policy_active = false;
  // The tenant script's view of this request and its ngx.ctx (tenants with a script only).
  std::unique_ptr<ExchangeLua, ExchangeLuaDeleter> lua;
};

struct OriginConn final : Http1Handler {
  enum class State : uint8_t { Connecting, Busy, Idle, Closing };
  enum class TimerKind : uint8_t { Connect, Response, Idle };

  OriginConn(Worker* w, ServerState* pool);
  ~OriginConn() override;

  MessageHead* on_message_begin() override;
  int on_head() override;
  void on_body(const char* p, size_t n) override;
  bool on_message_complete() override;

  // Starts a connection to the server; false if it failed at once.
  bool connect();
  void close();
  void arm_timer(TimerKind kind);
  // The exchange failed on this connection: tell it, then close.
  // How a failure counts in the server's metrics.
  enum class FailKind : uint8_t { Connect, Timeout, Reset };
  void fail(FailKind kind, const char* reason, int status, bool retryable);

  // Ciphertext from an https:// server: handshake, then plaintext to on_bytes().
  void on_cipher(const char* data, size_t len);
  // Plaintext from the server, or (nread < 0) the libuv error or UV_EOF that ended it.
  static void on_bytes(OriginConn* oc, const char* data, ssize_t nread);

  static void on_connect(uv_connect_t* req, int status);
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void on_timer(TimerNode* n);
  static void on_out_event(void* owner, Outbox* box, Outbox::Event ev, int status);
  static void on_closed(uv_handle_t* h);

  uv_tcp_t tcp;
  uv_connect_t connect_req;
  // TLS to an https:// server (memory BIOs, as on the client side); null for plain HTTP. The
  // connect timeout covers the TCP connect and the handshake.
  std::unique_ptr<TlsConn> tls;
  Worker* w;
  ServerState* pool;
  Http1Parser parser;
  Outbox out;
  TimerNode timer;
  Exchange* ex = nullptr;
  OriginConn* pool_next = nullptr;  // idle list of the server
  OriginConn* pool_prev = nullptr;
  State state = State::Connecting;
  TimerKind timer_kind = TimerKind::Connect;
  bool reused = false;     // served an exchange before this one
  bool got_bytes = false;  // a byte of the current response arrived
  bool interim = false;    // the message being parsed is a 1xx
  bool read_stopped = false;
  bool reusable = true;
  bool bad_head = false;  // the response head was refused (101 without upgrade)
};

// The reason phrase parapet sends for a status it generates.
const char* status_phrase(int status);

// Phases.
Flow phase_route(Exchange* ex);
Flow phase_upstream(Exchange* ex);
// Upstream plumbing used by the client side.
void upstream_failed(Exchange* ex, OriginConn* oc, const char* reason, int status, bool retryable);
void upstream_release(OriginConn* oc);
void upstream_abort(Exchange* ex);
void build_response_head(Exchange* ex, OriginConn* oc);

}  // namespace parapet
