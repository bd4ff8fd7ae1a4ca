// Phase "upstream": choose a server of the route's origin group, borrow a pooled keep-alive
// connection (or open one), forward the request head and body, relay the response back, and
// give the connection back to its pool. Failures before any response byte retry once on
// another server where that is safe; the rest become 502/503/504 for the client.
#include <openssl/err.h>
#include <openssl/x509.h>

#include <algorithm>
#include <charconv>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "proxy/conn.h"
#include "proxy/log.h"
#include "proxy/phase_cache.h"
#include "proxy/phase_lua.h"
#include "proxy/phase_policy.h"
#include "proxy/worker.h"

namespace parapet {

namespace {

constexpr uint32_t kNone = UINT32_MAX;

enum class Hdr {
  Other,
  Connection,
  KeepAlive,
  ProxyConnection,
  ProxyOther,
  TE,
  Trailer,
  Upgrade,
  TransferEncoding,
  ContentLength,
  Host,
  Via,
  XForwardedFor,
  XForwardedProto,
  XForwardedHost,
  XRequestId,
  TraceParent,
};

bool ieq(std::string_view a, const char* lower, size_t n) {
  if (a.size() != n) return false;
  for (size_t i = 0; i < n; ++i) {
    char c = a[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
    if (c != lower[i]) return false;
  }
  return true;
}
#define IEQ(a, lit) ieq(a, lit, sizeof(lit) - 1)

Hdr classify(std::string_view n) {
  switch (n.size()) {
    case 2:
      return IEQ(n, "te") ? Hdr::TE : Hdr::Other;
    case 3:
      return IEQ(n, "via") ? Hdr::Via : Hdr::Other;
    case 4:
      return IEQ(n, "host") ? Hdr::Host : Hdr::Other;
    case 7:
      if (IEQ(n, "trailer")) return Hdr::Trailer;
      if (IEQ(n, "upgrade")) return Hdr::Upgrade;
      return Hdr::Other;
    case 11:
      if (IEQ(n, "traceparent")) return Hdr::TraceParent;
      break;
    case 10:
      if (IEQ(n, "connection")) return Hdr::Connection;
      if (IEQ(n, "keep-alive")) return Hdr::KeepAlive;
      break;
    case 12:
      if (IEQ(n, "x-request-id")) return Hdr::XRequestId;
      break;
    case 14:
      if (IEQ(n, "content-length")) return Hdr::ContentLength;
      break;
    case 15:
      if (IEQ(n, "x-forwarded-for")) return Hdr::XForwardedFor;
      break;
    case 16:
      if (IEQ(n, "proxy-connection")) return Hdr::ProxyConnection;
      if (IEQ(n, "x-forwarded-host")) return Hdr::XForwardedHost;
      break;
    case 17:
      if (IEQ(n, "transfer-encoding")) return Hdr::TransferEncoding;
      if (IEQ(n, "x-forwarded-proto")) return Hdr::XForwardedProto;
      break;
    default:
      break;
  }
  if (n.size() > 6 && IEQ(n.substr(0, 6), "proxy-")) return Hdr::ProxyOther;
  return Hdr::Other;
}

// The header names listed in Connection headers (hop-by-hop by declaration).
struct ConnTokens {
  std::string_view tok[16];
  size_t n = 0;
  bool overflow = false;

  void collect(const MessageHead& m) {
    for (const HeaderSpan& h : m.headers) {
      if (classify(m.name(h)) != Hdr::Connection) continue;
      std::string_view v = m.value(h);
      while (!v.empty()) {
        size_t comma = v.find(',');
        std::string_view t = v.substr(0, comma);
        while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
        while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
        if (!t.empty()) {
          if (n < 16)
            tok[n++] = t;
          else
            overflow = true;
        }
        if (comma == std::string_view::npos) break;
        v.remove_prefix(comma + 1);
      }
    }
  }
  bool names(std::string_view header) const {
    for (size_t i = 0; i < n; ++i) {
      if (iequals(tok[i], header)) return true;
    }
    return false;
  }
};

bool valid_request_id(std::string_view v) {
  if (v.empty() || v.size() > 128) return false;
  for (unsigned char c : v) {
    if (!(std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == ':')) return false;
  }
  return true;
}

void append_uint(std::string& s, uint64_t v) {
  char b[24];
  auto r = std::to_chars(b, b + sizeof b, v);
  s.append(b, static_cast<size_t>(r.ptr - b));
}

// The final status the client gets: the origin's, or the one the tenant's Lua header_filter set
// (ngx.status; the sandbox keeps it within the origin's body framing).
uint16_t client_status(const Exchange* ex) {
  const uint16_t st = ex->resp.status;
  if (st >= 200 && ex->policy_active && ex->policy->resp_status != 0) {
    return ex->policy->resp_status;
  }
  return st;
}

void append_header(std::string& s, std::string_view name, std::string_view value) {
  s.append(name);
  s.append(": ", 2);
  s.append(value);
  s.append("\r\n", 2);
}

// Values of every header of class `cls`, joined with ", ".
void join_values(const MessageHead& m, Hdr cls, std::string& out) {
  bool first = true;
  for (const HeaderSpan& h : m.headers) {
    if (classify(m.name(h)) != cls) continue;
    if (!first) out.append(", ", 2);
    out.append(m.value(h));
    first = false;
  }
}

// False when the request cannot be forwarded faithfully (too many Connection tokens). May run
// again for the same exchange (the cache re-sends a request): the trace context chosen the
// first time is kept.
bool build_forward_head(Exchange* ex) {
  const MessageHead& r = ex->req;
  std::string& f = ex->fwd;
  f.clear();
  f.reserve(r.buf.size() + 256);
  f.append(llhttp_method_name(static_cast<llhttp_method_t>(r.method)));
  f.push_back(' ');
  f.append(ex->target);
  f.append(" HTTP/1.1\r\n", 11);
  ConnTokens conn;
  conn.collect(r);
  if (conn.overflow) return false;
  bool saw_xff = false, saw_via = false, saw_id = false, saw_host = false, sent_trace = false;
  auto append_trace = [&](std::string_view name) {
    char tp[55];
    format_traceparent(ex->trace, tp);
    append_header(f, name, std::string_view(tp, sizeof tp));
    sent_trace = true;
  };
  char ip[64];
  ex->format_peer(ip, sizeof ip);
  for (const HeaderSpan& h : r.headers) {
    std::string_view name = r.name(h), value = r.value(h);
    switch (classify(name)) {
      case Hdr::Connection:
      case Hdr::KeepAlive:
      case Hdr::ProxyConnection:
      case Hdr::ProxyOther:
      case Hdr::TE:
      case Hdr::Trailer:
      case Hdr::XForwardedProto:
      case Hdr::XForwardedHost:
        continue;
      case Hdr::Upgrade:
        if (r.upgrade) append_header(f, name, value);
        continue;
      case Hdr::TransferEncoding:
        append_header(f, name, "chunked");
        continue;
      case Hdr::ContentLength:
        f.append(name);
        f.append(": ", 2);
        append_uint(f, r.content_length);
        f.append("\r\n", 2);
        continue;
      case Hdr::Host:
        if (!saw_host) append_header(f, name, ex->absolute_form ? ex->host : value);
        saw_host = true;
        continue;
      case Hdr::XForwardedFor:
        if (!saw_xff) {
          saw_xff = true;
          f.append(name);
          f.append(": ", 2);
          join_values(r, Hdr::XForwardedFor, f);
          f.append(", ", 2);
          f.append(ip);
          f.append("\r\n", 2);
        }
        continue;
      case Hdr::Via:
        if (!saw_via) {
          saw_via = true;
          f.append(name);
          f.append(": ", 2);
          join_values(r, Hdr::Via, f);
          f.append(", 1.1 parapet\r\n");
        }
        continue;
      case Hdr::TraceParent: {
        // parapet is a span of the trace: same trace id, its own span id (W3C Trace Context).
        if (sent_trace) continue;
        if (!ex->has_trace) {
          TraceContext parent;
          if (!parse_traceparent(value, &parent)) continue;  // invalid: replaced below
          ex->trace = child_context(&parent, ex->client->wk()->rng());
          ex->has_trace = true;
        }
        append_trace(name);
        continue;
      }
      case Hdr::XRequestId:
        if (!saw_id && valid_request_id(value)) {
          saw_id = true;
          ex->request_id = value;
          ex->own_id = false;
          append_header(f, name, value);
        }
        continue;
      case Hdr::Other:
        if (conn.n != 0 && conn.names(name)) continue;
        if (ex->cache && cache_drops_request_header(ex, name)) continue;
        if (ex->policy_active && policy_drops_request_header(ex, name)) continue;
        f.append(r.buf.data() + h.name_off, h.name_len);
        f.append(": ", 2);
        f.append(value);
        f.append("\r\n", 2);
        continue;
    }
  }
  if (!saw_xff) {
    f.append("X-Forwarded-For: ");
    f.append(ip);
    f.append("\r\n", 2);
  }
  // An HTTP/1.0 request in absolute form may come without Host: HTTP/1.1 needs one.
  if (!saw_host && !ex->host.empty()) append_header(f, "Host", ex->host);
  f.append(ex->client->tls() != nullptr ? "X-Forwarded-Proto: https\r\n"
                                        : "X-Forwarded-Proto: http\r\n");
  if (!ex->host.empty()) append_header(f, "X-Forwarded-Host", ex->host);
  if (!saw_via) f.append("Via: 1.1 parapet\r\n");
  if (!saw_id) append_header(f, "X-Request-Id", ex->request_id);
  if (!sent_trace) {
    if (!ex->has_trace) {
      ex->trace = child_context(nullptr, ex->client->wk()->rng());
      ex->has_trace = true;
    }
    append_trace("traceparent");
  }
  if (r.upgrade) f.append("Connection: upgrade\r\n");
  if (ex->cache) cache_add_request_headers(ex, f);
  if (ex->policy_active) policy_add_request_headers(ex, f);
  f.append("\r\n", 2);
  return true;
}

std::string_view hash_key(Exchange* ex, char* ipbuf, size_t n) {
  const config::HashKey& k = ex->group->cfg->hash_key;
  switch (k.kind) {
    case config::HashKey::Uri:
      return ex->target;
    case config::HashKey::ClientIp:
      ex->format_peer(ipbuf, n);
      return ipbuf;
    case config::HashKey::Header: {
      const HeaderSpan* h = ex->req.find(k.header);
      return h != nullptr ? ex->req.value(*h) : std::string_view();
    }
  }
  return {};
}

uint32_t pick_server(Exchange* ex, uint32_t exclude) {
  Worker* w = ex->client->wk();
  const OriginGroup& g = *ex->group;
  const uint64_t now = w->timers().now();
  const size_t n = g.server_ids.size();
  auto usable = [&](size_t i) {
    uint32_t sid = g.server_ids[i];
    return sid != exclude && w->server(sid).down_until.get() <= now;
  };
  switch (g.cfg->balance) {
    case config::Balance::RoundRobin: {
      uint32_t start = w->next_rr(g);
      for (size_t k = 0; k < n; ++k) {
        size_t i = (start + k) % n;
        if (usable(i)) return g.server_ids[i];
      }
      break;
    }
    case config::Balance::LeastConn: {
      uint32_t start = w->next_rr(g);
      size_t best = n;
      for (size_t k = 0; k < n; ++k) {
        size_t i = (start + k) % n;
        if (!usable(i)) continue;
        if (best == n || w->server(g.server_ids[i]).active < w->server(g.server_ids[best]).active)
          best = i;
      }
      if (best != n) return g.server_ids[best];
      break;
    }
    case config::Balance::Hash: {
      char ipbuf[64];
      uint64_t h = hash64(hash_key(ex, ipbuf, sizeof ipbuf));
      auto it = std::lower_bound(g.ring.begin(), g.ring.end(), std::make_pair(h, uint32_t{0}));
      for (size_t k = 0; k < g.ring.size(); ++k, ++it) {
        if (it == g.ring.end()) it = g.ring.begin();
        if (usable(it->second)) return g.server_ids[it->second];
      }
      break;
    }
  }
  // Only the excluded server is left: a retry may still go back to it if it is not resting.
  if (exclude != kNone && w->server(exclude).down_until.get() <= now &&
      std::find(g.server_ids.begin(), g.server_ids.end(), exclude) != g.server_ids.end()) {
    return exclude;
  }
  return kNone;
}

// Lends the exchange a connection to a chosen server: pooled if one is idle, else a new one.
bool attach_origin(Exchange* ex) {
  Worker* w = ex->client->wk();
  for (int tries = 0; tries < 2; ++tries) {
    uint32_t sid = pick_server(ex, ex->failed_server);
    if (sid == kNone) return false;
    ServerState& ss = w->server(sid);
    OriginConn* oc = ss.idle;
    if (oc != nullptr) {
      ss.idle = oc->pool_next;
      if (ss.idle != nullptr) ss.idle->pool_prev = nullptr;
      oc->pool_next = oc->pool_prev = nullptr;
      --ss.idle_count;
      oc->state = OriginConn::State::Busy;
      oc->arm_timer(OriginConn::TimerKind::Response);
      w->stats().upstream_reused.add();
      w->stats().upstream_idle.sub();
    } else {
      oc = new OriginConn(w, &ss);
      w->stats().upstream_connects.add();
      if (!oc->connect()) {
        ex->failed_server = sid;
        continue;
      }
    }
    ++ss.active;
    oc->ex = ex;
    oc->got_bytes = oc->interim = oc->bad_head = false;
    oc->reusable = true;
    oc->parser.set_limits(&ex->snap->cfg().limits);
    ex->origin = oc;
    ex->server = sid;
    ex->upstream = ss.addr.text.c_str();
    ex->t_upstream_ns = uv_hrtime();
    ++ex->attempts;
    return true;
  }
  return false;
}

}  // namespace

Flow phase_upstream(Exchange* ex) {
  if (!build_forward_head(ex)) {
    if (ex->cache && cache_background_failed(ex)) return Flow::Respond;  // answered already
    ex->client->reply(400, "http.too_many_connection_tokens", true);
    return Flow::Respond;
  }
  if (!attach_origin(ex)) {
    if (ex->cache && cache_background_failed(ex)) return Flow::Respond;
    ex->client->reply(503, "upstream.unavailable", false);
    return Flow::Respond;
  }
  ex->origin->out.stage_ref(ex->fwd.data(), ex->fwd.size());
  return Flow::Continue;
}

void upstream_failed(Exchange* ex, OriginConn* oc, const char* reason, int status, bool retryable) {
  Worker* w = oc->w;
  ClientConn* c = ex->client;
  if (retryable && !ex->resp_started && !oc->got_bytes && !c->closing) {
    const bool nothing_sent = oc->timer_kind == OriginConn::TimerKind::Connect;
    const bool safe = nothing_sent || (ex->idempotent && !ex->has_body && ex->req_done);
    // A pooled connection the origin had closed is not the server's fault, nor an attempt.
    const bool stale = oc->reused;
    // Server ids belong to the exchange's snapshot: after a reload, no second choice.
    const bool same_config = ex->snap == w->snapshot();
    if (safe && same_config && (stale || ex->attempts < 2)) {
      if (stale)
        --ex->attempts;
      else
        ex->failed_server = ex->server;
      w->stats().upstream_retries.add();
      oc->pool->retries.add();
      if (attach_origin(ex)) {
        if (nothing_sent) {
          ex->origin->out.take_queued(&oc->out);
        } else {
          ex->origin->out.stage_ref(ex->fwd.data(), ex->fwd.size());
        }
        ex->origin->out.flush();
        return;
      }
      reason = "upstream.unavailable";
      status = 503;
      if (ex->failed_server != kNone) {
        reason = "upstream.connect_failed";
        status = 502;
      }
    }
  }
  if (ex->cache && cache_background_failed(ex)) return;  // stale-while-revalidate refresh
  if (ex->resp_started) {
    c->close_now();  // the client got part of a response: it must see it cut
    return;
  }
  if (ex->cache && ex->req_done && cache_on_upstream_failure(ex)) return;  // stale-if-error
  c->reply(status, reason, !ex->req_done);
  if (!ex->req_done) {
    c->end_exchange();
    c->close_gracefully();
    return;
  }
  c->out.flush();
  c->finish_exchange();
}

void upstream_abort(Exchange* ex) {
  OriginConn* oc = ex->origin;
  if (oc == nullptr) return;
  oc->close();
}

void upstream_release(OriginConn* oc) {
  Worker* w = oc->w;
  Exchange* ex = oc->ex;
  ServerState& ss = *oc->pool;
  oc->ex = nullptr;
  ex->origin = nullptr;
  --ss.active;
  bool ok = oc->reusable && ex->req_done && ex->resp.keep_alive && !ex->tunnel &&
            oc->out.queued() == 0 && !w->draining() && !ss.retired && ss.idle_count < ss.max_idle;
  if (!ok) {
    oc->state = OriginConn::State::Busy;  // close() below must not unlink it from the pool
    oc->close();
    return;
  }
  oc->state = OriginConn::State::Idle;
  oc->reused = true;
  oc->parser.resume();
  oc->pool_prev = nullptr;
  oc->pool_next = ss.idle;
  if (ss.idle != nullptr) ss.idle->pool_prev = oc;
  ss.idle = oc;
  ++ss.idle_count;
  w->stats().upstream_idle.add();
  oc->arm_timer(OriginConn::TimerKind::Idle);
  if (oc->read_stopped) {
    oc->read_stopped = false;
    uv_read_start(reinterpret_cast<uv_stream_t*>(&oc->tcp), Worker::alloc_cb, OriginConn::on_read);
  }
}

// ---- OriginConn ----

OriginConn::OriginConn(Worker* worker, ServerState* server_pool)
    : w(worker),
      pool(server_pool),
      parser(HTTP_RESPONSE, &worker->cfg().limits, this),
      out(this, on_out_event) {
  tcp.data = static_cast<Http1Handler*>(this);
  timer.owner = this;
}

OriginConn::~OriginConn() = default;

bool OriginConn::connect() {
  uv_tcp_init(w->loop(), &tcp);
  const config::Address& a = pool->addr;
  int r = uv_tcp_connect(&connect_req, &tcp, reinterpret_cast<const sockaddr*>(&a.sa), on_connect);
  if (r != 0) {
    log_error("worker=%u upstream=%s connect: %s", w->index(), a.text.c_str(), uv_strerror(r));
    state = State::Closing;
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp), on_closed);
    return false;
  }
  if (pool->tls_ctx != nullptr) {
    SSL* ssl = tls_origin_ssl(pool->tls_ctx, pool->tls_name, &pool->tls_session);
    if (ssl == nullptr) {
      log_error("worker=%u upstream=%s TLS: %s", w->index(), a.text.c_str(),
                tls_error_text().c_str());
      state = State::Closing;
      uv_close(reinterpret_cast<uv_handle_t*>(&tcp), on_closed);
      return false;
    }
    tls = std::make_unique<TlsConn>(ssl);
    out.set_tls(ssl, /*hold=*/true);  // the request waits for the handshake
  }
  state = State::Connecting;
  arm_timer(TimerKind::Connect);
  return true;
}

void OriginConn::arm_timer(TimerKind kind) {
  uint32_t ms = pool->response_timeout_ms;
  if (kind == TimerKind::Connect) ms = pool->connect_timeout_ms;
  if (kind == TimerKind::Idle) ms = pool->idle_timeout_ms;
  timer_kind = kind;
  w->timers().arm(&timer, ms, on_timer);
}

void OriginConn::close() {
  if (state == State::Closing) return;
  ServerState& ss = *pool;
  if (state == State::Idle) {
    if (pool_prev != nullptr)
      pool_prev->pool_next = pool_next;
    else
      ss.idle = pool_next;
    if (pool_next != nullptr) pool_next->pool_prev = pool_prev;
    pool_prev = pool_next = nullptr;
    --ss.idle_count;
    w->stats().upstream_idle.sub();
  }
  if (ex != nullptr) {
    --ss.active;
    ex->origin = nullptr;
    ex = nullptr;
  }
  state = State::Closing;
  w->timers().disarm(&timer);
  // OpenSSL marks the session of a connection freed without a shutdown as not resumable,
  // which would spoil the copy kept in the server's slot: count the close as a shutdown
  // (as nginx does for connections it drops without a close_notify).
  if (tls && tls->handshake_done)
    SSL_set_shutdown(tls->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp), on_closed);
}

void OriginConn::on_closed(uv_handle_t* h) { delete conn_of<OriginConn>(h->data); }

void OriginConn::fail(FailKind kind, const char* reason, int status, bool retryable) {
  Exchange* e = ex;
  ServerState& ss = *pool;
  switch (kind) {
    case FailKind::Connect:
      ss.connect_failures.add();
      break;
    case FailKind::Timeout:
      ss.timeouts.add();
      break;
    case FailKind::Reset:
      ss.resets.add();
      break;
  }
  if (!reused) {
    w->stats().upstream_failures.add();
    if (ss.max_fails > 0 && ++ss.fails >= ss.max_fails) {
      ss.down_until.set(w->timers().now() + ss.fail_timeout_ms);
      ss.fails = 0;
      log_error("worker=%u upstream=%s rests for %ums after %s", w->index(), ss.addr.text.c_str(),
                ss.fail_timeout_ms, reason);
    }
  }
  // close() detaches the exchange; the flags upstream_failed reads (timer_kind, got_bytes,
  // reused, out) stay as they are until the close callback.
  close();
  if (e != nullptr) upstream_failed(e, this, reason, status, retryable);
}

void OriginConn::on_connect(uv_connect_t* req, int status) {
  auto* oc = conn_of<OriginConn>(req->handle->data);
  if (oc->state == State::Closing) return;
  if (status < 0) {
    oc->fail(FailKind::Connect, "upstream.connect_failed", 502, true);
    return;
  }
  oc->state = State::Busy;
  if (oc->ex != nullptr) oc->ex->t_connected_ns = uv_hrtime();
  uv_tcp_nodelay(&oc->tcp, 1);
  uv_read_start(reinterpret_cast<uv_stream_t*>(&oc->tcp), Worker::alloc_cb, on_read);
  oc->out.attach(reinterpret_cast<uv_stream_t*>(&oc->tcp));
  if (oc->tls) {
    SSL_do_handshake(oc->tls->ssl);  // the ClientHello; the connect timer bounds the rest
    oc->out.flush();
    return;
  }
  oc->arm_timer(TimerKind::Response);
}

void OriginConn::on_cipher(const char* data, size_t len) {
  BIO_write(tls->rbio, data, static_cast<int>(len));
  if (!tls->handshake_done) {
    int r = SSL_do_handshake(tls->ssl);
    if (r != 1) {
      int e = SSL_get_error(tls->ssl, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        out.flush();
        return;
      }
      long v = SSL_get_verify_result(tls->ssl);
      std::string why = v != X509_V_OK
                            ? std::string("certificate: ") + X509_verify_cert_error_string(v)
                            : tls_error_text();
      ERR_clear_error();
      log_error("worker=%u upstream=%s TLS handshake failed: %s", w->index(),
                pool->addr.text.c_str(), why.c_str());
      fail(FailKind::Connect, "upstream.tls_failed", 502, true);
      return;
    }
    tls->handshake_done = true;
    w->stats().upstream_tls_handshakes.add();
    if (SSL_session_reused(tls->ssl)) w->stats().upstream_tls_resumed.add();
    arm_timer(TimerKind::Response);
    out.release();  // the request, held during the handshake
    // The client may have paused on what was held; if the kernel took it all at once, no
    // Drained event will come to resume it.
    if (ex != nullptr && out.queued() <= kHighWater) ex->client->resume_reading();
  }
  char* buf;
  size_t cap;
  Worker::read_buffer(&buf, &cap);
  while (tls->has_input()) {
    int n = SSL_read(tls->ssl, buf, static_cast<int>(cap));
    if (n > 0) {
      on_bytes(this, buf, n);
      if (state == State::Closing) return;
      continue;
    }
    int e = SSL_get_error(tls->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
    ERR_clear_error();
    on_bytes(this, nullptr, e == SSL_ERROR_ZERO_RETURN ? UV_EOF : UV_EPROTO);
    return;
  }
  out.flush();  // whatever the session itself has to say (e.g. a key update)
}

void OriginConn::on_timer(TimerNode* n) {
  auto* oc = static_cast<OriginConn*>(n->owner);
  switch (oc->timer_kind) {
    case TimerKind::Connect:
      oc->fail(FailKind::Timeout, "upstream.connect_timeout", 502, true);
      return;
    case TimerKind::Response:
      oc->fail(FailKind::Timeout, "upstream.response_timeout", 504, false);
      return;
    case TimerKind::Idle:
      oc->close();
      return;
  }
}

void OriginConn::on_out_event(void* owner, Outbox*, Outbox::Event ev, int) {
  auto* oc = static_cast<OriginConn*>(owner);
  if (oc->state == State::Closing) return;
  if (ev == Outbox::Event::Error) {
    if (oc->state == State::Idle) {
      oc->close();
    } else {
      oc->fail(FailKind::Reset, "upstream.reset", 502, true);
    }
    return;
  }
  // Drained: the client may send more body (or tunnel bytes).
  if (oc->ex != nullptr) oc->ex->client->resume_reading();
}

void OriginConn::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* oc = conn_of<OriginConn>(s->data);
  if (nread == 0 || oc->state == State::Closing) return;
  if (nread > 0 && oc->tls) {
    oc->on_cipher(buf->base, static_cast<size_t>(nread));
    return;
  }
  on_bytes(oc, buf->base, nread);
}

void OriginConn::on_bytes(OriginConn* oc, const char* data, ssize_t nread) {
  uv_stream_t* s = reinterpret_cast<uv_stream_t*>(&oc->tcp);
  if (oc->state == State::Idle) {
    oc->close();  // the origin closed an idle connection, or sent bytes nobody asked for
    return;
  }
  Exchange* ex = oc->ex;
  if (ex == nullptr) {
    oc->close();
    return;
  }
  ClientConn* c = ex->client;
  if (nread < 0) {
    if (ex->tunnel) {
      c->out.flush();
      oc->close();
      c->end_exchange();
      c->close_gracefully();
      return;
    }
    if (nread == UV_EOF && oc->got_bytes) {
      // A close-delimited body ends here.
      oc->reusable = false;
      Http1Parser::Result r = oc->parser.finish();
      if (r.status != Http1Parser::Status::Error && ex->resp_done) {
        c->out.flush();
        upstream_release(oc);
        if (!ex->req_done) {
          c->end_exchange();
          c->close_gracefully();
        } else {
          c->finish_exchange();
        }
        return;
      }
    }
    oc->fail(FailKind::Reset, "upstream.reset", 502, true);
    return;
  }
  if (ex->tunnel) {
    oc->arm_timer(TimerKind::Response);  // the tunnel's idle timeout, re-armed both ways
    c->out.stage_ref(data, static_cast<size_t>(nread));
    c->out.flush();
    if (c->out.queued() > kHighWater) {
      uv_read_stop(s);
      oc->read_stopped = true;
      c->arm_timer(ClientConn::TimerKind::Send);
    }
    return;
  }
  oc->got_bytes = true;
  oc->arm_timer(TimerKind::Response);
  Http1Parser::Result r = oc->parser.execute(data, static_cast<size_t>(nread));
  if (r.status == Http1Parser::Status::Error || oc->bad_head) {
    log_error("worker=%u request_id=%.*s upstream=%s bad response: %s", oc->w->index(),
              static_cast<int>(ex->request_id.size()), ex->request_id.data(),
              oc->pool->addr.text.c_str(), oc->parser.llhttp_reason());
    oc->reusable = false;
    if (ex->cache && ex->cache->background) {
      oc->close();
      cache_background_failed(ex);
    } else if (ex->resp_started) {
      c->out.flush();
      oc->close();
      c->close_now();
    } else {
      oc->fail(FailKind::Reset, "upstream.bad_response", 502, false);
    }
    return;
  }
  if (r.status == Http1Parser::Status::Upgrade) {
    ex->tunnel = true;
    if (r.consumed < static_cast<size_t>(nread)) {
      c->out.stage_ref(data + r.consumed, static_cast<size_t>(nread) - r.consumed);
    }
    c->out.flush();
    // From now on the origin connection's timer is the tunnel's idle timeout (response_timeout,
    // re-armed by bytes in either direction); the client's request timers no longer apply.
    oc->arm_timer(TimerKind::Response);
    oc->w->timers().disarm(&c->timer);
    if (c->has_backlog()) {
      oc->out.stage_copy(c->backlog());
      c->backlog().clear();
      oc->out.flush();
    }
    c->resume_reading();  // it may have paused on a large backlog
    c->flush_all();
    return;
  }
  c->out.flush();
  if (!ex->resp_done) c->set_nodelay();  // more writes follow for this response
  if (r.status == Http1Parser::Status::Paused && ex->resp_done) {
    if (r.consumed < static_cast<size_t>(nread)) oc->reusable = false;  // bytes after the response
    upstream_release(oc);
    if (!ex->req_done) {
      c->end_exchange();
      c->close_gracefully();
    } else {
      c->finish_exchange();
    }
    return;
  }
  if (c->out.queued() > kHighWater) {
    uv_read_stop(s);
    oc->read_stopped = true;
    oc->w->timers().disarm(&oc->timer);
    c->arm_timer(ClientConn::TimerKind::Send);
  }
}

// ---- the response side of the codec ----

MessageHead* OriginConn::on_message_begin() { return &ex->resp; }

void build_response_head(Exchange* ex, OriginConn* oc) {
  const MessageHead& r = ex->resp;
  ClientConn* c = ex->client;
  std::string& h = ex->resp_head;
  const bool client10 = ex->req.minor == 0;
  const uint16_t st = client_status(ex);
  h.clear();
  h.reserve(r.buf.size() + 128);
  h.append("HTTP/1.1 ", 9);
  append_uint(h, st);
  h.push_back(' ');
  if (st != r.status)
    h.append(status_phrase(st));  // the origin's phrase described its own status
  else if (r.url_len > 0)
    h.append(r.url());
  else
    h.append("Unknown");
  h.append("\r\n", 2);
  const bool no_body = ex->is_head || st == 204 || st == 304 || st < 200;
  bool chunk = false, close = false;
  if (!no_body && st != 101) {
    if (r.chunked || !r.has_content_length) {
      if (!r.chunked) oc->reusable = false;  // close-delimited: the origin closes at the end
      if (client10)
        close = true;
      else
        chunk = true;
    }
  }
  ConnTokens conn;
  conn.collect(r);
  std::string_view te_codings;
  if (conn.overflow) oc->bad_head = true;  // hop-by-hop headers we could not all strip: 502
  for (const HeaderSpan& hs : r.headers) {
    std::string_view name = r.name(hs);
    switch (classify(name)) {
      case Hdr::Connection:
      case Hdr::KeepAlive:
      case Hdr::ProxyConnection:
      case Hdr::TE:
      case Hdr::Trailer:
        continue;
      case Hdr::TransferEncoding: {
        // Keep the content codings ("gzip" of "gzip, chunked"): the body stays coded; only
        // the chunked framing is ours.
        std::string_view v = r.value(hs);
        size_t cut = v.size();
        if (cut >= 7 && iequals(v.substr(cut - 7), "chunked")) cut -= 7;
        while (cut > 0 && (v[cut - 1] == ' ' || v[cut - 1] == ',' || v[cut - 1] == '\t')) --cut;
        if (cut > 0) te_codings = v.substr(0, cut);
        continue;
      }
      case Hdr::Upgrade:
        if (st == 101) append_header(h, name, r.value(hs));
        continue;
      case Hdr::ContentLength:
        if (chunk) continue;
        break;
      default:
        if (conn.n != 0 && conn.names(name)) continue;
        if (ex->policy_active && st >= 200 && policy_drops_response_header(ex, name)) continue;
    }
    append_header(h, name, r.value(hs));
  }
  if (chunk) {
    h.append("Transfer-Encoding: ");
    if (!te_codings.empty()) {
      h.append(te_codings);
      h.append(", ");
    }
    h.append("chunked\r\n");
  } else if (!te_codings.empty() && !no_body) {
    oc->bad_head = true;  // a coded body for an HTTP/1.0 client that cannot be told: 502
  }
  if (no_body && ex->is_head && r.chunked) h.append("Transfer-Encoding: chunked\r\n");
  if (c->tls() != nullptr && st >= 200) {
    const std::string& hsts = ex->snap->cfg().tenants[ex->tenant].hsts;
    if (!hsts.empty() && r.find("strict-transport-security") == nullptr) {
      append_header(h, "Strict-Transport-Security", hsts);
    }
  }
  if (ex->cache && st >= 200 && st != 101) cache_response_headers(ex, h);
  if (ex->policy_active && st >= 200) policy_add_response_headers(ex, h);
  if (st == 101) {
    h.append("Connection: upgrade\r\n");
  } else if (st >= 200) {
    bool keep = ex->req.keep_alive && !close && !c->close_after && !c->wk()->draining();
    ex->client_keep = keep;
    if (!keep)
      h.append("Connection: close\r\n");
    else if (client10)
      h.append("Connection: keep-alive\r\n");
  }
  h.append("\r\n", 2);
  ex->client_chunked = chunk;
}

int OriginConn::on_head() {
  Exchange* e = ex;
  const uint16_t st = e->resp.status;
  if (st >= 100 && st < 200 && st != 101) {
    // Interim response (100 Continue, 103 Early Hints): relay to HTTP/1.1 clients.
    interim = true;
    if (e->req.minor >= 1) {
      build_response_head(e, this);
      if (bad_head) return -1;
      e->client->out.stage_copy(e->resp_head);
    }
    return 0;
  }
  interim = false;
  if (st == 101 && !e->req.upgrade) {
    bad_head = true;
    return -1;
  }
  pool->fails = 0;
  if (e->policy_active && st >= 200) phase_policy_response(e);
  if (e->lua && st >= 200) phase_lua_header_filter(e);
  if (e->cache && st >= 200) {
    cache_on_response_head(e);
    if (cache_swallows(e)) {
      // A 304 (or a failure) the stored entry answers once this response is read.
      e->t_first_byte_ns = uv_hrtime();
      return e->is_head ? 1 : 0;
    }
  }
  build_response_head(e, this);
  if (bad_head) return -1;
  e->client->out.stage_ref(e->resp_head.data(), e->resp_head.size());
  e->status = client_status(e);
  e->t_first_byte_ns = uv_hrtime();
  e->bytes_out += e->resp_head.size();
  e->resp_started = true;
  return e->is_head ? 1 : 0;
}

void OriginConn::on_body(const char* p, size_t n) {
  if (ex->cache) {
    cache_on_body(ex, p, n);  // a swallowed response feeds no fill unless it is a refresh
    if (cache_swallows(ex)) return;
  }
  Outbox& o = ex->client->out;
  ex->bytes_out += n;
  if (ex->client_chunked) {
    char size[24];
    char* end = std::to_chars(size, size + 20, n, 16).ptr;
    *end++ = '\r';
    *end++ = '\n';
    o.stage_copy(size, static_cast<size_t>(end - size));
    o.stage_ref(p, n);
    o.stage_copy("\r\n", 2);
  } else {
    o.stage_ref(p, n);
  }
}

bool OriginConn::on_message_complete() {
  if (interim) {
    interim = false;
    return false;  // the final response follows on the same connection
  }
  if (ex->client_chunked && !cache_swallows(ex)) ex->client->out.stage_copy("0\r\n\r\n", 5);
  if (ex->cache) cache_on_complete(ex);
  ex->resp_done = true;
  return true;
}

}  // namespace parapet
