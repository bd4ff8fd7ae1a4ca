// The admin listener: operator endpoints on their own address (localhost by default), served on
// the main thread's loop with the same codec and buffer type as the data path.
#include <arpa/inet.h>

#include <set>
#include <string>

#include "proxy/http1.h"
#include "proxy/log.h"
#include "proxy/outbox.h"
#include "proxy/server.h"
#include "proxy/tail.h"

namespace parapet {

namespace {

const config::Limits kAdminLimits{};
constexpr size_t kTailMaxQueued = 1 << 20;  // a slower tail reader loses lines beyond this
char g_buf[16 * 1024];

struct AdminConn final : Http1Handler, TailSubscriber {
  explicit AdminConn(Server* s)
      : server(s), parser(HTTP_REQUEST, &kAdminLimits, this), out(this, on_out) {
    tcp.data = this;
  }
  MessageHead* on_message_begin() override { return &head; }
  int on_head() override { return 0; }
  void on_body(const char*, size_t) override {}
  bool on_message_complete() override {
    std::string_view path = head.url().substr(0, head.url().find('?'));
    if (path == "/healthz")
      respond(200, "text/plain", "ok\n");
    else if (path == "/readyz")
      respond(200, "text/plain", "ready\n");
    else if (path == "/metrics")
      respond(200, "text/plain; version=0.0.4", server->metrics_text());
    else if (path == "/reload" && head.method == HTTP_POST)
      reload();
    else if (path == "/tail" && head.method == HTTP_GET)
      start_tail();
    else if (path == "/cache/purge" && head.method == HTTP_POST)
      purge();
    else
      respond(404, "text/plain", "not found\n");
    return true;
  }
  // Streams the tenant's exchanges as NDJSON in a chunked response until the client leaves.
  void start_tail() {
    std::string_view url = head.url();
    size_t q = url.find('?');
    std::string err;
    if (!parse_tail_query(q == std::string_view::npos ? std::string_view() : url.substr(q + 1),
                          &filter, &err)) {
      respond(400, "text/plain", err + "\n");
      return;
    }
    out.stage_copy(
        "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nCache-Control: no-store\r\n"
        "Transfer-Encoding: chunked\r\n\r\n");
    out.flush();
    tailing = true;
    uv_timer_stop(&timer);  // a tail lasts as long as its reader wants
    server->tail()->subscribe(this);
  }
  bool deliver(std::string_view line) override {
    if (closed || out.queued() > kTailMaxQueued) return false;
    char size[24];
    int n = std::snprintf(size, sizeof size, "%zx\r\n", line.size() + 1);
    out.stage_copy(size, static_cast<size_t>(n));
    out.stage_copy(line);
    out.stage_copy("\n\r\n", 3);
    out.flush();
    return true;
  }
  // POST /cache/purge?tenant=T[&url=U | &prefix=U | &tag=X]: U is the stored URL,
  // "scheme://host/path?query". Synchronous: the entries are gone when the answer comes.
  void purge() {
    std::string_view url = head.url();
    size_t q = url.find('?');
    std::string tenant, u, prefix, tag;
    std::string_view query = q == std::string_view::npos ? std::string_view() : url.substr(q + 1);
    while (!query.empty()) {
      size_t amp = query.find('&');
      std::string_view kv = query.substr(0, amp);
      query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
      size_t eq = kv.find('=');
      std::string_view k = kv.substr(0, eq);
      std::string v = eq == std::string_view::npos ? std::string() : unescape(kv.substr(eq + 1));
      if (k == "tenant") {
        tenant = v;
      } else if (k == "url") {
        u = v;
      } else if (k == "prefix") {
        prefix = v;
      } else if (k == "tag") {
        tag = v;
      } else {
        respond(400, "text/plain", "unknown parameter '" + std::string(k) + "'\n");
        return;
      }
    }
    if (tenant.empty() || (!u.empty() + !prefix.empty() + !tag.empty()) > 1) {
      respond(400, "text/plain",
              "usage: POST /cache/purge?tenant=T[&url=U | &prefix=U | &tag=X]\n");
      return;
    }
    long n = server->cache_purge(tenant, u, prefix, tag);
    if (n < 0) {
      respond(404, "text/plain", "unknown tenant '" + tenant + "'\n");
      return;
    }
    respond(200, "application/json", "{\"purged\":" + std::to_string(n) + "}\n");
  }
  static std::string unescape(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
      auto hex = [](char c) {
        return c >= '0' && c <= '9'   ? c - '0'
               : c >= 'a' && c <= 'f' ? c - 'a' + 10
               : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                      : -1;
      };
      if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
        out.push_back(static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2])));
        i += 2;
      } else {
        out.push_back(s[i] == '+' ? ' ' : s[i]);
      }
    }
    return out;
  }
  void reload() {
    std::vector<std::string> errors = server->reload();
    if (errors.empty()) {
      respond(200, "text/plain",
              "reloaded: generation " + std::to_string(server->generation()) + "\n");
      return;
    }
    std::string body = "reload refused, the running configuration keeps serving:\n";
    for (const std::string& e : errors) body += e + "\n";
    respond(400, "text/plain", body);
  }
  void respond(int status, const char* type, const std::string& body) {
    const char* phrase = status == 200 ? " OK" : status == 400 ? " Bad Request" : " Not Found";
    std::string h = "HTTP/1.1 " + std::to_string(status) + phrase + "\r\nContent-Type: " + type +
                    "\r\nContent-Length: " + std::to_string(body.size()) +
                    "\r\nConnection: close\r\n\r\n";
    out.stage_copy(h);
    if (head.method != HTTP_HEAD) out.stage_copy(body);
    out.flush();
    done = true;
    if (out.queued() == 0) close();
  }
  void close() {
    if (closed) return;
    closed = true;
    if (tailing) server->tail()->unsubscribe(this);
    conns().erase(this);
    // Two handles: the object goes when the second one has closed.
    auto on_closed = [](uv_handle_t* h) {
      auto* c = static_cast<AdminConn*>(h->data);
      if (--c->open_handles == 0) delete c;
    };
    uv_timer_stop(&timer);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer), on_closed);
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp), on_closed);
  }
  static void on_out(void* owner, Outbox*, Outbox::Event, int) {
    auto* c = static_cast<AdminConn*>(owner);
    if (c->done) c->close();
  }
  static std::set<AdminConn*>& conns() {
    static std::set<AdminConn*> s;
    return s;
  }

  uv_tcp_t tcp;
  uv_timer_t timer;  // an admin request must arrive and be answered within admin.idle_timeout
  int open_handles = 2;
  Server* server;
  Http1Parser parser;
  Outbox out;
  MessageHead head;
  bool done = false;
  bool closed = false;
  bool tailing = false;
};

void on_admin_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* c = static_cast<AdminConn*>(s->data);
  if (nread == 0) return;
  if (nread < 0 || c->done || c->tailing) {
    if (nread < 0) c->close();
    return;
  }
  Http1Parser::Result r = c->parser.execute(buf->base, static_cast<size_t>(nread));
  if (r.status == Http1Parser::Status::Error) {
    c->respond(400, "text/plain", std::string(http_error_reason(c->parser.error())) + "\n");
  }
}

void on_admin_connection(uv_stream_t* server, int status) {
  if (status < 0) return;
  auto* c = new AdminConn(static_cast<Server*>(server->data));
  uv_tcp_init(server->loop, &c->tcp);
  uv_timer_init(server->loop, &c->timer);
  c->timer.data = c;
  uv_timer_start(
      &c->timer, [](uv_timer_t* t) { static_cast<AdminConn*>(t->data)->close(); },
      c->server->admin_idle_ms(), 0);
  AdminConn::conns().insert(c);
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) {
    c->close();
    return;
  }
  c->out.attach(reinterpret_cast<uv_stream_t*>(&c->tcp));
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(&c->tcp),
      [](uv_handle_t*, size_t, uv_buf_t* b) { *b = uv_buf_init(g_buf, sizeof g_buf); },
      on_admin_read);
}

}  // namespace

bool start_admin(uv_loop_t* loop, const config::Address& addr, Server* server, uv_tcp_t* handle,
                 int inherited_fd) {
  uv_tcp_init(loop, handle);
  handle->data = server;
  int r = inherited_fd >= 0 ? uv_tcp_open(handle, inherited_fd)
                            : uv_tcp_bind(handle, reinterpret_cast<const sockaddr*>(&addr.sa), 0);
  if (r == 0) r = uv_listen(reinterpret_cast<uv_stream_t*>(handle), 128, on_admin_connection);
  if (r != 0) {
    log_error("cannot listen on %s (admin): %s", addr.text.c_str(), uv_strerror(r));
    return false;
  }
  sockaddr_storage ss{};
  int len = sizeof ss;
  uv_tcp_getsockname(handle, reinterpret_cast<sockaddr*>(&ss), &len);
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port;
  if (ss.ss_family == AF_INET) {
    auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &s4->sin_addr, host, sizeof host);
    port = ntohs(s4->sin_port);
    log_error("admin listening address=%s:%u", host, port);
  } else {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof host);
    port = ntohs(s6->sin6_port);
    log_error("admin listening address=[%s]:%u", host, port);
  }
  return true;
}

void close_admin_connections() {
  std::set<AdminConn*> all = AdminConn::conns();
  for (AdminConn* c : all) c->close();
}

}  // namespace parapet
