#include "proxy/phase_policy.h"

#include <arpa/inet.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <ctime>

#include "filters/request_provider.h"
#include "proxy/worker.h"

namespace parapet {

namespace {

using Action = config::RuleConfig::Action;

// Per worker thread: the evaluation context (its field table and scratch keep their capacity
// from one request to the next), the provider and the view it reads.
struct Evaluator {
  filters::RequestView view;
  filters::RequestFieldProvider provider{&view};
  filters::ExecContext ctx{&provider};
  std::vector<filters::HeaderPair> headers, resp_headers;
  std::vector<uint64_t> candidates;  // Prefilter bits of the phase being evaluated
};
thread_local Evaluator t_eval;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

void fill_request_view(Exchange* ex) {
  Evaluator& e = t_eval;
  const MessageHead& r = ex->req;
  e.headers.clear();
  for (const HeaderSpan& h : r.headers) e.headers.emplace_back(r.name(h), r.value(h));
  filters::RequestView& v = e.view;
  v = filters::RequestView{};
  v.method = llhttp_method_name(static_cast<llhttp_method_t>(r.method));
  v.target = ex->target;
  v.host = ex->host;
  v.version = r.minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
  v.headers = e.headers;
  ClientConn* c = ex->client;
  if (c->extras && c->extras->v6) {
    auto* s6 = reinterpret_cast<const sockaddr_in6*>(&c->extras->peer6);
    std::memcpy(v.src.bytes.data(), &s6->sin6_addr, 16);
    v.src.v4 = false;
  } else {
    v.src = filters::IpAddr::from_v4(ntohl(c->peer_v4));
  }
  v.has_src = true;
  v.tls = c->tls() != nullptr;
  v.timestamp_sec = static_cast<int64_t>(std::time(nullptr));
  v.tenant = ex->snap->cfg().tenants[ex->tenant].name;
  e.ctx.reset(&e.provider);
}

bool skipped(const ExchangePolicy& p, const CompiledRule* r) {
  return std::find(p.skipped.begin(), p.skipped.end(), r) != p.skipped.end();
}

// A literal or computed action value.
bool value_of(const config::RuleValue& v, const filters::ValueExpr* e, std::string* out) {
  if (e == nullptr) {
    *out = v.value;
    return true;
  }
  return e->eval(t_eval.ctx, *out);
}

void apply_header_rewrites(const CompiledRule& r,
                           std::vector<std::pair<std::string, std::string>>* add,
                           std::vector<std::string>* remove) {
  for (size_t i = 0; i < r.cfg->headers.size(); ++i) {
    const config::HeaderRewrite& h = r.cfg->headers[i];
    std::string name = lower(h.name);
    if (h.op != config::HeaderRewrite::Op::Add) {
      remove->push_back(name);
      std::erase_if(*add, [&](const auto& kv) { return lower(kv.first) == name; });
    }
    if (h.op == config::HeaderRewrite::Op::Remove) continue;
    std::string value;
    if (!value_of(h.value, r.header_values[i].get(), &value)) continue;  // no value: no header
    if (value.find_first_of("\r\n") != std::string::npos) continue;      // never split a head
    add->emplace_back(h.name, std::move(value));
  }
}

Flow challenge(Exchange* ex, const CompiledRule& r);

// Counts (when `count`) one request of rate_limit rule `r` under its key: the rule and the
// values of its characteristics, within the tenant.
RateCounter::Result rate_hit(Exchange* ex, ExchangePolicy& p, const CompiledRule& r, bool count) {
  RateCounter* counters = ex->snap->policies()->rate_counter();
  if (counters == nullptr) return {};
  std::string& key = p.scratch;
  key = r.key;
  for (const auto& e : r.characteristics) {
    key += '\x1f';
    if (e && e->eval(t_eval.ctx, p.value)) key += p.value;
  }
  const config::RuleConfig& cfg = *r.cfg;
  RateCounter::Limit limit;
  limit.period_s = cfg.period_s;
  limit.requests = cfg.requests_per_period;
  limit.mitigation_s = cfg.mitigation_timeout_s;
  const int64_t now_ms = static_cast<int64_t>(uv_hrtime() / 1'000'000);
  return counters->hit(ex->snap->cfg().tenants[ex->tenant].name, key, limit, count, now_ms);
}

// Applies one matched rule of the request phase. Returns Respond when it answered, and sets
// *stop when the rest of the phase is skipped.
Flow apply_request(Exchange* ex, ExchangePolicy& p, const CompiledRule& r, const TenantRules& tr,
                   bool* stop) {
  ClientConn* c = ex->client;
  const config::RuleConfig& cfg = *r.cfg;
  switch (r.action) {
    case Action::Log:
      return Flow::Continue;
    case Action::Allow:
      *stop = true;
      return Flow::Continue;
    case Action::Skip:
      for (const std::string& id : cfg.skip_rules) {
        for (const CompiledRule& x : tr.request) {
          if (x.cfg->id == id) p.skipped.push_back(&x);
        }
        for (const CompiledRule& x : tr.response) {
          if (x.cfg->id == id) p.skipped.push_back(&x);
        }
      }
      if (cfg.skip_response_phase) p.skip_response = true;
      if (cfg.skip_cache) p.skip_cache = true;
      if (cfg.skip_lua) p.skip_lua = true;
      if (cfg.skip_ruleset) *stop = true;
      return Flow::Continue;
    case Action::Block: {
      const config::BlockAnswer& b = *r.block;
      if (b.body.empty()) {
        c->reply(b.status, "policy.blocked", false);
      } else {
        c->reply_with(b.status, "policy.blocked", false, {}, b.content_type, b.body);
      }
      return Flow::Respond;
    }
    case Action::Redirect: {
      std::string& target = p.scratch;
      if (!value_of(cfg.target, r.target.get(), &target) || target.empty() ||
          target.find_first_of("\r\n") != std::string::npos) {
        return Flow::Continue;  // nothing to redirect to: the rule does not apply
      }
      if (cfg.preserve_query) {
        size_t q = ex->target.find('?');
        if (q != std::string_view::npos) {
          target += target.find('?') == std::string::npos ? "?" : "&";
          target.append(ex->target.substr(q + 1));
        }
      }
      std::string loc = "Location: " + target + "\r\n";
      c->reply(cfg.redirect_status, "policy.redirect", false, loc);
      return Flow::Respond;
    }
    case Action::Rewrite: {
      if (cfg.has_path || cfg.has_query) {
        std::string_view cur = ex->target;
        size_t q = cur.find('?');
        std::string path(cur.substr(0, q));
        std::string query(q == std::string_view::npos ? std::string_view() : cur.substr(q + 1));
        std::string v;
        if (cfg.has_path && value_of(cfg.path, r.path.get(), &v) && !v.empty() && v[0] == '/' &&
            v.find_first_of(" \r\n\t?#") == std::string::npos) {
          path = v;
        }
        if (cfg.has_query && value_of(cfg.query, r.query.get(), &v) &&
            v.find_first_of(" \r\n\t#") == std::string::npos) {
          query = v;
        }
        p.target = path;
        if (!query.empty()) p.target += "?" + query;
        ex->target = p.target;
      }
      apply_header_rewrites(r, &p.req_add, &p.req_remove);
      return Flow::Continue;
    }
    case Action::SetCacheSettings:
      if (cfg.cache_bypass) p.cache_bypass = true;
      if (cfg.cache_ttl_s >= 0) p.cache_ttl_s = cfg.cache_ttl_s;
      return Flow::Continue;
    case Action::RateLimit: {
      // With a counting expression, only the requests it matches are counted; the others
      // are refused while the key is over its limit, but add nothing.
      const bool count = r.counting == nullptr || r.counting->matches(t_eval.ctx);
      RateCounter::Result res = rate_hit(ex, p, r, count);
      if (!res.limited) return Flow::Continue;
      std::string retry = "Retry-After: " + std::to_string(res.retry_after_s) + "\r\n";
      c->reply(429, "policy.rate_limited", false, retry);
      return Flow::Respond;
    }
    case Action::Challenge:
      return challenge(ex, r);
  }
  return Flow::Continue;
}

// ---- challenge ----
// A passed challenge is a cookie "<expiry>.<hex HMAC-SHA256(key, tenant|ip|expiry)>": bound to
// the tenant and the client address, time-limited, unforgeable without the process key. The
// page sets it from a script (a client that runs no JavaScript does not pass), then reloads.

constexpr std::string_view kChallengeCookie = "__parapet_challenge";

const unsigned char* challenge_key() {
  static const auto key = [] {
    std::array<unsigned char, 32> k{};
    RAND_bytes(k.data(), static_cast<int>(k.size()));
    return k;
  }();
  return key.data();
}

std::string challenge_mac(std::string_view tenant, std::string_view ip, int64_t expiry) {
  std::string msg(tenant);
  msg += '|';
  msg += ip;
  msg += '|';
  msg += std::to_string(expiry);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), challenge_key(), 32, reinterpret_cast<const unsigned char*>(msg.data()),
       msg.size(), mac, &len);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[mac[i] >> 4];
    out += kHex[mac[i] & 15];
  }
  return out;
}

// The value of our cookie in the request's Cookie headers, if any.
std::string_view challenge_cookie(const MessageHead& r) {
  for (const HeaderSpan& h : r.headers) {
    std::string_view name = r.name(h);
    if (name.size() != 6 || lower(name) != "cookie") continue;
    std::string_view v = r.value(h);
    while (!v.empty()) {
      size_t semi = v.find(';');
      std::string_view kv = v.substr(0, semi);
      v = semi == std::string_view::npos ? std::string_view() : v.substr(semi + 1);
      while (!kv.empty() && kv.front() == ' ') kv.remove_prefix(1);
      if (kv.size() > kChallengeCookie.size() &&
          kv.substr(0, kChallengeCookie.size()) == kChallengeCookie &&
          kv[kChallengeCookie.size()] == '=') {
        return kv.substr(kChallengeCookie.size() + 1);
      }
    }
  }
  return {};
}

bool challenge_passed(Exchange* ex, std::string_view tenant, std::string_view ip) {
  std::string_view v = challenge_cookie(ex->req);
  size_t dot = v.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot > 12) return false;
  int64_t expiry = 0;
  for (char ch : v.substr(0, dot)) {
    if (ch < '0' || ch > '9') return false;
    expiry = expiry * 10 + (ch - '0');
  }
  if (expiry < static_cast<int64_t>(std::time(nullptr))) return false;  // expired
  std::string want = challenge_mac(tenant, ip, expiry);
  std::string_view got = v.substr(dot + 1);
  return got.size() == want.size() && CRYPTO_memcmp(got.data(), want.data(), want.size()) == 0;
}

Flow challenge(Exchange* ex, const CompiledRule& r) {
  const std::string& tenant = ex->snap->cfg().tenants[ex->tenant].name;
  char ip[64];
  ex->format_peer(ip, sizeof ip);
  if (challenge_passed(ex, tenant, ip)) return Flow::Continue;
  const uint32_t ttl = r.cfg->challenge_ttl_s;
  const int64_t expiry = static_cast<int64_t>(std::time(nullptr)) + ttl;
  const std::string value = std::to_string(expiry) + "." + challenge_mac(tenant, ip, expiry);
  std::string page =
      "<!doctype html><html><head><meta charset=\"utf-8\"><title>Checking your browser"
      "</title><meta name=\"robots\" content=\"noindex\"></head><body>"
      "<p>Checking your browser before you continue.</p>"
      "<noscript><p>Please enable JavaScript and reload.</p></noscript><script>"
      "document.cookie=\"";
  page += kChallengeCookie;
  page += "=" + value + "; path=/; max-age=" + std::to_string(ttl) + "; SameSite=Lax";
  if (ex->client->tls() != nullptr) page += "; Secure";
  page += "\";location.reload();</script></body></html>\n";
  ex->client->reply_with(403, "policy.challenge", false, "Cache-Control: no-store\r\n",
                         "text/html; charset=utf-8", page);
  return Flow::Respond;
}

// Headers that frame a message: a response rule never removes them.
const std::vector<std::string> kFraming = {"content-length", "transfer-encoding", "connection"};

bool listed(const std::vector<std::string>& names, std::string_view name) {
  for (const std::string& n : names) {
    if (n.size() == name.size() && std::equal(n.begin(), n.end(), name.begin(), [](char a, char b) {
          return a == std::tolower(static_cast<unsigned char>(b));
        })) {
      return true;
    }
  }
  return false;
}

}  // namespace

void ExchangePolicyDeleter::operator()(ExchangePolicy* p) const { delete p; }

void ExchangePolicy::clear() {
  trail.clear();
  skipped.clear();
  skip_response = skip_cache = skip_lua = cache_bypass = response_ran = false;
  cache_ttl_s = -1;
  resp_status = 0;
  target.clear();
  req_add.clear();
  req_remove.clear();
  resp_add.clear();
  resp_remove.clear();
}

const char* action_name(Action a) {
  switch (a) {
    case Action::Block:
      return "block";
    case Action::Allow:
      return "allow";
    case Action::Skip:
      return "skip";
    case Action::Log:
      return "log";
    case Action::Redirect:
      return "redirect";
    case Action::Rewrite:
      return "rewrite";
    case Action::SetCacheSettings:
      return "set_cache_settings";
    case Action::RateLimit:
      return "rate_limit";
    case Action::Challenge:
      return "challenge";
  }
  return "?";
}

Flow phase_policy(Exchange* ex) {
  const Policies* pol = ex->snap->policies();
  if (pol == nullptr) return Flow::Continue;
  const TenantRules& tr = pol->tenant(ex->tenant);
  if (tr.empty()) return Flow::Continue;
  if (!ex->policy) ex->policy.reset(new ExchangePolicy());
  ExchangePolicy& p = *ex->policy;
  p.clear();
  ex->policy_active = true;
  if (tr.request.empty()) return Flow::Continue;
  fill_request_view(ex);
  tr.request_prefilter->candidates(t_eval.ctx, t_eval.candidates);
  bool stop = false;
  for (size_t i = 0; i < tr.request.size(); ++i) {
    if (stop) break;
    // A rule whose guard rules it out cannot match: its filter is not evaluated.
    if (!filters::Prefilter::has(t_eval.candidates, i)) continue;
    const CompiledRule& r = tr.request[i];
    if (!p.skipped.empty() && skipped(p, &r)) continue;
    if (!r.filter->matches(t_eval.ctx, r.contains)) {
      // A rate limit's counting expression counts requests its rule does not act on (e.g.
      // every login attempt, while only some are refused).
      if (r.counting != nullptr && !r.log_only && r.counting->matches(t_eval.ctx)) {
        rate_hit(ex, p, r, true);
      }
      continue;
    }
    r.matches->fetch_add(1, std::memory_order_relaxed);
    p.trail.push_back({&r, r.log_only});
    if (r.log_only) continue;  // shadow mode: recorded only
    if (apply_request(ex, p, r, tr, &stop) == Flow::Respond) return Flow::Respond;
  }
  return Flow::Continue;
}

namespace {

// The response rules over the head in t_eval.resp_headers with `status`, once per exchange.
void run_response_rules(Exchange* ex, uint16_t status) {
  ExchangePolicy& p = *ex->policy;
  const TenantRules& tr = ex->snap->policies()->tenant(ex->tenant);
  Evaluator& e = t_eval;
  // fill_request_view() resets the context: keep the response headers gathered before it.
  fill_request_view(ex);
  e.view.response_code = status;
  e.view.response_headers = e.resp_headers;
  tr.response_prefilter->candidates(e.ctx, e.candidates);
  for (size_t i = 0; i < tr.response.size(); ++i) {
    if (!filters::Prefilter::has(e.candidates, i)) continue;
    const CompiledRule& r = tr.response[i];
    if (!p.skipped.empty() && skipped(p, &r)) continue;
    if (!r.filter->matches(e.ctx, r.contains)) continue;
    r.matches->fetch_add(1, std::memory_order_relaxed);
    p.trail.push_back({&r, r.log_only});
    if (r.log_only) continue;
    if (r.action == Action::Rewrite) apply_header_rewrites(r, &p.resp_add, &p.resp_remove);
    if (r.action == Action::Skip) {
      if (r.cfg->skip_ruleset) break;
      for (const std::string& id : r.cfg->skip_rules) {
        for (const CompiledRule& x : tr.response) {
          if (x.cfg->id == id) p.skipped.push_back(&x);
        }
      }
    }
  }
}

// Whether the response rules are still to run for this exchange (and marks them as run).
bool response_rules_due(Exchange* ex) {
  if (!ex->policy_active || ex->snap->policies() == nullptr) return false;
  ExchangePolicy& p = *ex->policy;
  if (p.response_ran) return false;
  p.response_ran = true;
  return !p.skip_response && !ex->snap->policies()->tenant(ex->tenant).response.empty();
}

}  // namespace

void phase_policy_response(Exchange* ex) {
  if (!response_rules_due(ex)) return;
  const MessageHead& resp = ex->resp;
  t_eval.resp_headers.clear();
  for (const HeaderSpan& h : resp.headers) {
    t_eval.resp_headers.emplace_back(resp.name(h), resp.value(h));
  }
  run_response_rules(ex, resp.status);
}

void phase_policy_response(Exchange* ex, uint16_t status, cache::Fields headers) {
  if (!response_rules_due(ex)) return;
  t_eval.resp_headers.clear();
  for (const cache::Field& f : headers) t_eval.resp_headers.emplace_back(f.name, f.value);
  run_response_rules(ex, status);
}

void phase_policy_response(Exchange* ex, uint16_t status, std::string_view content_type,
                           std::string_view extra) {
  if (!response_rules_due(ex)) return;
  t_eval.resp_headers.clear();
  t_eval.resp_headers.emplace_back("Content-Type", content_type);
  t_eval.resp_headers.emplace_back("X-Request-Id", ex->request_id);
  while (!extra.empty()) {  // "Name: value\r\n" lines
    size_t eol = extra.find("\r\n");
    std::string_view line = extra.substr(0, eol);
    extra = eol == std::string_view::npos ? std::string_view() : extra.substr(eol + 2);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    t_eval.resp_headers.emplace_back(line.substr(0, colon), value);
  }
  run_response_rules(ex, status);
}

bool policy_drops_request_header(const Exchange* ex, std::string_view name) {
  return ex->policy_active && !ex->policy->req_remove.empty() &&
         listed(ex->policy->req_remove, name);
}

void policy_add_request_headers(const Exchange* ex, std::string& head) {
  if (!ex->policy_active) return;
  for (const auto& [name, value] : ex->policy->req_add) {
    head.append(name).append(": ").append(value).append("\r\n");
  }
}

bool policy_drops_response_header(const Exchange* ex, std::string_view name) {
  return ex->policy_active && !ex->policy->resp_remove.empty() &&
         listed(ex->policy->resp_remove, name);
}

bool policy_rewrites_response_headers(const Exchange* ex) {
  return ex->policy_active && (!ex->policy->resp_add.empty() || !ex->policy->resp_remove.empty());
}

void policy_filter_header_lines(const Exchange* ex, std::string_view lines, std::string& out) {
  while (!lines.empty()) {
    size_t eol = lines.find("\r\n");
    const size_t len = eol == std::string_view::npos ? lines.size() : eol + 2;
    const std::string_view line = lines.substr(0, len);
    lines.remove_prefix(len);
    const std::string_view name = line.substr(0, line.find(':'));
    const bool framing = listed(kFraming, name);
    if (framing || !policy_drops_response_header(ex, name)) out.append(line);
  }
}

void policy_add_response_headers(const Exchange* ex, std::string& head) {
  if (!ex->policy_active) return;
  for (const auto& [name, value] : ex->policy->resp_add) {
    head.append(name).append(": ").append(value).append("\r\n");
  }
}

void policy_log_fields(const Exchange* ex, std::string& line) {
  if (!ex->policy_active || ex->policy->trail.empty()) return;
  line += ",\"rules\":[";
  bool first = true;
  for (const ExchangePolicy::Hit& h : ex->policy->trail) {
    if (!first) line += ',';
    first = false;
    line += "{\"id\":\"";
    line += h.rule->key;  // ids and policy names come from the config: plain text
    line += "\",\"action\":\"";
    line += action_name(h.rule->action);
    line += h.log_only ? "\",\"log_only\":true}" : "\",\"log_only\":false}";
  }
  line += ']';
}

}  // namespace parapet
