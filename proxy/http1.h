// The HTTP/1.1 codec over llhttp, one for both sides (client requests, origin responses).
//
// llhttp runs with no lenient flag. On top of it the codec refuses what Debian's llhttp 8.1
// lets through (shared/notes/llhttp.md): obs-fold, chunked on HTTP/1.0, a missing or repeated
// Host, versions other than 1.0/1.1, and enforces the configured limits. A refused message is
// reported as an error with a stable reason before the handler sees its head, so nothing of it
// is ever forwarded.
//
// The head is collected into a MessageHead (an arena string plus offsets: one allocation that
// is reused from request to request). Bodies are passed through as they are decoded.
#pragma once

#include <llhttp.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace parapet {

struct HeaderSpan {
  uint32_t name_off, name_len, value_off, value_len;
};

class MessageHead {
 public:
  std::string_view url() const { return {buf.data() + url_off, url_len}; }  // or the reason
  std::string_view name(const HeaderSpan& h) const { return {buf.data() + h.name_off, h.name_len}; }
  std::string_view value(const HeaderSpan& h) const {
    return {buf.data() + h.value_off, h.value_len};
  }
  // First header with this name (ASCII case-insensitive), or nullptr.
  const HeaderSpan* find(std::string_view name) const;
  void clear();

  std::string buf;
  std::vector<HeaderSpan> headers;
  uint32_t url_off = 0, url_len = 0;
  static constexpr uint8_t kNoMethod = 0xff;  // until the head is complete
  uint16_t status = 0;
  uint8_t method = kNoMethod;
  uint8_t major = 1, minor = 1;
  bool chunked = false;
  bool has_content_length = false;
  bool upgrade = false;
  bool keep_alive = true;
  uint64_t content_length = 0;

  // Parser scratch for this message (kept here, not in the parser, so an idle connection's
  // parser stays small).
  struct Scratch {
    uint64_t raw_head_bytes = 0;  // head bytes seen in earlier execute() calls
    const char* start = nullptr;  // first byte of the message, in the read it began in
    uint64_t start_read = 0;      // which read that was (per-thread read sequence)
    uint64_t body_bytes = 0;
    uint32_t trailer_bytes = 0;
    uint8_t last = 0;  // 0 none, 1 field, 2 value
    bool in_trailers = false;
    bool value_end_was_tail = false;  // the last value span ended at the end of its read
  } scratch;
};

// Stable reasons, also the `reason:` line of error responses and the log.
enum class HttpError : uint8_t {
  None,
  BadRequest,
  ObsFold,
  ChunkedOnHttp10,
  MissingHost,
  DuplicateHost,
  BadHost,
  BadVersion,
  UnsupportedVersion,
  HeaderTooLarge,
  TooManyHeaders,
  UriTooLong,
  BodyTooLarge,
  BadResponse,
};
const char* http_error_reason(HttpError e);
int http_error_status(HttpError e);

class Http1Handler {
 public:
  virtual ~Http1Handler() = default;
  // A new message starts: return the head to fill (never null).
  virtual MessageHead* on_message_begin() = 0;
  // The head is complete and valid. 0: continue; 1: the message has no body (response to
  // HEAD); -1: stop parsing (the handler has decided what to do).
  virtual int on_head() = 0;
  virtual void on_body(const char* p, size_t n) = 0;
  // Return true to pause the parser after this message (the next one waits).
  virtual bool on_message_complete() = 0;
};

class Http1Parser {
 public:
  enum class Status { Ok, Paused, Upgrade, Error };
  struct Result {
    size_t consumed;
    Status status;
  };

  Http1Parser(llhttp_type_t type, const config::Limits* limits, Http1Handler* handler);
  Http1Parser(const Http1Parser&) = delete;
  Http1Parser& operator=(const Http1Parser&) = delete;

  void set_limits(const config::Limits* limits) { limits_ = limits; }
  Result execute(const char* data, size_t len);
  // The peer closed: completes a close-delimited body, or reports a truncated message.
  Result finish();
  void resume() { llhttp_resume(&p_); }
  void reset();
  HttpError error() const { return err_; }
  const char* llhttp_reason() const { return llhttp_get_error_reason(&p_); }
  // True between the first byte of a message and the end of its head.
  bool in_head() const { return in_head_; }
  // True while a message is being parsed (head or body).
  bool in_message() const { return in_message_; }

 private:
  static int cb_message_begin(llhttp_t* p);
  static int cb_method(llhttp_t* p, const char* at, size_t n);
  static int cb_url(llhttp_t* p, const char* at, size_t n);
  static int cb_status(llhttp_t* p, const char* at, size_t n);
  static int cb_header_field(llhttp_t* p, const char* at, size_t n);
  static int cb_header_value(llhttp_t* p, const char* at, size_t n);
  static int cb_header_value_complete(llhttp_t* p);
  static int cb_headers_complete(llhttp_t* p);
  static int cb_body(llhttp_t* p, const char* at, size_t n);
  static int cb_message_complete(llhttp_t* p);
  static const llhttp_settings_t* settings();

  int fail(HttpError e) {
    err_ = e;
    return -1;
  }
  bool head_too_big() const;
  int validate_request_head();
  Result map(llhttp_errno_t rc, const char* data, size_t len);
  // Bytes of the current message's head inside [data, end) of the read being parsed.
  uint64_t head_bytes_in_read(const char* data, const char* end) const;
  void note_start(const char* at);

  Http1Handler* handler() const { return static_cast<Http1Handler*>(p_.data); }

  // Kept small: one per idle client connection. llhttp_t comes first, so the callbacks find the
  // parser from their llhttp_t*; llhttp's `data` points at the handler.
  llhttp_t p_;
  const config::Limits* limits_;
  MessageHead* head_ = nullptr;
  HttpError err_ = HttpError::None;
  bool in_head_ = false;
  bool in_message_ = false;
  bool head_pause_ = false;  // a request head is complete: execute() runs the handler
};

// ASCII case-insensitive equality.
bool iequals(std::string_view a, std::string_view b);

}  // namespace parapet
