// cjson.encode / cjson.decode (the lua-cjson interface, our own implementation) with bounded
// nesting depth and input size, charged to the run's budget.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "lua/internal.h"

namespace parapet::lua {

namespace {

void encode_string(const char* s, size_t n, std::string* out) {
  out->push_back('"');
  for (size_t i = 0; i < n; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '/':
        out->append("\\/");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out->append(buf);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

void encode_number(lua_State* L, double d, std::string* out) {
  if (std::isnan(d) || std::isinf(d)) {
    luaL_error(L, "Cannot serialise number: must not be NaN or Infinity");
  }
  char buf[32];
  if (d == std::floor(d) && std::fabs(d) < 1e15) {
    std::snprintf(buf, sizeof(buf), "%.0f", d);
  } else {
    std::snprintf(buf, sizeof(buf), "%.14g", d);
  }
  out->append(buf);
}

void encode_value(lua_State* L, int idx, int depth, std::string* out);

void encode_table(lua_State* L, int idx, int depth, std::string* out) {
  Sandbox* sb = sandbox_of(L);
  if (depth > sb->limits.json_max_depth) {
    luaL_error(L, "Cannot serialise, excessive nesting (%d)", depth);
  }
  luaL_checkstack(L, 6, "cjson.encode");
  // An array when the keys are exactly 1..n (n > 0); otherwise an object.
  size_t count = 0;
  double max = 0;
  bool array = true;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1);
    ++count;
    if (lua_type(L, -1) == LUA_TNUMBER) {
      double k = lua_tonumber(L, -1);
      if (k >= 1 && k == std::floor(k)) {
        if (k > max) max = k;
        continue;
      }
    }
    array = false;
  }
  charge(L, count * 4);
  if (array && count > 0 && max == static_cast<double>(count)) {
    out->push_back('[');
    for (size_t i = 1; i <= count; ++i) {
      if (i > 1) out->push_back(',');
      lua_rawgeti(L, idx, static_cast<int>(i));
      encode_value(L, lua_gettop(L), depth + 1, out);
      lua_pop(L, 1);
    }
    out->push_back(']');
    return;
  }
  out->push_back('{');
  bool first = true;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    int kt = lua_type(L, -2);
    if (kt != LUA_TSTRING && kt != LUA_TNUMBER) {
      luaL_error(L, "Cannot serialise table: table key must be a number or string");
    }
    if (!first) out->push_back(',');
    first = false;
    lua_pushvalue(L, -2);  // tolstring on a copy keeps lua_next's key intact
    size_t kn = 0;
    const char* ks = lua_tolstring(L, -1, &kn);
    encode_string(ks, kn, out);
    lua_pop(L, 1);
    out->push_back(':');
    encode_value(L, lua_gettop(L), depth + 1, out);
    lua_pop(L, 1);
  }
  out->push_back('}');
}

void encode_value(lua_State* L, int idx, int depth, std::string* out) {
  if (out->size() > sandbox_of(L)->limits.memory_bytes) abort_run(L, Abort::OutOfMemory);
  switch (lua_type(L, idx)) {
    case LUA_TNIL:
      out->append("null");
      return;
    case LUA_TBOOLEAN:
      out->append(lua_toboolean(L, idx) ? "true" : "false");
      return;
    case LUA_TNUMBER:
      encode_number(L, lua_tonumber(L, idx), out);
      return;
    case LUA_TSTRING: {
      size_t n = 0;
      const char* s = lua_tolstring(L, idx, &n);
      charge(L, n / 16);
      encode_string(s, n, out);
      return;
    }
    case LUA_TTABLE:
      encode_table(L, idx, depth, out);
      return;
    case LUA_TLIGHTUSERDATA:
      if (lua_touserdata(L, idx) == nullptr) {
        out->append("null");
        return;
      }
      break;
    default:
      break;
  }
  luaL_error(L, "Cannot serialise %s: type not supported", luaL_typename(L, idx));
}

int json_encode(lua_State* L) {
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  std::string out;
  encode_value(L, 1, 1, &out);
  lua_pushlstring(L, out.data(), out.size());
  return 1;
}

struct Parser {
  lua_State* L;
  const char* s;
  const char* p;
  const char* end;
  int max_depth;

  [[noreturn]] void fail(const char* what) {
    luaL_error(L, "Expected %s but found invalid token at character %d", what,
               static_cast<int>(p - s) + 1);
    std::abort();
  }
  void ws() {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) ++p;
  }
  bool lit(const char* w, size_t n) {
    if (static_cast<size_t>(end - p) >= n && std::memcmp(p, w, n) == 0) {
      p += n;
      return true;
    }
    return false;
  }
  static void put_utf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  uint32_t hex4() {
    if (end - p < 4) fail("unicode escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = *p++;
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        v |= static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        v |= static_cast<uint32_t>(c - 'A' + 10);
      } else {
        fail("unicode escape");
      }
    }
    return v;
  }
  void string() {
    ++p;  // opening quote
    std::string out;
    for (;;) {
      if (p >= end) fail("closing quote");
      char c = *p++;
      if (c == '"') break;
      if (static_cast<unsigned char>(c) < 0x20) fail("string character");
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (p >= end) fail("escape");
      char e = *p++;
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out.push_back(e);
          break;
        case 'b':
          out.push_back('\b');
          break;
        case 'f':
          out.push_back('\f');
          break;
        case 'n':
          out.push_back('\n');
          break;
        case 'r':
          out.push_back('\r');
          break;
        case 't':
          out.push_back('\t');
          break;
        case 'u': {
          uint32_t cp = hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (!lit("\\u", 2)) fail("low surrogate");
            uint32_t lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            fail("unicode escape");
          }
          put_utf8(cp, &out);
          break;
        }
        default:
          fail("escape");
      }
    }
    lua_pushlstring(L, out.data(), out.size());
  }
  void number() {
    const char* start = p;
    if (p < end && *p == '-') ++p;
    if (p >= end || !(*p >= '0' && *p <= '9')) fail("value");
    if (*p == '0') {
      ++p;
    } else {
      while (p < end && *p >= '0' && *p <= '9') ++p;
    }
    if (p < end && *p == '.') {
      ++p;
      if (p >= end || !(*p >= '0' && *p <= '9')) fail("digit");
      while (p < end && *p >= '0' && *p <= '9') ++p;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
      ++p;
      if (p < end && (*p == '+' || *p == '-')) ++p;
      if (p >= end || !(*p >= '0' && *p <= '9')) fail("digit");
      while (p < end && *p >= '0' && *p <= '9') ++p;
    }
    std::string num(start, static_cast<size_t>(p - start));
    lua_pushnumber(L, std::strtod(num.c_str(), nullptr));
  }
  void value(int depth) {
    if (depth > max_depth) {
      luaL_error(L, "Found too many nested data structures (%d) at character %d", depth,
                 static_cast<int>(p - s) + 1);
    }
    luaL_checkstack(L, 4, "cjson.decode");
    ws();
    if (p >= end) fail("value");
    charge(L, 4);
    switch (*p) {
      case '{': {
        ++p;
        lua_newtable(L);
        ws();
        if (p < end && *p == '}') {
          ++p;
          return;
        }
        for (;;) {
          ws();
          if (p >= end || *p != '"') fail("object key string");
          string();
          ws();
          if (p >= end || *p != ':') fail("colon");
          ++p;
          value(depth + 1);
          lua_rawset(L, -3);
          ws();
          if (p < end && *p == ',') {
            ++p;
            continue;
          }
          if (p < end && *p == '}') {
            ++p;
            return;
          }
          fail("comma or object end");
        }
      }
      case '[': {
        ++p;
        lua_newtable(L);
        ws();
        if (p < end && *p == ']') {
          ++p;
          return;
        }
        for (int i = 1;; ++i) {
          value(depth + 1);
          lua_rawseti(L, -2, i);
          ws();
          if (p < end && *p == ',') {
            ++p;
            continue;
          }
          if (p < end && *p == ']') {
            ++p;
            return;
          }
          fail("comma or array end");
        }
      }
      case '"':
        string();
        return;
      case 't':
        if (lit("true", 4)) {
          lua_pushboolean(L, 1);
          return;
        }
        fail("value");
      case 'f':
        if (lit("false", 5)) {
          lua_pushboolean(L, 0);
          return;
        }
        fail("value");
      case 'n':
        if (lit("null", 4)) {
          lua_pushlightuserdata(L, nullptr);
          return;
        }
        fail("value");
      default:
        number();
    }
  }
};

int json_decode(lua_State* L) {
  size_t n = 0;
  const char* s = luaL_checklstring(L, 1, &n);
  Sandbox* sb = sandbox_of(L);
  if (n > sb->limits.json_max_bytes) {
    return luaL_error(L, "cjson.decode: input too large (%d bytes, limit %d)", static_cast<int>(n),
                      static_cast<int>(sb->limits.json_max_bytes));
  }
  charge(L, n / 8);
  Parser ps{L, s, s, s + n, sb->limits.json_max_depth};
  ps.value(1);
  ps.ws();
  if (ps.p != ps.end) ps.fail("the end");
  return 1;
}

}  // namespace

void open_cjson(lua_State* L) {
  lua_createtable(L, 0, 4);
  lua_pushcfunction(L, json_encode);
  lua_setfield(L, -2, "encode");
  lua_pushcfunction(L, json_decode);
  lua_setfield(L, -2, "decode");
  lua_pushlightuserdata(L, nullptr);
  lua_setfield(L, -2, "null");
}

}  // namespace parapet::lua
