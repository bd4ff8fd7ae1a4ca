#include "proxy/http1.h"

#include <strings.h>

#include <cstring>
#include <type_traits>

namespace parapet {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

const HeaderSpan* MessageHead::find(std::string_view n) const {
  for (const HeaderSpan& h : headers) {
    if (h.name_len == n.size() && strncasecmp(buf.data() + h.name_off, n.data(), n.size()) == 0) {
      return &h;
    }
  }
  return nullptr;
}

void MessageHead::clear() {
  buf.clear();
  headers.clear();
  url_off = url_len = 0;
  status = 0;
  method = kNoMethod;
  major = minor = 1;
  chunked = has_content_length = upgrade = false;
  keep_alive = true;
  content_length = 0;
  scratch = Scratch{};
}

const char* http_error_reason(HttpError e) {
  switch (e) {
    case HttpError::None:
      return "none";
    case HttpError::BadRequest:
      return "http.bad_request";
    case HttpError::ObsFold:
      return "http.obs_fold";
    case HttpError::ChunkedOnHttp10:
      return "http.chunked_on_http10";
    case HttpError::MissingHost:
      return "http.missing_host";
    case HttpError::DuplicateHost:
      return "http.duplicate_host";
    case HttpError::BadHost:
      return "http.bad_host";
    case HttpError::BadVersion:
      return "http.bad_version";
    case HttpError::UnsupportedVersion:
      return "http.bad_version";
    case HttpError::HeaderTooLarge:
      return "http.header_too_large";
    case HttpError::TooManyHeaders:
      return "http.too_many_headers";
    case HttpError::UriTooLong:
      return "http.uri_too_long";
    case HttpError::BodyTooLarge:
      return "http.body_too_large";
    case HttpError::BadResponse:
      return "upstream.bad_response";
  }
  return "http.bad_request";
}

int http_error_status(HttpError e) {
  switch (e) {
    case HttpError::HeaderTooLarge:
    case HttpError::TooManyHeaders:
      return 431;
    case HttpError::UriTooLong:
      return 414;
    case HttpError::BodyTooLarge:
      return 413;
    case HttpError::UnsupportedVersion:
      return 505;
    case HttpError::BadResponse:
      return 502;
    default:
      return 400;
  }
}

const llhttp_settings_t* Http1Parser::settings() {
  static const llhttp_settings_t s = [] {
    llhttp_settings_t x;
    llhttp_settings_init(&x);
    x.on_message_begin = cb_message_begin;
    x.on_method = cb_method;
    x.on_url = cb_url;
    x.on_status = cb_status;
    x.on_header_field = cb_header_field;
    x.on_header_value = cb_header_value;
    x.on_header_value_complete = cb_header_value_complete;
    x.on_headers_complete = cb_headers_complete;
    x.on_body = cb_body;
    x.on_message_complete = cb_message_complete;
    return x;
  }();
  return &s;
}

Http1Parser::Http1Parser(llhttp_type_t type, const config::Limits* limits, Http1Handler* handler)
    : limits_(limits) {
  static_assert(std::is_standard_layout_v<Http1Parser>, "callbacks cast llhttp_t* to the parser");
  llhttp_init(&p_, type, settings());
  p_.data = handler;
}

void Http1Parser::reset() {
  llhttp_type_t type = static_cast<llhttp_type_t>(p_.type);
  void* handler = p_.data;
  llhttp_init(&p_, type, settings());
  p_.data = handler;
  head_ = nullptr;
  err_ = HttpError::None;
  in_head_ = in_message_ = false;
}

static Http1Parser* self(llhttp_t* p) { return reinterpret_cast<Http1Parser*>(p); }

// The read being parsed. A value split across two reads shows as a span ending one read and a
// span starting the next; an obs-fold continuation line (which llhttp 8.1 reports as a second
// value span) cannot look like that. Kept per thread, not per parser: it only matters inside
// one execute() call, and idle parsers stay small.
thread_local const char* t_exec_begin = nullptr;
thread_local size_t t_exec_len = 0;
thread_local uint64_t t_exec_seq = 0;
constexpr uint8_t kField = 1;
constexpr uint8_t kValue = 2;

int Http1Parser::cb_message_begin(llhttp_t* p) {
  Http1Parser* s = self(p);
  s->head_ = s->handler()->on_message_begin();
  s->head_->clear();
  s->in_head_ = true;
  s->in_message_ = true;
  return 0;
}

bool Http1Parser::head_too_big() const {
  // Bytes kept plus the separators llhttp strips (": " and CRLF per header, the request line).
  return head_->buf.size() + head_->headers.size() * 4 + 16 > limits_->max_header_bytes;
}

void Http1Parser::note_start(const char* at) {
  MessageHead::Scratch& sc = head_->scratch;
  if (sc.start == nullptr) {
    sc.start = at;
    sc.start_read = t_exec_seq;
  }
}

uint64_t Http1Parser::head_bytes_in_read(const char* data, const char* end) const {
  const MessageHead::Scratch& sc = head_->scratch;
  const char* from = sc.start != nullptr && sc.start_read == t_exec_seq ? sc.start : data;
  return end > from ? static_cast<uint64_t>(end - from) : 0;
}

int Http1Parser::cb_method(llhttp_t* p, const char* at, size_t) {
  self(p)->note_start(at);
  return 0;
}

int Http1Parser::cb_url(llhttp_t* p, const char* at, size_t n) {
  Http1Parser* s = self(p);
  s->note_start(at);
  MessageHead* h = s->head_;
  if (h->url_len == 0) h->url_off = static_cast<uint32_t>(h->buf.size());
  h->buf.append(at, n);
  h->url_len += static_cast<uint32_t>(n);
  if (h->url_len > s->limits_->max_uri_bytes) return s->fail(HttpError::UriTooLong);
  if (s->head_too_big()) return s->fail(HttpError::HeaderTooLarge);
  return 0;
}

int Http1Parser::cb_status(llhttp_t* p, const char* at, size_t n) {
  Http1Parser* s = self(p);
  s->note_start(at);
  MessageHead* h = s->head_;
  if (h->url_len == 0) h->url_off = static_cast<uint32_t>(h->buf.size());
  h->buf.append(at, n);
  h->url_len += static_cast<uint32_t>(n);
  if (s->head_too_big()) return s->fail(HttpError::HeaderTooLarge);
  return 0;
}

int Http1Parser::cb_header_field(llhttp_t* p, const char* at, size_t n) {
  Http1Parser* s = self(p);
  MessageHead::Scratch& sc = s->head_->scratch;
  if (sc.in_trailers) {
    // Trailers are parsed (so framing stays exact) but not kept; bound them like a head.
    sc.trailer_bytes += static_cast<uint32_t>(n + 4);
    return sc.trailer_bytes > s->limits_->max_header_bytes ? s->fail(HttpError::HeaderTooLarge) : 0;
  }
  MessageHead* h = s->head_;
  if (sc.last != kField) {
    if (h->headers.size() >= s->limits_->max_header_count)
      return s->fail(HttpError::TooManyHeaders);
    h->headers.push_back(HeaderSpan{static_cast<uint32_t>(h->buf.size()), 0, 0, 0});
    sc.last = kField;
  }
  h->buf.append(at, n);
  h->headers.back().name_len += static_cast<uint32_t>(n);
  if (s->head_too_big()) return s->fail(HttpError::HeaderTooLarge);
  return 0;
}

int Http1Parser::cb_header_value(llhttp_t* p, const char* at, size_t n) {
  Http1Parser* s = self(p);
  MessageHead::Scratch& sc = s->head_->scratch;
  if (sc.in_trailers) {
    sc.trailer_bytes += static_cast<uint32_t>(n);
    return sc.trailer_bytes > s->limits_->max_header_bytes ? s->fail(HttpError::HeaderTooLarge) : 0;
  }
  if (sc.last == kValue) {
    // More of the same value: legitimate only where the previous span stopped at the end of
    // the previous read and this one starts the next read. Anything else is an obs-fold line.
    if (!(sc.value_end_was_tail && at == t_exec_begin)) return s->fail(HttpError::ObsFold);
  }
  sc.value_end_was_tail = at + n == t_exec_begin + t_exec_len;
  MessageHead* h = s->head_;
  if (sc.last != kValue) {
    h->headers.back().value_off = static_cast<uint32_t>(h->buf.size());
    sc.last = kValue;
  }
  h->buf.append(at, n);
  h->headers.back().value_len += static_cast<uint32_t>(n);
  if (s->head_too_big()) return s->fail(HttpError::HeaderTooLarge);
  return 0;
}

int Http1Parser::cb_header_value_complete(llhttp_t* p) {
  Http1Parser* s = self(p);
  MessageHead::Scratch& sc = s->head_->scratch;
  if (sc.in_trailers) return 0;
  if (sc.last == kField) {
    // Empty value: no value callback came.
    s->head_->headers.back().value_off = static_cast<uint32_t>(s->head_->buf.size());
    sc.last = kValue;
  }
  // Trailing whitespace is allowed by the grammar (OWS); llhttp keeps it: trim it here.
  HeaderSpan& hs = s->head_->headers.back();
  while (hs.value_len > 0) {
    char c = s->head_->buf[hs.value_off + hs.value_len - 1];
    if (c != ' ' && c != '\t') break;
    --hs.value_len;
  }
  return 0;
}

static bool valid_host(std::string_view v) {
  if (v.empty() || v.size() > 255) return false;
  for (unsigned char c : v) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) continue;
    if (std::strchr("-._~!$&'()*+,;=:[]%", c) == nullptr || c == 0) return false;
  }
  return true;
}

int Http1Parser::validate_request_head() {
  MessageHead* h = head_;
  if (h->major != 1 || h->minor > 1) {
    return fail(h->major >= 2 ? HttpError::UnsupportedVersion : HttpError::BadVersion);
  }
  if (h->chunked && h->minor == 0) return fail(HttpError::ChunkedOnHttp10);
  // llhttp 8.1 reports a request Transfer-Encoding that is not chunked (gzip, xchunked) only
  // after the head; refuse it here so no handler ever sees such a head.
  if ((p_.flags & F_TRANSFER_ENCODING) != 0 && !h->chunked) return fail(HttpError::BadRequest);
  // Other codings before the final chunked ("gzip, chunked") are legal HTTP but no origin
  // behind an edge needs them, and forwarding them faithfully is one more ambiguity: refuse.
  if (h->chunked) {
    const HeaderSpan* te = h->find("transfer-encoding");
    if (te == nullptr || !iequals(h->value(*te), "chunked")) return fail(HttpError::BadRequest);
  }
  const HeaderSpan* host = nullptr;
  for (const HeaderSpan& hs : h->headers) {
    if (hs.name_len == 4 && strncasecmp(h->buf.data() + hs.name_off, "host", 4) == 0) {
      if (host != nullptr) return fail(HttpError::DuplicateHost);
      host = &hs;
    }
  }
  if (host == nullptr) {
    if (h->minor == 1) return fail(HttpError::MissingHost);
  } else if (!valid_host(h->value(*host))) {
    return fail(HttpError::BadHost);
  }
  if (limits_->max_body_bytes != 0 && h->has_content_length &&
      h->content_length > limits_->max_body_bytes) {
    return fail(HttpError::BodyTooLarge);
  }
  return 0;
}

int Http1Parser::cb_headers_complete(llhttp_t* p) {
  Http1Parser* s = self(p);
  MessageHead* h = s->head_;
  s->in_head_ = false;
  h->scratch.in_trailers = true;  // any header callbacks from now on are trailers
  h->major = p->http_major;
  h->minor = p->http_minor;
  h->method = p->method;
  h->status = static_cast<uint16_t>(p->status_code);
  h->chunked = (p->flags & F_CHUNKED) != 0;
  h->has_content_length = (p->flags & F_CONTENT_LENGTH) != 0;
  h->content_length = h->has_content_length ? p->content_length : 0;
  h->upgrade = p->upgrade != 0;
  h->keep_alive = llhttp_should_keep_alive(p) != 0;
  if (p->type == HTTP_REQUEST) {
    if (s->validate_request_head() != 0) return -1;
    // Pause here: execute() measures the exact head size (whitespace llhttp skipped included)
    // before the handler sees the head, then resumes.
    s->head_pause_ = true;
    return HPE_PAUSED;
  }
  if (h->major != 1) return s->fail(HttpError::BadResponse);
  int r = s->handler()->on_head();
  if (r < 0) {
    return HPE_PAUSED;  // the handler took over; stop here without an error
  }
  return r;
}

int Http1Parser::cb_body(llhttp_t* p, const char* at, size_t n) {
  Http1Parser* s = self(p);
  uint64_t& body = s->head_->scratch.body_bytes;
  body += n;
  if (s->limits_->max_body_bytes != 0 && p->type == HTTP_REQUEST &&
      body > s->limits_->max_body_bytes) {
    return s->fail(HttpError::BodyTooLarge);
  }
  s->handler()->on_body(at, n);
  return 0;
}

int Http1Parser::cb_message_complete(llhttp_t* p) {
  Http1Parser* s = self(p);
  s->in_message_ = false;
  s->head_->scratch.in_trailers = false;
  bool pause = s->handler()->on_message_complete();
  // An upgrade ends in HPE_PAUSED_UPGRADE on its own; pausing would hide it.
  if (p->upgrade) return 0;
  return pause ? HPE_PAUSED : 0;
}

Http1Parser::Result Http1Parser::map(llhttp_errno_t rc, const char* data, size_t len) {
  switch (rc) {
    case HPE_OK:
      if (in_head_) {
        head_->scratch.raw_head_bytes += head_bytes_in_read(data, data + len);
        if (head_->scratch.raw_head_bytes > limits_->max_header_bytes) {
          err_ = HttpError::HeaderTooLarge;
          return {len, Status::Error};
        }
      }
      return {len, Status::Ok};
    case HPE_PAUSED: {
      size_t used = static_cast<size_t>(llhttp_get_error_pos(&p_) - data);
      if (err_ != HttpError::None) return {used, Status::Error};
      return {used, Status::Paused};
    }
    case HPE_PAUSED_UPGRADE:
      return {static_cast<size_t>(llhttp_get_error_pos(&p_) - data), Status::Upgrade};
    default:
      if (err_ == HttpError::None) {
        err_ = p_.type == HTTP_RESPONSE ? HttpError::BadResponse : HttpError::BadRequest;
      }
      return {0, Status::Error};
  }
}

Http1Parser::Result Http1Parser::execute(const char* data, size_t len) {
  if (err_ != HttpError::None) return {0, Status::Error};
  const char* saved_begin = t_exec_begin;
  size_t saved_len = t_exec_len;
  t_exec_begin = data;
  t_exec_len = len;
  ++t_exec_seq;
  Result r = map(llhttp_execute(&p_, data, len), data, len);
  t_exec_begin = saved_begin;
  t_exec_len = saved_len;
  if (!head_pause_) return r;
  // A request head just completed at data + r.consumed: count its exact size, including the
  // whitespace llhttp skipped, before the handler sees it.
  head_pause_ = false;
  head_->scratch.raw_head_bytes += head_bytes_in_read(data, data + r.consumed);
  if (head_->scratch.raw_head_bytes > limits_->max_header_bytes) {
    err_ = HttpError::HeaderTooLarge;
    return {r.consumed, Status::Error};
  }
  if (handler()->on_head() < 0) return {r.consumed, Status::Paused};  // the handler took over
  llhttp_resume(&p_);
  Result rest = execute(data + r.consumed, len - r.consumed);
  return {r.consumed + rest.consumed, rest.status};
}

Http1Parser::Result Http1Parser::finish() {
  if (err_ != HttpError::None) return {0, Status::Error};
  llhttp_errno_t rc = llhttp_finish(&p_);
  if (rc == HPE_PAUSED) return {0, Status::Paused};
  if (rc != HPE_OK) {
    if (err_ == HttpError::None) {
      err_ = p_.type == HTTP_RESPONSE ? HttpError::BadResponse : HttpError::BadRequest;
    }
    return {0, Status::Error};
  }
  return {0, Status::Ok};
}

}  // namespace parapet
