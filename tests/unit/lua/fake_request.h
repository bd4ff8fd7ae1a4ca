// A LuaRequest over plain vectors for the sandbox tests, fuzz target and benchmarks, and a
// harness that builds tenants from inline scripts.
#pragma once

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "lua/sandbox.h"
#include "lua/shared_dict.h"

namespace parapet::lua::testing {

inline bool same_name(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

using Headers = std::vector<std::pair<std::string, std::string>>;

inline void replace_header(Headers& hs, std::string_view name,
                           std::span<const std::string_view> values) {
  hs.erase(
      std::remove_if(hs.begin(), hs.end(), [&](const auto& h) { return same_name(h.first, name); }),
      hs.end());
  for (std::string_view v : values) hs.emplace_back(std::string(name), std::string(v));
}

struct FakeRequest : LuaRequest {
  std::string method_ = "GET", uri_ = "/index.html", request_uri_ = "/index.html?a=1&b=two",
              args_ = "a=1&b=two", scheme_ = "https", host_ = "example.com",
              remote_addr_ = "203.0.113.7";
  Headers req_headers = {{"Host", "example.com"}, {"User-Agent", "Mozilla/5.0"},
                         {"Accept", "text/html"}, {"X-Multi", "one"},
                         {"X-Multi", "two"},      {"Cookie", "session=abc; lang=en"}};
  Headers resp_headers = {{"Content-Type", "text/html"}, {"Server", "origin"}};
  int status_ = 200;
  std::map<std::string, std::string> vars = {{"server_port", "443"}};

  std::string_view method() override { return method_; }
  std::string_view uri() override { return uri_; }
  std::string_view request_uri() override { return request_uri_; }
  std::string_view args() override { return args_; }
  std::string_view scheme() override { return scheme_; }
  std::string_view host() override { return host_; }
  std::string_view remote_addr() override { return remote_addr_; }
  size_t request_header_count() override { return req_headers.size(); }
  HeaderView request_header(size_t i) override {
    return {req_headers[i].first, req_headers[i].second};
  }
  void set_request_header(std::string_view name,
                          std::span<const std::string_view> values) override {
    replace_header(req_headers, name, values);
  }
  void set_uri(std::string_view p) override { uri_ = std::string(p); }
  void set_args(std::string_view a) override { args_ = std::string(a); }
  int response_status() override { return status_; }
  void set_response_status(int s) override { status_ = s; }
  size_t response_header_count() override { return resp_headers.size(); }
  HeaderView response_header(size_t i) override {
    return {resp_headers[i].first, resp_headers[i].second};
  }
  void set_response_header(std::string_view name,
                           std::span<const std::string_view> values) override {
    replace_header(resp_headers, name, values);
  }
  bool variable(std::string_view name, std::string* out) override {
    auto it = vars.find(std::string(name));
    if (it == vars.end()) return false;
    *out = it->second;
    return true;
  }
  std::string req_header(std::string_view name) const {
    for (const auto& h : req_headers) {
      if (same_name(h.first, name)) return h.second;
    }
    return "<none>";
  }
};

inline std::string response_header(const RunResult& r, std::string_view name) {
  for (const auto& h : r.response.headers) {
    if (same_name(h.first, name)) return h.second;
  }
  return "<none>";
}

struct LogLine {
  int level;
  std::string tenant, msg;
};

// Builds tenants from source; keeps the logs they write.
struct Harness {
  SharedDictStore dicts;
  std::vector<LogLine> logs;
  LuaLimits limits;

  std::unique_ptr<LuaTenant> tenant(const std::string& source, const std::string& name = "demo",
                                    std::string* error = nullptr) {
    auto c = LuaScript::compile(name + ".lua", source, limits);
    if (!c.ok()) {
      if (error) *error = c.error;
      return nullptr;
    }
    TenantOptions o;
    o.tenant = name;
    o.limits = limits;
    o.dicts = &dicts;
    o.log = [this](int level, std::string_view t, std::string_view msg) {
      logs.push_back({level, std::string(t), std::string(msg)});
    };
    std::string err;
    auto t = LuaTenant::create(c.script, std::move(o), &err);
    if (!t && error) *error = err;
    return t;
  }
  // A tenant whose access phase is `body`.
  std::unique_ptr<LuaTenant> access(const std::string& body, const std::string& name = "demo") {
    return tenant("return { access = function()\n" + body + "\nend }", name);
  }
};

}  // namespace parapet::lua::testing
