// Fuzz target: the rules language compiler. The input is compiled as a filter (request and
// response phase) and as a rewrite value expression; whatever compiles is evaluated against a
// fixed fake request. Invariants: compile never crashes or hangs (length and nesting limits),
// errors point inside the input, evaluation of anything accepted is safe, and its `contains`
// answered through a ContainsIndex (every literal grouped) give the same result as memmem.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "filters/request_provider.h"
#include "filters/rules.h"

namespace {

using namespace parapet::filters;

struct Fixture {
  std::shared_ptr<IpList> ips = std::make_shared<IpList>();
  std::shared_ptr<StringList> words = std::make_shared<StringList>();
  ListRegistry lists;
  HeaderPair headers[5] = {{"Host", "example.com"},
                           {"User-Agent", "Mozilla/5.0 sqlmap"},
                           {"Cookie", "session=abc; theme=dark"},
                           {"X-Data", "{\"a\":{\"b\":[\"x\",\"y\\u00e9\"]}}"},
                           {"X-B64", "aGVsbG8="}};
  HeaderPair resp[1] = {{"Content-Type", "text/html"}};
  RequestView req;
  RequestFieldProvider provider{&req};

  Fixture() {
    ListLoadError err;
    load_ip_list("10.0.0.0/8\n2001:db8::/32\n", ips.get(), &err);
    load_string_list("bad\nevil\n", words.get(), &err);
    lists.add_ip_list("bad_ips", ips);
    lists.add_string_list("bad_words", words);
    req.method = "POST";
    req.target = "/a/../b//c.PHP?x=1&y=%41+b&x=2";
    req.host = "example.com";
    req.headers = headers;
    IpAddr::parse("10.1.2.3", &req.src);
    req.has_src = true;
    req.tls = true;
    req.timestamp_sec = 1700000000;
    req.tenant = "demo";
    req.response_code = 200;
    req.response_headers = resp;
  }
};

void check_error(const CompileError& e, std::string_view src) {
  if (e.line < 1 || e.column < 1 || e.reason.empty()) abort();
  if (static_cast<size_t>(e.line) > src.size() + 1) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Fixture* fx = new Fixture();
  std::string_view src(reinterpret_cast<const char*>(data), size);
  ExecContext ctx(&fx->provider);
  for (Phase phase : {Phase::Request, Phase::Response}) {
    CompileOptions opt;
    opt.lists = &fx->lists;
    opt.phase = phase;
    Compiled<Filter> f = compile_filter(src, opt);
    if (f.ok()) {
      ctx.reset(&fx->provider);
      bool a = f.value->matches(ctx);
      // Cached fields must give the same answer the second time.
      if (f.value->matches(ctx) != a) abort();
      // The same filter through a ContainsIndex grouping every literal: the same answer, on a
      // fresh request and on one whose groups were already scanned.
      const Filter* filters[2] = {f.value.get(), f.value.get()};
      ContainsIndex::Options copt;
      copt.min_literals = 1;
      auto index = ContainsIndex::build(filters, copt);
      ctx.reset(&fx->provider);
      if (f.value->matches(ctx, index->binding(0)) != a) abort();
      if (f.value->matches(ctx, index->binding(1)) != a) abort();
    } else {
      check_error(f.error, src);
    }
  }
  CompileOptions vopt;
  vopt.lists = &fx->lists;
  vopt.allow_rewrite_functions = true;
  Compiled<ValueExpr> v = compile_value(src, vopt);
  if (v.ok()) {
    std::string out;
    ctx.reset(&fx->provider);
    v.value->eval(ctx, out);
  } else {
    check_error(v.error, src);
  }
  return 0;
}
