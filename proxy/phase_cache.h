// Phase "cache" (DESIGN.md: after route, policy and Lua, before upstream): answers GET and
// HEAD from the process-wide store (proxy/cache/store.h), or lets the request go upstream with
// a Fill so the response is stored while it streams to the client.
//
//   fresh hit        answered here: stored head + Age + Cache-Status, conditional (304),
//                    Range (206/416), HEAD; the body is staged straight from the stored
//                    segments (no copy) with the client's backpressure.
//   stale hit        revalidated: the origin gets If-None-Match / If-Modified-Since; a 304
//                    refreshes the stored head and the client is answered from the entry; a
//                    200 replaces it; an origin failure within stale-if-error serves the entry.
//   miss             upstream with a Fill: storable responses are stored as they stream.
//   fill in flight   coalesced: the exchange waits (bounded by the route's response timeout)
//                    and serves the entry as it streams, or goes upstream if it aborts or is
//                    another variant. Progress made on another worker's thread wakes this
//                    worker through its async handle.
//   unsafe method    (any but GET, HEAD, OPTIONS, TRACE) a 2xx/3xx answer purges the URL and
//                    its Location / Content-Location (same host).
//   only-if-cached   nothing stored may answer: 504, the origin is not contacted.
// Every answer of a caching tenant carries Cache-Status (RFC 9211).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "proxy/cache/conditional.h"
#include "proxy/cache/freshness.h"
#include "proxy/cache/key.h"
#include "proxy/cache/store.h"
#include "proxy/cache_runtime.h"
#include "proxy/conn.h"

namespace parapet {

// The cache's part of one exchange (allocated for requests of caching tenants only).
struct ExchangeCache final : cache::FillObserver {
  enum class Mode : uint8_t {
    Pass,        // not looked up, or nothing to do (status header only)
    Fetch,       // upstream with a fill
    Revalidate,  // upstream with a fill and conditional headers, `entry` is the stale one
    Wait,        // waiting for another exchange's fill
    Serve,       // answering from `entry`
    Invalidate,  // unsafe method: purge on success
  };

  ExchangeCache(Exchange* e, Worker* w) : ex(e), worker(w) {}
  ~ExchangeCache() override;
  // Runs on the thread that changed the entry: queue this exchange on its worker.
  void on_entry_update(const cache::Entry& e) override;

  Exchange* ex;
  Worker* worker;
  Mode mode = Mode::Pass;
  const cache::Policy* policy = nullptr;
  cache::Policy own_policy;  // a rule's override (set_cache_settings)
  cache::CacheKey key;
  cache::CacheControl req_cc;
  std::vector<cache::Field> req_fields;  // views into ex->req.buf
  std::vector<cache::Field> resp_fields;
  std::unique_ptr<cache::Fill> fill;
  std::shared_ptr<const cache::Entry> entry;  // served, awaited, or being revalidated
  bool subscribed = false;
  std::atomic<bool> queued{false};  // in the worker's wake-up inbox
  // Serving.
  cache::Body::Reader reader;
  uint64_t remaining = 0;           // body bytes still to send (UINT64_MAX: to the end of a fill)
  bool chunked = false;             // framing our own chunks (an entry still streaming, no length)
  bool serve_after_origin = false;  // a 304 or a failure was swallowed: answer from `entry`
  bool swallow = false;             // the origin's response is not relayed
  bool stale_if_error = false;      // `entry` may answer if the origin fails
  // The origin's 304 to our revalidation selected no stored response: once it is read, the
  // request goes to the origin again as the client sent it (a client never gets a 304 to a
  // question it did not ask).
  bool refetch = false;
  // stale-while-revalidate: the client is answered from `entry` at once while this exchange
  // revalidates it; the exchange ends when both parts are done (the connection's next request
  // waits for the refresh, the client already has its whole answer).
  bool background = false;
  bool served = false;       // the client's answer is complete
  bool origin_done = false;  // the refresh is over (stored, refreshed, or failed)
  int64_t request_time = 0;
  cache::CacheStatus status;
  std::string status_value;  // Cache-Status, kept while the head refers to it
};

Flow phase_cache(Exchange* ex);
// Request head to the origin: whether to drop a client header (Range while filling, client
// conditionals while revalidating), and the headers to add (the revalidation validators).
bool cache_drops_request_header(const Exchange* ex, std::string_view name);
void cache_add_request_headers(const Exchange* ex, std::string& head);
// The origin's final response head arrived (before it is relayed): store it, or swallow it
// (a 304 or failure answered from the stored entry).
void cache_on_response_head(Exchange* ex);
// Header lines for the client's response head (Cache-Status).
void cache_response_headers(Exchange* ex, std::string& head);
bool cache_swallows(const Exchange* ex);
void cache_on_body(Exchange* ex, const char* p, size_t n);
void cache_on_complete(Exchange* ex);
// The origin failed before answering: true if a stale entry answers instead (stale-if-error).
bool cache_on_upstream_failure(Exchange* ex);
// The exchange's response is complete from the origin's side: true if the cache now answers
// the client instead (after a swallowed 304 or failure).
bool cache_take_over(Exchange* ex);
// The client's outbox drained, or the awaited/served entry progressed (worker wake-up):
// true when the cache is answering this exchange (it handled the event).
bool cache_resume(Exchange* ex);
// The origin failed during a background refresh (stale-while-revalidate): true if the cache
// handles it (the client was answered already; the exchange just ends).
bool cache_background_failed(Exchange* ex);
// The bounded wait for another exchange's fill ran out.
void cache_wait_timeout(Exchange* ex);

}  // namespace parapet
