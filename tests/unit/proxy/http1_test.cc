// Unit tests of the HTTP/1.1 codec (proxy/http1.h): requests and responses, framing, the
// refusals parapet adds on top of llhttp, and the configured limits.
#include "proxy/http1.h"

#include <gtest/gtest.h>

#include <deque>
#include <string>
#include <utility>
#include <vector>

namespace parapet {
namespace {

using namespace std::string_literals;

using Status = Http1Parser::Status;

// Records everything the parser reports. Heads live in a deque so their addresses stay valid.
class Recorder : public Http1Handler {
 public:
  MessageHead* on_message_begin() override {
    heads.emplace_back();
    bodies.emplace_back();
    ++begins;
    return &heads.back();
  }
  int on_head() override {
    ++head_calls;
    return head_result;
  }
  void on_body(const char* p, size_t n) override {
    bodies.back().append(p, n);
    ++body_calls;
  }
  bool on_message_complete() override {
    ++completes;
    return pause_on_complete;
  }

  std::vector<std::pair<std::string, std::string>> headers(size_t i = 0) const {
    std::vector<std::pair<std::string, std::string>> out;
    for (const HeaderSpan& h : heads.at(i).headers) {
      out.emplace_back(std::string(heads.at(i).name(h)), std::string(heads.at(i).value(h)));
    }
    return out;
  }

  std::deque<MessageHead> heads;
  std::deque<std::string> bodies;
  int begins = 0;
  int head_calls = 0;
  int body_calls = 0;
  int completes = 0;
  int head_result = 0;
  bool pause_on_complete = false;
};

using Headers = std::vector<std::pair<std::string, std::string>>;

struct Parsed {
  Http1Parser::Result result;
  HttpError error;
};

// Feeds `data` in pieces of `step` bytes (0: one piece), stopping at the first non-Ok status.
Parsed feed(Http1Parser& p, const std::string& data, size_t step = 0) {
  if (step == 0) step = data.size();
  Http1Parser::Result r{0, Status::Ok};
  size_t off = 0;
  while (off < data.size()) {
    size_t n = std::min(step, data.size() - off);
    r = p.execute(data.data() + off, n);
    if (r.status != Status::Ok) {
      r.consumed += off;
      return {r, p.error()};
    }
    EXPECT_EQ(r.consumed, n);
    off += n;
  }
  r.consumed = off;
  return {r, p.error()};
}

const std::string kGet =
    "GET /path/to?q=1&r=two HTTP/1.1\r\n"
    "Host: Example.COM:8080\r\n"
    "X-Mixed-Case: Some Value  \r\n"
    "accept: */*\t \r\n"
    "X-Empty:\r\n"
    "X-Dup: one\r\n"
    "X-Dup: two\r\n"
    "\r\n";

const Headers kGetHeaders = {
    {"Host", "Example.COM:8080"},
    {"X-Mixed-Case", "Some Value"},
    {"accept", "*/*"},
    {"X-Empty", ""},
    {"X-Dup", "one"},
    {"X-Dup", "two"},
};

// ---------------------------------------------------------------------------------------------
// Requests that parse

TEST(Http1Request, GetWithHeaders) {
  config::Limits limits;
  Recorder rec;
  Http1Parser p(HTTP_REQUEST, &limits, &rec);
  Parsed r = feed(p, kGet);
  ASSERT_EQ(r.result.status, Status::Ok) << http_error_reason(r.error) << " " << p.llhttp_reason();
  EXPECT_EQ(r.result.consumed, kGet.size());
  EXPECT_EQ(r.error, HttpError::None);
  ASSERT_EQ(rec.heads.size(), 1u);
  const MessageHead& h = rec.heads[0];
  EXPECT_EQ(h.url(), "/path/to?q=1&r=two");
  EXPECT_EQ(h.method, HTTP_GET);
  EXPECT_EQ(h.major, 1);
  EXPECT_EQ(h.minor, 1);
  EXPECT_FALSE(h.chunked);
  EXPECT_FALSE(h.has_content_length);
  EXPECT_FALSE(h.upgrade);
  EXPECT_TRUE(h.keep_alive);
  EXPECT_EQ(rec.headers(), kGetHeaders);
  EXPECT_EQ(rec.head_calls, 1);
  EXPECT_EQ(rec.completes, 1);
  EXPECT_EQ(rec.body_calls, 0);
  EXPECT_FALSE(p.in_head());
  EXPECT_FALSE(p.in_message());

  // find() is case-insensitive and returns the first of repeated headers.
  const HeaderSpan* host = h.find("host");
  ASSERT_NE(host, nullptr);
  EXPECT_EQ(h.value(*host), "Example.COM:8080");
  const HeaderSpan* dup = h.find("x-dup");
  ASSERT_NE(dup, nullptr);
  EXPECT_EQ(h.value(*dup), "one");
  EXPECT_EQ(h.find("x-missing"), nullptr);
}

TEST(Http1Request, Http10WithoutHostIsAccepted) {
  config::Limits limits;
  Recorder rec;
  Http1Parser p(HTTP_REQUEST, &limits, &rec);
  Parsed r = feed(p, "GET / HTTP/1.0\r\n\r\n");
  ASSERT_EQ(r.result.status, Status::Ok) << http_error_reason(r.error);
  ASSERT_EQ(rec.heads.size(), 1u);
  EXPECT_EQ(rec.heads[0].minor, 0);
  EXPECT_FALSE(rec.heads[0].keep_alive);
  EXPECT_EQ(rec.completes, 1);
}

TEST(Http1Request, ContentLengthBody) {
  config::Limits limits;
  Recorder rec;
  Http1Parser p(HTTP_REQUEST, &limits, &rec);
  const std::string req =
      "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world";
  Parsed r = feed(p, req);
  ASSERT_EQ(r.result.status, Status::Ok) << http_error_reason(r.error);
  EXPECT_EQ(r.result.consumed, req.size());
  ASSERT_EQ(rec.heads.size(), 1u);
  EXPECT_EQ(rec.heads[0].method, HTTP_POST);
  EXPECT_TRUE(rec.heads[0].has_content_length);
  EXPECT_EQ(rec.heads[0].content_length, 11u);
  EXPECT_EQ(rec.bodies[0], "hello world");
  EXPECT_EQ(rec.completes, 1);
}

TEST(Http1Request, ContentLengthBodyInPieces) {
  config::Limits limits;
  Recorder rec;
  Http1Parser p(HTTP_REQUEST, &limits, &rec);
  Parsed r = feed(p, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab");
  ASSERT_EQ(r.result.status, Status::Ok);
  EXPECT_EQ(rec.completes, 0);
  EXPECT_TRUE(p.in_message());
  EXPECT_FALSE(p.in_head());
  r = feed(p, "cd");
  ASSERT_EQ(r.result.status, Status::Ok);
  EXPECT_EQ(rec.bodies[0], "abcd");
  EXPECT_EQ(rec.completes, 1);
  EXPECT_FALSE(p.in_message());
}

TEST(Http1Request, ChunkedBodyWithTrailers) {
  config::Limits limits;
  Recorder rec;
  Http1Parser p(HTTP_REQUEST, &limits, &rec);
  const std::string req =
      "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n"
      "1;ext=1\r\n \r\n"
      "a\r\n0123456789\r\n"
      "0\r\n"
      "X-Trailer: t\r\n"
      "X-Other: o\r\n"
      "\r\n";
  Parsed r = feed(p, req);
  ASSERT_EQ(r.result.status, Status::Ok) << http_error_reason(r.error) << " " << p.llhttp_reason();
  EXPECT_EQ(r.result.consumed, req.size());
  ASSERT_EQ(rec.heads.size(), 1u);
  EXPECT_TRUE(rec.heads[0].chunked);
  EXPECT_EQ(rec.bodies[0], "hello 0123456789");
  EXPECT_EQ(rec.completes, 1);
  // Trailers are not added to the head.
  EXPECT_EQ(rec.headers(), (Headers{{"Host", "a"}, {"Transfer-Encoding", "chunked"}}));
  EXPECT_EQ(rec.heads[0].find("x-trailer"), nullptr);
}

TEST(Http1Request, PipelinedRequestsPauseAfterEach) {
  config::Limits limits;
  Recorder rec;
  rec.pause_on_complete = true;
  Http1Parser p(HTTP_REQUEST, &limits, &rec);
  const std::string first = "GET /a HTTP/1.1\r\nHost: a\r\n\r\n";
  const std::string second = "POST /b HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\n\r\nxyz";
  const std::string third = "GET /c HTTP/1.1\r\nHost: c\r\n\r\n";
  const std::string all = first + second + third;

  Http1Parser::Result r = p.execute(all.data(), all.size());
  ASSERT_EQ(r.status, Status::Paused) << http_error_reason(p.error());
  EXPECT_EQ(r.consumed, first.size());
  EXPECT_EQ(p.error(), HttpError::None);
  ASSERT_EQ(rec.heads.size(), 1u);
  EXPECT_EQ(rec.heads[0].url(), "/a");
  EXPECT_EQ(rec.completes, 1);

  size_t off = r.consumed;
  p.resume();
  r = p.execute(all.data() + off, all.size() - off);
  ASSERT_EQ(r.status, Status::Paused) << http_error_reason(p.error());
  EXPECT_EQ(r.consumed, second.size());
  ASSERT_EQ(rec.heads.size(), 2u);
  EXPECT_EQ(rec.heads[1].url(), "/b");
  EXPECT_EQ(rec.bodies[1], "xyz");
  EXPECT_EQ(rec.completes, 2);

  off += r.consumed;
  p.resume();
  rec.pause_on_complete = false;
  r = p.execute(all.data() + off, all.size() - off);
  ASSERT_EQ(r.status, Status::Ok) << http_error_reason(p.error());
  EXPECT_EQ(r.consumed, third.size());
  ASSERT_EQ(rec.heads.size(), 3u);
  EXPECT_EQ(rec.heads[2].url(), "/c");
  EXPECT_EQ(rec.completes, 3);
}

TEST(Http1Request, PipelinedWithoutPauseParsesAll) {
  config::Limits limits;
  Recorder rec;
  Http1Parser p(HTTP_REQUEST, &limits, &rec);
  const std::string all = "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: b\r\n\r\n";
  Parsed r = feed(p, all);
  ASSERT_EQ(r.result.status, Status::Ok);
  ASSERT_EQ(rec.heads.size(), 2u);
  EXPECT_EQ(rec.heads[0].url(), "/a");
  EXPECT_EQ(rec.heads[1].url(), "/b");
  EXPECT_EQ(rec.completes, 2);
}

TEST(Http1Request, OnHeadMinusOneStopsParsing) {
  config::Limits limits;
  Recorder rec;
  rec.head_result = -1;
  Http1Parser p(HTTP_REQUEST, &limits, &rec);
  Parsed r = feed(p, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc");
  EXPECT_EQ(r.result.status, Status::Paused);
  EXPECT_EQ(r.error, HttpError::None);
  EXPECT_EQ(rec.head_calls, 1);
  EXPECT_EQ(rec.body_calls, 0);
  EXPECT_EQ(rec.completes, 0);
}

// The same request fed in one piece, byte by byte, and in small pieces gives the same result.
TEST(Http1Request, PieceSizeDoesNotMatter) {
  const std::string req =
      "PUT /some/long/path?x=y HTTP/1.1\r\n"
      "Host: example.com\r\n"
      "X-Long-Header-Name: a value with spaces   \r\n"
      "Transfer-Encoding: chunked\r\n"
      "Accept: text/html\r\n"
      "\r\n"
      "4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nT: x\r\n\r\n";
  config::Limits limits;
  Recorder whole;
  Http1Parser pw(HTTP_REQUEST, &limits, &whole);
  ASSERT_EQ(feed(pw, req).result.status, Status::Ok);
  ASSERT_EQ(whole.heads.size(), 1u);
  EXPECT_EQ(whole.bodies[0], "Wikipedia in\r\n\r\nchunks.");
  EXPECT_EQ(whole.headers(), (Headers{{"Host", "example.com"},
                                      {"X-Long-Header-Name", "a value with spaces"},
                                      {"Transfer-Encoding", "chunked"},
                                      {"Accept", "text/html"}}));

  for (size_t step : {1u, 2u, 3u, 7u}) {
    SCOPED_TRACE("step " + std::to_string(step));
    Recorder rec;
    Http1Parser p(HTTP_REQUEST, &limits, &rec);
    Parsed r = feed(p, req, step);
    ASSERT_EQ(r.result.status, Status::Ok) << http_error_reason(r.error);
    EXPECT_EQ(r.result.consumed, req.size());
    ASSERT_EQ(rec.heads.size(), 1u);
    EXPECT_EQ(rec.heads[0].url(), whole.heads[0].url());
    EXPECT_EQ(rec.headers(), whole.headers());
    EXPECT_EQ(rec.heads[0].method, whole.heads[0].method);
    EXPECT_TRUE(rec.heads[0].chunked);
    EXPECT_EQ(rec.bodies[0], whole.bodies[0]);
    EXPECT_EQ(rec.completes, 1);
  }
}

TEST(Http1Request, ByteByByteGet) {
  config::Limits limits;
  Recorder rec;
  Http1Parser p(HTTP_REQUEST, &limits, &rec);
  Parsed r = feed(p, kGet, 1);
  ASSERT_EQ(r.result.status, Status::Ok) << http_error_reason(r.error);
  ASSERT_EQ(rec.heads.size(), 1u);
  EXPECT_EQ(rec.heads[0].url(), "/path/to?q=1&r=two");
  EXPECT_EQ(rec.headers(), kGetHeaders);
  EXPECT_EQ(rec.completes, 1);
}

TEST(Http1Request, InHeadTracksTheHead) {
  config::Limits limits;
  Recorder rec;
  Http1Parser p(HTTP_REQUEST, &limits, &rec);
  EXPECT_FALSE(p.in_head());
  EXPECT_FALSE(p.in_message());
  ASSERT_EQ(feed(p, "GET / HTTP/1.1\r\nHo").result.status, Status::Ok);
  EXPECT_TRUE(p.in_head());
  EXPECT_TRUE(p.in_message());
  ASSERT_EQ(feed(p, "st: a\r\n\r\n").result.status, Status::Ok);
  EXPECT_FALSE(p.in_head());
  EXPECT_FALSE(p.in_message());
}

TEST(Http1Request, ResetAfterErrorAcceptsANewMessage) {
  config::Limits limits;
  Recorder rec;
  Http1Parser p(HTTP_REQUEST, &limits, &rec);
  ASSERT_EQ(feed(p, "GET / HTTP/1.1\r\n\r\n").result.status, Status::Error);
  EXPECT_EQ(p.error(), HttpError::MissingHost);
  // Errors are sticky until reset().
  EXPECT_EQ(feed(p, "GET / HTTP/1.1\r\nHost: a\r\n\r\n").result.status, Status::Error);
  p.reset();
  EXPECT_EQ(p.error(), HttpError::None);
  Parsed r = feed(p, "GET /ok HTTP/1.1\r\nHost: a\r\n\r\n");
  ASSERT_EQ(r.result.status, Status::Ok) << http_error_reason(r.error);
  EXPECT_EQ(rec.heads.back().url(), "/ok");
}

// ---------------------------------------------------------------------------------------------
// Refusals

struct Refusal {
  const char* name;
  std::string request;
  HttpError error;
};

void PrintTo(const Refusal& r, std::ostream* os) { *os << r.name; }

class Http1Refusal : public ::testing::TestWithParam<Refusal> {};

TEST_P(Http1Refusal, IsRefusedWithItsReason) {
  const Refusal& c = GetParam();
  config::Limits limits;
  Recorder rec;
  Http1Parser p(HTTP_REQUEST, &limits, &rec);
  Parsed r = feed(p, c.request);
  ASSERT_EQ(r.result.status, Status::Error)
      << "accepted; heads=" << rec.heads.size() << " completes=" << rec.completes;
  EXPECT_EQ(r.error, c.error) << "got " << http_error_reason(r.error)
                              << " (llhttp: " << p.llhttp_reason() << ")";
  EXPECT_EQ(p.error(), c.error);
  // A refused head never reaches the handler (http1.h: "reported as an error with a stable
  // reason before the handler sees its head, so nothing of it is ever forwarded").
  EXPECT_EQ(rec.head_calls, 0) << "the handler saw the head of a refused request";
  EXPECT_EQ(rec.completes, 0);
  EXPECT_EQ(rec.body_calls, 0);
  // Refused the same way when the request arrives byte by byte.
  Recorder rec1;
  Http1Parser p1(HTTP_REQUEST, &limits, &rec1);
  Parsed r1 = feed(p1, c.request, 1);
  EXPECT_EQ(r1.result.status, Status::Error);
  EXPECT_EQ(r1.error, c.error) << "byte by byte: got " << http_error_reason(r1.error);
  EXPECT_EQ(rec1.head_calls, 0) << "byte by byte: the handler saw the head of a refused request";
}

const std::string kPost = "POST / HTTP/1.1\r\nHost: a\r\n";

INSTANTIATE_TEST_SUITE_P(
    Framing, Http1Refusal,
    ::testing::Values(
        Refusal{"ContentLengthAndTransferEncoding",
                kPost + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                HttpError::BadRequest},
        Refusal{"TransferEncodingAndContentLength",
                kPost + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
                HttpError::BadRequest},
        Refusal{"TwoContentLengthsSame",
                kPost + "Content-Length: 4\r\nContent-Length: 4\r\n\r\nabcd",
                HttpError::BadRequest},
        Refusal{"TwoContentLengthsDifferent",
                kPost + "Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
                HttpError::BadRequest},
        Refusal{"TransferEncodingGzip", kPost + "Transfer-Encoding: gzip\r\n\r\n",
                HttpError::BadRequest},
        Refusal{"TransferEncodingChunkedGzip", kPost + "Transfer-Encoding: chunked, gzip\r\n\r\n",
                HttpError::BadRequest},
        Refusal{"TransferEncodingXchunked", kPost + "Transfer-Encoding: xchunked\r\n\r\n",
                HttpError::BadRequest},
        Refusal{"TwoTransferEncodingsGzipChunked",
                kPost + "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
                HttpError::BadRequest},
        Refusal{"ContentLengthPlus", kPost + "Content-Length: +4\r\n\r\nabcd",
                HttpError::BadRequest},
        Refusal{"ContentLengthNegative", kPost + "Content-Length: -1\r\n\r\n",
                HttpError::BadRequest},
        Refusal{"ContentLengthHex", kPost + "Content-Length: 0x4\r\n\r\nabcd",
                HttpError::BadRequest},
        Refusal{"ContentLengthList", kPost + "Content-Length: 4, 4\r\n\r\nabcd",
                HttpError::BadRequest},
        Refusal{"ChunkedOnHttp10",
                "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                HttpError::ChunkedOnHttp10}),
    [](const ::testing::TestParamInfo<Refusal>& i) { return std::string(i.param.name); });

INSTANTIATE_TEST_SUITE_P(
    Syntax, Http1Refusal,
    ::testing::Values(
        Refusal{"ObsFold", "GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n",
                HttpError::ObsFold},
        Refusal{"ObsFoldTab", "GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n\ttwo\r\n\r\n",
                HttpError::ObsFold},
        Refusal{"ObsFoldOfHost", "GET / HTTP/1.1\r\nHost: a\r\n b\r\n\r\n", HttpError::ObsFold},
        Refusal{"BareLf", "GET / HTTP/1.1\nHost: a\n\n", HttpError::BadRequest},
        Refusal{"BareLfInHeaders", "GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n",
                HttpError::BadRequest},
        Refusal{"BareCrInValue", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
                HttpError::BadRequest},
        Refusal{"NulInValue", "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n"s,
                HttpError::BadRequest},
        Refusal{"ControlByteInValue",
                "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01"
                "b\r\n\r\n",
                HttpError::BadRequest},
        Refusal{"SpaceBeforeColon",
                "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
                HttpError::BadRequest},
        Refusal{"SpaceInTarget", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", HttpError::BadRequest},
        Refusal{"Http09", "GET / HTTP/0.9\r\nHost: a\r\n\r\n", HttpError::BadVersion},
        Refusal{"Http20", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", HttpError::UnsupportedVersion},
        // llhttp 8.1 itself refuses versions other than 0.9, 1.x and 2.0 ("Invalid HTTP version").
        Refusal{"Http12", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", HttpError::BadRequest},
        Refusal{"Http30", "GET / HTTP/3.0\r\nHost: a\r\n\r\n", HttpError::BadRequest}),
    [](const ::testing::TestParamInfo<Refusal>& i) { return std::string(i.param.name); });

INSTANTIATE_TEST_SUITE_P(
    Host, Http1Refusal,
    ::testing::Values(
        Refusal{"MissingHost", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", HttpError::MissingHost},
        Refusal{"DuplicateHost", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
                HttpError::DuplicateHost},
        Refusal{"DuplicateHostOtherCase", "GET / HTTP/1.1\r\nHost: a\r\nhOST: b\r\n\r\n",
                HttpError::DuplicateHost},
        Refusal{"DuplicateHostOnHttp10", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
                HttpError::DuplicateHost},
        Refusal{"EmptyHost", "GET / HTTP/1.1\r\nHost:\r\n\r\n", HttpError::BadHost},
        Refusal{"HostWithSpace", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", HttpError::BadHost},
        Refusal{"HostWithSlash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", HttpError::BadHost},
        Refusal{"HostWithAt", "GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", HttpError::BadHost}),
    [](const ::testing::TestParamInfo<Refusal>& i) { return std::string(i.param.name); });

TEST(Http1Request, BadChunkSize) {
  config::Limits limits;
  for (const char* chunks :
       {"zz\r\nabc\r\n0\r\n\r\n", "-1\r\n\r\n", "ffffffffffffffffff\r\nabc\r\n0\r\n\r\n"}) {
    SCOPED_TRACE(chunks);
    Recorder rec;
    Http1Parser p(HTTP_REQUEST, &limits, &rec);
    Parsed r = feed(p, kPost + "Transfer-Encoding: chunked\r\n\r\n" + chunks);
    EXPECT_EQ(r.result.status, Status::Error);
    EXPECT_EQ(r.error, HttpError::BadRequest);
    EXPECT_EQ(rec.completes, 0);
  }
}

TEST(Http1Request, ValidHostForms) {
  config::Limits limits;
  for (const char* host : {"example.com", "example.com:8080", "127.0.0.1:80", "[::1]:8080",
                           "xn--bcher-kva.example", "a_b.example"}) {
    SCOPED_TRACE(host);
    Recorder rec;
    Http1Parser p(HTTP_REQUEST, &limits, &rec);
    Parsed r = feed(p, std::string("GET / HTTP/1.1\r\nHost: ") + host + "\r\n\r\n");
    EXPECT_EQ(r.result.status, Status::Ok) << http_error_reason(r.error);
  }
}

// ---------------------------------------------------------------------------------------------
// Limits

TEST(Http1Limits, HeaderTooLarge) {
  config::Limits limits;
  limits.max_header_bytes = 256;
  Recorder rec;
  Http1Parser p(HTTP_REQUEST, &limits, &rec);
  Parsed r = feed(p, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(300, 'v') + "\r\n\r\n");
  EXPECT_EQ(r.result.status, Status::Error);
  EXPECT_EQ(r.error, HttpError::HeaderTooLarge);
  EXPECT_EQ(rec.head_calls, 0);
}

TEST(Http1Limits, HeaderJustUnderTheLimitIsAccepted) {
  config::Limits limits;
  limits.max_header_bytes = 256;
  Recorder rec;
  Http1Parser p(HTTP_REQUEST, &limits, &rec);
  Parsed r = feed(p, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(150, 'v') + "\r\n\r\n");
  EXPECT_EQ(r.result.status, Status::Ok) << http_error_reason(r.error);
  EXPECT_EQ(rec.completes, 1);
}

TEST(Http1Limits, HeaderTooLargeInSmallPieces) {
  config::Limits limits;
  limits.max_header_bytes = 256;
  const std::string req =
      "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(300, 'v') + "\r\n\r\n";
  for (size_t step : {1u, 5u, 64u}) {
    SCOPED_TRACE("step " + std::to_string(step));
    Recorder rec;
    Http1Parser p(HTTP_REQUEST, &limits, &rec);
    Parsed r = feed(p, req, step);
    EXPECT_EQ(r.result.status, Status::Error);
    EXPECT_EQ(r.error, HttpError::HeaderTooLarge);
    EXPECT_EQ(rec.head_calls, 0);
  }
}

TEST(Http1Limits, ManySmallHeadersTooLarge) {
  config::Limits limits;
  limits.max_header_bytes = 256;
  std::string req = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (int i = 0; i < 40; ++i) req += "X" + std::to_string(i) + ": v\r\n";
  req += "\r\n";
  for (size_t step : {0u, 1u}) {
    SCOPED_TRACE("step " + std::to_string(step));
    Recorder rec;
    Http1Parser p(HTTP_REQUEST, &limits, &rec);
    Parsed r = feed(p, req, step);
    EXPECT_EQ(r.result.status, Status::Error);
    EXPECT_EQ(r.error, HttpError::HeaderTooLarge);
  }
}

// Whitespace that llhttp strips (OWS before a value) still counts: the head on the wire is what
// the limit bounds, whether it arrives in one read or in many.
TEST(Http1Limits, HeaderTooLargeCountsStrippedWhitespace) {
  config::Limits limits;
  limits.max_header_bytes = 256;
  const std::string req =
      "GET / HTTP/1.1\r\nHost: a\r\nX-Pad:" + std::string(1000, ' ') + "v\r\n\r\n";
  for (size_t step : {0u, 1u, 100u}) {
    SCOPED_TRACE("step " + std::to_string(step));
    Recorder rec;
    Http1Parser p(HTTP_REQUEST, &limits, &rec);
    Parsed r = feed(p, req, step);
    EXPECT_EQ(r.result.status, Status::Error);
    EXPECT_EQ(r.error, HttpError::HeaderTooLarge);
  }
}

// The bytes of an earlier message in the same read are not part of the next head.
TEST(Http1Limits, EarlierMessageDoesNotCountTowardsTheNextHead) {
  config::Limits limits;
  limits.max_header_bytes = 256;
  Recorder rec;
  Http1Parser p(HTTP_REQUEST, &limits, &rec);
  const std::string first = kPost + "Content-Length: 300\r\n\r\n" + std::string(300, 'b');
  Parsed r = feed(p, first + "GET /next HTTP/1.1\r\nHo");  // the second head is incomplete
  EXPECT_EQ(r.result.status, Status::Ok) << http_error_reason(r.error);
  EXPECT_EQ(r.error, HttpError::None);
  r = feed(p, "st: a\r\n\r\n");
  EXPECT_EQ(r.result.status, Status::Ok) << http_error_reason(r.error);
  EXPECT_EQ(rec.completes, 2);
}

TEST(Http1Limits, TooManyHeaders) {
  config::Limits limits;
  limits.max_header_count = 5;
  std::string ok = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (int i = 0; i < 4; ++i) ok += "X" + std::to_string(i) + ": v\r\n";
  {
    Recorder rec;
    Http1Parser p(HTTP_REQUEST, &limits, &rec);
    Parsed r = feed(p, ok + "\r\n");
    EXPECT_EQ(r.result.status, Status::Ok)
        << "5 headers with max_header_count 5: " << http_error_reason(r.error);
  }
  for (size_t step : {0u, 1u}) {
    SCOPED_TRACE("step " + std::to_string(step));
    Recorder rec;
    Http1Parser p(HTTP_REQUEST, &limits, &rec);
    Parsed r = feed(p, ok + "X-Sixth: v\r\n\r\n", step);
    EXPECT_EQ(r.result.status, Status::Error);
    EXPECT_EQ(r.error, HttpError::TooManyHeaders);
    EXPECT_EQ(rec.head_calls, 0);
  }
}

TEST(Http1Limits, UriTooLong) {
  config::Limits limits;
  limits.max_uri_bytes = 32;
  {
    Recorder rec;
    Http1Parser p(HTTP_REQUEST, &limits, &rec);
    Parsed r = feed(p, "GET /" + std::string(31, 'u') + " HTTP/1.1\r\nHost: a\r\n\r\n");
    EXPECT_EQ(r.result.status, Status::Ok) << "a 32-byte URI: " << http_error_reason(r.error);
  }
  for (size_t step : {0u, 1u}) {
    SCOPED_TRACE("step " + std::to_string(step));
    Recorder rec;
    Http1Parser p(HTTP_REQUEST, &limits, &rec);
    Parsed r = feed(p, "GET /" + std::string(32, 'u') + " HTTP/1.1\r\nHost: a\r\n\r\n", step);
    EXPECT_EQ(r.result.status, Status::Error);
    EXPECT_EQ(r.error, HttpError::UriTooLong);
    EXPECT_EQ(rec.head_calls, 0);
  }
}

TEST(Http1Limits, ContentLengthOverMaxBody) {
  config::Limits limits;
  limits.max_body_bytes = 10;
  {
    Recorder rec;
    Http1Parser p(HTTP_REQUEST, &limits, &rec);
    Parsed r = feed(p, kPost + "Content-Length: 10\r\n\r\n0123456789");
    EXPECT_EQ(r.result.status, Status::Ok) << http_error_reason(r.error);
    EXPECT_EQ(rec.bodies[0], "0123456789");
  }
  Recorder rec;
  Http1Parser p(HTTP_REQUEST, &limits, &rec);
  Parsed r = feed(p, kPost + "Content-Length: 11\r\n\r\n");
  EXPECT_EQ(r.result.status, Status::Error);
  EXPECT_EQ(r.error, HttpError::BodyTooLarge);
  EXPECT_EQ(rec.head_calls, 0);
}

TEST(Http1Limits, ChunkedBodyGrowingPastMaxBody) {
  config::Limits limits;
  limits.max_body_bytes = 10;
  for (size_t step : {0u, 1u}) {
    SCOPED_TRACE("step " + std::to_string(step));
    Recorder rec;
    Http1Parser p(HTTP_REQUEST, &limits, &rec);
    Parsed r = feed(p,
                    kPost +
                        "Transfer-Encoding: chunked\r\n\r\n"
                        "6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n",
                    step);
    EXPECT_EQ(r.result.status, Status::Error);
    EXPECT_EQ(r.error, HttpError::BodyTooLarge);
    EXPECT_EQ(rec.completes, 0);
    EXPECT_LE(rec.bodies[0].size(), 10u);
  }
}

TEST(Http1Limits, ZeroMaxBodyMeansUnlimited) {
  config::Limits limits;
  limits.max_body_bytes = 0;
  Recorder rec;
  Http1Parser p(HTTP_REQUEST, &limits, &rec);
  Parsed r = feed(p, kPost + "Content-Length: 100000\r\n\r\n" + std::string(100000, 'b'));
  EXPECT_EQ(r.result.status, Status::Ok) << http_error_reason(r.error);
  EXPECT_EQ(rec.bodies[0].size(), 100000u);
}

// ---------------------------------------------------------------------------------------------
// Error reasons and statuses

TEST(Http1Errors, StatusAndReason) {
  struct Row {
    HttpError e;
    int status;
    const char* reason;
  };
  const Row rows[] = {
      {HttpError::None, 400, "none"},
      {HttpError::BadRequest, 400, "http.bad_request"},
      {HttpError::ObsFold, 400, "http.obs_fold"},
      {HttpError::ChunkedOnHttp10, 400, "http.chunked_on_http10"},
      {HttpError::MissingHost, 400, "http.missing_host"},
      {HttpError::DuplicateHost, 400, "http.duplicate_host"},
      {HttpError::BadHost, 400, "http.bad_host"},
      {HttpError::BadVersion, 400, "http.bad_version"},
      {HttpError::UnsupportedVersion, 505, "http.bad_version"},
      {HttpError::HeaderTooLarge, 431, "http.header_too_large"},
      {HttpError::TooManyHeaders, 431, "http.too_many_headers"},
      {HttpError::UriTooLong, 414, "http.uri_too_long"},
      {HttpError::BodyTooLarge, 413, "http.body_too_large"},
      {HttpError::BadResponse, 502, "upstream.bad_response"},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.reason);
    EXPECT_EQ(http_error_status(r.e), r.status);
    EXPECT_STREQ(http_error_reason(r.e), r.reason);
  }
}

TEST(Http1Errors, Iequals) {
  EXPECT_TRUE(iequals("Content-Length", "content-length"));
  EXPECT_TRUE(iequals("", ""));
  EXPECT_FALSE(iequals("Host", "Hostx"));
  EXPECT_FALSE(iequals("Host", "Hose"));
}

// ---------------------------------------------------------------------------------------------
// Responses

TEST(Http1Response, ContentLength) {
  config::Limits limits;
  Recorder rec;
  Http1Parser p(HTTP_RESPONSE, &limits, &rec);
  const std::string resp =
      "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nnot found";
  Parsed r = feed(p, resp);
  ASSERT_EQ(r.result.status, Status::Ok) << http_error_reason(r.error);
  EXPECT_EQ(r.result.consumed, resp.size());
  ASSERT_EQ(rec.heads.size(), 1u);
  EXPECT_EQ(rec.heads[0].status, 404);
  EXPECT_EQ(rec.heads[0].url(), "Not Found");
  EXPECT_EQ(rec.heads[0].content_length, 9u);
  EXPECT_EQ(rec.headers(), (Headers{{"Content-Type", "text/plain"}, {"Content-Length", "9"}}));
  EXPECT_EQ(rec.bodies[0], "not found");
  EXPECT_EQ(rec.completes, 1);
}

TEST(Http1Response, Chunked) {
  config::Limits limits;
  Recorder rec;
  Http1Parser p(HTTP_RESPONSE, &limits, &rec);
  const std::string resp =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: "
      "1\r\n\r\n";
  for (size_t step : {0u, 1u}) {
    SCOPED_TRACE("step " + std::to_string(step));
    Recorder r1;
    Http1Parser p1(HTTP_RESPONSE, &limits, &r1);
    Parsed r = feed(p1, resp, step);
    ASSERT_EQ(r.result.status, Status::Ok) << http_error_reason(r.error);
    ASSERT_EQ(r1.heads.size(), 1u);
    EXPECT_EQ(r1.heads[0].status, 200);
    EXPECT_EQ(r1.heads[0].url(), "OK");
    EXPECT_TRUE(r1.heads[0].chunked);
    EXPECT_EQ(r1.bodies[0], "abcde");
    EXPECT_EQ(r1.completes, 1);
  }
}

TEST(Http1Response, ResponseToHeadHasNoBody) {
  config::Limits limits;
  Recorder rec;
  rec.head_result = 1;
  Http1Parser p(HTTP_RESPONSE, &limits, &rec);
  const std::string first = "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n";
  const std::string next = "HTTP/1.1 204 No Content\r\n\r\n";
  Parsed r = feed(p, first + next);
  ASSERT_EQ(r.result.status, Status::Ok) << http_error_reason(r.error);
  ASSERT_EQ(rec.heads.size(), 2u);
  EXPECT_EQ(rec.heads[0].status, 200);
  EXPECT_EQ(rec.heads[0].content_length, 1234u);
  EXPECT_EQ(rec.bodies[0], "");
  EXPECT_EQ(rec.heads[1].status, 204);
  EXPECT_EQ(rec.completes, 2);
  EXPECT_EQ(rec.body_calls, 0);
}

TEST(Http1Response, ResponseToHeadPausedAfterHead) {
  config::Limits limits;
  Recorder rec;
  rec.head_result = 1;
  rec.pause_on_complete = true;
  Http1Parser p(HTTP_RESPONSE, &limits, &rec);
  const std::string first = "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n";
  const std::string all = first + "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
  Http1Parser::Result r = p.execute(all.data(), all.size());
  EXPECT_EQ(r.status, Status::Paused);
  EXPECT_EQ(r.consumed, first.size());
  EXPECT_EQ(rec.completes, 1);
}

TEST(Http1Response, ContinueThen200InOneBuffer) {
  config::Limits limits;
  Recorder rec;
  Http1Parser p(HTTP_RESPONSE, &limits, &rec);
  const std::string resp =
      "HTTP/1.1 100 Continue\r\n\r\n"
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  Parsed r = feed(p, resp);
  ASSERT_EQ(r.result.status, Status::Ok) << http_error_reason(r.error);
  EXPECT_EQ(r.result.consumed, resp.size());
  ASSERT_EQ(rec.heads.size(), 2u);
  EXPECT_EQ(rec.heads[0].status, 100);
  EXPECT_EQ(rec.heads[0].url(), "Continue");
  EXPECT_EQ(rec.heads[1].status, 200);
  EXPECT_EQ(rec.bodies[0], "");
  EXPECT_EQ(rec.bodies[1], "ok");
  EXPECT_EQ(rec.head_calls, 2);
  EXPECT_EQ(rec.completes, 2);
}

TEST(Http1Response, SwitchingProtocolsGivesUpgrade) {
  config::Limits limits;
  Recorder rec;
  Http1Parser p(HTTP_RESPONSE, &limits, &rec);
  const std::string head =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
  const std::string tunnel = "\x81\x05hello-tunnel-bytes";
  const std::string all = head + tunnel;
  Http1Parser::Result r = p.execute(all.data(), all.size());
  ASSERT_EQ(r.status, Status::Upgrade) << http_error_reason(p.error()) << " " << p.llhttp_reason();
  EXPECT_EQ(r.consumed, head.size());
  EXPECT_EQ(std::string(all.data() + r.consumed, all.size() - r.consumed), tunnel);
  ASSERT_EQ(rec.heads.size(), 1u);
  EXPECT_EQ(rec.heads[0].status, 101);
  EXPECT_TRUE(rec.heads[0].upgrade);
  EXPECT_EQ(rec.body_calls, 0);
  EXPECT_EQ(rec.completes, 1);
}

TEST(Http1Response, SwitchingProtocolsUpgradeEvenWhenHandlerPauses) {
  config::Limits limits;
  Recorder rec;
  rec.pause_on_complete = true;
  Http1Parser p(HTTP_RESPONSE, &limits, &rec);
  const std::string head =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
  const std::string all = head + "xyz";
  Http1Parser::Result r = p.execute(all.data(), all.size());
  EXPECT_EQ(r.status, Status::Upgrade);
  EXPECT_EQ(r.consumed, head.size());
}

TEST(Http1Response, CloseDelimitedBodyCompletedByFinish) {
  config::Limits limits;
  Recorder rec;
  Http1Parser p(HTTP_RESPONSE, &limits, &rec);
  Parsed r = feed(p, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nabc");
  ASSERT_EQ(r.result.status, Status::Ok) << http_error_reason(r.error);
  r = feed(p, "def");
  ASSERT_EQ(r.result.status, Status::Ok);
  EXPECT_EQ(rec.completes, 0);
  EXPECT_TRUE(p.in_message());
  Http1Parser::Result f = p.finish();
  EXPECT_EQ(f.status, Status::Ok);
  EXPECT_EQ(rec.bodies[0], "abcdef");
  EXPECT_EQ(rec.completes, 1);
  EXPECT_FALSE(rec.heads[0].keep_alive);
}

TEST(Http1Response, FinishBetweenMessagesIsOk) {
  config::Limits limits;
  Recorder rec;
  Http1Parser p(HTTP_RESPONSE, &limits, &rec);
  ASSERT_EQ(feed(p, "HTTP/1.1 204 No Content\r\n\r\n").result.status, Status::Ok);
  EXPECT_EQ(p.finish().status, Status::Ok);
  EXPECT_EQ(rec.completes, 1);
}

TEST(Http1Response, TruncatedContentLengthBody) {
  config::Limits limits;
  Recorder rec;
  Http1Parser p(HTTP_RESPONSE, &limits, &rec);
  ASSERT_EQ(feed(p, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").result.status, Status::Ok);
  Http1Parser::Result f = p.finish();
  EXPECT_EQ(f.status, Status::Error);
  EXPECT_EQ(p.error(), HttpError::BadResponse);
  EXPECT_EQ(http_error_status(p.error()), 502);
  EXPECT_EQ(rec.completes, 0);
}

TEST(Http1Response, TruncatedChunkedBody) {
  config::Limits limits;
  Recorder rec;
  Http1Parser p(HTTP_RESPONSE, &limits, &rec);
  ASSERT_EQ(feed(p, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab").result.status,
            Status::Ok);
  EXPECT_EQ(p.finish().status, Status::Error);
  EXPECT_EQ(p.error(), HttpError::BadResponse);
}

TEST(Http1Response, TruncatedHead) {
  config::Limits limits;
  Recorder rec;
  Http1Parser p(HTTP_RESPONSE, &limits, &rec);
  ASSERT_EQ(feed(p, "HTTP/1.1 200 OK\r\nContent-Le").result.status, Status::Ok);
  EXPECT_EQ(p.finish().status, Status::Error);
  EXPECT_EQ(p.error(), HttpError::BadResponse);
}

TEST(Http1Response, GarbageIsBadResponse) {
  config::Limits limits;
  Recorder rec;
  Http1Parser p(HTTP_RESPONSE, &limits, &rec);
  Parsed r = feed(p, "SSH-2.0-OpenSSH_9.2\r\n");
  EXPECT_EQ(r.result.status, Status::Error);
  EXPECT_EQ(r.error, HttpError::BadResponse);
}

TEST(Http1Response, Http2VersionIsBadResponse) {
  config::Limits limits;
  Recorder rec;
  Http1Parser p(HTTP_RESPONSE, &limits, &rec);
  Parsed r = feed(p, "HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(r.result.status, Status::Error);
  EXPECT_EQ(r.error, HttpError::BadResponse);
  EXPECT_EQ(rec.head_calls, 0);
}

TEST(Http1Response, SmugglingFramingIsBadResponse) {
  config::Limits limits;
  for (const char* resp :
       {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        "0\r\n\r\n"}) {
    SCOPED_TRACE(resp);
    Recorder rec;
    Http1Parser p(HTTP_RESPONSE, &limits, &rec);
    Parsed r = feed(p, resp);
    EXPECT_EQ(r.result.status, Status::Error);
    EXPECT_EQ(r.error, HttpError::BadResponse);
  }
}

// Responses are not bounded by max_body_bytes (that limit is for what clients send).
TEST(Http1Response, BodyNotBoundedByMaxBody) {
  config::Limits limits;
  limits.max_body_bytes = 4;
  Recorder rec;
  Http1Parser p(HTTP_RESPONSE, &limits, &rec);
  Parsed r = feed(p, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789");
  EXPECT_EQ(r.result.status, Status::Ok) << http_error_reason(r.error);
  EXPECT_EQ(rec.bodies[0], "0123456789");
}

}  // namespace
}  // namespace parapet
