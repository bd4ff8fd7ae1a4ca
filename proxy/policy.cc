#include "proxy/policy.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>

namespace parapet {

namespace {

using Action = config::RuleConfig::Action;

std::string at(const std::string& file, int line, int column) {
  return file + ":" + std::to_string(line) + ":" + std::to_string(column);
}

// A compile error of an expression that starts at (line, column) of the YAML file. Positions
// inside the expression are added to the scalar's position (exact for plain one-line scalars;
// for quoted ones the column is one off, so the expression's own position is also given).
std::string expr_error(const std::string& file, int line, int column, const std::string& id,
                       const filters::CompileError& e) {
  const int l = line + e.line - 1;
  const int c = e.line == 1 ? column + e.column - 1 : e.column;
  return at(file, l, c) + ": rule '" + id + "': " + e.reason + " (expression " +
         std::to_string(e.line) + ":" + std::to_string(e.column) + ")";
}

struct Compiler {
  const config::Config& cfg;
  std::vector<std::string>* errors;
  filters::ListRegistry lists;

  void load_lists() {
    for (const config::ListConfig& l : cfg.lists) {
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
      const std::string src = l.file.empty() ? l.where : l.file;
      if (l.ip) {
        auto list = std::make_shared<filters::IpList>();
        if (!filters::load_ip_list(text, list.get(), &err)) {
          errors->push_back(l.where + ": list '" + l.name +
                            "': " + (l.file.empty() ? "item " : l.file + ":") + err.to_string());
          continue;
        }
        lists.add_ip_list(l.name, std::move(list));
      } else {
        auto list = std::make_shared<filters::StringList>();
        if (!filters::load_string_list(text, list.get(), &err)) {
          errors->push_back(l.where + ": list '" + l.name + "': " + err.to_string());
          continue;
        }
        lists.add_string_list(l.name, std::move(list));
      }
    }
  }

  std::shared_ptr<const filters::ValueExpr> value(const config::RuleValue& v,
                                                  const config::RuleConfig& r, bool rewrite) {
    if (!v.expression) return nullptr;
    filters::CompileOptions opt;
    opt.lists = &lists;
    opt.allow_rewrite_functions = rewrite;
    opt.phase = r.phase == config::RuleConfig::Phase::Response ? filters::Phase::Response
                                                               : filters::Phase::Request;
    filters::Compiled<filters::ValueExpr> c = filters::compile_value(v.value, opt);
    if (!c.ok()) errors->push_back(expr_error(cfg.file, v.line, v.column, r.id, c.error));
    return c.value;
  }

  // One rule, compiled (its expressions); the action and shadow mode as configured.
  bool compile(const config::RuleConfig& r, const std::string& policy, CompiledRule* out) {
    const size_t before = errors->size();
    out->cfg = &r;
    out->policy = policy;
    out->key = policy.empty() ? r.id : policy + "/" + r.id;
    out->action = r.action;
    out->log_only = r.log_only;
    filters::CompileOptions opt;
    opt.lists = &lists;
    const bool response = r.phase == config::RuleConfig::Phase::Response;
    opt.phase = response ? filters::Phase::Response : filters::Phase::Request;
    filters::Compiled<filters::Filter> f = filters::compile_filter(r.expression, opt);
    if (!f.ok()) errors->push_back(expr_error(cfg.file, r.line, r.column, r.id, f.error));
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
      filters::CompileOptions vopt;
      vopt.lists = &lists;
      vopt.phase = opt.phase;
      filters::Compiled<filters::ValueExpr> e = filters::compile_value(c, vopt);
      if (!e.ok()) e = filters::compile_value("to_string(" + c + ")", vopt);
      if (!e.ok()) {
        errors->push_back(r.where + ": rule '" + r.id + "': bad characteristic '" + c +
                          "': " + e.error.reason);
      }
      out->characteristics.push_back(std::move(e.value));
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

}  // namespace

std::shared_ptr<const Policies> Policies::build(const config::Config& cfg,
                                                std::vector<std::string>* errors) {
  const size_t before = errors->size();
  Compiler c{cfg, errors, {}};
  c.load_lists();
  // Shared policies: compiled once; tenants copy the compiled rules (shared filters).
  std::map<std::string, std::vector<CompiledRule>> shared;
  for (const config::PolicyConfig& p : cfg.policies) {
    std::vector<CompiledRule>& rules = shared[p.name];
    for (const config::RuleConfig& r : p.rules) {
      CompiledRule cr;
      if (c.compile(r, p.name, &cr)) rules.push_back(std::move(cr));
    }
  }
  auto out = std::make_shared<Policies>();
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
        copy.log_only = r.log_only;
        copy.target = r.target;
        copy.path = r.path;
        copy.query = r.query;
        copy.header_values = r.header_values;
        copy.characteristics = r.characteristics;
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
    for (const config::RuleConfig& r : t.rules) {
      CompiledRule cr;
      if (c.compile(r, "", &cr) && r.enabled) place(&tr, std::move(cr));
    }
  }
  if (errors->size() != before) return nullptr;
  return out;
}

// ---- rate limiting ----

LocalRateCounter& LocalRateCounter::process() {
  static LocalRateCounter c;
  return c;
}

size_t LocalRateCounter::size() const {
  size_t n = 0;
  for (const Shard& s : shards_) {
    std::lock_guard<std::mutex> lock(s.mu);
    n += s.map.size();
  }
  return n;
}

void LocalRateCounter::make_room(Shard& s, int64_t now_ms) {
  // Drop what has expired; if still full, the least recently touched unblocked keys.
  std::erase_if(s.map, [&](const auto& kv) {
    return kv.second.blocked_until_ms <= now_ms && kv.second.touched_ms < now_ms - 3'600'000;
  });
  if (s.map.size() < max_) return;
  std::vector<std::pair<int64_t, const std::string*>> by_age;
  by_age.reserve(s.map.size());
  for (const auto& [k, w] : s.map) {
    if (w.blocked_until_ms <= now_ms) by_age.emplace_back(w.touched_ms, &k);
  }
  const size_t drop = std::min(by_age.size(), s.map.size() / 8 + 1);
  std::nth_element(by_age.begin(), by_age.begin() + static_cast<long>(drop), by_age.end());
  std::vector<std::string> victims;
  for (size_t i = 0; i < drop; ++i) victims.push_back(*by_age[i].second);
  for (const std::string& k : victims) s.map.erase(k);
}

RateCounter::Result LocalRateCounter::hit(std::string_view key, uint32_t period_s, uint32_t limit,
                                          uint32_t mitigation_s, int64_t now_ms) {
  Shard& s = shards_[std::hash<std::string_view>{}(key)&15];
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.map.find(std::string(key));
  if (it == s.map.end()) {
    if (s.map.size() >= max_) make_room(s, now_ms);
    it = s.map.emplace(std::string(key), Window{}).first;
    it->second.start_ms = now_ms;
  }
  Window& w = it->second;
  w.touched_ms = now_ms;
  Result r;
  if (w.blocked_until_ms > now_ms) {
    r.limited = true;
    r.retry_after_s = static_cast<uint32_t>((w.blocked_until_ms - now_ms + 999) / 1000);
    return r;
  }
  const int64_t period_ms = int64_t{period_s} * 1000;
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
  ++w.current;
  const double overlap = 1.0 - static_cast<double>(now_ms - w.start_ms) / period_ms;
  const double estimate = w.previous * overlap + w.current;
  if (estimate > limit) {
    r.limited = true;
    const int64_t until =
        mitigation_s > 0 ? now_ms + int64_t{mitigation_s} * 1000 : w.start_ms + period_ms;
    w.blocked_until_ms = until;
    r.retry_after_s = static_cast<uint32_t>(std::max<int64_t>((until - now_ms + 999) / 1000, 1));
  }
  return r;
}

}  // namespace parapet
