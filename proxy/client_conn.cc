// ClientConn: the downstream side. Reads, parses (strict codec), runs the phases on each request
// head, streams request bodies upstream, answers locally when a phase or the codec says so, and
// decides keep-alive, pipelining and closing.
#include <arpa/inet.h>
#include <openssl/err.h>

#include <algorithm>
#include <charconv>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "proxy/access_log.h"
#include "proxy/conn.h"
#include "proxy/log.h"
#include "proxy/phase_cache.h"
#include "proxy/phase_lua.h"
#include "proxy/phase_policy.h"
#include "proxy/tail.h"
#include "proxy/worker.h"

namespace parapet {

namespace {
constexpr uint32_t kLingerMs = 2000;
}  // namespace

const char* status_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 304:
      return "Not Modified";
    case 416:
      return "Range Not Satisfiable";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 303:
      return "See Other";
    case 307:
      return "Temporary Redirect";
    case 308:
      return "Permanent Redirect";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 429:
      return "Too Many Requests";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 451:
      return "Unavailable For Legal Reasons";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 421:
      return "Misdirected Request";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Error";
  }
}

void Exchange::reset(ClientConn* c, std::shared_ptr<const Snapshot> s, uint64_t id_num) {
  client = c;
  snap = std::move(s);
  req.clear();
  resp.clear();
  fwd.clear();
  resp_head.clear();
  uint64_t x = id_num * 0x9e3779b97f4a7c15ull;
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 29;
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i, x >>= 4) id[i] = kHex[x & 15];
  id[16] = '\0';
  request_id = std::string_view(id, 16);
  target = host = {};
  tenant = 0;
  group = nullptr;
  server = failed_server = UINT32_MAX;
  origin = nullptr;
  attempts = 0;
  req_done = resp_done = resp_started = replied = has_body = idempotent = is_head = false;
  client_chunked = tunnel = absolute_form = false;
  client_keep = true;
  own_id = true;
  t_start_ns = t_upstream_ns = t_connected_ns = t_first_byte_ns = 0;
  bytes_out = 0;
  status = 0;
  reason = nullptr;
  upstream = nullptr;
  tstats = nullptr;
  rstats = nullptr;
  has_trace = false;
  in_head_phase = false;
  policy_active = false;  // the ExchangePolicy (if any) is kept for its capacity
}

void Exchange::format_peer(char* out, size_t n) const {
  if (client->extras && client->extras->v6) {
    auto* s6 = reinterpret_cast<const sockaddr_in6*>(&client->extras->peer6);
    inet_ntop(AF_INET6, &s6->sin6_addr, out, static_cast<socklen_t>(n));
  } else {
    inet_ntop(AF_INET, &client->peer_v4, out, static_cast<socklen_t>(n));
  }
}

ClientConn::ClientConn(Worker* worker)
    : parser(HTTP_REQUEST, &worker->cfg().limits, this), out(this, on_out_event) {
  tcp.data = static_cast<Http1Handler*>(this);
  timer.owner = this;
}

ClientConn::~ClientConn() = default;

void ClientConn::start(const std::shared_ptr<const TlsContexts>& tls_ctx, std::string_view listener,
                       bool reject_no_sni) {
  // TCP_NODELAY waits until a connection is kept alive or a response takes several writes:
  // a connection that gets one response in one write never needs it (one syscall less).
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getpeername(&tcp, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    if (ss.ss_family == AF_INET) {
      peer_v4 = reinterpret_cast<sockaddr_in*>(&ss)->sin_addr.s_addr;
    } else {
      ext().peer6 = ss;
      ext().v6 = true;
    }
  }
  out.attach(reinterpret_cast<uv_stream_t*>(&tcp));
  if (tls_ctx != nullptr) {
    const TlsContexts::ServerSet* set = tls_ctx->server_set_of(listener);
    if (set->fast_on) {
      // parapet's own handshake first; the SSL is made only if it declines.
      ext().tls = std::make_unique<TlsConn>(nullptr);
      extras->tls->fast = std::make_unique<Tls13Server>(&set->fast, !reject_no_sni);
    } else {
      SSL* ssl = TlsContexts::new_ssl(set, reject_no_sni);
      if (ssl == nullptr) {
        close_now();
        return;
      }
      ext().tls = std::make_unique<TlsConn>(ssl);
      out.set_tls(ssl);
    }
    extras->tls->ctx = tls_ctx;
    extras->tls->set = set;
    extras->tls->reject_no_sni = reject_no_sni;
  }
  uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp), Worker::alloc_cb, on_read);
  arm_timer(TimerKind::Header);  // also bounds the TLS handshake
}

void ClientConn::on_fast_handshake(char* data, size_t len) {
  TlsConn* t = tls();
  std::string flight;
  switch (t->fast->feed(data, len, &flight)) {
    case Tls13Server::Step::NeedMore:
      return;
    case Tls13Server::Step::Sent:
      out.stage_copy(flight);
      out.flush();
      return;
    case Tls13Server::Step::Fallback: {
      // Nothing was sent: OpenSSL gets the connection and every byte received.
      SSL* ssl = TlsContexts::new_ssl(t->set, t->reject_no_sni);
      if (ssl == nullptr) {
        close_now();
        return;
      }
      std::string in = t->fast->input();
      t->fast.reset();
      t->attach(ssl);
      out.set_tls(ssl);
      on_cipher(in.data(), in.size());
      return;
    }
    case Tls13Server::Step::Fail:
      wk()->stats().tls_failures.add();
      if (!flight.empty()) {
        out.stage_copy(flight);  // our alert
        out.flush();
      }
      close_now();
      return;
    case Tls13Server::Step::Done:
      break;
  }
  t->handshake_done = true;
  wk()->stats().tls_handshakes.add();
  wk()->stats().tls_own.add();
  t->version = "TLSv1.3";
  t->cipher = t->fast->cipher_name();
  t->sni = t->fast->sni();
  t->cert_tenant = t->ctx->tenant_of(static_cast<const SSL_CTX*>(t->fast->identity()->owner));
  t->records = t->fast->take_records();
  std::string leftover = t->fast->take_leftover();
  t->fast.reset();
  t->ctx.reset();  // a reload may free the contexts now
  t->set = nullptr;
  out.set_records(t->records.get());
  if (!leftover.empty()) on_records(leftover.data(), leftover.size());
}

void ClientConn::on_cipher(char* data, size_t len) {
  TlsConn* t = tls();
  if (t->fast != nullptr) {
    on_fast_handshake(data, len);
    return;
  }
  if (t->ssl == nullptr) {
    on_records(data, len);
    return;
  }
  BIO_write(t->rbio, data, static_cast<int>(len));
  if (!t->handshake_done) {
    int r = SSL_do_handshake(t->ssl);
    if (r != 1) {
      int e = SSL_get_error(t->ssl, r);
      out.flush();  // our part of the handshake, or the alert
      if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
        wk()->stats().tls_failures.add();
        ERR_clear_error();
        close_now();
      }
      return;
    }
    t->handshake_done = true;
    wk()->stats().tls_handshakes.add();
    // Records written by the completing step are TLS 1.3 tickets, under the application keys.
    const uint64_t written = t->pending_records();
    out.flush();
    std::string leftover;
    const bool taken = t->finish_handshake(written, &leftover);
    if (t->resumed) wk()->stats().tls_resumed.add();
    if (taken) {
      out.set_records(t->records.get());
      if (!leftover.empty()) on_records(leftover.data(), leftover.size());
      return;
    }
  }
  // The ciphertext is in the BIO now: the worker's read buffer takes the plaintext.
  char* buf;
  size_t cap;
  Worker::read_buffer(&buf, &cap);
  while (!closed && t->has_input()) {
    int n = SSL_read(t->ssl, buf, static_cast<int>(cap));
    if (n > 0) {
      on_plain(buf, static_cast<size_t>(n));
      if (closing) return;
      continue;
    }
    int e = SSL_get_error(t->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
    ERR_clear_error();
    if (e == SSL_ERROR_ZERO_RETURN) {
      on_eof();  // close_notify
    } else {
      close_now();
    }
    return;
  }
  out.flush();  // e.g. TLS 1.3 session tickets after the handshake
}

void ClientConn::on_records(char* data, size_t len) {
  TlsConn* t = tls();
  TlsRecords::Status st = t->records->open(
      data, len,
      [](void* self, char* p, size_t n) {
        auto* c = static_cast<ClientConn*>(self);
        c->on_plain(p, n);
        return !c->closed && !c->closing;
      },
      this);
  if (closed || closing) return;
  if (st == TlsRecords::Status::Closed) {
    on_eof();  // close_notify
  } else if (st == TlsRecords::Status::Error) {
    close_now();  // bad record, or something a finished handshake does not allow
  } else if (t->records->has_pending()) {
    out.flush();  // the answer to a KeyUpdate
  }
}

void ClientConn::arm_timer(TimerKind kind) {
  const config::Timeouts& t = wk()->cfg().timeouts;
  uint32_t ms = kLingerMs;
  switch (kind) {
    case TimerKind::Header:
      ms = t.client_header_ms;
      break;
    case TimerKind::Body:
      ms = t.client_body_ms;
      break;
    case TimerKind::Keepalive:
      ms = t.keepalive_ms;
      break;
    case TimerKind::Send:
      ms = t.client_send_ms;
      break;
    case TimerKind::Linger:
      ms = kLingerMs;
      break;
    case TimerKind::CacheWait:  // as long as the origin may take to answer
      ms = ex != nullptr && ex->group != nullptr ? ex->group->cfg->response_timeout_ms
                                                 : t.client_header_ms;
      break;
  }
  timer_kind = kind;
  wk()->timers().arm(&timer, ms, on_timer);
}

void ClientConn::pause_reading() {
  if (read_stopped || closed) return;
  uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp));
  read_stopped = true;
  // Time spent paused by us (the origin is slow to take the body) is not the client's fault.
  if (timer_kind == TimerKind::Body) wk()->timers().disarm(&timer);
}

void ClientConn::resume_reading() {
  if (!read_stopped || closed || eof) return;
  read_stopped = false;
  uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp), Worker::alloc_cb, on_read);
  if (ex != nullptr && !ex->req_done && ex->has_body && !timer.armed()) arm_timer(TimerKind::Body);
}

void ClientConn::flush_all() {
  out.flush();
  if (ex != nullptr && ex->origin != nullptr) {
    ex->origin->out.flush();
    if (ex->origin != nullptr && ex->origin->out.queued() > kHighWater) pause_reading();
  }
}

void ClientConn::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* c = conn_of<ClientConn>(s->data);
  if (nread == 0) return;
  if (nread < 0) {
    c->on_eof();
    return;
  }
  if (c->closing) return;  // lingering close: read and discard
  if (c->tls() != nullptr) {
    c->on_cipher(buf->base, static_cast<size_t>(nread));
    return;
  }
  c->on_plain(buf->base, static_cast<size_t>(nread));
}

void ClientConn::on_plain(const char* data, size_t len) {
  if (ex != nullptr && ex->tunnel) {
    if (ex->origin == nullptr) return;
    ex->origin->out.stage_ref(data, len);
    flush_all();
    return;
  }
  if (ex != nullptr && ex->req_done) {
    // The parser waits for the current response: keep the bytes (pipelining, upgrade data).
    std::string& bl = backlog();
    bl.append(data, len);
    if (bl.size() > wk()->cfg().limits.max_header_bytes + 64 * 1024) pause_reading();
    return;
  }
  consume(data, len);
}

void ClientConn::consume(const char* data, size_t len) {
  size_t off = 0;
  while (off < len && !closing) {
    if (ex != nullptr && ex->req_done) {
      // Paused behind an exchange in progress: the rest waits (pipelined requests).
      backlog().append(data + off, len - off);
      break;
    }
    Http1Parser::Result r = parser.execute(data + off, len - off);
    off += r.consumed;
    if (r.status == Http1Parser::Status::Ok) break;
    if (r.status == Http1Parser::Status::Error) {
      on_parse_error();
      break;
    }
    if (r.status == Http1Parser::Status::Upgrade) {
      // The rest belongs to the upgraded protocol: it goes upstream after a 101.
      if (off < len) {
        backlog().append(data + off, len - off);
      }
      if (ex != nullptr && ex->done()) {
        end_exchange();
        close_gracefully();
      }
      break;
    }
    // Paused.
    if (ex == nullptr) break;
    if (!ex->req_done) {
      // A phase answered at the head and the connection cannot carry on (a body follows).
      end_exchange();
      close_gracefully();
      break;
    }
    if (ex->resp_done) {
      // Answered locally without a body to skip: go on with the next request, if any.
      if (!end_exchange()) {
        close_gracefully();
        break;
      }
      parser.resume();
      arm_timer(TimerKind::Keepalive);
    }
  }
  flush_all();
}

MessageHead* ClientConn::on_message_begin() {
  used = true;
  if (ex == nullptr) ex = wk()->new_exchange(this);
  parser.set_limits(&ex->snap->cfg().limits);  // valid while the exchange holds its snapshot
  arm_timer(TimerKind::Header);
  return &ex->req;
}

int ClientConn::on_head() {
  Exchange* e = ex;
  // A reload between the first byte and the end of the head: the request starts on the new
  // configuration (server ids and pools are the worker's current ones from here on).
  if (e->snap != wk()->snapshot()) {
    e->snap = wk()->snapshot();
    parser.set_limits(&e->snap->cfg().limits);
  }
  const MessageHead& r = e->req;
  e->is_head = r.method == HTTP_HEAD;
  e->has_body = r.chunked || r.content_length > 0;
  switch (r.method) {
    case HTTP_GET:
    case HTTP_HEAD:
    case HTTP_OPTIONS:
    case HTTP_TRACE:
    case HTTP_PUT:
    case HTTP_DELETE:
      e->idempotent = true;
      break;
    default:
      e->idempotent = false;
  }
  if (e->has_body) {
    arm_timer(TimerKind::Body);
  } else {
    wk()->timers().disarm(&timer);
  }
  if (wk()->draining()) close_after = true;
  e->in_head_phase = true;  // a local answer now cannot keep the connection if a body follows
  const bool answered = phase_route(e) == Flow::Respond || phase_policy(e) == Flow::Respond ||
                        phase_lua(e) == Flow::Respond || phase_cache(e) == Flow::Respond ||
                        phase_upstream(e) == Flow::Respond;
  e->in_head_phase = false;
  if (answered) {
    if (e->has_body || r.upgrade) {
      close_after = true;
      return -1;  // stop parsing: the body is not read
    }
  }
  return 0;
}

void ClientConn::on_body(const char* p, size_t n) {
  Exchange* e = ex;
  if (e->replied || e->origin == nullptr) return;
  Outbox& o = e->origin->out;
  if (e->req.chunked) {
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
  // The client is sending: its body timer restarts (unless it is stalling our response: the
  // send timer stays), and so does the origin's, which is waiting for the rest of the body.
  if (timer_kind != TimerKind::Send) arm_timer(TimerKind::Body);
  if (e->origin->timer_kind == OriginConn::TimerKind::Response) {
    e->origin->arm_timer(OriginConn::TimerKind::Response);
  }
}

bool ClientConn::on_message_complete() {
  Exchange* e = ex;
  e->req_done = true;
  if (!e->replied && e->origin != nullptr && e->req.chunked) {
    e->origin->out.stage_copy("0\r\n\r\n", 5);
  }
  if (timer_kind == TimerKind::Body || timer_kind == TimerKind::Header)
    wk()->timers().disarm(&timer);
  return true;
}

namespace {

// Appends to a fixed buffer, truncating what does not fit (the buffers are sized for the
// longest status phrase, reason, content type and request id).
class Piece {
 public:
  Piece(char* buf, size_t cap) : buf_(buf), cap_(cap) {}
  Piece& add(std::string_view s) {
    const size_t n = std::min(s.size(), cap_ - len_);
    if (n > 0) std::memcpy(buf_ + len_, s.data(), n);
    len_ += n;
    return *this;
  }
  std::string_view view() const { return std::string_view(buf_, len_); }

 private:
  char* buf_;
  size_t cap_, len_ = 0;
};

}  // namespace

void ClientConn::reply(int status, const char* reason, bool close, std::string_view extra) {
  reply_with(status, reason, close, extra, {}, {});
}

void ClientConn::reply_with(int status, const char* reason, bool close, std::string_view extra,
                            std::string_view content_type, std::string_view custom_body) {
  if (ex == nullptr) ex = wk()->new_exchange(this);
  Exchange* e = ex;
  const char* phrase = status_phrase(status);
  bool closing_now = close || close_after || !e->req.keep_alive || wk()->draining() ||
                     (e->in_head_phase && (e->has_body || e->req.upgrade));
  if (closing_now) close_after = true;
  // Formatted by hand: snprintf showed in the profile of every generated answer (Lua, errors).
  const int st3 = std::clamp(status, 100, 999);  // statuses are three digits
  const char code_text[3] = {static_cast<char>('0' + st3 / 100),
                             static_cast<char>('0' + st3 / 10 % 10),
                             static_cast<char>('0' + st3 % 10)};
  const std::string_view code(code_text, sizeof code_text);
  char body_buf[256];
  std::string_view body = custom_body;
  if (content_type.empty()) {
    Piece b(body_buf, sizeof body_buf);
    b.add(code).add(" ").add(phrase).add("\nreason: ").add(reason).add("\nrequest_id: ");
    b.add(e->request_id).add("\n");
    body = b.view();
    content_type = "text/plain";
  }
  char head[512];
  Piece hp(head, sizeof head);
  hp.add("HTTP/1.1 ").add(code).add(" ").add(phrase).add("\r\n");
  if (status == 204 || status == 304) {
    // No content by definition (a tenant script may answer 204 to a preflight): no body and
    // no Content-Length, or the bytes would be read as the next response on the connection.
    body = {};
  } else {
    char length[24];
    hp.add("Content-Type: ").add(content_type.substr(0, 128)).add("\r\nContent-Length: ");
    hp.add(std::string_view(
        length, std::to_chars(length, length + sizeof length, body.size()).ptr - length));
    hp.add("\r\n");
  }
  hp.add("X-Request-Id: ").add(e->request_id).add("\r\n");
  int hn = static_cast<int>(hp.view().size());
  // The tenant's response rules see this answer too (DESIGN.md: policy (response) before the
  // response is sent); their header rewrites apply to all but the framing (Content-Length,
  // Connection).
  if (e->policy_active && !e->resp_started) {
    phase_policy_response(e, static_cast<uint16_t>(status), content_type, extra);
    if (policy_rewrites_response_headers(e)) {
      const std::string_view built = hp.view();
      const size_t status_line = built.find("\r\n") + 2;
      std::string& h = e->resp_head;
      h.assign(built.substr(0, status_line));
      policy_filter_header_lines(e, built.substr(status_line), h);
      policy_filter_header_lines(e, extra, h);
      policy_add_response_headers(e, h);
      out.stage_copy(h);
      hn = static_cast<int>(h.size());
      extra = {};
    } else {
      out.stage_copy(hp.view());
    }
  } else {
    out.stage_copy(hp.view());
  }
  out.stage_copy(extra);
  out.stage_copy(closing_now ? std::string_view("Connection: close\r\n\r\n")
                             : std::string_view("\r\n"));
  hn += static_cast<int>(extra.size()) + (closing_now ? 21 : 2);
  if (!e->is_head) out.stage_copy(body);
  e->replied = true;
  e->resp_done = true;
  e->resp_started = true;
  e->status = static_cast<uint16_t>(status);
  e->reason = reason;
  e->bytes_out += static_cast<uint64_t>(hn) + (e->is_head ? 0 : body.size());
  if (status >= 400) {  // a refusal or a failure; a generated page or redirect is not news
    char ip[64];
    e->format_peer(ip, sizeof ip);
    log_error("worker=%u request_id=%.*s client=%s status=%d reason=%s", wk()->index(),
              static_cast<int>(e->request_id.size()), e->request_id.data(), ip, status, reason);
  }
}

void ClientConn::on_parse_error() {
  HttpError err = parser.error();
  if (ex != nullptr && ex->resp_started) {
    close_now();
    return;
  }
  if (ex != nullptr && ex->origin != nullptr) upstream_abort(ex);
  wk()->stats().refused.add();
  reply(http_error_status(err), http_error_reason(err), true);
  end_exchange();
  close_gracefully();
}

bool ClientConn::end_exchange() {
  Exchange* e = ex;
  ex = nullptr;
  bool keep = e->client_keep && !close_after && e->req.keep_alive && !eof && !wk()->draining() &&
              !e->tunnel && !e->req.upgrade;
  record(e, e->replied ? "proxy" : "origin");
  if (e->origin != nullptr) upstream_abort(e);
  wk()->free_exchange(e);
  return keep;
}

void ClientConn::finish_exchange() {
  // After a swallowed 304 (or origin failure) the cache answers: the exchange goes on.
  if (ex != nullptr && ex->cache && cache_take_over(ex)) return;
  if (!end_exchange()) {
    close_gracefully();
    return;
  }
  // A response still being written is the client's to read: the send timer runs until it is.
  arm_timer(out.queued() > 0 ? TimerKind::Send : TimerKind::Keepalive);
  set_nodelay();
  parser.resume();
  if (has_backlog()) {
    std::string pending;
    pending.swap(backlog());
    consume(pending.data(), pending.size());
  } else {
    flush_all();
  }
  if (!closing) resume_reading();
}

void ClientConn::close_gracefully() {
  if (closing || closed) return;
  closing = true;
  // Lingering (FIN, then read and discard for a while) is only needed when the client may
  // still be sending: a refused or cut request, or pipelined requests we will not answer.
  // Otherwise a reset cannot destroy the last response, and the socket closes once flushed.
  linger = parser.in_message() || has_backlog();
  if (ex != nullptr) {
    record(ex, "proxy");
    if (ex->origin != nullptr) upstream_abort(ex);
    wk()->free_exchange(ex);
    ex = nullptr;
  }
  if (extras) std::string().swap(extras->backlog);
  if (TlsConn* t = tls(); t != nullptr && t->handshake_done) out.close_notify();
  out.flush();
  if (linger && read_stopped) {
    read_stopped = false;
    uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp), Worker::alloc_cb, on_read);
  }
  if (out.queued() > 0) {
    arm_timer(TimerKind::Send);  // after_flush() runs when the last byte is written
    return;
  }
  after_flush();
}

void ClientConn::after_flush() {
  if (!linger || eof) {
    close_now();
    return;
  }
  arm_timer(TimerKind::Linger);
  start_shutdown();
}

void ClientConn::set_nodelay() {
  if (nodelay || closed) return;
  nodelay = true;
  uv_tcp_nodelay(&tcp, 1);
}

void ClientConn::start_shutdown() {
  if (shutdown_started || closed) return;
  shutdown_started = true;
  auto* req = new uv_shutdown_t;
  req->data = this;
  if (uv_shutdown(req, reinterpret_cast<uv_stream_t*>(&tcp), on_shutdown) != 0) {
    delete req;
    close_now();
  }
}

void ClientConn::on_shutdown(uv_shutdown_t* req, int status) {
  auto* c = static_cast<ClientConn*>(req->data);
  delete req;
  if (status < 0 && !c->closed) c->close_now();
}

void ClientConn::close_now() {
  if (closed) return;
  closed = true;
  closing = true;
  wk()->timers().disarm(&timer);
  if (ex != nullptr) {
    record(ex, "client");
    if (ex->origin != nullptr) upstream_abort(ex);
    wk()->free_exchange(ex);
    ex = nullptr;
  }
  if (extras) std::string().swap(extras->backlog);
  wk()->remove_client(this);
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp), on_closed);
}

void ClientConn::on_closed(uv_handle_t* h) { delete conn_of<ClientConn>(h->data); }

void ClientConn::on_eof() {
  eof = true;
  if (const TlsConn* t = tls(); t != nullptr && !t->handshake_done)
    wk()->stats().tls_abandoned.add();
  if (closing || ex == nullptr || ex->tunnel || !ex->req_done) {
    // Idle, lingering, tunnelled, or the request was cut short: nothing more to do here.
    close_now();
    return;
  }
  // The request is complete and its response is on its way: deliver it, then close.
  close_after = true;
}

void ClientConn::on_timer(TimerNode* n) {
  auto* c = static_cast<ClientConn*>(n->owner);
  switch (c->timer_kind) {
    case TimerKind::Header:
    case TimerKind::Body: {
      bool header = c->timer_kind == TimerKind::Header;
      if (const TlsConn* t = c->tls(); t != nullptr && !t->handshake_done)
        c->wk()->stats().tls_timeouts.add();
      if (!c->parser.in_message() || c->ex == nullptr || c->ex->resp_started) {
        c->close_now();
        return;
      }
      if (c->ex->origin != nullptr) upstream_abort(c->ex);
      c->reply(408, header ? "client.header_timeout" : "client.body_timeout", true);
      c->end_exchange();
      c->close_gracefully();
      return;
    }
    case TimerKind::Keepalive:
    case TimerKind::Send:
    case TimerKind::Linger:
      c->close_now();
      return;
    case TimerKind::CacheWait:
      if (c->ex != nullptr) cache_wait_timeout(c->ex);
      return;
  }
}

void ClientConn::on_out_event(void* owner, Outbox*, Outbox::Event ev, int) {
  auto* c = static_cast<ClientConn*>(owner);
  if (c->closed) return;
  if (ev == Outbox::Event::Error) {
    c->close_now();
    return;
  }
  if (c->closing) {
    if (c->eof)
      c->close_now();
    else
      c->start_shutdown();
    return;
  }
  if (c->timer_kind == TimerKind::Send) {
    if (c->ex == nullptr)
      c->arm_timer(TimerKind::Keepalive);  // written out: now idle
    else
      c->wk()->timers().disarm(&c->timer);
  }
  if (c->ex != nullptr && c->ex->cache && cache_resume(c->ex)) return;  // answered by the cache
  OriginConn* oc = c->ex != nullptr ? c->ex->origin : nullptr;
  if (oc != nullptr && oc->read_stopped) {
    oc->read_stopped = false;
    uv_read_start(reinterpret_cast<uv_stream_t*>(&oc->tcp), Worker::alloc_cb, OriginConn::on_read);
    if (!c->ex->tunnel) oc->arm_timer(OriginConn::TimerKind::Response);
  }
}

namespace {

// "2026-11-24T13:35:00.123Z" (json) or "24/Nov/2026:13:35:00 +0000" (combined), with the
// seconds part formatted once per second per thread.
void append_time(std::string& out, bool combined) {
  thread_local time_t cached = -1;
  thread_local char iso[32], clf[40];
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (ts.tv_sec != cached) {
    cached = ts.tv_sec;
    tm t;
    gmtime_r(&ts.tv_sec, &t);
    strftime(iso, sizeof iso, "%Y-%m-%dT%H:%M:%S", &t);
    strftime(clf, sizeof clf, "%d/%b/%Y:%H:%M:%S +0000", &t);
  }
  if (combined) {
    out += clf;
    return;
  }
  const int ms = static_cast<int>(ts.tv_nsec / 1'000'000);
  const char frac[5] = {'.', static_cast<char>('0' + ms / 100),
                        static_cast<char>('0' + ms / 10 % 10), static_cast<char>('0' + ms % 10),
                        'Z'};
  out += iso;
  out.append(frac, 5);
}

void append_uint(std::string& out, uint64_t v) {
  char b[24];
  auto r = std::to_chars(b, b + sizeof b, v);
  out.append(b, static_cast<size_t>(r.ptr - b));
}

// Milliseconds with three decimals, from integer microseconds (no floating point formatting).
void append_ms(std::string& out, uint64_t from_ns, uint64_t to_ns) {
  const uint64_t us = from_ns != 0 && to_ns >= from_ns ? (to_ns - from_ns) / 1000 : 0;
  append_uint(out, us / 1000);
  char frac[4] = {'.', static_cast<char>('0' + us % 1000 / 100),
                  static_cast<char>('0' + us % 100 / 10), static_cast<char>('0' + us % 10)};
  out.append(frac, 4);
}

}  // namespace

void ClientConn::record(Exchange* e, const char* ended_by) {
  if (e->lua) phase_lua_log(e);  // the script's log phase: after the response, no changes
  Worker* w = wk();
  const uint64_t now = uv_hrtime();
  const unsigned cls = e->status / 100 < 6 ? e->status / 100 : 0;
  w->stats().responses[cls].add();
  const uint64_t bytes_in = e->req.scratch.raw_head_bytes + e->req.scratch.body_bytes;
  if (e->tstats != nullptr) {
    TenantStats& t = *e->tstats;
    t.responses[cls].add();
    t.bytes_in.add(bytes_in);
    t.bytes_out.add(e->bytes_out);
    t.total.observe((now - e->t_start_ns) / 1000);
    if (e->t_first_byte_ns != 0 && e->t_upstream_ns != 0) {
      t.upstream.observe((e->t_first_byte_ns - e->t_upstream_ns) / 1000);
    }
  }
  if (e->rstats != nullptr) e->rstats->responses[cls].add();
  AccessLog* log = w->access_log();
  TailHub* tail = w->tail();
  const bool tailing = tail != nullptr && tail->active() && e->tstats != nullptr;
  if (log == nullptr && !tailing) return;
  const bool combined = e->snap->cfg().access_log.format == config::AccessLogConfig::Combined;
  thread_local std::string line;
  line.clear();
  char ip[64];
  e->format_peer(ip, sizeof ip);
  const std::string_view method =
      e->req.method == MessageHead::kNoMethod
          ? std::string_view("-")
          : std::string_view(llhttp_method_name(static_cast<llhttp_method_t>(e->req.method)));
  const std::string_view target = e->req.url();
  const std::string_view tenant = e->tstats != nullptr
                                      ? std::string_view(e->snap->cfg().tenants[e->tenant].name)
                                      : std::string_view();
  if (log != nullptr && combined) {
    const HeaderSpan* ref = e->req.find("referer");
    const HeaderSpan* ua = e->req.find("user-agent");
    line += ip;
    line += " - - [";
    append_time(line, true);
    line += "] \"";
    json_escape(line, method);
    line += ' ';
    json_escape(line, target);
    line += e->req.minor == 0 ? " HTTP/1.0\" " : " HTTP/1.1\" ";
    append_uint(line, e->status);
    line += ' ';
    append_uint(line, e->bytes_out);
    line += " \"";
    json_escape(line, ref != nullptr ? e->req.value(*ref) : "-");
    line += "\" \"";
    json_escape(line, ua != nullptr ? e->req.value(*ua) : "-");
    line += '"';
    log->append(w->index(), line);
    line.clear();
  }
  if (tailing || (log != nullptr && !combined)) {
    line += "{\"time\":\"";
    append_time(line, false);
    line += "\",\"request_id\":\"";
    json_escape(line, e->request_id);
    line += "\",\"trace_id\":\"";
    if (e->has_trace) {
      char tid[32];
      format_trace_id(e->trace, tid);
      line.append(tid, 32);
    }
    line += "\",\"tenant\":\"";
    json_escape(line, tenant);
    line += "\",\"client\":\"";
    line += ip;
    line += "\",\"method\":\"";
    json_escape(line, method);
    line += "\",\"host\":\"";
    json_escape(line, e->host);
    line += "\",\"path\":\"";
    json_escape(line, target);
    line += "\",\"status\":";
    append_uint(line, e->status);
    line += ",\"reason\":\"";
    if (e->reason != nullptr) line += e->reason;
    line += "\",\"bytes_in\":";
    append_uint(line, bytes_in);
    line += ",\"bytes_out\":";
    append_uint(line, e->bytes_out);
    line += ",\"duration_ms\":";
    append_ms(line, e->t_start_ns, now);
    line += ",\"upstream\":\"";
    if (e->upstream != nullptr) line += e->upstream;
    line += "\",\"upstream_connect_ms\":";
    append_ms(line, e->t_upstream_ns, e->t_connected_ns);
    line += ",\"upstream_first_byte_ms\":";
    append_ms(line, e->t_upstream_ns, e->t_first_byte_ns);
    if (TlsConn* t = tls()) {
      line += ",\"tls\":\"";
      line += t->version;
      line += "\",\"cipher\":\"";
      line += t->cipher;
      line += "\",\"sni\":\"";
      json_escape(line, t->sni.c_str());
      line += "\",\"tls_resumed\":";
      line += t->resumed ? "true" : "false";
    }
    policy_log_fields(e, line);
    if (e->cache && !e->cache->status_value.empty()) {
      line += ",\"cache\":\"";
      json_escape(line, e->cache->status_value.c_str());
      line += '"';
    }
    line += ",\"attempts\":";
    append_uint(line, e->attempts);
    line += ",\"ended_by\":\"";
    line += ended_by;
    line += "\"}";
    if (log != nullptr && !combined) log->append(w->index(), line);
    if (tailing) tail->publish(tenant, e->status, target, line);
  }
}

}  // namespace parapet
