#include "proxy/policy.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>

namespace parapet {

namespace {

using Action = config::RuleConfig::Action;

// The answer of a rule overridden to block without parameters of its own.
const config::BlockAnswer kDefaultBlock;

// A compile error of an expression whose scalar is at `pos` in the YAML file: placed at the
// file's line:column (config::ScalarPos), with the position inside the expression as well.
std::string expr_error(const std::string& file, const config::ScalarPos& pos, const std::string& id,
                       const filters::CompileError& e) {
  const auto [line, column] = pos.locate(e.line, e.column);
  return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": rule '" + id +
         "': " + e.reason + " (expression " + std::to_string(e.line) + ":" +
         std::to_string(e.column) + ")";
}

// Loads `lists` into `out`; errors name the list.
void load_lists(const std::vector<config::ListConfig>& lists, filters::ListRegistry* out,
                std::vector<std::string>* errors) {
  for (const config::ListConfig& l : lists) {
    std::string text;
    if (!l.file.empty()) {
      std::ifstream in(l.file);
      if (!in) {
        errors->push_back(l.where + ": list '" + l.name + "': cannot read '" + l.file + "'");
        continue;
      }
      std::stringstream ss;
      ss << in.rdbuf();
      text = ss.str();
    } else {
      for (const std::string& i : l.items) text += i + "\n";
    }
    filters::ListLoadError err;
    if (l.ip) {
      auto list = std::make_shared<filters::IpList>();
      if (!filters::load_ip_list(text, list.get(), &err)) {
        errors->push_back(l.where + ": list '" + l.name +
                          "': " + (l.file.empty() ? "item " : l.file + ":") + err.to_string());
        continue;
      }
      out->add_ip_list(l.name, std::move(list));
    } else {
      auto list = std::make_shared<filters::StringList>();
      if (!filters::load_string_list(text, list.get(), &err)) {
        errors->push_back(l.where + ": list '" + l.name + "': " + err.to_string());
        continue;
      }
      out->add_string_list(l.name, std::move(list));
    }
  }
}

struct Compiler {
  const config::Config& cfg;
  std::vector<std::string>* errors;
  const filters::ListRegistry* lists;  // the lists the rules being compiled may name

  filters::CompileOptions options(const config::RuleConfig& r) const {
    filters::CompileOptions opt;
    opt.lists = lists;
    opt.phase = r.phase == config::RuleConfig::Phase::Response ? filters::Phase::Response
                                                               : filters::Phase::Request;
    return opt;
  }

  std::shared_ptr<const filters::ValueExpr> value(const config::RuleValue& v,
                                                  const config::RuleConfig& r, bool rewrite) {
    if (!v.expression) return nullptr;
    filters::CompileOptions opt = options(r);
    opt.allow_rewrite_functions = rewrite;
    filters::Compiled<filters::ValueExpr> c = filters::compile_value(v.value, opt);
    if (!c.ok()) errors->push_back(expr_error(cfg.file, v.pos, r.id, c.error));
    return c.value;
  }

  // One rule, compiled (its expressions); the action and shadow mode as configured.
  bool compile(const config::RuleConfig& r, const std::string& policy, CompiledRule* out) {
    const size_t before = errors->size();
    out->cfg = &r;
    out->policy = policy;
    out->key = policy.empty() ? r.id : policy + "/" + r.id;
    out->action = r.action;
    out->block = &r.block;
    out->log_only = r.log_only;
    const filters::CompileOptions opt = options(r);
    const bool response = opt.phase == filters::Phase::Response;
    filters::Compiled<filters::Filter> f = filters::compile_filter(r.expression, opt);
    if (!f.ok()) errors->push_back(expr_error(cfg.file, r.pos, r.id, f.error));
    out->filter = f.value;
    if (response && r.action != Action::Log && r.action != Action::Rewrite &&
        r.action != Action::Skip) {
      errors->push_back(r.where + ": rule '" + r.id +
                        "': the response phase takes log, rewrite (headers) and skip");
    }
    if (response && r.action == Action::Rewrite && (r.has_path || r.has_query)) {
      errors->push_back(r.where + ": rule '" + r.id +
                        "': a response rule rewrites headers, not the URI");
    }
    out->target = value(r.target, r, false);
    if (r.has_path) out->path = value(r.path, r, true);
    if (r.has_query) out->query = value(r.query, r, true);
    for (const config::HeaderRewrite& h : r.headers) {
      out->header_values.push_back(
          h.op == config::HeaderRewrite::Op::Remove ? nullptr : value(h.value, r, true));
    }
    for (const std::string& c : r.characteristics) {
      // A field of any type: strings as they are, IPs and numbers through to_string().
      filters::Compiled<filters::ValueExpr> e = filters::compile_value(c, opt);
      if (!e.ok()) e = filters::compile_value("to_string(" + c + ")", opt);
      if (!e.ok()) {
        errors->push_back(r.where + ": rule '" + r.id + "': bad characteristic '" + c +
                          "': " + e.error.reason);
      }
      out->characteristics.push_back(std::move(e.value));
    }
    if (r.counting.expression) {
      filters::Compiled<filters::Filter> c = filters::compile_filter(r.counting.value, opt);
      if (!c.ok()) errors->push_back(expr_error(cfg.file, r.counting.pos, r.id, c.error));
      out->counting = c.value;
    }
    return errors->size() == before;
  }
};

void place(TenantRules* t, CompiledRule&& r) {
  if (r.cfg->phase == config::RuleConfig::Phase::Response) {
    t->response.push_back(std::move(r));
  } else {
    t->request.push_back(std::move(r));
  }
}

// The `contains` of one phase's rules grouped per value (filters/contains_index.h); each rule
// gets its binding.
std::shared_ptr<const filters::ContainsIndex> index_contains(std::vector<CompiledRule>& rules) {
  std::vector<const filters::Filter*> filters;
  for (const CompiledRule& r : rules) filters.push_back(r.filter.get());
  auto index = filters::ContainsIndex::build(filters);
  for (size_t i = 0; i < rules.size(); ++i) rules[i].contains = index->binding(i);
  return index;
}

// Which of one phase's rules can match a request (filters/prefilter.h). A rate limit with a
// counting expression is always visited: it counts requests its own expression does not match.
std::shared_ptr<const filters::Prefilter> prefilter(const std::vector<CompiledRule>& rules) {
  std::vector<const filters::Filter*> filters;
  std::unique_ptr<bool[]> always(new bool[rules.size() + 1]);
  for (size_t i = 0; i < rules.size(); ++i) {
    filters.push_back(rules[i].filter.get());
    always[i] = rules[i].counting != nullptr;
  }
  return std::make_shared<const filters::Prefilter>(
      filters, std::span<const bool>(always.get(), rules.size()));
}

}  // namespace

std::shared_ptr<const Policies> Policies::build(const config::Config& cfg,
                                                std::vector<std::string>* errors,
                                                std::shared_ptr<RateCounter> counters) {
  const size_t before = errors->size();
  filters::ListRegistry shared_lists;
  load_lists(cfg.lists, &shared_lists, errors);
  // Shared policies: compiled once, against the shared lists only; tenants copy the compiled
  // rules (shared filters).
  Compiler shared_compiler{cfg, errors, &shared_lists};
  std::map<std::string, std::vector<CompiledRule>> shared;
  for (const config::PolicyConfig& p : cfg.policies) {
    std::vector<CompiledRule>& rules = shared[p.name];
    for (const config::RuleConfig& r : p.rules) {
      CompiledRule cr;
      if (shared_compiler.compile(r, p.name, &cr)) rules.push_back(std::move(cr));
    }
  }
  auto out = std::make_shared<Policies>();
  out->counters_ = std::move(counters);
  for (const config::Tenant& t : cfg.tenants) {
    TenantRules& tr = out->tenants_.emplace_back();
    std::vector<bool> used(t.policy_overrides.size(), false);
    for (const std::string& name : t.policies) {
      for (const CompiledRule& r : shared[name]) {
        CompiledRule copy;
        copy.cfg = r.cfg;
        copy.policy = r.policy;
        copy.key = r.key;
        copy.filter = r.filter;
        copy.action = r.action;
        copy.block = r.block;
        copy.log_only = r.log_only;
        copy.target = r.target;
        copy.path = r.path;
        copy.query = r.query;
        copy.header_values = r.header_values;
        copy.characteristics = r.characteristics;
        copy.counting = r.counting;
        bool enabled = r.cfg->enabled;
        for (size_t i = 0; i < t.policy_overrides.size(); ++i) {
          const config::RuleOverride& o = t.policy_overrides[i];
          if (o.id != r.cfg->id) continue;
          used[i] = true;
          if (o.has_enabled) enabled = o.enabled;
          if (o.has_log_only) copy.log_only = o.log_only;
          if (o.has_action) {
            if (r.cfg->phase == config::RuleConfig::Phase::Response && o.action != Action::Log) {
              errors->push_back(o.where + ": override of '" + o.id +
                                "': a response rule can only be overridden to log");
            }
            copy.action = o.action;
            // A rule made to block answers as a block: the override's parameters, else its
            // own if it was a block already, else the defaults (never a redirect's status).
            if (o.action == Action::Block) {
              copy.block = o.has_block                      ? &o.block
                           : r.cfg->action == Action::Block ? &r.cfg->block
                                                            : &kDefaultBlock;
            }
          }
        }
        if (enabled) place(&tr, std::move(copy));
      }
    }
    for (size_t i = 0; i < used.size(); ++i) {
      if (!used[i]) {
        errors->push_back(t.policy_overrides[i].where + ": override of '" +
                          t.policy_overrides[i].id +
                          "': no rule with this id in the tenant's policies");
      }
    }
    // The tenant's own rules see the shared lists and its own (config refuses a tenant list
    // named like a shared one); other tenants never see them.
    filters::ListRegistry tenant_lists = shared_lists;
    load_lists(t.lists, &tenant_lists, errors);
    Compiler own{cfg, errors, &tenant_lists};
    for (const config::RuleConfig& r : t.rules) {
      CompiledRule cr;
      if (own.compile(r, "", &cr) && r.enabled) place(&tr, std::move(cr));
    }
    tr.request_contains = index_contains(tr.request);
    tr.response_contains = index_contains(tr.response);
    tr.request_prefilter = prefilter(tr.request);
    tr.response_prefilter = prefilter(tr.response);
  }
  if (errors->size() != before) return nullptr;
  return out;
}

// ---- rate limiting ----

LocalRateCounter::LocalRateCounter(size_t max_keys_per_tenant)
    : per_shard_(std::max<size_t>(1, max_keys_per_tenant / 16)) {}

size_t LocalRateCounter::size() const {
  size_t n = 0;
  for (const Shard& s : shards_) {
    std::lock_guard<std::mutex> lock(s.mu);
    for (const auto& [tenant, keys] : s.tenants) n += keys.map.size();
  }
  return n;
}

size_t LocalRateCounter::size(std::string_view tenant) const {
  size_t n = 0;
  for (const Shard& s : shards_) {
    std::lock_guard<std::mutex> lock(s.mu);
    auto it = s.tenants.find(std::string(tenant));
    if (it != s.tenants.end()) n += it->second.map.size();
  }
  return n;
}

void LocalRateCounter::make_room(Keys& k, int64_t now_ms) {
  // 1. Entries that carry nothing any more.
  std::erase_if(k.map, [&](const auto& kv) { return kv.second.stale_ms <= now_ms; });
  if (k.map.size() < per_shard_) return;
  // 2. The least recently seen unblocked keys; 3. if all are blocked, those released soonest.
  std::vector<std::pair<int64_t, const std::string*>> unblocked, blocked;
  for (const auto& [key, w] : k.map) {
    if (w.blocked_until_ms > now_ms) {
      blocked.emplace_back(w.blocked_until_ms, &key);
    } else {
      unblocked.emplace_back(w.touched_ms, &key);
    }
  }
  auto& from = unblocked.empty() ? blocked : unblocked;
  const size_t drop = std::min(from.size(), k.map.size() / 8 + 1);
  std::nth_element(from.begin(), from.begin() + static_cast<long>(drop - 1), from.end());
  std::vector<std::string> victims;
  victims.reserve(drop);
  for (size_t i = 0; i < drop; ++i) victims.push_back(*from[i].second);
  for (const std::string& v : victims) k.map.erase(v);
}

void LocalRateCounter::sweep(Shard& s, int64_t now_ms) {
  // Tenants whose keys are all stale (idle, or gone from the config) free their maps; a live
  // tenant's stale keys go when it needs the room (make_room).
  std::erase_if(s.tenants, [&](const auto& kv) { return kv.second.stale_ms <= now_ms; });
  s.swept_ms = now_ms;
}

RateCounter::Result LocalRateCounter::hit(std::string_view tenant, std::string_view key,
                                          const Limit& limit, bool count, int64_t now_ms) {
  const size_t h = std::hash<std::string_view>{}(key) ^ (std::hash<std::string_view>{}(tenant)*31);
  Shard& s = shards_[h & 15];
  std::lock_guard<std::mutex> lock(s.mu);
  if (now_ms - s.swept_ms >= 60'000) sweep(s, now_ms);
  Result r;
  auto t = s.tenants.find(std::string(tenant));
  if (t == s.tenants.end()) {
    if (!count) return r;  // no counter: nothing refused
    t = s.tenants.emplace(std::string(tenant), Keys{}).first;
  }
  Keys& k = t->second;
  auto it = k.map.find(std::string(key));
  if (it == k.map.end()) {
    if (!count) return r;
    if (k.map.size() >= per_shard_) make_room(k, now_ms);
    it = k.map.emplace(std::string(key), Window{}).first;
    it->second.start_ms = now_ms;
  }
  Window& w = it->second;
  w.touched_ms = now_ms;
  const int64_t period_ms = int64_t{limit.period_s} * 1000;
  if (w.blocked_until_ms > now_ms) {
    r.limited = true;
    r.retry_after_s = static_cast<uint32_t>((w.blocked_until_ms - now_ms + 999) / 1000);
  } else {
    const int64_t elapsed = now_ms - w.start_ms;
    if (elapsed >= 2 * period_ms) {
      w.previous = 0;
      w.current = 0;
      w.start_ms = now_ms;
    } else if (elapsed >= period_ms) {
      w.previous = w.current;
      w.current = 0;
      w.start_ms += period_ms;
    }
    if (count) {
      ++w.current;
      const double overlap = 1.0 - static_cast<double>(now_ms - w.start_ms) / period_ms;
      const double estimate = w.previous * overlap + w.current;
      if (estimate > limit.requests) {
        r.limited = true;
        const int64_t until = limit.mitigation_s > 0 ? now_ms + int64_t{limit.mitigation_s} * 1000
                                                     : w.start_ms + period_ms;
        w.blocked_until_ms = until;
        r.retry_after_s =
            static_cast<uint32_t>(std::max<int64_t>((until - now_ms + 999) / 1000, 1));
      }
    }
  }
  w.stale_ms = std::max(w.start_ms + 2 * period_ms, w.blocked_until_ms);
  k.stale_ms = std::max(k.stale_ms, w.stale_ms);
  return r;
}

}  // namespace parapet
