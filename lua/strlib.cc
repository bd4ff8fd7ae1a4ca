// Lua 5.1 patterns with a step budget. C functions cannot be preempted by the count hook, so
// string.find/match/gmatch/gsub are our own backtracking matcher that charges every step to the
// run's budget (and raises the timeout error when it is spent), with a recursion limit and a
// subject size cap. Plain find is memmem (linear) in charged windows. string.rep checks the
// result size against
// the memory cap before allocating; table.concat charges per element.
#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>

#include "lua/internal.h"

namespace parapet::lua {

namespace {

constexpr int kMaxCaptures = 32;
constexpr int kMaxDepth = 200;
constexpr ptrdiff_t kCapUnfinished = -1;
constexpr ptrdiff_t kCapPosition = -2;
constexpr char kSpecials[] = "^$*+?.([%-";

struct Matcher {
  lua_State* L;
  const char* src_init;
  const char* src_end;
  const char* p_end;
  int level = 0;
  int depth = 0;
  uint32_t steps = 0;
  struct {
    const char* init;
    ptrdiff_t len;
  } capture[kMaxCaptures];

  void step() {
    if (++steps >= 256) {
      charge(L, steps);
      steps = 0;
    }
  }
  void flush() {
    if (steps) charge(L, steps);
    steps = 0;
  }
};

[[noreturn]] void fail(lua_State* L, const char* msg) {
  luaL_error(L, "%s", msg);
  std::abort();
}

bool class_match(int c, int cl) {
  bool res;
  unsigned char uc = static_cast<unsigned char>(c);
  switch (cl | 0x20) {
    case 'a':
      res = (uc >= 'a' && uc <= 'z') || (uc >= 'A' && uc <= 'Z');
      break;
    case 'c':
      res = uc < 32 || uc == 127;
      break;
    case 'd':
      res = uc >= '0' && uc <= '9';
      break;
    case 'l':
      res = uc >= 'a' && uc <= 'z';
      break;
    case 'p':
      res = (uc >= 33 && uc <= 47) || (uc >= 58 && uc <= 64) || (uc >= 91 && uc <= 96) ||
            (uc >= 123 && uc <= 126);
      break;
    case 's':
      res = uc == ' ' || (uc >= 9 && uc <= 13);
      break;
    case 'u':
      res = uc >= 'A' && uc <= 'Z';
      break;
    case 'w':
      res = (uc >= 'a' && uc <= 'z') || (uc >= 'A' && uc <= 'Z') || (uc >= '0' && uc <= '9');
      break;
    case 'x':
      res = (uc >= '0' && uc <= '9') || (uc >= 'a' && uc <= 'f') || (uc >= 'A' && uc <= 'F');
      break;
    case 'z':
      res = uc == 0;
      break;
    default:
      return cl == c;  // %. %% %[ ...: the character itself
  }
  return (cl >= 'A' && cl <= 'Z') ? !res : res;
}

// Past the single-character class starting at p (".", "%x", "[set]" or a literal).
const char* class_end(Matcher& m, const char* p) {
  char c = *p++;
  if (c == '%') {
    if (p >= m.p_end) fail(m.L, "malformed pattern (ends with '%')");
    return p + 1;
  }
  if (c == '[') {
    if (p < m.p_end && *p == '^') ++p;
    do {  // the first character of a set may be ']'
      if (p >= m.p_end) fail(m.L, "malformed pattern (missing ']')");
      char d = *p++;
      if (d == '%') {
        if (p >= m.p_end) fail(m.L, "malformed pattern (missing ']')");
        ++p;
      }
    } while (p >= m.p_end || *p != ']');
    return p + 1;
  }
  return p;
}

// p at '[', ec at the closing ']'.
bool bracket_match(int c, const char* p, const char* ec) {
  bool want = true;
  if (*(p + 1) == '^') {
    want = false;
    ++p;
  }
  while (++p < ec) {
    if (*p == '%') {
      ++p;
      if (class_match(c, static_cast<unsigned char>(*p))) return want;
    } else if (*(p + 1) == '-' && p + 2 < ec) {
      if (static_cast<unsigned char>(*p) <= c && c <= static_cast<unsigned char>(*(p + 2))) {
        return want;
      }
      p += 2;
    } else if (static_cast<unsigned char>(*p) == c) {
      return want;
    }
  }
  return !want;
}

bool single_match(Matcher& m, const char* s, const char* p, const char* ep) {
  if (s >= m.src_end) return false;
  int c = static_cast<unsigned char>(*s);
  switch (*p) {
    case '.':
      return true;
    case '%':
      return class_match(c, static_cast<unsigned char>(*(p + 1)));
    case '[':
      return bracket_match(c, p, ep - 1);
    default:
      return static_cast<unsigned char>(*p) == c;
  }
}

const char* do_match(Matcher& m, const char* s, const char* p);

const char* max_expand(Matcher& m, const char* s, const char* p, const char* ep) {
  ptrdiff_t i = 0;
  while (single_match(m, s + i, p, ep)) {
    ++i;
    m.step();
  }
  while (i >= 0) {  // try the longest run first, then give back one at a time
    const char* r = do_match(m, s + i, ep + 1);
    if (r) return r;
    --i;
  }
  return nullptr;
}

const char* min_expand(Matcher& m, const char* s, const char* p, const char* ep) {
  for (;;) {
    const char* r = do_match(m, s, ep + 1);
    if (r) return r;
    if (!single_match(m, s, p, ep)) return nullptr;
    ++s;
  }
}

const char* start_capture(Matcher& m, const char* s, const char* p, ptrdiff_t what) {
  if (m.level >= kMaxCaptures) fail(m.L, "too many captures");
  m.capture[m.level].init = s;
  m.capture[m.level].len = what;
  ++m.level;
  const char* r = do_match(m, s, p);
  if (!r) --m.level;
  return r;
}

const char* end_capture(Matcher& m, const char* s, const char* p) {
  int l = -1;
  for (int i = m.level - 1; i >= 0; --i) {
    if (m.capture[i].len == kCapUnfinished) {
      l = i;
      break;
    }
  }
  if (l < 0) fail(m.L, "invalid pattern capture");
  m.capture[l].len = s - m.capture[l].init;
  const char* r = do_match(m, s, p);
  if (!r) m.capture[l].len = kCapUnfinished;
  return r;
}

const char* match_balance(Matcher& m, const char* s, const char* p) {
  if (p + 1 >= m.p_end) fail(m.L, "missing arguments to '%b'");
  if (s >= m.src_end || *s != *p) return nullptr;
  char open = *p, close = *(p + 1);
  int depth = 1;
  while (++s < m.src_end) {
    m.step();
    if (*s == close) {
      if (--depth == 0) return s + 1;
    } else if (*s == open) {
      ++depth;
    }
  }
  return nullptr;
}

const char* match_backref(Matcher& m, const char* s, int l) {
  l -= '1';
  if (l < 0 || l >= m.level || m.capture[l].len == kCapUnfinished) {
    fail(m.L, "invalid capture index");
  }
  size_t len = static_cast<size_t>(m.capture[l].len);
  if (m.capture[l].len >= 0 && static_cast<size_t>(m.src_end - s) >= len &&
      std::memcmp(m.capture[l].init, s, len) == 0) {
    charge(m.L, len / 16);
    return s + len;
  }
  return nullptr;
}

const char* do_match(Matcher& m, const char* s, const char* p) {
  if (++m.depth > kMaxDepth) fail(m.L, "pattern too complex (recursion limit)");
  const char* result = nullptr;
  for (;;) {
    m.step();
    if (p >= m.p_end) {
      result = s;
      break;
    }
    if (*p == '(') {
      result = (p + 1 < m.p_end && *(p + 1) == ')') ? start_capture(m, s, p + 2, kCapPosition)
                                                    : start_capture(m, s, p + 1, kCapUnfinished);
      break;
    }
    if (*p == ')') {
      result = end_capture(m, s, p + 1);
      break;
    }
    if (*p == '$' && p + 1 == m.p_end) {
      result = (s == m.src_end) ? s : nullptr;
      break;
    }
    if (*p == '%' && p + 1 < m.p_end) {
      char n = *(p + 1);
      if (n == 'b') {
        s = match_balance(m, s, p + 2);
        if (s == nullptr) break;
        p += 4;
        continue;
      }
      if (n == 'f') {
        p += 2;
        if (p >= m.p_end || *p != '[') fail(m.L, "missing '[' after '%f' in pattern");
        const char* ep = class_end(m, p);
        int prev = (s == m.src_init) ? 0 : static_cast<unsigned char>(*(s - 1));
        int cur = (s < m.src_end) ? static_cast<unsigned char>(*s) : 0;
        if (!bracket_match(prev, p, ep - 1) && bracket_match(cur, p, ep - 1)) {
          p = ep;
          continue;
        }
        break;  // no match
      }
      if (n >= '0' && n <= '9') {
        s = match_backref(m, s, static_cast<unsigned char>(n));
        if (s == nullptr) break;
        p += 2;
        continue;
      }
    }
    // A single-character class, maybe followed by a quantifier.
    const char* ep = class_end(m, p);
    bool ok = single_match(m, s, p, ep);
    char q = ep < m.p_end ? *ep : '\0';
    if (q == '?') {
      if (ok) {
        const char* r = do_match(m, s + 1, ep + 1);
        if (r) {
          result = r;
          break;
        }
      }
      p = ep + 1;
      continue;
    }
    if (q == '*') {
      result = max_expand(m, s, p, ep);
      break;
    }
    if (q == '+') {
      result = ok ? max_expand(m, s + 1, p, ep) : nullptr;
      break;
    }
    if (q == '-') {
      result = min_expand(m, s, p, ep);
      break;
    }
    if (!ok) break;
    ++s;
    p = ep;
  }
  --m.depth;
  return result;
}

void push_one_capture(Matcher& m, int i, const char* s, const char* e) {
  if (i >= m.level) {
    if (i == 0) {
      lua_pushlstring(m.L, s, static_cast<size_t>(e - s));  // the whole match
      return;
    }
    fail(m.L, "invalid capture index");
  }
  ptrdiff_t l = m.capture[i].len;
  if (l == kCapUnfinished) fail(m.L, "unfinished capture");
  if (l == kCapPosition) {
    lua_pushinteger(m.L, m.capture[i].init - m.src_init + 1);
  } else {
    lua_pushlstring(m.L, m.capture[i].init, static_cast<size_t>(l));
  }
}

int push_captures(Matcher& m, const char* s, const char* e) {
  int n = (m.level == 0 && s) ? 1 : m.level;
  luaL_checkstack(m.L, n, "too many captures");
  for (int i = 0; i < n; ++i) push_one_capture(m, i, s, e);
  return n;
}

bool has_specials(const char* p, size_t len) {
  for (size_t i = 0; i < len; ++i) {
    if (std::strchr(kSpecials, p[i]) && p[i] != '\0') return true;
  }
  return false;
}

void check_subject(lua_State* L, size_t len, const char* fn) {
  Sandbox* sb = sandbox_of(L);
  if (len > sb->limits.pattern_subject_bytes) {
    luaL_error(L, "%s: subject too long for pattern matching (%d bytes, limit %d)", fn,
               static_cast<int>(len), static_cast<int>(sb->limits.pattern_subject_bytes));
  }
}

// Lua 5.1 position rules: negative counts from the end.
ptrdiff_t relative_pos(lua_Integer pos, size_t len) {
  if (pos < 0) pos += static_cast<lua_Integer>(len) + 1;
  return pos >= 0 ? static_cast<ptrdiff_t>(pos) : 0;
}

void init_matcher(Matcher& m, lua_State* L, const char* s, size_t ls, const char* p, size_t lp) {
  m.L = L;
  m.src_init = s;
  m.src_end = s + ls;
  m.p_end = p + lp;
  m.level = 0;
  m.depth = 0;
}

// Plain search: memmem over windows of start positions, each charged before it is searched, so
// that one call over a large subject (up to the memory cap) stops near the budget instead of
// after the whole scan. A window holds at least 4x the needle's length of start positions, so
// the bytes scanned twice (the needle's length per window) and memmem's per-call setup stay a
// fraction of the subject.
const char* plain_find(lua_State* L, const char* s, size_t ls, const char* p, size_t lp) {
  if (lp == 0) return s;
  if (lp > ls) return nullptr;
  const size_t window = std::max<size_t>(64 * 1024, 4 * lp);
  const size_t last = ls - lp;  // the last position a match can start at
  for (size_t start = 0; start <= last;) {
    const size_t starts = std::min(window, last - start + 1);
    const size_t span = starts + lp - 1;
    charge(L, span / 64 + 1);
    if (const void* hit = memmem(s + start, span, p, lp)) return static_cast<const char*>(hit);
    start += starts;
  }
  return nullptr;
}

int find_aux(lua_State* L, bool find) {
  size_t ls = 0, lp = 0;
  const char* s = luaL_checklstring(L, 1, &ls);
  const char* p = luaL_checklstring(L, 2, &lp);
  ptrdiff_t init = relative_pos(luaL_optinteger(L, 3, 1), ls) - 1;
  if (init < 0) init = 0;
  if (static_cast<size_t>(init) > ls) {
    lua_pushnil(L);
    return 1;
  }
  if (find && (lua_toboolean(L, 4) || !has_specials(p, lp))) {
    // Plain search: linear.
    const char* hit = plain_find(L, s + init, ls - static_cast<size_t>(init), p, lp);
    if (hit) {
      ptrdiff_t at = static_cast<const char*>(hit) - s;
      lua_pushinteger(L, at + 1);
      lua_pushinteger(L, at + static_cast<ptrdiff_t>(lp));
      return 2;
    }
    lua_pushnil(L);
    return 1;
  }
  check_subject(L, ls, find ? "string.find" : "string.match");
  Matcher m;
  bool anchor = lp > 0 && *p == '^';
  if (anchor) {
    ++p;
    --lp;
  }
  init_matcher(m, L, s, ls, p, lp);
  const char* s1 = s + init;
  do {
    m.level = 0;
    m.depth = 0;
    const char* e = do_match(m, s1, p);
    if (e) {
      m.flush();
      if (find) {
        lua_pushinteger(L, s1 - s + 1);
        lua_pushinteger(L, e - s);
        return push_captures(m, nullptr, nullptr) + 2;
      }
      return push_captures(m, s1, e);
    }
  } while (s1++ < m.src_end && !anchor);
  m.flush();
  lua_pushnil(L);
  return 1;
}

int str_find(lua_State* L) { return find_aux(L, true); }
int str_match(lua_State* L) { return find_aux(L, false); }

int gmatch_step(lua_State* L) {
  size_t ls = 0, lp = 0;
  const char* s = lua_tolstring(L, lua_upvalueindex(1), &ls);
  const char* p = lua_tolstring(L, lua_upvalueindex(2), &lp);
  Matcher m;
  init_matcher(m, L, s, ls, p, lp);
  for (const char* src = s + lua_tointeger(L, lua_upvalueindex(3)); src <= m.src_end; ++src) {
    m.level = 0;
    m.depth = 0;
    const char* e = do_match(m, src, p);
    if (e) {
      m.flush();
      lua_Integer next = e - s;
      if (e == src) ++next;  // empty match: move on one character
      lua_pushinteger(L, next);
      lua_replace(L, lua_upvalueindex(3));
      return push_captures(m, src, e);
    }
  }
  m.flush();
  return 0;
}

int str_gmatch(lua_State* L) {
  size_t ls = 0;
  luaL_checklstring(L, 1, &ls);
  luaL_checkstring(L, 2);
  check_subject(L, ls, "string.gmatch");
  lua_settop(L, 2);
  lua_pushinteger(L, 0);
  lua_pushcclosure(L, gmatch_step, 3);
  return 1;
}

void add_replacement_string(Matcher& m, luaL_Buffer* b, const char* s, const char* e) {
  size_t l = 0;
  const char* news = lua_tolstring(m.L, 3, &l);
  for (size_t i = 0; i < l; ++i) {
    m.step();
    if (news[i] != '%') {
      luaL_addchar(b, news[i]);
      continue;
    }
    ++i;
    if (i >= l) break;
    if (news[i] < '0' || news[i] > '9') {
      luaL_addchar(b, news[i]);
    } else if (news[i] == '0') {
      luaL_addlstring(b, s, static_cast<size_t>(e - s));
    } else {
      push_one_capture(m, news[i] - '1', s, e);
      luaL_addvalue(b);
    }
  }
}

void add_replacement(Matcher& m, luaL_Buffer* b, const char* s, const char* e, int tr) {
  lua_State* L = m.L;
  if (tr == LUA_TNUMBER || tr == LUA_TSTRING) {
    add_replacement_string(m, b, s, e);
    return;
  }
  if (tr == LUA_TFUNCTION) {
    check_cstack(L);
    m.flush();
    lua_pushvalue(L, 3);
    int n = push_captures(m, s, e);
    lua_call(L, n, 1);
  } else {
    push_one_capture(m, 0, s, e);
    lua_gettable(L, 3);
  }
  if (!lua_toboolean(L, -1)) {
    lua_pop(L, 1);
    luaL_addlstring(b, s, static_cast<size_t>(e - s));  // keep the original text
    return;
  }
  if (!lua_isstring(L, -1)) {
    luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
  }
  luaL_addvalue(b);
}

int str_gsub(lua_State* L) {
  size_t ls = 0, lp = 0;
  const char* src = luaL_checklstring(L, 1, &ls);
  const char* p = luaL_checklstring(L, 2, &lp);
  int tr = lua_type(L, 3);
  lua_Integer max_n = luaL_optinteger(L, 4, static_cast<lua_Integer>(ls) + 1);
  luaL_argcheck(L,
                tr == LUA_TNUMBER || tr == LUA_TSTRING || tr == LUA_TFUNCTION || tr == LUA_TTABLE,
                3, "string/function/table expected");
  check_subject(L, ls, "string.gsub");
  check_cstack(L);
  bool anchor = lp > 0 && *p == '^';
  if (anchor) {
    ++p;
    --lp;
  }
  Matcher m;
  init_matcher(m, L, src, ls, p, lp);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  lua_Integer n = 0;
  while (n < max_n) {
    m.level = 0;
    m.depth = 0;
    const char* e = do_match(m, src, p);
    if (e) {
      ++n;
      add_replacement(m, &b, src, e, tr);
    }
    if (e && e > src) {
      src = e;
    } else if (src < m.src_end) {
      luaL_addchar(&b, *src++);
    } else {
      break;
    }
    if (anchor) break;
  }
  m.flush();
  charge(L, static_cast<uint64_t>(m.src_end - src) / 16);
  luaL_addlstring(&b, src, static_cast<size_t>(m.src_end - src));
  luaL_pushresult(&b);
  lua_pushinteger(L, n);
  return 2;
}

// string.rep(s, n [, sep]): the result size is checked against what the memory cap still
// allows before anything is allocated.
int str_rep(lua_State* L) {
  size_t l = 0, lsep = 0;
  const char* s = luaL_checklstring(L, 1, &l);
  double nd = luaL_checknumber(L, 2);
  const char* sep = luaL_optlstring(L, 3, "", &lsep);
  if (!(nd >= 1) || (l == 0 && lsep == 0)) {
    lua_pushliteral(L, "");
    return 1;
  }
  Sandbox* sb = sandbox_of(L);
  size_t room = sb->limits.memory_bytes > sb->mem_used ? sb->limits.memory_bytes - sb->mem_used : 0;
  double total = nd * static_cast<double>(l) + (nd - 1) * static_cast<double>(lsep);
  if (total >= static_cast<double>(room) || total >= 2147483647.0) {
    abort_run(L, Abort::OutOfMemory);
  }
  size_t n = static_cast<size_t>(nd);
  size_t size = static_cast<size_t>(total);
  charge(L, size / 64);
  // Built outside the Lua heap (bounded by `room` above), then copied in once.
  std::string out;
  out.reserve(size);
  for (size_t i = 0; i < n; ++i) {
    if (i && lsep) out.append(sep, lsep);
    out.append(s, l);
  }
  lua_pushlstring(L, out.data(), out.size());
  return 1;
}

// table.concat(t [, sep [, i [, j]]]): charged per element so a huge table stops on budget.
int tab_concat(lua_State* L) {
  size_t lsep = 0;
  luaL_checktype(L, 1, LUA_TTABLE);
  const char* sep = luaL_optlstring(L, 2, "", &lsep);
  lua_Integer i = luaL_optinteger(L, 3, 1);
  lua_Integer last =
      lua_isnoneornil(L, 4) ? static_cast<lua_Integer>(lua_objlen(L, 1)) : luaL_checkinteger(L, 4);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (; i <= last; ++i) {
    if ((i & 255) == 0) charge(L, 256 * 4);
    lua_rawgeti(L, 1, static_cast<int>(i));
    if (!lua_isstring(L, -1)) {
      luaL_error(L, "invalid value (at index %d) in table for 'concat'", static_cast<int>(i));
    }
    luaL_addvalue(&b);
    if (i != last && lsep) luaL_addlstring(&b, sep, lsep);
  }
  luaL_pushresult(&b);
  return 1;
}

}  // namespace

void open_strlib(lua_State* L) {
  lua_getglobal(L, "string");
  const luaL_Reg str[] = {{"find", str_find}, {"match", str_match}, {"gmatch", str_gmatch},
                          {"gsub", str_gsub}, {"rep", str_rep},     {nullptr, nullptr}};
  for (const luaL_Reg* r = str; r->name; ++r) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, -2, r->name);
  }
  lua_pop(L, 1);
  lua_getglobal(L, "table");
  lua_pushcfunction(L, tab_concat);
  lua_setfield(L, -2, "concat");
  lua_pop(L, 1);
}

}  // namespace parapet::lua
