// The ngx API (an OpenResty-compatible subset) over LuaRequest. Request-bound objects (ngx.var,
// ngx.header) are per-run handles: using one kept from an earlier run raises an error. Anything
// outside the subset raises "ngx.X is not supported".
#include <re2/re2.h>
#include <sys/time.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <ctime>
#include <map>
#include <string>
#include <vector>

#include "lua/codec.h"
#include "lua/internal.h"
#include "lua/shared_dict.h"

namespace parapet::lua {

namespace {

const char kVarMeta[] = "parapet.var";
const char kHeaderMeta[] = "parapet.header";
const char kDictMeta[] = "parapet.dict";
const char kHeadersTableMeta[] = "parapet.headers_table";
constexpr size_t kRegexCacheMax = 64;
constexpr size_t kRegexMaxLen = 8192;

struct DictHandle {
  SharedDict* dict;
};

std::string_view check_sv(lua_State* L, int idx) {
  size_t n = 0;
  const char* s = luaL_checklstring(L, idx, &n);
  return {s, n};
}

void push_sv(lua_State* L, std::string_view s) { lua_pushlstring(L, s.data(), s.size()); }

// ngx.var and ngx.header: one userdata each per state, made at load, that scripts may keep
// (OpenResty modules keep `local var = ngx.var` from their top level). They reach only the
// request of the run in progress, never one that has ended, and refuse outside a run. Called
// from the metamethods of their metatable, which hold it as upvalue 1.
RunCtx* check_handle(lua_State* L, int idx, const char* what) {
  if (!lua_getmetatable(L, idx) || !lua_rawequal(L, -1, lua_upvalueindex(1)))
    luaL_typerror(L, idx, what);
  lua_pop(L, 1);
  return current_run(L, what);
}

// RFC 9110 token characters.
constexpr std::array<bool, 256> kTokenChar = [] {
  std::array<bool, 256> t{};
  for (int c = 33; c < 127; ++c) t[static_cast<size_t>(c)] = true;
  for (unsigned char c : std::string_view("()<>@,;:\\\"/[]?={}")) t[c] = false;
  return t;
}();

bool valid_header_name(std::string_view n) {
  if (n.empty()) return false;
  for (unsigned char c : n) {
    if (!kTokenChar[c]) return false;
  }
  return true;
}

bool valid_header_value(std::string_view v) {
  for (unsigned char c : v) {
    if (c == '\r' || c == '\n' || c == 0) return false;
  }
  return true;
}

// Values for a header assignment: nil -> none, string/number -> one, array -> several.
void collect_values(lua_State* L, int idx, const char* fn, std::vector<std::string>* out) {
  out->clear();
  int t = lua_type(L, idx);
  if (t == LUA_TNIL) return;
  auto one = [&](int i) {
    if (lua_type(L, i) != LUA_TSTRING && lua_type(L, i) != LUA_TNUMBER) {
      luaL_error(L, "%s: header value must be a string, number or array of them", fn);
    }
    lua_pushvalue(L, i);
    size_t n = 0;
    const char* s = lua_tolstring(L, -1, &n);
    std::string v(s, n);
    lua_pop(L, 1);
    if (!valid_header_value(v)) luaL_error(L, "%s: invalid header value (CR, LF or NUL)", fn);
    out->push_back(std::move(v));
  };
  if (t == LUA_TTABLE) {
    size_t n = lua_objlen(L, idx);
    for (size_t i = 1; i <= n && i <= 100; ++i) {
      lua_rawgeti(L, idx, static_cast<int>(i));
      one(lua_gettop(L));
      lua_pop(L, 1);
    }
    return;
  }
  one(idx);
}

std::vector<std::string_view> views(const std::vector<std::string>& v) {
  return std::vector<std::string_view>(v.begin(), v.end());
}

// Pushes the value(s) of `name` among `count` headers: nil, a string, or an array.
template <typename Get>
void push_header_values(lua_State* L, std::string_view name, size_t count, Get get) {
  int n = 0;
  for (size_t i = 0; i < count; ++i) {
    HeaderView h = get(i);
    if (!eq_nocase(h.name, name)) continue;
    if (n == 1) {  // second value: switch to an array
      lua_newtable(L);
      lua_insert(L, -2);
      lua_rawseti(L, -2, 1);
    }
    push_sv(L, h.value);
    if (n >= 1) lua_rawseti(L, -2, n + 1);
    ++n;
  }
  if (n == 0) lua_pushnil(L);
}

// --- ngx.var -------------------------------------------------------------------------------------

bool request_header(LuaRequest& q, std::string_view name, std::string* out) {
  bool found = false;
  bool cookie = eq_nocase(name, "cookie");
  for (size_t i = 0, n = q.request_header_count(); i < n; ++i) {
    HeaderView h = q.request_header(i);
    if (!eq_nocase(h.name, name)) continue;
    if (found) out->append(cookie ? "; " : ", ");
    out->append(h.value);
    found = true;
  }
  return found;
}

int var_index(lua_State* L) {
  RunCtx* r = check_handle(L, 1, "ngx.var");
  std::string_view k = check_sv(L, 2);
  LuaRequest& q = *r->req;
  auto nonempty = [&](std::string_view v) {
    if (v.empty()) {
      lua_pushnil(L);
    } else {
      push_sv(L, v);
    }
    return 1;
  };
  if (k == "remote_addr") return nonempty(q.remote_addr());
  if (k == "host") return nonempty(q.host());
  if (k == "uri") return nonempty(q.uri());
  if (k == "request_uri") return nonempty(q.request_uri());
  if (k == "args" || k == "query_string") return nonempty(q.args());
  if (k == "is_args") {
    lua_pushstring(L, q.args().empty() ? "" : "?");
    return 1;
  }
  if (k == "request_method") return nonempty(q.method());
  if (k == "scheme") return nonempty(q.scheme());
  if (k == "status" && r->phase != Phase::Access) {
    lua_pushfstring(L, "%d", q.response_status());
    return 1;
  }
  std::string v;
  if (k.size() > 5 && k.substr(0, 5) == "http_") {
    if (request_header(q, header_name_from_key(k.substr(5)), &v)) return nonempty(v);
    lua_pushnil(L);
    return 1;
  }
  if (k.size() > 4 && k.substr(0, 4) == "arg_") {
    for (const QueryArg& a : parse_args(q.args(), 100, nullptr)) {
      if (a.key == k.substr(4)) {
        push_sv(L, a.value);
        return 1;
      }
    }
    lua_pushnil(L);
    return 1;
  }
  if (k.size() > 7 && k.substr(0, 7) == "cookie_") {
    std::string cookies;
    std::string_view want = k.substr(7);
    if (request_header(q, "cookie", &cookies)) {
      std::string_view c = cookies;
      while (!c.empty()) {
        size_t semi = c.find(';');
        std::string_view part = c.substr(0, semi);
        while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
        size_t eq = part.find('=');
        if (eq != std::string_view::npos && part.substr(0, eq) == want) {
          push_sv(L, part.substr(eq + 1));
          return 1;
        }
        if (semi == std::string_view::npos) break;
        c.remove_prefix(semi + 1);
      }
    }
    lua_pushnil(L);
    return 1;
  }
  if (q.variable(k, &v)) {
    push_sv(L, v);
    return 1;
  }
  lua_pushnil(L);
  return 1;
}

int var_newindex(lua_State* L) {
  RunCtx* r = check_handle(L, 1, "ngx.var");
  std::string_view k = check_sv(L, 2);
  if (k == "args" && r->phase == Phase::Access) {
    std::string_view v = lua_isnil(L, 3) ? std::string_view() : check_sv(L, 3);
    if (!valid_header_value(v) || v.find(' ') != std::string_view::npos) {
      return luaL_error(L, "ngx.var.args: invalid characters");
    }
    r->req->set_args(v);
    return 0;
  }
  return luaL_error(L, "variable \"%s\" not changeable", lua_tostring(L, 2));
}

// --- ngx.header ----------------------------------------------------------------------------------

int header_index(lua_State* L) {
  RunCtx* r = check_handle(L, 1, "ngx.header");
  std::string name = header_name_from_key(check_sv(L, 2));
  if (r->phase == Phase::Access) {
    auto& hs = r->out->response.headers;
    push_header_values(L, name, hs.size(), [&](size_t i) {
      return HeaderView{hs[i].first, hs[i].second};
    });
  } else {
    LuaRequest& q = *r->req;
    push_header_values(L, name, q.response_header_count(),
                       [&](size_t i) { return q.response_header(i); });
  }
  return 1;
}

int header_newindex(lua_State* L) {
  RunCtx* r = check_handle(L, 1, "ngx.header");
  std::string name = header_name_from_key(check_sv(L, 2));
  if (!valid_header_name(name)) return luaL_error(L, "ngx.header: invalid header name");
  if (r->phase == Phase::Log) return luaL_error(L, "ngx.header is read-only in the log phase");
  if (r->phase == Phase::Access) {
    auto& hs = r->out->response.headers;
    hs.erase(std::remove_if(hs.begin(), hs.end(),
                            [&](const auto& h) { return eq_nocase(h.first, name); }),
             hs.end());
    const int t = lua_type(L, 3);
    if (t == LUA_TSTRING) {  // the common case, without the vector
      size_t n = 0;
      const char* s = lua_tolstring(L, 3, &n);
      if (!valid_header_value(std::string_view(s, n)))
        return luaL_error(L, "ngx.header: invalid header value (CR, LF or NUL)");
      hs.emplace_back(std::move(name), std::string(s, n));
      return 0;
    }
    std::vector<std::string> values;
    collect_values(L, 3, "ngx.header", &values);
    for (std::string& v : values) hs.emplace_back(name, std::move(v));
  } else {
    std::vector<std::string> values;
    collect_values(L, 3, "ngx.header", &values);
    auto vs = views(values);
    r->req->set_response_header(name, vs);
  }
  return 0;
}

// --- ngx (the table's metatable) -----------------------------------------------------------------

int ngx_index(lua_State* L) {
  std::string_view k = check_sv(L, 2);
  Sandbox* sb = sandbox_of(L);
  if (k == "var" || k == "header") {  // the state's handles (check_handle), upvalues 1 and 2
    lua_pushvalue(L, lua_upvalueindex(k == "var" ? 1 : 2));
    return 1;
  }
  if (k == "status" || k == "ctx") {
    RunCtx* r = current_run(L, k == "status" ? "ngx.status" : "ngx.ctx");
    if (k == "status") {
      lua_pushinteger(
          L, r->phase == Phase::Access ? r->out->response.status : r->req->response_status());
    } else {
      sb->push_ctx(L);
    }
    return 1;
  }
  return luaL_error(L, "ngx.%s is not supported", lua_tostring(L, 2));
}

int ngx_newindex(lua_State* L) {
  std::string_view k = check_sv(L, 2);
  Sandbox* sb = sandbox_of(L);
  if (k == "status") {
    RunCtx* r = current_run(L, "ngx.status");
    int st = static_cast<int>(luaL_checkinteger(L, 3));
    if (st < 100 || st > 999) return luaL_error(L, "ngx.status: invalid status %d", st);
    if (r->phase == Phase::Access) {
      // The status of the response the script generates: a final one (a 1xx would tell the
      // client that another response follows).
      if (st < 200) return luaL_error(L, "ngx.status: %d is not a final status", st);
      r->out->response.status = st;
    } else if (r->phase == Phase::HeaderFilter) {
      // The origin's body (or its absence) follows this head unchanged, so the new status must
      // frame it the same way: a final status, and bodiless (204, 304) only from bodiless.
      const int cur = r->req->response_status();
      auto bodiless = [](int s) { return s == 204 || s == 304; };
      if (st < 200 || st > 599) {
        return luaL_error(L, "ngx.status: %d cannot be set in header_filter (200..599 only)", st);
      }
      if (bodiless(st) != bodiless(cur)) {
        return luaL_error(L,
                          "ngx.status: a %d response cannot become %d in header_filter (the "
                          "origin's body framing stays)",
                          cur, st);
      }
      r->req->set_response_status(st);
    } else {
      return luaL_error(L, "ngx.status is read-only in the log phase");
    }
    return 0;
  }
  if (k == "ctx") {
    current_run(L, "ngx.ctx");
    luaL_checktype(L, 3, LUA_TTABLE);
    sb->set_ctx(L, 3);
    return 0;
  }
  return luaL_error(L, "ngx.%s is not supported (cannot be assigned)", lua_tostring(L, 2));
}

int unsupported_in(lua_State* L) {
  // Upvalue 1: the table's name ("ngx.req", "ngx.re").
  return luaL_error(L, "%s.%s is not supported", lua_tostring(L, lua_upvalueindex(1)),
                    lua_tostring(L, 2));
}

// --- output and flow -----------------------------------------------------------------------------

RunCtx* access_only(lua_State* L, const char* what) {
  RunCtx* r = current_run(L, what);
  if (r->phase != Phase::Access) {
    luaL_error(L, "%s is not allowed in the %s phase", what, phase_name(r->phase));
  }
  return r;
}

void append_output(lua_State* L, int idx, int depth, const char* fn, std::string* out) {
  switch (lua_type(L, idx)) {
    case LUA_TSTRING:
    case LUA_TNUMBER: {
      lua_pushvalue(L, idx);
      size_t n = 0;
      const char* s = lua_tolstring(L, -1, &n);
      out->append(s, n);
      lua_pop(L, 1);
      return;
    }
    case LUA_TNIL:
      out->append("nil");
      return;
    case LUA_TBOOLEAN:
      out->append(lua_toboolean(L, idx) ? "true" : "false");
      return;
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, idx) == nullptr) {
        out->append("null");
        return;
      }
      break;
    case LUA_TTABLE: {
      if (depth > 16) luaL_error(L, "%s: table nested too deeply", fn);
      size_t n = lua_objlen(L, idx);
      for (size_t i = 1; i <= n; ++i) {
        lua_rawgeti(L, idx, static_cast<int>(i));
        append_output(L, lua_gettop(L), depth + 1, fn, out);
        lua_pop(L, 1);
      }
      return;
    }
    default:
      break;
  }
  luaL_error(L, "%s: string, number, boolean, nil, ngx.null or array expected, got %s", fn,
             luaL_typename(L, idx));
}

int output(lua_State* L, bool newline, const char* fn) {
  RunCtx* r = access_only(L, fn);
  std::string& body = r->out->response.body;
  size_t before = body.size();
  for (int i = 1, n = lua_gettop(L); i <= n; ++i) append_output(L, i, 0, fn, &body);
  if (newline) body.push_back('\n');
  charge(L, (body.size() - before) / 64);
  if (body.size() > sandbox_of(L)->limits.response_body_bytes) {
    body.resize(before);
    return luaL_error(L, "%s: response body over %d bytes", fn,
                      static_cast<int>(sandbox_of(L)->limits.response_body_bytes));
  }
  lua_pushinteger(L, 1);
  return 1;
}

int ngx_say(lua_State* L) { return output(L, true, "ngx.say"); }
int ngx_print(lua_State* L) { return output(L, false, "ngx.print"); }

int ngx_exit(lua_State* L) {
  RunCtx* r = current_run(L, "ngx.exit");
  int st = static_cast<int>(luaL_checkinteger(L, 1));
  if (r->phase == Phase::Access) {
    if (st >= 200) {
      if (st > 999) return luaL_error(L, "ngx.exit: bad status %d", st);
      r->out->action = Action::Respond;
      r->out->response.status = st;
    } else if (st == -1) {  // ngx.ERROR
      r->out->action = Action::Respond;
      r->out->response.status = 500;
    } else if (st != 0 && st != -5 && st != -4) {  // ngx.OK, ngx.DECLINED, ngx.DONE continue
      return luaL_error(L, "ngx.exit: bad status %d", st);
    }
  }
  return exit_run(L);
}

int ngx_redirect(lua_State* L) {
  RunCtx* r = access_only(L, "ngx.redirect");
  std::string_view url = check_sv(L, 1);
  int st = static_cast<int>(luaL_optinteger(L, 2, 302));
  if (st != 301 && st != 302 && st != 303 && st != 307 && st != 308) {
    return luaL_error(L, "ngx.redirect: only 301, 302, 303, 307 and 308 are allowed, got %d", st);
  }
  if (url.empty() || !valid_header_value(url)) return luaL_error(L, "ngx.redirect: invalid url");
  auto& hs = r->out->response.headers;
  hs.erase(std::remove_if(hs.begin(), hs.end(),
                          [](const auto& h) { return eq_nocase(h.first, "location"); }),
           hs.end());
  hs.emplace_back("Location", std::string(url));
  r->out->response.status = st;
  r->out->action = Action::Redirect;
  return exit_run(L);
}

int ngx_log(lua_State* L) {
  int level = static_cast<int>(luaL_checkinteger(L, 1));
  if (level < kLogStderr || level > kLogDebug) return luaL_error(L, "ngx.log: bad log level");
  return log_values(L, level, 2);
}

int ngx_time(lua_State* L) {
  lua_pushinteger(L, static_cast<lua_Integer>(std::time(nullptr)));
  return 1;
}

int ngx_now(lua_State* L) {
  timeval tv;
  gettimeofday(&tv, nullptr);
  lua_pushnumber(L, static_cast<double>(tv.tv_sec) + (tv.tv_usec / 1000) / 1000.0);
  return 1;
}

int ngx_noop(lua_State*) { return 0; }

// --- codecs --------------------------------------------------------------------------------------

int push_str(lua_State* L, const std::string& s) {
  lua_pushlstring(L, s.data(), s.size());
  return 1;
}

int ngx_encode_base64(lua_State* L) {
  std::string_view s = lua_isnil(L, 1) ? std::string_view() : check_sv(L, 1);
  charge(L, s.size() / 16);
  return push_str(L, base64_encode(s, !lua_toboolean(L, 2)));
}

int ngx_decode_base64(lua_State* L) {
  std::string_view s = check_sv(L, 1);
  charge(L, s.size() / 16);
  std::string out;
  if (!base64_decode(s, &out)) {
    lua_pushnil(L);
    return 1;
  }
  return push_str(L, out);
}

int ngx_md5(lua_State* L) {
  std::string_view s = check_sv(L, 1);
  charge(L, s.size() / 8);
  return push_str(L, md5_hex(s));
}
int ngx_md5_bin(lua_State* L) {
  std::string_view s = check_sv(L, 1);
  charge(L, s.size() / 8);
  return push_str(L, md5_bin(s));
}
int ngx_sha1_bin(lua_State* L) {
  std::string_view s = check_sv(L, 1);
  charge(L, s.size() / 8);
  return push_str(L, sha1_bin(s));
}
int ngx_hmac_sha1(lua_State* L) {
  std::string_view k = check_sv(L, 1);
  std::string_view s = check_sv(L, 2);
  charge(L, (k.size() + s.size()) / 8);
  return push_str(L, hmac_sha1(k, s));
}

int ngx_escape_uri(lua_State* L) {
  if (lua_isnil(L, 1)) return push_str(L, "");
  std::string_view s = check_sv(L, 1);
  charge(L, s.size() / 16);
  return push_str(L, escape_uri(s));
}

int ngx_unescape_uri(lua_State* L) {
  if (lua_isnil(L, 1)) return push_str(L, "");
  std::string_view s = check_sv(L, 1);
  charge(L, s.size() / 16);
  return push_str(L, unescape_uri(s));
}

// Builds the args table: key = value (string), key = true (no '='), repeats as arrays.
int push_args_table(lua_State* L, std::string_view q, int max) {
  charge(L, q.size() / 16);
  bool truncated = false;
  auto args = parse_args(q, max > 0 ? static_cast<size_t>(max) : 0, &truncated);
  lua_createtable(L, 0, static_cast<int>(args.size()));
  for (const QueryArg& a : args) {
    push_str(L, a.key);
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);
    int existing = lua_type(L, -1);
    if (a.has_value) {
      push_str(L, a.value);
    } else {
      lua_pushboolean(L, 1);
    }
    if (existing == LUA_TNIL) {
      lua_remove(L, -2);
      lua_rawset(L, -3);
    } else if (existing == LUA_TTABLE) {
      lua_rawseti(L, -2, static_cast<int>(lua_objlen(L, -2)) + 1);
      lua_pop(L, 2);
    } else {
      lua_createtable(L, 2, 0);
      lua_insert(L, -3);      // key, arr, old, new
      lua_rawseti(L, -3, 2);  // arr[2] = new
      lua_rawseti(L, -2, 1);  // arr[1] = old
      lua_rawset(L, -3);      // t[key] = arr
    }
  }
  if (truncated) {
    lua_pushliteral(L, "truncated");
    return 2;
  }
  return 1;
}

int ngx_decode_args(lua_State* L) {
  std::string_view s = check_sv(L, 1);
  return push_args_table(L, s, static_cast<int>(luaL_optinteger(L, 2, 100)));
}

void encode_scalar(lua_State* L, int idx, std::string* out) {
  lua_pushvalue(L, idx);
  size_t n = 0;
  const char* s = lua_tolstring(L, -1, &n);
  out->append(escape_uri(std::string_view(s, n)));
  lua_pop(L, 1);
}

std::string encode_args(lua_State* L, int idx) {
  luaL_checktype(L, idx, LUA_TTABLE);
  // Keys in sorted order, so the result is deterministic.
  std::vector<std::string> keys;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1);
    int kt = lua_type(L, -1);
    if (kt != LUA_TSTRING && kt != LUA_TNUMBER) {
      luaL_error(L, "ngx.encode_args: bad argument key type %s", luaL_typename(L, -1));
    }
    lua_pushvalue(L, -1);
    keys.emplace_back(lua_tostring(L, -1));
    lua_pop(L, 1);
    if (keys.size() > 1000) luaL_error(L, "ngx.encode_args: too many arguments");
  }
  std::sort(keys.begin(), keys.end());
  std::string out;
  for (const std::string& k : keys) {
    lua_pushlstring(L, k.data(), k.size());
    lua_rawget(L, idx);
    if (lua_isnil(L, -1)) {  // numeric keys were stringified: look them up as numbers
      lua_pop(L, 1);
      lua_pushnumber(L, std::strtod(k.c_str(), nullptr));
      lua_rawget(L, idx);
    }
    auto add = [&](int v) {
      int vt = lua_type(L, v);
      if (vt == LUA_TBOOLEAN) {
        if (!lua_toboolean(L, v)) return;
        if (!out.empty()) out.push_back('&');
        out.append(escape_uri(k));
      } else if (vt == LUA_TSTRING || vt == LUA_TNUMBER) {
        if (!out.empty()) out.push_back('&');
        out.append(escape_uri(k));
        out.push_back('=');
        encode_scalar(L, v, &out);
      } else {
        luaL_error(L, "ngx.encode_args: bad argument value type %s", luaL_typename(L, v));
      }
    };
    if (lua_istable(L, -1)) {
      size_t n = lua_objlen(L, -1);
      for (size_t i = 1; i <= n; ++i) {
        lua_rawgeti(L, -1, static_cast<int>(i));
        add(lua_gettop(L));
        lua_pop(L, 1);
      }
    } else {
      add(lua_gettop(L));
    }
    lua_pop(L, 1);
  }
  charge(L, out.size() / 16);
  return out;
}

int ngx_encode_args(lua_State* L) { return push_str(L, encode_args(L, 1)); }

// --- ngx.req -------------------------------------------------------------------------------------

int headers_table_index(lua_State* L) {
  // Case- and underscore-insensitive lookup on get_headers() results: h.user_agent works.
  if (lua_type(L, 2) != LUA_TSTRING) return 0;
  std::string k = header_name_from_key(check_sv(L, 2));
  for (char& c : k) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  lua_pushlstring(L, k.data(), k.size());
  lua_rawget(L, 1);
  return 1;
}

int req_get_headers(lua_State* L) {
  RunCtx* r = current_run(L, "ngx.req.get_headers");
  int max = static_cast<int>(luaL_optinteger(L, 1, 100));
  bool raw = lua_toboolean(L, 2);
  LuaRequest& q = *r->req;
  size_t n = q.request_header_count();
  lua_createtable(L, 0, static_cast<int>(n));
  bool truncated = false;
  for (size_t i = 0; i < n; ++i) {
    if (max > 0 && static_cast<int>(i) >= max) {
      truncated = true;
      break;
    }
    HeaderView h = q.request_header(i);
    std::string key(h.name);
    if (!raw) {
      for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    push_str(L, key);
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      push_sv(L, h.value);
      lua_rawset(L, -3);
    } else if (lua_istable(L, -1)) {
      push_sv(L, h.value);
      lua_rawseti(L, -2, static_cast<int>(lua_objlen(L, -2)) + 1);
      lua_pop(L, 2);
    } else {
      lua_createtable(L, 2, 0);
      lua_insert(L, -2);
      lua_rawseti(L, -2, 1);
      push_sv(L, h.value);
      lua_rawseti(L, -2, 2);
      lua_rawset(L, -3);
    }
  }
  charge(L, n * 8);
  if (!raw) {
    luaL_getmetatable(L, kHeadersTableMeta);
    lua_setmetatable(L, -2);
  }
  if (truncated) {
    lua_pushliteral(L, "truncated");
    return 2;
  }
  return 1;
}

int req_set_header(lua_State* L) {
  RunCtx* r = access_only(L, "ngx.req.set_header");
  std::string name(check_sv(L, 1));
  if (!valid_header_name(name)) return luaL_error(L, "ngx.req.set_header: invalid header name");
  std::vector<std::string> values;
  collect_values(L, 2, "ngx.req.set_header", &values);
  auto vs = views(values);
  r->req->set_request_header(name, vs);
  return 0;
}

int req_clear_header(lua_State* L) {
  RunCtx* r = access_only(L, "ngx.req.clear_header");
  std::string name(check_sv(L, 1));
  if (!valid_header_name(name)) return luaL_error(L, "ngx.req.clear_header: invalid header name");
  r->req->set_request_header(name, {});
  return 0;
}

int req_get_method(lua_State* L) {
  RunCtx* r = current_run(L, "ngx.req.get_method");
  push_sv(L, r->req->method());
  return 1;
}

int req_get_uri_args(lua_State* L) {
  RunCtx* r = current_run(L, "ngx.req.get_uri_args");
  std::string args(r->req->args());
  return push_args_table(L, args, static_cast<int>(luaL_optinteger(L, 1, 100)));
}

int req_set_uri(lua_State* L) {
  RunCtx* r = access_only(L, "ngx.req.set_uri");
  std::string_view uri = check_sv(L, 1);
  if (lua_toboolean(L, 2)) return luaL_error(L, "ngx.req.set_uri: jump is not supported");
  if (uri.empty() || uri[0] != '/') return luaL_error(L, "ngx.req.set_uri: uri must start with /");
  for (unsigned char c : uri) {
    if (c <= 32 || c == 127) return luaL_error(L, "ngx.req.set_uri: invalid character in uri");
  }
  r->req->set_uri(uri);
  return 0;
}

int req_set_uri_args(lua_State* L) {
  RunCtx* r = access_only(L, "ngx.req.set_uri_args");
  std::string args;
  if (lua_type(L, 1) == LUA_TTABLE) {
    args = encode_args(L, 1);
  } else {
    args = std::string(check_sv(L, 1));
    for (unsigned char c : args) {
      if (c <= 32 || c == 127) return luaL_error(L, "ngx.req.set_uri_args: invalid character");
    }
  }
  r->req->set_args(args);
  return 0;
}

// --- ngx.re (RE2)
// ----------------------------------------------------------------------------------

// Compiles (or fetches from the state's cache) regex+options. Returns null and pushes nothing
// on a compile error, with *err set.
re2::RE2* get_regex(lua_State* L, std::string_view pattern, std::string_view opts, bool* anchored,
                    std::string* err) {
  Sandbox* sb = sandbox_of(L);
  *anchored = false;
  std::string flags;
  bool utf8 = false;
  for (char c : opts) {
    switch (c) {
      case 'i':
        flags += 'i';
        break;
      case 's':
        flags += 's';
        break;
      case 'm':
        flags += 'm';
        break;
      case 'a':
        *anchored = true;
        break;
      case 'u':
        utf8 = true;
        break;
      case 'o':
      case 'j':
        break;  // always cached; no JIT to choose
      default:
        luaL_error(L, "ngx.re: option '%c' is not supported", c);
    }
  }
  if (pattern.size() > kRegexMaxLen) luaL_error(L, "ngx.re: regex too long");
  std::string key = std::string(opts) + '\0' + std::string(pattern);
  auto it = sb->regex_cache.find(key);
  if (it != sb->regex_cache.end()) return it->second.get();
  charge(L, 1000 + pattern.size() * 16);
  RE2::Options o;
  o.set_log_errors(false);
  o.set_max_mem(1 << 20);
  o.set_encoding(utf8 ? RE2::Options::EncodingUTF8 : RE2::Options::EncodingLatin1);
  std::string full =
      flags.empty() ? std::string(pattern) : "(?" + flags + ")" + std::string(pattern);
  auto re = std::make_unique<re2::RE2>(full, o);
  if (!re->ok()) {
    *err = re->error();
    return nullptr;
  }
  if (sb->regex_cache.size() >= kRegexCacheMax) sb->regex_cache.clear();
  re2::RE2* p = re.get();
  sb->regex_cache.emplace(std::move(key), std::move(re));
  return p;
}

void check_re_subject(lua_State* L, size_t n) {
  Sandbox* sb = sandbox_of(L);
  if (n > sb->limits.pattern_subject_bytes) {
    luaL_error(L, "ngx.re: subject too long (%d bytes, limit %d)", static_cast<int>(n),
               static_cast<int>(sb->limits.pattern_subject_bytes));
  }
}

// Pushes the captures table OpenResty builds: [0] whole match, [n] groups (false when a group
// did not participate), and named groups by name.
void push_match_table(lua_State* L, re2::RE2* re, const re2::StringPiece* m, int groups) {
  lua_createtable(L, groups, 1);
  for (int i = 0; i <= groups; ++i) {
    if (m[i].data() == nullptr) {
      lua_pushboolean(L, 0);
    } else {
      lua_pushlstring(L, m[i].data(), m[i].size());
    }
    lua_rawseti(L, -2, i);
  }
  for (const auto& [name, idx] : re->NamedCapturingGroups()) {
    lua_pushlstring(L, name.data(), name.size());
    lua_rawgeti(L, -2, idx);
    lua_rawset(L, -3);
  }
}

// Shared by match and find: runs the regex from ctx.pos (or 1). Returns false when no match.
bool re_exec(lua_State* L, const char* fn, re2::RE2** out_re, std::vector<re2::StringPiece>* m,
             std::string_view* subject, int* groups) {
  current_run(L, fn);
  *subject = check_sv(L, 1);
  std::string_view pattern = check_sv(L, 2);
  std::string_view opts = lua_isnoneornil(L, 3) ? std::string_view() : check_sv(L, 3);
  check_re_subject(L, subject->size());
  bool anchored = false;
  std::string err;
  re2::RE2* re = get_regex(L, pattern, opts, &anchored, &err);
  if (re == nullptr) {
    luaL_error(L, "%s: failed to compile regex \"%s\": %s", fn, std::string(pattern).c_str(),
               err.c_str());
  }
  size_t pos = 0;
  bool has_ctx = lua_istable(L, 4);
  if (has_ctx) {
    lua_getfield(L, 4, "pos");
    if (lua_isnumber(L, -1)) {
      lua_Integer p = lua_tointeger(L, -1);
      pos = p > 1 ? static_cast<size_t>(p - 1) : 0;
    }
    lua_pop(L, 1);
  }
  *groups = re->NumberOfCapturingGroups();
  m->assign(static_cast<size_t>(*groups) + 1, re2::StringPiece());
  charge(L, subject->size() / 8 + 16);
  *out_re = re;
  if (pos > subject->size()) return false;
  bool ok = re->Match(re2::StringPiece(subject->data(), subject->size()), pos, subject->size(),
                      anchored ? RE2::ANCHOR_START : RE2::UNANCHORED, m->data(), *groups + 1);
  if (ok && has_ctx) {
    lua_pushinteger(
        L, ((*m)[0].data() - subject->data()) + static_cast<lua_Integer>((*m)[0].size()) + 1);
    lua_setfield(L, 4, "pos");
  }
  return ok;
}

int re_match(lua_State* L) {
  re2::RE2* re = nullptr;
  std::vector<re2::StringPiece> m;
  std::string_view subject;
  int groups = 0;
  if (!re_exec(L, "ngx.re.match", &re, &m, &subject, &groups)) {
    lua_pushnil(L);
    return 1;
  }
  push_match_table(L, re, m.data(), groups);
  return 1;
}

int re_find(lua_State* L) {
  re2::RE2* re = nullptr;
  std::vector<re2::StringPiece> m;
  std::string_view subject;
  int groups = 0;
  if (!re_exec(L, "ngx.re.find", &re, &m, &subject, &groups)) {
    lua_pushnil(L);
    return 1;
  }
  lua_Integer from = m[0].data() - subject.data() + 1;
  lua_pushinteger(L, from);
  lua_pushinteger(L, from + static_cast<lua_Integer>(m[0].size()) - 1);
  return 2;
}

// $0..$9, ${name} or ${N}, $$.
void expand_template(lua_State* L, re2::RE2* re, std::string_view tpl, const re2::StringPiece* m,
                     int groups, std::string* out) {
  for (size_t i = 0; i < tpl.size(); ++i) {
    char c = tpl[i];
    if (c != '$') {
      out->push_back(c);
      continue;
    }
    if (i + 1 >= tpl.size()) luaL_error(L, "ngx.re: invalid replacement template (trailing $)");
    char n = tpl[++i];
    int idx = -1;
    if (n == '$') {
      out->push_back('$');
      continue;
    }
    if (n >= '0' && n <= '9') {
      idx = n - '0';
    } else if (n == '{') {
      size_t close = tpl.find('}', i);
      if (close == std::string_view::npos) luaL_error(L, "ngx.re: invalid replacement template");
      std::string name(tpl.substr(i + 1, close - i - 1));
      i = close;
      if (!name.empty() && std::all_of(name.begin(), name.end(), ::isdigit)) {
        idx = std::atoi(name.c_str());
      } else {
        auto it = re->NamedCapturingGroups().find(name);
        if (it == re->NamedCapturingGroups().end()) {
          luaL_error(L, "ngx.re: unknown group name in replacement template");
        }
        idx = it->second;
      }
    } else {
      luaL_error(L, "ngx.re: invalid replacement template");
    }
    if (idx > groups) luaL_error(L, "ngx.re: replacement template refers to a missing group");
    if (m[idx].data()) out->append(m[idx].data(), m[idx].size());
  }
}

int re_subst(lua_State* L, bool global, const char* fn) {
  current_run(L, fn);
  std::string_view subject = check_sv(L, 1);
  std::string_view pattern = check_sv(L, 2);
  int rt = lua_type(L, 3);
  if (rt != LUA_TSTRING && rt != LUA_TNUMBER && rt != LUA_TFUNCTION) {
    return luaL_error(L, "%s: replacement must be a string or a function", fn);
  }
  std::string_view opts = lua_isnoneornil(L, 4) ? std::string_view() : check_sv(L, 4);
  check_re_subject(L, subject.size());
  check_cstack(L);
  bool anchored = false;
  std::string err;
  re2::RE2* re = get_regex(L, pattern, opts, &anchored, &err);
  if (re == nullptr) {
    return luaL_error(L, "%s: failed to compile regex \"%s\": %s", fn, std::string(pattern).c_str(),
                      err.c_str());
  }
  int groups = re->NumberOfCapturingGroups();
  std::vector<re2::StringPiece> m(static_cast<size_t>(groups) + 1);
  std::string tpl;
  if (rt != LUA_TFUNCTION) tpl = std::string(check_sv(L, 3));
  std::string out;
  size_t pos = 0, last = 0;
  lua_Integer n = 0;
  re2::StringPiece text(subject.data(), subject.size());
  Sandbox* sb = sandbox_of(L);
  while (pos <= subject.size()) {
    charge(L, 16);
    if (!re->Match(text, pos, subject.size(), anchored ? RE2::ANCHOR_START : RE2::UNANCHORED,
                   m.data(), groups + 1)) {
      break;
    }
    size_t ms = static_cast<size_t>(m[0].data() - subject.data());
    size_t me = ms + m[0].size();
    charge(L, (me - pos) / 8);
    out.append(subject.substr(last, ms - last));
    if (rt == LUA_TFUNCTION) {
      lua_pushvalue(L, 3);
      push_match_table(L, re, m.data(), groups);
      lua_call(L, 1, 1);
      if (!lua_isstring(L, -1)) {
        return luaL_error(L, "%s: the replacement function must return a string", fn);
      }
      size_t rl = 0;
      const char* rs = lua_tolstring(L, -1, &rl);
      out.append(rs, rl);
      lua_pop(L, 1);
    } else {
      expand_template(L, re, tpl, m.data(), groups, &out);
    }
    if (out.size() > sb->limits.memory_bytes) abort_run(L, Abort::OutOfMemory);
    ++n;
    last = me;
    if (me == ms) {  // empty match: copy one character and move on
      if (me < subject.size()) out.push_back(subject[me]);
      last = me + 1;
      pos = me + 1;
    } else {
      pos = me;
    }
    if (!global) break;
  }
  if (last < subject.size()) out.append(subject.substr(last));
  push_str(L, out);
  lua_pushinteger(L, n);
  return 2;
}

int re_gsub(lua_State* L) { return re_subst(L, true, "ngx.re.gsub"); }
int re_sub(lua_State* L) { return re_subst(L, false, "ngx.re.sub"); }

// --- ngx.shared
// ------------------------------------------------------------------------------------

SharedDict* check_dict(lua_State* L) {
  auto* h = static_cast<DictHandle*>(luaL_checkudata(L, 1, kDictMeta));
  return h->dict;
}

std::string_view check_key(lua_State* L, int idx) {
  if (lua_isnil(L, idx)) luaL_error(L, "ngx.shared: nil key");
  std::string_view k = check_sv(L, idx);
  if (k.empty()) luaL_error(L, "ngx.shared: empty key");
  if (k.size() > 65535) luaL_error(L, "ngx.shared: key too long");
  return k;
}

DictValue check_value(lua_State* L, int idx) {
  DictValue v;
  switch (lua_type(L, idx)) {
    case LUA_TNONE:
    case LUA_TNIL:
      break;
    case LUA_TBOOLEAN:
      v.type = DictValue::Type::Boolean;
      v.boolean = lua_toboolean(L, idx);
      break;
    case LUA_TNUMBER:
      v.type = DictValue::Type::Number;
      v.number = lua_tonumber(L, idx);
      break;
    case LUA_TSTRING: {
      v.type = DictValue::Type::String;
      size_t n = 0;
      const char* s = lua_tolstring(L, idx, &n);
      v.string.assign(s, n);
      break;
    }
    default:
      luaL_error(L, "ngx.shared: bad value type %s", luaL_typename(L, idx));
  }
  v.flags = static_cast<uint32_t>(luaL_optinteger(L, idx + 2, 0));
  return v;
}

int push_set_result(lua_State* L, SharedDict::SetResult r, bool forcible) {
  switch (r) {
    case SharedDict::SetResult::Stored:
      lua_pushboolean(L, 1);
      lua_pushnil(L);
      break;
    case SharedDict::SetResult::Exists:
      lua_pushboolean(L, 0);
      lua_pushliteral(L, "exists");
      break;
    case SharedDict::SetResult::NotFound:
      lua_pushboolean(L, 0);
      lua_pushliteral(L, "not found");
      break;
    case SharedDict::SetResult::NoMemory:
      lua_pushboolean(L, 0);
      lua_pushliteral(L, "no memory");
      break;
  }
  lua_pushboolean(L, forcible);
  return 3;
}

int dict_get(lua_State* L) {
  SharedDict* d = check_dict(L);
  std::string_view k = check_key(L, 2);
  DictValue v;
  if (!d->get(k, &v)) {
    lua_pushnil(L);
    return 1;
  }
  switch (v.type) {
    case DictValue::Type::Boolean:
      lua_pushboolean(L, v.boolean);
      break;
    case DictValue::Type::Number:
      lua_pushnumber(L, v.number);
      break;
    case DictValue::Type::String:
      push_str(L, v.string);
      break;
    case DictValue::Type::Nil:
      lua_pushnil(L);
      break;
  }
  if (v.flags) {
    lua_pushinteger(L, v.flags);
    return 2;
  }
  return 1;
}

template <SharedDict::SetResult (SharedDict::*Op)(std::string_view, const DictValue&, double,
                                                  bool*)>
int dict_store(lua_State* L) {
  SharedDict* d = check_dict(L);
  std::string_view k = check_key(L, 2);
  DictValue v = check_value(L, 3);
  double ttl = luaL_optnumber(L, 4, 0);
  bool forcible = false;
  // Sequenced: `forcible` is read only after the store set it.
  const SharedDict::SetResult r = (d->*Op)(k, v, ttl, &forcible);
  return push_set_result(L, r, forcible);
}

int dict_incr(lua_State* L) {
  SharedDict* d = check_dict(L);
  std::string_view k = check_key(L, 2);
  double delta = luaL_checknumber(L, 3);
  double init = 0;
  bool has_init = !lua_isnoneornil(L, 4);
  if (has_init) init = luaL_checknumber(L, 4);
  double init_ttl = luaL_optnumber(L, 5, 0);
  double result = 0;
  bool forcible = false;
  SharedDict::SetResult r =
      d->incr(k, delta, has_init ? &init : nullptr, init_ttl, &result, &forcible);
  if (r == SharedDict::SetResult::Stored) {
    lua_pushnumber(L, result);
    lua_pushnil(L);
    lua_pushboolean(L, forcible);
    return 3;
  }
  lua_pushnil(L);
  lua_pushstring(L, r == SharedDict::SetResult::NotFound ? "not found"
                    : r == SharedDict::SetResult::Exists ? "not a number"
                                                         : "no memory");
  return 2;
}

int dict_delete(lua_State* L) {
  SharedDict* d = check_dict(L);
  d->remove(check_key(L, 2));
  return 0;
}

int dict_flush_all(lua_State* L) {
  check_dict(L)->flush_all();
  return 0;
}

int shared_index(lua_State* L) {
  Sandbox* sb = sandbox_of(L);
  std::string_view name = check_sv(L, 2);
  SharedDict* d = sb->dicts ? sb->dicts->find(sb->tenant, name) : nullptr;
  if (d == nullptr) {
    lua_pushnil(L);
    return 1;
  }
  auto* h = static_cast<DictHandle*>(lua_newuserdata(L, sizeof(DictHandle)));
  h->dict = d;
  luaL_getmetatable(L, kDictMeta);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, -2);
  lua_rawset(L, 1);  // cached: the dict lives as long as the store
  return 1;
}

// The metamethods get the metatable as upvalue 1 (check_handle).
void new_meta(lua_State* L, const char* name, lua_CFunction index, lua_CFunction newindex) {
  luaL_newmetatable(L, name);
  if (index) {
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, index, 1);
    lua_setfield(L, -2, "__index");
  }
  if (newindex) {
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, newindex, 1);
    lua_setfield(L, -2, "__newindex");
  }
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");  // scripts cannot read or replace it
  lua_pop(L, 1);
}

void set_fn(lua_State* L, const char* name, lua_CFunction f) {
  lua_pushcfunction(L, f);
  lua_setfield(L, -2, name);
}

void set_int(lua_State* L, const char* name, int v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, name);
}

// A table whose missing members raise "<label>.X is not supported".
void guard_table(lua_State* L, const char* label) {
  lua_createtable(L, 0, 3);
  lua_pushstring(L, label);
  lua_pushcclosure(L, unsupported_in, 1);
  lua_setfield(L, -2, "__index");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
}

}  // namespace

void open_ngx(lua_State* L) {
  new_meta(L, kVarMeta, var_index, var_newindex);
  new_meta(L, kHeaderMeta, header_index, header_newindex);
  new_meta(L, kHeadersTableMeta, headers_table_index, nullptr);
  luaL_newmetatable(L, kDictMeta);
  lua_createtable(L, 0, 8);
  set_fn(L, "get", dict_get);
  set_fn(L, "set", dict_store<&SharedDict::set>);
  set_fn(L, "safe_set", dict_store<&SharedDict::safe_set>);
  set_fn(L, "add", dict_store<&SharedDict::add>);
  set_fn(L, "safe_add", dict_store<&SharedDict::safe_add>);
  set_fn(L, "replace", dict_store<&SharedDict::replace>);
  set_fn(L, "incr", dict_incr);
  set_fn(L, "delete", dict_delete);
  set_fn(L, "flush_all", dict_flush_all);
  guard_table(L, "ngx.shared.DICT");
  lua_setfield(L, -2, "__index");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);

  lua_createtable(L, 0, 64);  // ngx
  set_fn(L, "say", ngx_say);
  set_fn(L, "print", ngx_print);
  set_fn(L, "exit", ngx_exit);
  set_fn(L, "redirect", ngx_redirect);
  set_fn(L, "log", ngx_log);
  set_fn(L, "time", ngx_time);
  set_fn(L, "now", ngx_now);
  set_fn(L, "update_time", ngx_noop);
  set_fn(L, "encode_base64", ngx_encode_base64);
  set_fn(L, "decode_base64", ngx_decode_base64);
  set_fn(L, "md5", ngx_md5);
  set_fn(L, "md5_bin", ngx_md5_bin);
  set_fn(L, "sha1_bin", ngx_sha1_bin);
  set_fn(L, "hmac_sha1", ngx_hmac_sha1);
  set_fn(L, "escape_uri", ngx_escape_uri);
  set_fn(L, "unescape_uri", ngx_unescape_uri);
  set_fn(L, "encode_args", ngx_encode_args);
  set_fn(L, "decode_args", ngx_decode_args);
  const struct {
    const char* name;
    int value;
  } consts[] = {{"OK", 0},
                {"ERROR", -1},
                {"AGAIN", -2},
                {"DONE", -4},
                {"DECLINED", -5},
                {"STDERR", kLogStderr},
                {"EMERG", kLogEmerg},
                {"ALERT", kLogAlert},
                {"CRIT", kLogCrit},
                {"ERR", kLogErr},
                {"WARN", kLogWarn},
                {"NOTICE", kLogNotice},
                {"INFO", kLogInfo},
                {"DEBUG", kLogDebug},
                {"HTTP_CONTINUE", 100},
                {"HTTP_OK", 200},
                {"HTTP_CREATED", 201},
                {"HTTP_ACCEPTED", 202},
                {"HTTP_NO_CONTENT", 204},
                {"HTTP_PARTIAL_CONTENT", 206},
                {"HTTP_SPECIAL_RESPONSE", 300},
                {"HTTP_MOVED_PERMANENTLY", 301},
                {"HTTP_MOVED_TEMPORARILY", 302},
                {"HTTP_SEE_OTHER", 303},
                {"HTTP_NOT_MODIFIED", 304},
                {"HTTP_TEMPORARY_REDIRECT", 307},
                {"HTTP_PERMANENT_REDIRECT", 308},
                {"HTTP_BAD_REQUEST", 400},
                {"HTTP_UNAUTHORIZED", 401},
                {"HTTP_PAYMENT_REQUIRED", 402},
                {"HTTP_FORBIDDEN", 403},
                {"HTTP_NOT_FOUND", 404},
                {"HTTP_NOT_ALLOWED", 405},
                {"HTTP_NOT_ACCEPTABLE", 406},
                {"HTTP_REQUEST_TIMEOUT", 408},
                {"HTTP_CONFLICT", 409},
                {"HTTP_GONE", 410},
                {"HTTP_TOO_MANY_REQUESTS", 429},
                {"HTTP_INTERNAL_SERVER_ERROR", 500},
                {"HTTP_NOT_IMPLEMENTED", 501},
                {"HTTP_BAD_GATEWAY", 502},
                {"HTTP_SERVICE_UNAVAILABLE", 503},
                {"HTTP_GATEWAY_TIMEOUT", 504}};
  for (const auto& c : consts) set_int(L, c.name, c.value);
  lua_pushlightuserdata(L, nullptr);
  lua_setfield(L, -2, "null");

  lua_createtable(L, 0, 8);  // ngx.req
  set_fn(L, "get_headers", req_get_headers);
  set_fn(L, "set_header", req_set_header);
  set_fn(L, "clear_header", req_clear_header);
  set_fn(L, "get_method", req_get_method);
  set_fn(L, "get_uri_args", req_get_uri_args);
  set_fn(L, "set_uri", req_set_uri);
  set_fn(L, "set_uri_args", req_set_uri_args);
  guard_table(L, "ngx.req");
  lua_setfield(L, -2, "req");

  lua_createtable(L, 0, 4);  // ngx.re
  set_fn(L, "match", re_match);
  set_fn(L, "find", re_find);
  set_fn(L, "gsub", re_gsub);
  set_fn(L, "sub", re_sub);
  guard_table(L, "ngx.re");
  lua_setfield(L, -2, "re");

  lua_newtable(L);  // ngx.shared: dicts resolved by name within this tenant only
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, shared_index);
  lua_setfield(L, -2, "__index");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
  lua_setfield(L, -2, "shared");

  lua_createtable(L, 0, 3);  // metatable of ngx: the dynamic and unsupported members
  for (const char* meta : {kVarMeta, kHeaderMeta}) {  // ngx_index's upvalues: the handles
    lua_newuserdata(L, 1);
    luaL_getmetatable(L, meta);
    lua_setmetatable(L, -2);
  }
  lua_pushcclosure(L, ngx_index, 2);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, ngx_newindex);
  lua_setfield(L, -2, "__newindex");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
  lua_setglobal(L, "ngx");
}

}  // namespace parapet::lua
