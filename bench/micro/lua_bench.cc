// Lua sandbox microbenchmarks (lua/): per-run cost of bench.lua's access phase (workload f)
// and of a typical 10-line access script (header checks, ngx.re.find, ngx.shared incr) against
// the fake request, and the time from a runaway script's start to its stop.
//
// BM_Fixture is the per-request work outside Lua (resetting the fake request and the result):
// subtract it from the other arms. Every arm checks the run's outcome (the work ran) and aborts
// on any failed run before a number is reported.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "lua/sandbox.h"
#include "lua/shared_dict.h"
#include "tests/unit/lua/fake_request.h"

namespace {

using namespace parapet::lua;

std::string bench_lua() {
  // The workload-f script, unchanged (a verbatim copy lives beside the unit tests).
  std::ifstream in(std::string(PARAPET_SOURCE_DIR) + "/tests/unit/lua/testdata/bench.lua");
  std::stringstream ss;
  ss << in.rdbuf();
  if (ss.str().empty()) std::abort();
  return ss.str();
}

const char kTypical[] = R"lua(
return { access = function()
  local ua = ngx.var.http_user_agent
  if not ua or ua == "" then return ngx.exit(400) end
  if ngx.var.http_x_api_key == "revoked" then return ngx.exit(401) end
  if ngx.re.find(ngx.var.uri, [[^/(admin|internal)/]], "jo") then return ngx.exit(403) end
  local hits = ngx.shared.hits:incr(ngx.var.remote_addr, 1, 0, 60)
  if hits and hits > 1e12 then return ngx.exit(429) end
  ngx.req.set_header("X-Client", ngx.var.remote_addr)
  ngx.ctx.start = ngx.now()
end }
)lua";

std::unique_ptr<LuaTenant> make(const std::string& src, SharedDictStore* dicts) {
  auto c = LuaScript::compile("bench.lua", src);
  if (!c.ok()) {
    std::fprintf(stderr, "%s\n", c.error.c_str());
    std::abort();
  }
  TenantOptions o;
  o.tenant = "bench";
  o.dicts = dicts;
  std::string err;
  auto t = LuaTenant::create(c.script, o, &err);
  if (!t) std::abort();
  return t;
}

void BM_Fixture(benchmark::State& state) {
  parapet::lua::testing::FakeRequest req;
  RunResult r;
  for (auto _ : state) {
    req.req_headers.resize(6);
    r.clear();
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_Fixture);

void BM_BenchLuaAccess(benchmark::State& state) {
  auto t = make(bench_lua(), nullptr);
  parapet::lua::testing::FakeRequest req;
  RunResult r;
  for (auto _ : state) {
    req.req_headers.resize(6);
    t->run(Phase::Access, req, nullptr, r);
    if (!r.ok() || r.response.status != 200 || r.response.body.size() != 1024) std::abort();
  }
  state.counters["mem_KiB"] = static_cast<double>(t->memory_used()) / 1024;
}
BENCHMARK(BM_BenchLuaAccess);

void BM_TypicalAccess(benchmark::State& state) {
  SharedDictStore dicts;
  dicts.define("bench", "hits", 1 << 20);
  auto t = make(kTypical, &dicts);
  parapet::lua::testing::FakeRequest req;
  RunResult r;
  for (auto _ : state) {
    req.req_headers.resize(6);
    LuaExchangeCtx ctx;
    t->run(Phase::Access, req, &ctx, r);
    if (!r.ok() || r.action != Action::Continue) {
      std::fprintf(stderr, "%s\n", r.error.c_str());
      std::abort();
    }
  }
}
BENCHMARK(BM_TypicalAccess);

// Start-to-stop of `while true do end` under the default 5 ms budget: the overshoot past the
// budget is what the count hook's granularity costs.
void BM_RunawayStop(benchmark::State& state) {
  auto t = make("return { access = function() while true do end end }", nullptr);
  parapet::lua::testing::FakeRequest req;
  RunResult r;
  double worst = 0;
  for (auto _ : state) {
    t->run(Phase::Access, req, nullptr, r);
    if (r.status != RunStatus::Timeout) std::abort();
    double ms = std::chrono::duration<double, std::milli>(r.elapsed).count();
    if (ms > worst) worst = ms;
  }
  state.counters["worst_ms"] = worst;
}
BENCHMARK(BM_RunawayStop)->Unit(benchmark::kMillisecond)->Iterations(50);

void BM_PathologicalPatternStop(benchmark::State& state) {
  auto t = make(R"lua(return { access = function()
    string.find(("a"):rep(28), ("a*"):rep(12) .. "b") end })lua",
                nullptr);
  parapet::lua::testing::FakeRequest req;
  RunResult r;
  for (auto _ : state) {
    t->run(Phase::Access, req, nullptr, r);
    if (r.status != RunStatus::Timeout) std::abort();
  }
}
BENCHMARK(BM_PathologicalPatternStop)->Unit(benchmark::kMillisecond)->Iterations(50);

}  // namespace

BENCHMARK_MAIN();
