// Shared fixture for the rules language tests: one realistic request behind a
// RequestFieldProvider, and helpers that compile an expression and evaluate it.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "filters/request_provider.h"
#include "filters/rules.h"

namespace parapet::filters::testing {

struct TestRequest {
  std::vector<HeaderPair> headers = {
      {"Host", "www.example.com"},
      {"User-Agent", "Mozilla/5.0 (X11) Firefox/120"},
      {"Accept", "text/html"},
      {"Cookie", "session=s3cr3t; lang=en"},
      {"X-Forwarded-For", "203.0.113.7"},
      {"X-Multi", "one"},
      {"X-Multi", "two"},
      {"Authorization", "Basic dXNlcjpwYXNz"},
      {"X-Json", R"({"user": {"name": "bob", "roles": ["admin", "dev"]}, "q": "a\"b"})"},
      {"X-Star", "a*b"},
      {"X-Bs", "a\\b"},
      {"X-Empty", ""},
  };
  std::vector<HeaderPair> response_headers = {{"Content-Type", "text/html"},
                                              {"Set-Cookie", "a=1"}};
  RequestView view;
  RequestFieldProvider provider{&view};

  TestRequest() {
    view.method = "GET";
    view.target = "/Admin/../api/v1/users.JSON?id=42&tag=a&tag=b&q=hello+world&enc=%2Fetc";
    view.host = "www.example.com";
    view.headers = headers;
    IpAddr::parse("192.0.2.10", &view.src);
    view.has_src = true;
    view.tls = true;
    view.timestamp_sec = 1700000000;
    view.tenant = "acme";
  }
  void with_response() {
    view.response_code = 404;
    view.response_headers = response_headers;
  }
};

inline std::shared_ptr<const ListRegistry> test_lists() {
  auto reg = std::make_shared<ListRegistry>();
  auto ips = std::make_shared<IpList>();
  ListLoadError err;
  EXPECT_TRUE(load_ip_list("192.0.2.0/28\n2001:db8::/32\n", ips.get(), &err));
  auto words = std::make_shared<StringList>();
  EXPECT_TRUE(load_string_list("GET\nHEAD\n", words.get(), &err));
  reg->add_ip_list("office", ips);
  reg->add_string_list("safe_methods", words);
  return reg;
}

// Compiles and evaluates; a compile error fails the test and returns false.
inline bool eval(std::string_view expr, TestRequest& req, Phase phase = Phase::Request) {
  static std::shared_ptr<const ListRegistry> lists = test_lists();
  CompileOptions opt;
  opt.phase = phase;
  opt.lists = lists.get();
  Compiled<Filter> f = compile_filter(expr, opt);
  EXPECT_TRUE(f.ok()) << expr << " -> " << f.error.to_string();
  if (!f.ok()) return false;
  ExecContext ctx(&req.provider);
  return f.value->matches(ctx);
}

// The error text of an expression that must not compile ("" if it compiled).
inline std::string error_of(std::string_view expr, CompileOptions opt = {}) {
  static std::shared_ptr<const ListRegistry> lists = test_lists();
  if (opt.lists == nullptr) opt.lists = lists.get();
  Compiled<Filter> f = compile_filter(expr, opt);
  return f.ok() ? std::string() : f.error.to_string();
}

}  // namespace parapet::filters::testing
