// A ready-made FieldProvider over a plain description of one request: derives every scheme
// field (normalized path, extension, args, cookies, full URI, ...) lazily, only when a rule asks
// for it. The proxy may use it directly (fill a RequestView from the exchange) or implement
// FieldProvider itself; tests, the fuzz target and the benchmark use it.
//
// Lifetime: the view borrows everything; the strings must outlive the ExecContext's use of
// them (until its reset()). Single-threaded, like the ExecContext it serves.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "filters/context.h"

namespace parapet::filters {

using HeaderPair = std::pair<std::string_view, std::string_view>;

struct RequestView {
  std::string_view method = "GET";
  std::string_view target = "/";  // request-target as received: path and query
  std::string_view host;          // Host header (or authority), as received
  std::string_view version = "HTTP/1.1";
  std::span<const HeaderPair> headers;  // names in any case; order kept
  IpAddr src;
  bool has_src = false;
  bool tls = false;
  int64_t timestamp_sec = 0;
  std::string_view tenant;
  // Response phase only; leave response_code 0 in the request phase.
  int response_code = 0;
  std::span<const HeaderPair> response_headers;
};

// Field semantics (Cloudflare's where it has one):
//  - http.request.uri.path is normalize_path(raw path); raw.* are as received;
//  - http.request.uri is the normalized path plus "?query" when there is a query;
//  - http.request.uri.path.extension: lowercased text after the last '.' of the last segment,
//    "" when none;
//  - args and cookies are percent-decoded ('+' as space for args); names are kept as sent;
//  - header names are lowercased; single-header fields (http.user_agent, http.referer,
//    http.cookie, http.x_forwarded_for) are "" when the header is absent, as in Cloudflare
//    (repeated headers: the values joined with ", ", cookies with "; ");
//  - ip.src is missing when has_src is false; response fields are missing when
//    response_code is 0.
class RequestFieldProvider : public FieldProvider {
 public:
  explicit RequestFieldProvider(const RequestView* req = nullptr) : req_(req) {}
  void set(const RequestView* req) { req_ = req; }
  bool fetch(Field field, FieldWriter& out) override;

 private:
  const RequestView* req_;
};

}  // namespace parapet::filters
