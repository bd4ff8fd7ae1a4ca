// Phase "route": the request target and Host select the tenant (exact host, then the longest
// "*." wildcard) and, within it, the origin group (longest path prefix).
#include <strings.h>

#include <cctype>

#include "proxy/conn.h"
#include "proxy/worker.h"

namespace parapet {

Flow phase_route(Exchange* ex) {
  ClientConn* c = ex->client;
  const MessageHead& r = ex->req;
  std::string_view target = r.url();
  const HeaderSpan* host_h = r.find("host");
  std::string_view host = host_h != nullptr ? r.value(*host_h) : std::string_view();
  if (!target.empty() && target[0] == '/') {
    ex->target = target;
  } else if (target.size() > 7 && strncasecmp(target.data(), "http://", 7) == 0) {
    // absolute-form: the authority replaces Host (RFC 9112 section 3.2.2).
    std::string_view rest = target.substr(7);
    size_t slash = rest.find('/');
    host = rest.substr(0, slash);
    ex->target = slash == std::string_view::npos ? std::string_view("/") : rest.substr(slash);
    ex->absolute_form = true;
  } else if (target == "*" && r.method == HTTP_OPTIONS) {
    ex->target = target;
  } else {
    c->reply(400, "http.bad_target", true);
    return Flow::Respond;
  }
  ex->host = host;

  // Lowercase, without the port, for the lookup.
  char buf[256];
  size_t n = 0;
  std::string_view h = host;
  if (!h.empty() && h[0] == '[') {
    size_t close = h.find(']');
    h = close == std::string_view::npos ? h : h.substr(0, close + 1);
  } else if (size_t colon = h.rfind(':'); colon != std::string_view::npos) {
    h = h.substr(0, colon);
  }
  if (!h.empty() && h.back() == '.') h.remove_suffix(1);  // "example.com." is example.com
  if (h.size() >= sizeof buf) {
    c->reply(400, "http.bad_host", true);
    return Flow::Respond;
  }
  for (char ch : h) buf[n++] = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  int tenant = ex->snap->find_tenant(std::string_view(buf, n));
  if (tenant < 0) {
    c->reply(421, "route.unknown_host", false);
    return Flow::Respond;
  }
  Worker* w = c->wk();
  // The certificate was chosen by SNI for one tenant (TlsConn::cert_tenant): a Host of another
  // tenant on the same connection would cross tenants (RFC 9110 section 7.4: 421).
  if (const TlsConn* t = c->tls();
      t != nullptr && !t->sni.empty() &&
      t->cert_tenant != ex->snap->cfg().tenants[static_cast<size_t>(tenant)].name) {
    c->reply(421, "route.sni_mismatch", false);
    return Flow::Respond;
  }
  ex->tenant = static_cast<uint32_t>(tenant);
  ex->tstats = w->tenant_stats(ex->tenant);
  if (const TlsConn* t = c->tls();
      t != nullptr && !ex->snap->cfg().tenants[ex->tenant].client_ca.empty()) {
    // mTLS in status mode: the handshake let the client in; its requests need a valid cert,
    // verified by this tenant's client_ca (a connection without SNI was verified by the
    // default tenant's, which says nothing about this one).
    if (!t->client_cert_ok || t->cert_tenant != ex->snap->cfg().tenants[ex->tenant].name) {
      c->reply(403, "tls.client_cert_required", false);
      return Flow::Respond;
    }
  }
  if (c->tls() == nullptr && ex->snap->cfg().tenants[ex->tenant].redirect_http) {
    // The tenant serves HTTPS only: 308 keeps the method and body semantics.
    std::string loc = "Location: https://";
    loc.append(h);  // the host without its port: https is on its default port
    loc.append(ex->target);
    loc.append("\r\n");
    c->reply(308, "route.https_redirect", false, loc);
    return Flow::Respond;
  }
  std::string_view path = ex->target.substr(0, ex->target.find('?'));
  const config::Route* route = ex->snap->find_route(ex->tenant, path);
  if (route == nullptr) {
    c->reply(404, "route.no_route", false);
    return Flow::Respond;
  }
  ex->rstats = w->route_stats(
      ex->tenant, static_cast<size_t>(route - ex->snap->cfg().tenants[ex->tenant].routes.data()));
  ex->group = &ex->snap->group(ex->tenant, route->origin_index);
  return Flow::Continue;
}

}  // namespace parapet
