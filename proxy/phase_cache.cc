#include "proxy/phase_cache.h"

#include <charconv>
#include <ctime>

#include "proxy/phase_policy.h"
#include "proxy/worker.h"

namespace parapet {

namespace {

int64_t now_s() { return static_cast<int64_t>(std::time(nullptr)); }

void append_uint(std::string& s, uint64_t v) {
  char buf[24];
  s.append(buf, static_cast<size_t>(std::to_chars(buf, buf + sizeof buf, v).ptr - buf));
}

void append_field(std::string& s, std::string_view name, std::string_view value) {
  s.append(name);
  s.append(": ", 2);
  s.append(value);
  s.append("\r\n", 2);
}

std::string_view path_of(std::string_view target) {
  size_t q = target.find('?');
  return q == std::string_view::npos ? target : target.substr(0, q);
}

const CacheRuntime::Rule* match_rule(const CacheRuntime& rt, const Exchange* ex,
                                     cache::Fields req) {
  std::string_view path = path_of(ex->target);
  for (const CacheRuntime::Rule& r : rt.rules) {
    const config::CacheRule& c = *r.cfg;
    if (!c.path.empty() && path.substr(0, c.path.size()) != c.path) continue;
    if (!c.bypass_cookie.empty() && !cache::cookie_value(req, c.bypass_cookie)) continue;
    if (!c.bypass_header.empty() && !cache::has_field(req, c.bypass_header)) continue;
    return &r;
  }
  return nullptr;
}

std::string_view scheme_of(const Exchange* ex) {
  return ex->client->tls() != nullptr ? "https" : "http";
}

std::string_view tenant_of(const Exchange* ex) { return ex->snap->cfg().tenants[ex->tenant].name; }

void finish_serving(ExchangeCache* ec);

// Stages as much of the stored body as the client takes; returns when done (the exchange may
// be gone then), blocked on the client (Drained resumes), or waiting for the fill (the entry's
// observer resumes).
void serve_body(ExchangeCache* ec) {
  Exchange* ex = ec->ex;
  ClientConn* c = ex->client;
  Outbox& o = c->out;
  size_t staged = 0;
  while (ec->remaining > 0) {
    std::string_view v = ec->reader.next();
    if (v.empty()) {
      const cache::Entry::State st = ec->entry->state();
      if (st == cache::Entry::State::Complete) break;
      if (st == cache::Entry::State::Aborted) {
        // The fill died mid-body after our head went out: the client must see it cut.
        o.flush();
        c->close_now();
        return;
      }
      o.flush();  // more comes with the fill; its observer wakes us
      return;
    }
    size_t n = ec->remaining == UINT64_MAX ? v.size() : std::min<uint64_t>(v.size(), ec->remaining);
    if (ec->chunked) {
      char size[24];
      char* end = std::to_chars(size, size + 20, n, 16).ptr;
      *end++ = '\r';
      *end++ = '\n';
      o.stage_copy(size, static_cast<size_t>(end - size));
      o.stage_ref(v.data(), n);
      o.stage_copy("\r\n", 2);
    } else {
      o.stage_ref(v.data(), n);  // the entry stays alive with the exchange: no copy
    }
    ex->bytes_out += n;
    if (ec->remaining != UINT64_MAX) ec->remaining -= n;
    staged += n;
    if (staged >= 64 * 1024) {
      staged = 0;
      o.flush();
      if (o.queued() > kHighWater) {
        c->arm_timer(ClientConn::TimerKind::Send);  // a client that stops reading is cut
        return;
      }
    }
  }
  if (ec->chunked) o.stage_copy("0\r\n\r\n", 5);
  o.flush();
  finish_serving(ec);
}

void finish_serving(ExchangeCache* ec) {
  Exchange* ex = ec->ex;
  ec->mode = ExchangeCache::Mode::Pass;
  ec->served = true;
  if (ec->background && !ec->origin_done) return;  // the refresh ends the exchange
  ex->resp_done = true;
  if (ex->in_head_phase) return;                    // consume() ends the exchange
  if (ex->req_done) ex->client->finish_exchange();  // frees ex (and ec)
}

std::optional<uint64_t> content_length(cache::Fields f) {
  std::optional<std::string_view> v = cache::first_value(f, "content-length");
  if (!v) return std::nullopt;
  uint64_t n = 0;
  auto [p, err] = std::from_chars(v->data(), v->data() + v->size(), n);
  if (err != std::errc() || p != v->data() + v->size()) return std::nullopt;
  return n;
}

// Answers the client from ec->entry. False: a precondition only the origin can judge
// (If-Match, If-Unmodified-Since) and `may_forward`: go upstream instead.
bool start_serving(ExchangeCache* ec, const cache::Decision& d, bool may_forward) {
  Exchange* ex = ec->ex;
  ClientConn* c = ex->client;
  const cache::Entry& e = *ec->entry;
  const cache::Fields stored = e.headers();
  const bool complete = e.state() == cache::Entry::State::Complete;
  const std::string_view method = ex->is_head ? "HEAD" : "GET";
  cache::CondResult cond = cache::evaluate_conditional(method, ec->req_fields, e.status(), stored,
                                                       e.meta().response_time);
  if (cond == cache::CondResult::Forward) {
    if (may_forward) return false;
    cond = cache::CondResult::Full;
  }
  uint16_t st = e.status();
  uint64_t first = 0;
  uint64_t len = UINT64_MAX;  // unknown: the fill is still streaming without a length
  if (complete) {
    len = e.body().size();
  } else if (std::optional<uint64_t> cl = content_length(stored)) {
    len = *cl;
  }
  bool body = !ex->is_head && st != 204 && st != 304;
  std::string content_range;
  if (cond == cache::CondResult::NotModified) {
    st = 304;
    body = false;
  } else if (complete) {
    cache::RangeAnswer ra = cache::evaluate_range(method, ec->req_fields, e.status(), stored, len);
    if (ra.kind == cache::RangeAnswer::Kind::Partial) {
      st = 206;
      first = ra.first;
      len = ra.last - ra.first + 1;
      content_range = std::move(ra.content_range);
    } else if (ra.kind == cache::RangeAnswer::Kind::Unsatisfiable) {
      st = 416;
      body = false;
      len = 0;
      content_range = std::move(ra.content_range);
    }
  }
  const bool client10 = ex->req.minor == 0;
  const bool unknown_len = len == UINT64_MAX && st != 304 && st != 204;
  // The response rules see the stored head as it is about to be sent (DESIGN.md: policy
  // (response) runs on cached answers too); their header rewrites apply below.
  if (ex->policy_active) phase_policy_response(ex, st, stored);
  auto dropped = [ex](std::string_view name) {
    return ex->policy_active && policy_drops_response_header(ex, name);
  };
  std::string& h = ex->resp_head;
  h.clear();
  h.append("HTTP/1.1 ", 9);
  append_uint(h, st);
  h.push_back(' ');
  h.append(status_phrase(st));
  h.append("\r\n", 2);
  if (st == 304) {
    for (const cache::Field& f : cache::not_modified_fields(stored)) {
      if (!dropped(f.name)) append_field(h, f.name, f.value);
    }
  } else if (st == 416) {
    if (std::optional<std::string_view> date = cache::first_value(stored, "date")) {
      append_field(h, "Date", *date);
    }
  } else {
    for (const cache::Field& f : stored) {
      if (cache::ieq(f.name, "content-length") || cache::ieq(f.name, "content-range")) continue;
      if (!dropped(f.name)) append_field(h, f.name, f.value);
    }
  }
  if (!content_range.empty()) append_field(h, "Content-Range", content_range);
  h.append("Age: ", 5);
  append_uint(h, static_cast<uint64_t>(std::max<int64_t>(d.age, 0)));
  h.append("\r\n", 2);
  ec->status.ttl = d.ttl;
  ec->status_value = cache::cache_status_value("parapet", ec->status);
  append_field(h, "Cache-Status", ec->status_value);
  if (c->tls() != nullptr) {
    const std::string& hsts = ex->snap->cfg().tenants[ex->tenant].hsts;
    if (!hsts.empty() && !cache::has_field(stored, "strict-transport-security")) {
      append_field(h, "Strict-Transport-Security", hsts);
    }
  }
  if (ex->policy_active) policy_add_response_headers(ex, h);
  ec->chunked = false;
  bool close = false;
  if (st == 416) {
    h.append("Content-Length: 0\r\n");
  } else if (st != 304 && st != 204) {
    if (!unknown_len) {
      h.append("Content-Length: ");
      append_uint(h, len);
      h.append("\r\n", 2);
    } else if (!client10) {
      if (body) h.append("Transfer-Encoding: chunked\r\n");
      ec->chunked = body;
    } else {
      close = true;  // HTTP/1.0 and no length yet: the close ends the body
    }
  }
  const bool keep = ex->req.keep_alive && !close && !c->close_after && !c->wk()->draining();
  ex->client_keep = keep;
  if (!keep) {
    h.append("Connection: close\r\n");
  } else if (client10) {
    h.append("Connection: keep-alive\r\n");
  }
  h.append("\r\n", 2);
  c->out.stage_ref(h.data(), h.size());
  ex->status = st;
  ex->bytes_out += h.size();
  ex->resp_started = true;
  ex->replied = true;
  if (ex->t_first_byte_ns == 0) ex->t_first_byte_ns = uv_hrtime();
  ec->mode = ExchangeCache::Mode::Serve;
  ec->remaining = body ? len : 0;
  ec->reader = e.body().reader();
  if (first > 0) ec->reader.skip(first);
  serve_body(ec);
  return true;
}

// The exchange stops waiting for another's fill and goes to the origin itself (unstored).
void go_upstream(ExchangeCache* ec) {
  Exchange* ex = ec->ex;
  ClientConn* c = ex->client;
  if (ec->entry) ec->entry->unsubscribe(ec);
  ec->entry.reset();
  ec->mode = ExchangeCache::Mode::Pass;
  c->wk()->timers().disarm(&c->timer);
  if (phase_upstream(ex) == Flow::Respond) {
    c->out.flush();
    if (ex->req_done) c->finish_exchange();
    return;
  }
  c->flush_all();
}

// RFC 9110 9.2.1: the safe methods. Every other method, including one whose safety is unknown
// (an extension method), is unsafe for the cache (RFC 9111 4.4).
bool safe_method(int m) {
  return m == HTTP_GET || m == HTTP_HEAD || m == HTTP_OPTIONS || m == HTTP_TRACE;
}

// RFC 9111 4.4: after an unsafe request got a non-error answer, its URL and the URLs of
// Location and Content-Location (references resolved against the request's URI) are
// invalidated; the latter only on the request's host.
void invalidate(ExchangeCache* ec) {
  Exchange* ex = ec->ex;
  cache::Store* store = ex->client->wk()->cache();
  const CacheRuntime& rt = ex->snap->cache(ex->tenant);
  store->purge_key(ec->key);
  for (const HeaderSpan& hs : ex->resp.headers) {
    std::string_view name = ex->resp.name(hs);
    if (!cache::ieq(name, "location") && !cache::ieq(name, "content-location")) continue;
    std::optional<cache::ResolvedUri> u =
        cache::resolve_reference(scheme_of(ex), ex->host, ex->target, ex->resp.value(hs));
    if (!u || !cache::same_host(u->authority, ex->host)) continue;  // not ours to invalidate
    store->purge_key(
        cache::make_key(tenant_of(ex), u->scheme, u->authority, u->target, rt.key, ec->req_fields));
  }
}

// Request `Cache-Control: only-if-cached` and nothing stored may answer it (RFC 9111 5.2.1.7):
// 504, and the origin is not contacted.
Flow only_if_cached_timeout(ExchangeCache* ec) {
  Exchange* ex = ec->ex;
  ec->fill.reset();
  if (ec->entry) {
    ec->entry->unsubscribe(ec);
    ec->entry.reset();
  }
  ec->mode = ExchangeCache::Mode::Pass;
  ec->status = cache::CacheStatus{};  // not forwarded: neither hit nor fwd
  ec->status.detail = "only-if-cached";
  ec->status_value = cache::cache_status_value("parapet", ec->status);
  std::string extra = "Cache-Status: " + ec->status_value + "\r\n";
  ex->client->reply(504, "cache.only_if_cached", false, extra);
  return Flow::Respond;
}

// A 304 (or a HEAD's 200) selected `ec->entry`: its updated copy replaces it in the store.
// `adopt`: the exchange answers from the updated copy (not while it is serving the old one).
void freshen(ExchangeCache* ec, int64_t now, bool adopt) {
  cache::MergedFields merged;
  cache::merge_304(ec->entry->headers(), ec->resp_fields, &merged);
  cache::EntryMeta meta = cache::freshened_meta(ec->entry->status(), merged.fields, ec->resp_fields,
                                                ec->request_time, now, *ec->policy);
  if (ec->fill->begin_revalidated(*ec->entry, merged.fields, meta, ec->req_fields) && adopt) {
    ec->entry = ec->fill->entry();
  }
  ec->fill.reset();
}

// The origin's 304 selected no stored response: the request goes to the origin again, as the
// client sent it (its own conditionals included, none of ours), with the fill kept for the
// answer. Runs once the 304 has been read (cache_take_over). False: answered locally instead.
bool refetch(ExchangeCache* ec) {
  Exchange* ex = ec->ex;
  ClientConn* c = ex->client;
  ec->refetch = false;
  ec->swallow = false;
  ec->status.fwd_status = 0;  // the 304 is not what the client gets
  ex->resp_done = false;
  ex->attempts = 0;
  ex->failed_server = UINT32_MAX;
  if (phase_upstream(ex) == Flow::Respond) {
    c->out.flush();
    return false;  // a local error answer: the exchange ends
  }
  c->flush_all();
  return true;
}

}  // namespace

void ExchangeCacheDeleter::operator()(ExchangeCache* c) const { delete c; }

ExchangeCache::~ExchangeCache() {
  // After unsubscribe no thread calls on_entry_update any more; then leave the inbox.
  if (entry) entry->unsubscribe(this);
  worker->cache_forget(this);
}

void ExchangeCache::on_entry_update(const cache::Entry&) {
  if (!queued.exchange(true, std::memory_order_acq_rel)) worker->cache_wake(this);
}

Flow phase_cache(Exchange* ex) {
  Worker* w = ex->client->wk();
  cache::Store* store = w->cache();
  const CacheRuntime& rt = ex->snap->cache(ex->tenant);
  if (!rt.enabled || store == nullptr || ex->req.upgrade) return Flow::Continue;
  if (ex->policy_active && ex->policy->skip_cache) return Flow::Continue;  // skip: products
  ex->cache.reset(new ExchangeCache(ex, w));
  ExchangeCache* ec = ex->cache.get();
  cache::fields_of(ex->req, &ec->req_fields);
  ec->key =
      cache::make_key(tenant_of(ex), scheme_of(ex), ex->host, ex->target, rt.key, ec->req_fields);
  const int method = ex->req.method;
  if (!safe_method(method)) {
    // Written through to the origin whatever the request says (RFC 9111 4).
    ec->mode = ExchangeCache::Mode::Invalidate;
    ec->status.fwd = cache::CacheStatus::Fwd::Method;
    return Flow::Continue;
  }
  ec->req_cc = cache::parse_request_cache_control(ec->req_fields);
  const bool only_if_cached = ec->req_cc.only_if_cached;
  if ((method != HTTP_GET && method != HTTP_HEAD) || ex->has_body) {
    ec->status.fwd = cache::CacheStatus::Fwd::Method;
    return only_if_cached ? only_if_cached_timeout(ec) : Flow::Continue;
  }
  const CacheRuntime::Rule* rule = match_rule(rt, ex, ec->req_fields);
  if ((rule != nullptr && rule->cfg->bypass) || (ex->policy_active && ex->policy->cache_bypass)) {
    ec->status.fwd = cache::CacheStatus::Fwd::Bypass;
    return only_if_cached ? only_if_cached_timeout(ec) : Flow::Continue;
  }
  ec->policy = rule != nullptr ? &rule->policy : &rt.base;
  if (ex->policy_active && ex->policy->cache_ttl_s >= 0) {
    // set_cache_settings edge_ttl: the lifetime of anything stored for this request.
    ec->own_policy = *ec->policy;
    ec->own_policy.cache_everything = true;
    ec->own_policy.cache_everything_ttl = ex->policy->cache_ttl_s;
    ec->policy = &ec->own_policy;
  }
  // Request no-store: nothing of this request or its response is stored (RFC 9111 5.2.1.5), so
  // it neither fills nor refreshes; only-if-cached: the origin is not contacted. Neither waits
  // for another request's fill.
  const bool no_store = ec->req_cc.no_store;
  const bool may_fill = !no_store && !only_if_cached;
  const int64_t now = now_s();
  ec->request_time = now;
  cache::Store::Lookup r = store->lookup(ec->key, ec->req_fields, ec, may_fill);
  using Result = cache::Store::Result;
  switch (r.kind) {
    case cache::Store::Lookup::Kind::Hit: {
      ec->entry = std::move(r.entry);
      cache::Decision d = cache::decide(ec->entry->meta(), ec->req_cc, *ec->policy, now);
      if (d.verdict == cache::Verdict::StaleWhileRevalidate &&
          ec->entry->state() == cache::Entry::State::Complete) {
        // Answer now from the stale entry; refresh it once (a refresh already in flight for
        // this key makes this one a plain stale hit).
        store->recount(ec->key, Result::Hit, Result::Stale);
        ec->status.hit = true;
        ec->status.detail = "stale-while-revalidate";
        if (method == HTTP_GET && may_fill) {
          cache::Store::Lookup rv = store->revalidate(ec->key);
          if (rv.kind == cache::Store::Lookup::Kind::Miss) {
            ec->fill = std::move(rv.fill);
            ec->background = true;
            ec->swallow = true;
          }
        }
        start_serving(ec, d, false);
        return ec->background ? Flow::Continue : Flow::Respond;
      }
      if (d.verdict == cache::Verdict::Fresh || d.verdict == cache::Verdict::StaleAcceptable) {
        const Result counted =
            d.verdict == cache::Verdict::StaleAcceptable ? Result::Stale : Result::Hit;
        if (counted == Result::Stale) store->recount(ec->key, Result::Hit, Result::Stale);
        ec->status.hit = true;
        if (start_serving(ec, d, true)) return Flow::Respond;
        // A precondition only the origin can judge (If-Match, If-Unmodified-Since).
        store->recount(ec->key, counted, Result::Miss);
        ec->status.hit = false;
        ec->status.fwd = cache::CacheStatus::Fwd::Request;
        ec->entry->unsubscribe(ec);
        ec->entry.reset();
        return only_if_cached ? only_if_cached_timeout(ec) : Flow::Continue;
      }
      // Stale: ask the origin whether it changed (the entry answers a 304, or a failure
      // within stale-if-error). Counted as a miss until a 304 makes it a revalidation.
      ec->entry->unsubscribe(ec);
      store->recount(ec->key, Result::Hit, Result::Miss);
      if (only_if_cached) return only_if_cached_timeout(ec);
      ec->status.fwd = cache::CacheStatus::Fwd::Stale;
      if (!may_fill) {
        ec->entry.reset();  // no-store: the request goes through as sent, nothing is stored
        return Flow::Continue;
      }
      cache::Store::Lookup rv = store->revalidate(ec->key);
      if (rv.kind == cache::Store::Lookup::Kind::Miss) {
        ec->fill = std::move(rv.fill);
        ec->mode = ExchangeCache::Mode::Revalidate;
        ec->stale_if_error = d.verdict == cache::Verdict::StaleIfError;
      } else {
        ec->entry.reset();  // another exchange revalidates: this one just goes through
      }
      return Flow::Continue;
    }
    case cache::Store::Lookup::Kind::Wait: {
      ec->entry = std::move(r.entry);
      ec->mode = ExchangeCache::Mode::Wait;
      ec->status.fwd = cache::CacheStatus::Fwd::Miss;
      ec->status.collapsed = true;
      ex->client->arm_timer(ClientConn::TimerKind::CacheWait);
      // Progress made between the lookup and now is not missed: check once on the loop.
      if (ec->entry->state() != cache::Entry::State::Pending) ec->on_entry_update(*ec->entry);
      return Flow::Respond;
    }
    case cache::Store::Lookup::Kind::Miss:
      // RFC 9211: vary-miss when the URL has stored responses, none for this request's Vary
      // values.
      ec->status.fwd =
          r.other_variants ? cache::CacheStatus::Fwd::VaryMiss : cache::CacheStatus::Fwd::UriMiss;
      if (only_if_cached) return only_if_cached_timeout(ec);
      ec->fill = std::move(r.fill);
      if (ec->fill) ec->mode = ExchangeCache::Mode::Fetch;
      return Flow::Continue;
    case cache::Store::Lookup::Kind::Pass:
      ec->status.fwd = cache::CacheStatus::Fwd::Miss;
      return Flow::Continue;
  }
  return Flow::Continue;
}

bool cache_drops_request_header(const Exchange* ex, std::string_view name) {
  const ExchangeCache* ec = ex->cache.get();
  if (ec == nullptr || !ec->fill) return false;
  // A fill needs the whole response (a 206 is never stored): Range is answered from the
  // stored object. A revalidation sends our validators instead of the client's.
  if (cache::ieq(name, "range") || cache::ieq(name, "if-range")) return true;
  if (ec->mode == ExchangeCache::Mode::Revalidate || ec->background) {
    return cache::ieq(name, "if-none-match") || cache::ieq(name, "if-modified-since");
  }
  return false;
}

void cache_add_request_headers(const Exchange* ex, std::string& head) {
  const ExchangeCache* ec = ex->cache.get();
  if (ec == nullptr || !ec->entry ||
      (ec->mode != ExchangeCache::Mode::Revalidate && !ec->background)) {
    return;
  }
  for (const auto& [name, value] : cache::revalidation_fields(ec->entry->headers())) {
    append_field(head, name, value);
  }
}

void cache_on_response_head(Exchange* ex) {
  ExchangeCache* ec = ex->cache.get();
  if (ec == nullptr || !ec->fill) return;
  const uint16_t st = ex->resp.status;
  ec->resp_fields.clear();
  cache::fields_of(ex->resp, &ec->resp_fields);
  const int64_t now = now_s();
  if (ec->background) {
    // A refresh behind a stale answer: nothing of it reaches the client.
    ec->status.fwd_status = st;
    if (st == 304) {
      // One that selects no stored response updates nothing (RFC 9111 4.3.4).
      if (cache::can_freshen(ec->entry->headers(), ec->resp_fields)) {
        freshen(ec, now, false);
      } else {
        ec->fill.reset();
      }
      return;
    }
    if (st >= 500) {
      ec->fill.reset();  // keep the stale entry
      return;
    }
  } else if (ec->mode == ExchangeCache::Mode::Revalidate && ec->entry) {
    ec->status.fwd_status = st;
    cache::Store* store = ex->client->wk()->cache();
    if (st == 304) {
      if (cache::can_freshen(ec->entry->headers(), ec->resp_fields)) {
        freshen(ec, now, true);
        store->recount(ec->key, cache::Store::Result::Miss, cache::Store::Result::Revalidated);
        ec->swallow = ec->serve_after_origin = true;
        return;
      }
      // The 304 selects no stored response: it must update nothing, and it answers our
      // validators, not a question the client asked. The request goes again (refetch()).
      ec->entry.reset();
      ec->mode = ExchangeCache::Mode::Fetch;
      ec->refetch = ec->swallow = true;
      return;
    }
    if (st >= 500 && ec->stale_if_error) {
      ec->fill.reset();
      ec->swallow = ec->serve_after_origin = true;
      return;
    }
    if (ex->is_head && st == 200) {
      // A HEAD's 200 updates the stale stored GET response when it describes the same
      // representation, and invalidates it otherwise (RFC 9111 4.3.5); the client gets the
      // origin's answer either way.
      if (ec->entry->status() == 200 &&
          cache::head_can_freshen(ec->entry->headers(), ec->entry->body().size(),
                                  ec->resp_fields)) {
        freshen(ec, now, false);
      } else {
        ec->fill.reset();
        store->purge_key(ec->key);
      }
      ec->entry.reset();
      return;
    }
    ec->entry.reset();  // replaced by whatever the origin sent
  }
  cache::Storability s = cache::storable(ex->is_head ? "HEAD" : "GET", st, ec->req_fields,
                                         ec->req_cc, ec->resp_fields, *ec->policy);
  if (!s.ok || ex->is_head) {
    ec->fill.reset();  // waiters go to the origin themselves
    return;
  }
  cache::EntryMeta meta = cache::make_meta(st, ec->resp_fields, ec->request_time, now, *ec->policy);
  std::optional<uint64_t> length;
  if (ex->resp.has_content_length) length = ex->resp.content_length;
  if (!ec->fill->begin(st, ec->resp_fields, meta, ec->req_fields, length)) {
    ec->fill.reset();
    return;
  }
  ec->status.stored = true;
}

void cache_response_headers(Exchange* ex, std::string& head) {
  ExchangeCache* ec = ex->cache.get();
  if (ec == nullptr || ec->mode == ExchangeCache::Mode::Invalidate) return;
  ec->status_value = cache::cache_status_value("parapet", ec->status);
  append_field(head, "Cache-Status", ec->status_value);
}

bool cache_swallows(const Exchange* ex) { return ex->cache && ex->cache->swallow; }

void cache_on_body(Exchange* ex, const char* p, size_t n) {
  ExchangeCache* ec = ex->cache.get();
  if (ec->fill && !ec->fill->append(p, n)) ec->fill.reset();  // too big, or no room: pass
}

void cache_on_complete(Exchange* ex) {
  ExchangeCache* ec = ex->cache.get();
  if (ec->refetch) return;  // a swallowed 304: the fill waits for the refetch's answer
  if (ec->fill) {
    ec->fill->finish();
    ec->fill.reset();
  }
  const uint16_t st = ex->resp.status;
  if (ec->mode == ExchangeCache::Mode::Invalidate && st >= 200 && st < 400) invalidate(ec);
}

bool cache_on_upstream_failure(Exchange* ex) {
  ExchangeCache* ec = ex->cache.get();
  if (ec == nullptr || !ec->stale_if_error || !ec->entry || ex->resp_started) return false;
  ec->fill.reset();
  ec->swallow = false;
  ec->serve_after_origin = false;
  ex->client->wk()->cache()->recount(ec->key, cache::Store::Result::Miss,
                                     cache::Store::Result::Stale);
  cache::Decision d = cache::decide(ec->entry->meta(), ec->req_cc, *ec->policy, now_s());
  ec->status.detail = "stale-if-error";
  start_serving(ec, d, false);
  return true;
}

bool cache_take_over(Exchange* ex) {
  ExchangeCache* ec = ex->cache.get();
  if (ec->background) {
    ec->origin_done = true;
    if (ec->served) return false;  // both parts done: the exchange ends
    ex->resp_done = false;         // the stale answer is still being written
    return true;
  }
  if (ec->refetch) return refetch(ec);
  if (!ec->serve_after_origin || !ec->entry) return false;
  ec->serve_after_origin = false;
  ec->swallow = false;
  ex->resp_done = false;
  if (ec->status.fwd_status >= 500) {
    ex->client->wk()->cache()->recount(ec->key, cache::Store::Result::Miss,
                                       cache::Store::Result::Stale);
    ec->status.detail = "stale-if-error";
  }
  cache::Decision d = cache::decide(ec->entry->meta(), ec->req_cc, *ec->policy, now_s());
  start_serving(ec, d, false);
  return true;
}

bool cache_resume(Exchange* ex) {
  ExchangeCache* ec = ex->cache.get();
  if (ec == nullptr) return false;
  switch (ec->mode) {
    case ExchangeCache::Mode::Serve:
      serve_body(ec);
      return true;
    case ExchangeCache::Mode::Wait: {
      const cache::Entry::State st = ec->entry->state();
      if (st == cache::Entry::State::Pending) return true;
      ClientConn* c = ex->client;
      c->wk()->timers().disarm(&c->timer);
      if (st != cache::Entry::State::Aborted && ec->entry->has_head() &&
          ec->entry->matches(ec->key, ec->req_fields)) {
        // Coalescing shares a response only with requests that may reuse it (RFC 9111 4): not
        // one that is stale on arrival (max-age=0, no-cache, ...) or that this request's own
        // directives refuse.
        cache::Decision d = cache::decide(ec->entry->meta(), ec->req_cc, *ec->policy, now_s());
        if ((d.verdict == cache::Verdict::Fresh || d.verdict == cache::Verdict::StaleAcceptable) &&
            start_serving(ec, d, true)) {
          return true;
        }
      }
      go_upstream(ec);
      return true;
    }
    default:
      return false;
  }
}

bool cache_background_failed(Exchange* ex) {
  ExchangeCache* ec = ex->cache.get();
  if (ec == nullptr || !ec->background || ec->origin_done) return false;
  ec->fill.reset();  // the stale entry stays
  ec->origin_done = true;
  if (ec->served) {
    ex->resp_done = true;
    ex->client->out.flush();
    if (ex->req_done) ex->client->finish_exchange();
  }
  return true;
}

void cache_wait_timeout(Exchange* ex) {
  ExchangeCache* ec = ex->cache.get();
  if (ec == nullptr || ec->mode != ExchangeCache::Mode::Wait) return;
  ec->status.detail = "wait-timeout";
  go_upstream(ec);
}

}  // namespace parapet
