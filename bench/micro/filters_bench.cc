// Rules engine microbenchmarks (filters/): per-request evaluation of 10, 100 and 1,000 typical
// rules (mixed eq, contains, matches, in-list, wildcard, any(); almost none match, as in real
// traffic), 20 / 200 / 2,000 literal `contains` on a 1 KiB value with and without the
// ContainsIndex, lookups in a 1-million-CIDR IP list, and a heap-allocation count per
// evaluation.
//
// BM_Fixture is the per-request context reset alone: subtract it from BM_Evaluate. Each
// evaluation arm checks the expected match count (the work ran) and that steady-state
// evaluation allocated nothing (the "allocs_per_eval" counter, asserted 0).
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "filters/request_provider.h"
#include "filters/rules.h"
#include "tests/alloc/counting_new.h"

// Every heap allocation in the process goes through these, so counting here proves the
// evaluation path is allocation-free.
// GCC 12 at -O3 reports a false -Wrestrict inside std::string (GCC bug 105329) here.
#pragma GCC diagnostic ignored "-Wrestrict"

namespace {

using namespace parapet::filters;

// snprintf rather than std::to_string: GCC 12 at -O3 warns falsely (-Wrestrict) on the latter.
std::string num(int i) {
  char buf[16];
  int len = std::snprintf(buf, sizeof(buf), "%d", i);
  return std::string(buf, static_cast<size_t>(len));
}

std::shared_ptr<IpList> blocklist(size_t n) {
  // n disjoint /24s spread over 1.0.0.0 - 223.x, built as list text like an operator's file.
  std::string text;
  text.reserve(n * 16);
  std::mt19937 rng(42);
  for (size_t i = 0; i < n; ++i) {
    uint32_t a = (0x01000000u + static_cast<uint32_t>(i) * 0xD0u * 4u) & 0xFFFFFF00u;
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%u.%u.%u.0/24\n", a >> 24, (a >> 16) & 255, (a >> 8) & 255);
    text += buf;
  }
  auto list = std::make_shared<IpList>();
  ListLoadError err;
  if (!load_ip_list(text, list.get(), &err)) std::abort();
  return list;
}

const ListRegistry& registry() {
  static ListRegistry* reg = [] {
    auto* r = new ListRegistry();
    r->add_ip_list("blocklist", blocklist(10000));
    auto bots = std::make_shared<StringList>();
    for (int i = 0; i < 500; ++i) bots->add(std::string("BadBot/").append(num(i)));
    bots->finalize();
    r->add_string_list("bad_agents", bots);
    return r;
  }();
  return *reg;
}

// A typical rule mix; `i` varies the literals so rules are distinct. Only rule 7 of every
// 1,000 can match the benchmark request.
std::string typical_rule(int i) {
  // Built by appending, for the same GCC 12 false positive with `"lit" + std::string&&`.
  const std::string n = num(i);
  std::string r;
  auto add = [&r](std::initializer_list<std::string_view> parts) {
    for (std::string_view p : parts) r.append(p);
    return r;
  };
  switch (i % 10) {
    case 0:
      return add({"http.host eq \"site", n, ".example.com\""});
    case 1:
      return add({"http.user_agent contains \"scanner-", n, "\""});
    case 2:
      return add({"http.request.uri.path matches \"^/wp-admin/", n, "/.*\\\\.php$\""});
    case 3:
      return add({"ip.src in $blocklist and http.request.uri.path contains \"/login", n, "\""});
    case 4:
      return add({"http.request.uri.path wildcard \"/static/", n, "/*.js\""});
    case 5:
      return add({"http.request.headers[\"x-api-key\"][0] eq \"key", n,
                  "\" or http.user_agent in $bad_agents"});
    case 6:
      return add(
          {"http.request.method in {\"PUT\" \"DELETE\"} and http.request.uri.path "
           "contains \"/admin",
           n, "\""});
    case 7:
      if (i == 7) return "http.request.uri.path wildcard \"/products/*\" and not ssl";
      return add({"any(http.request.uri.args.names[*] eq \"debug", n, "\")"});
    case 8:
      return add({"ip.src in {203.0.", num(i % 256), ".0/24 2001:db8:", n, "::/48}"});
    default:
      return add({"lower(http.request.uri.query) contains \"union select ", n,
                  "\" or http.request.uri.path.extension in {\"env\" \"git", n, "\"}"});
  }
}

struct Request {
  std::vector<HeaderPair> headers = {
      {"Host", "shop.example.com"},
      {"User-Agent",
       "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
       "Gecko) Chrome/120.0.0.0 Safari/537.36"},
      {"Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
      {"Accept-Language", "en-US,en;q=0.9"},
      {"Accept-Encoding", "gzip, deflate, br"},
      {"Cookie", "session=0123456789abcdef; cart=3; theme=dark"},
      {"Referer", "https://shop.example.com/"},
      {"X-Forwarded-For", "198.51.100.23"},
      {"Sec-Fetch-Mode", "navigate"},
      {"Upgrade-Insecure-Requests", "1"},
  };
  RequestView view;
  RequestFieldProvider provider{&view};
  Request() {
    view.method = "GET";
    view.target = "/products/item-1234?ref=home&utm_source=news&page=2";
    view.host = "shop.example.com";
    view.headers = headers;
    IpAddr::parse("198.51.100.23", &view.src);
    view.has_src = true;
    view.timestamp_sec = 1700000000;
    view.tenant = "shop";
  }
};

std::shared_ptr<const RuleSet> typical_set(int n) {
  std::vector<RuleSource> rules;
  for (int i = 0; i < n; ++i) rules.push_back({"r" + num(i), typical_rule(i)});
  CompileOptions opt;
  opt.lists = &registry();
  RuleSetResult r = RuleSet::compile(rules, opt);
  if (!r.ok()) {
    std::fprintf(stderr, "rule %s: %s\n", r.errors[0].id.c_str(),
                 r.errors[0].error.to_string().c_str());
    std::abort();
  }
  return r.set;
}

void BM_Fixture(benchmark::State& state) {
  Request req;
  ExecContext ctx(&req.provider);
  for (auto _ : state) {
    ctx.reset(&req.provider);
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_Fixture);

void BM_Evaluate(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  std::shared_ptr<const RuleSet> set = typical_set(n);
  Request req;
  ExecContext ctx(&req.provider);
  std::vector<uint32_t> matched;
  matched.reserve(16);
  // Warm up: grows the context's buffers and RE2's DFA caches once.
  for (int i = 0; i < 3; ++i) {
    ctx.reset(&req.provider);
    set->evaluate(ctx, matched);
  }
  if (matched.size() != 1 || matched[0] != 7) {
    state.SkipWithError("unexpected matches: the benchmark request changed meaning");
    return;
  }
  uint64_t before = parapet::testing::allocation_count();
  for (auto _ : state) {
    ctx.reset(&req.provider);
    set->evaluate(ctx, matched);
    benchmark::DoNotOptimize(matched.data());
  }
  uint64_t allocs = parapet::testing::allocation_count() - before;
  state.counters["rules"] = n;
  state.counters["allocs_per_eval"] =
      static_cast<double>(allocs) / static_cast<double>(state.iterations());
  if (allocs != 0) state.SkipWithError("heap allocations in steady-state evaluation");
}
BENCHMARK(BM_Evaluate)->Arg(10)->Arg(100)->Arg(1000);

// Many literal `contains` over one 1 KiB value (http.request.uri), one rule each: range(0)
// literals, answered by the ContainsIndex (range(1) = 1, "set": one scan per request) or by
// memmem per literal (range(1) = 0, "plain"). Exactly one literal occurs in the subject, near
// its end; the arm checks that match (the work ran) and that nothing was allocated.
struct ContainsRequest {
  std::string target;
  RequestView view;
  RequestFieldProvider provider{&view};
  ContainsRequest() {
    static constexpr std::string_view kTail = "&x=needle-7-zq";  // literal 7's text
    target = "/search/products/category-electronics/item-1234567890?q=";
    std::mt19937 rng(11);
    static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyz0123456789=&";
    while (target.size() < 1024 - kTail.size()) target += kChars[rng() % 38];
    target += kTail;
    view.method = "GET";
    view.target = target;
    view.host = "shop.example.com";
  }
};

std::string contains_literal(int i) {
  // Signature-like literals with varied first bytes, as a WAF list has.
  static constexpr const char* kStems[] = {"union+select", "<script",  "../..", "etc/passwd",
                                           "cmd.exe",      "wp-login", "eval(", "needle"};
  return std::string(kStems[i % 8]).append("-").append(num(i)).append("-zq");
}

void BM_ContainsMany(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const bool with_set = state.range(1) != 0;
  std::vector<RuleSource> rules;
  for (int i = 0; i < n; ++i) {
    rules.push_back({"c" + num(i), "http.request.uri contains \"" + contains_literal(i) + "\""});
  }
  CompileOptions opt;
  opt.contains_index_min = with_set ? 8 : 0;
  RuleSetResult rs = RuleSet::compile(rules, opt);
  if (!rs.ok()) std::abort();
  ContainsRequest req;
  ExecContext ctx(&req.provider);
  std::vector<uint32_t> matched;
  matched.reserve(rules.size());
  for (int i = 0; i < 3; ++i) {
    ctx.reset(&req.provider);
    rs.set->evaluate(ctx, matched);
  }
  if (matched.size() != 1 || matched[0] != 7) {
    state.SkipWithError("unexpected matches: the subject or the literals changed meaning");
    return;
  }
  uint64_t before = parapet::testing::allocation_count();
  for (auto _ : state) {
    ctx.reset(&req.provider);
    rs.set->evaluate(ctx, matched);
    benchmark::DoNotOptimize(matched.data());
  }
  uint64_t allocs = parapet::testing::allocation_count() - before;
  state.SetLabel(with_set ? "set" : "plain");
  state.counters["literals"] = n;
  state.counters["allocs_per_eval"] =
      static_cast<double>(allocs) / static_cast<double>(state.iterations());
  if (allocs != 0) state.SkipWithError("heap allocations in steady-state evaluation");
}
BENCHMARK(BM_ContainsMany)->ArgsProduct({{20, 200, 2000}, {1, 0}});

void BM_IpListLoad1M(benchmark::State& state) {
  for (auto _ : state) {
    std::shared_ptr<IpList> list = blocklist(1000000);
    benchmark::DoNotOptimize(list.get());
    state.counters["ranges"] = static_cast<double>(list->set().v4_ranges());
  }
}
BENCHMARK(BM_IpListLoad1M)->Iterations(1)->Unit(benchmark::kMillisecond);

void BM_IpListLookup1M(benchmark::State& state) {
  std::shared_ptr<IpList> list = blocklist(1000000);
  std::vector<IpAddr> probes;
  std::mt19937 rng(7);
  for (int i = 0; i < 4096; ++i) probes.push_back(IpAddr::from_v4(rng()));
  size_t hits = 0, i = 0;
  uint64_t before = parapet::testing::allocation_count();
  for (auto _ : state) {
    hits += list->contains(probes[i++ & 4095]);
  }
  uint64_t allocs = parapet::testing::allocation_count() - before;
  benchmark::DoNotOptimize(hits);
  state.counters["hit_ratio"] = static_cast<double>(hits) / static_cast<double>(state.iterations());
  state.counters["allocs"] = static_cast<double>(allocs);
  if (allocs != 0) state.SkipWithError("heap allocations in IP list lookups");
}
BENCHMARK(BM_IpListLookup1M);

// The same list through a compiled rule and a real context (field fetch + compare).
void BM_IpListRule1M(benchmark::State& state) {
  ListRegistry reg;
  reg.add_ip_list("big", blocklist(1000000));
  CompileOptions opt;
  opt.lists = &reg;
  Compiled<Filter> f = compile_filter("ip.src in $big", opt);
  if (!f.ok()) std::abort();
  Request req;
  ExecContext ctx(&req.provider);
  for (auto _ : state) {
    ctx.reset(&req.provider);
    benchmark::DoNotOptimize(f.value->matches(ctx));
  }
}
BENCHMARK(BM_IpListRule1M);

void BM_Compile100(benchmark::State& state) {
  std::vector<RuleSource> rules;
  for (int i = 0; i < 100; ++i) rules.push_back({"r" + num(i), typical_rule(i)});
  CompileOptions opt;
  opt.lists = &registry();
  for (auto _ : state) {
    RuleSetResult r = RuleSet::compile(rules, opt);
    benchmark::DoNotOptimize(r.set.get());
  }
}
BENCHMARK(BM_Compile100)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
