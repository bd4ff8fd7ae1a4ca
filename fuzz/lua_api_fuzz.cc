// Fuzz target: the Lua sandbox's API boundary. The first byte picks the mode:
//   even: the rest is script source, run as the body of all three phase handlers under tight
//         limits (2 ms, 4 MiB);
//   odd:  the rest is a sequence of API calls: each byte picks a call from kCalls and the bytes
//         after it (up to the next 0xFF) are its string argument, passed as a Lua string literal.
// Invariants: nothing crashes or hangs, every run ends with a defined status within its budget
// plus a margin, the tenant keeps working after each input, and a handle on a fixed request is
// never read after its run.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "lua/sandbox.h"
#include "lua/shared_dict.h"
#include "tests/unit/lua/fake_request.h"

namespace {

using namespace parapet::lua;

const char* const kCalls[] = {
    "ngx.var[S]",
    "ngx.var.http_user_agent",
    "ngx.header[S] = S",
    "ngx.header[S] = nil",
    "ngx.req.set_header(S, S)",
    "ngx.req.clear_header(S)",
    "ngx.req.get_headers()",
    "ngx.req.get_uri_args()",
    "ngx.req.set_uri(S)",
    "ngx.req.set_uri_args(S)",
    "ngx.say(S)",
    "ngx.print(S, S)",
    "ngx.status = #S + 100",
    "ngx.log(ngx.ERR, S)",
    "ngx.ctx[S] = S",
    "ngx.encode_base64(S)",
    "ngx.decode_base64(S)",
    "ngx.escape_uri(S)",
    "ngx.unescape_uri(S)",
    "ngx.decode_args(S)",
    "ngx.encode_args({[S] = S})",
    "ngx.md5(S)",
    "ngx.hmac_sha1(S, S)",
    "ngx.re.match(S, S)",
    "ngx.re.find(S, S, 'i')",
    "ngx.re.gsub(S, S, S)",
    "ngx.re.gsub(S, S, function(m) return m[0] end)",
    "string.find(S, S)",
    "string.match(S, S)",
    "string.gsub(S, S, S)",
    "for a in string.gmatch(S, S) do end",
    "string.rep(S, #S * 1000)",
    "string.format(S, 1, 2)",
    "cjson.decode(S)",
    "cjson.encode(cjson.decode(S))",
    "load(S)",
    "ngx.shared.d:set(S, S, 0.001)",
    "ngx.shared.d:incr(S, 1, 0)",
    "ngx.shared.d:get(S)",
    "ngx.shared[S]",
    "ngx[S]",
    "ngx.redirect(S)",
    "ngx.exit(#S)",
};
constexpr size_t kCallCount = sizeof(kCalls) / sizeof(kCalls[0]);

std::string lua_literal(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "\\%u", c);
    out += buf;
  }
  return out + "\"";
}

std::string calls_script(std::string_view in) {
  std::string body;
  size_t i = 0;
  while (i < in.size()) {
    const char* tpl = kCalls[static_cast<unsigned char>(in[i++]) % kCallCount];
    size_t end = in.find('\xff', i);
    if (end == std::string_view::npos) end = in.size();
    std::string arg = lua_literal(in.substr(i, end - i));
    i = end + 1;
    std::string call;
    for (const char* p = tpl; *p; ++p) {
      if (*p == 'S') {
        call += arg;
      } else {
        call += *p;
      }
    }
    // Statements (assignments, loops) as they are; expressions through a local.
    bool statement = std::string_view(tpl).find(" = ") != std::string_view::npos ||
                     std::string_view(tpl).substr(0, 4) == "for ";
    body += statement ? "pcall(function() " + call + " end)\n"
                      : "pcall(function() local _ = " + call + " end)\n";
  }
  return body;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static SharedDictStore* dicts = [] {
    auto* d = new SharedDictStore();
    d->define("fuzz", "d", 64 * 1024);
    return d;
  }();
  if (size == 0 || size > 64 * 1024) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string body = (data[0] & 1) ? calls_script(in) : std::string(in);
  LuaLimits limits;
  limits.cpu_time = std::chrono::milliseconds(2);
  limits.memory_bytes = 4u << 20;
  LuaScript::CompileResult compiled;
  if (data[0] & 2) {
    // OpenResty style: the body is each phase file's chunk.
    compiled = LuaScript::compile_phases(
        {LuaSource{"access.lua", body}, LuaSource{"header_filter.lua", body},
         LuaSource{"log.lua", body}},
        limits);
  } else {
    std::string source = "local function handler()\n" + body +
                         "\nend\nreturn {access = handler, header_filter = handler, log = handler}";
    compiled = LuaScript::compile("fuzz.lua", source, limits);
  }
  if (!compiled.ok()) {
    if (compiled.error.empty()) std::abort();
    return 0;
  }
  TenantOptions o;
  o.tenant = "fuzz";
  o.limits = limits;
  o.dicts = dicts;
  std::string err;
  auto tenant = LuaTenant::create(compiled.script, o, &err);
  if (!tenant) return 0;  // e.g. the top level behaves differently the second time (time)
  parapet::lua::testing::FakeRequest req;
  LuaExchangeCtx ctx;
  for (Phase p : {Phase::Access, Phase::HeaderFilter, Phase::Log}) {
    RunResult r = tenant->run(p, req, &ctx);
    if (r.elapsed > std::chrono::milliseconds(500)) std::abort();  // budget not enforced
    if (r.status != RunStatus::Ok && r.action != Action::Continue) std::abort();
    if (r.status != RunStatus::Ok && r.error.empty()) std::abort();
    if (p != Phase::Access && r.action != Action::Continue) std::abort();
  }
  // The state still works after whatever the input did.
  parapet::lua::testing::FakeRequest fresh;
  RunResult again = tenant->run(Phase::Log, fresh);
  if (again.elapsed > std::chrono::milliseconds(500)) std::abort();
  return 0;
}
