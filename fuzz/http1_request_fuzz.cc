// Fuzz target: the downstream request path of the codec (llhttp + parapet's strict checks and
// limits). The input is split into reads at positions taken from its first byte, so heads and
// bodies cross read boundaries the way they do on a socket; pipelined requests are resumed the
// way ClientConn does. Invariants checked: consumed never exceeds the input, a refused message
// never reaches on_head, body bytes never exceed a declared Content-Length, and a paused parser
// resumes cleanly.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "proxy/http1.h"

namespace {

struct Handler : parapet::Http1Handler {
  parapet::MessageHead head;
  uint64_t body = 0;
  bool in_body = false;
  parapet::MessageHead* on_message_begin() override {
    body = 0;
    return &head;
  }
  int on_head() override {
    // What the proxy relies on after a head is accepted.
    if (head.major != 1 || head.minor > 1) abort();
    if (head.minor == 1 && head.find("host") == nullptr) abort();
    if (head.chunked && head.has_content_length) abort();
    for (const parapet::HeaderSpan& h : head.headers) {
      if (h.name_off + h.name_len > head.buf.size() || h.value_off + h.value_len > head.buf.size())
        abort();
    }
    return 0;
  }
  void on_body(const char*, size_t n) override {
    body += n;
    if (head.has_content_length && body > head.content_length) abort();
  }
  bool on_message_complete() override { return true; }
};

void run(const uint8_t* data, size_t size, const parapet::config::Limits& limits) {
  Handler h;
  parapet::Http1Parser parser(HTTP_REQUEST, &limits, &h);
  const size_t step = size > 0 ? (data[0] % 64) + 1 : 1;
  const char* p = reinterpret_cast<const char*>(data);
  size_t off = 0;
  std::string pending;
  int messages = 0;
  while (off < size && messages < 64) {
    size_t n = std::min(step, size - off);
    parapet::Http1Parser::Result r = parser.execute(p + off, n);
    if (r.consumed > n) abort();
    if (r.status == parapet::Http1Parser::Status::Error) return;
    if (r.status == parapet::Http1Parser::Status::Upgrade) return;
    off += r.consumed;
    if (r.status == parapet::Http1Parser::Status::Paused) {
      ++messages;
      parser.resume();
    }
  }
  parser.finish();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const parapet::config::Limits defaults{};
  static const parapet::config::Limits tight{256, 8, 64, 128};
  run(data, size, defaults);
  run(data, size, tight);
  return 0;
}
