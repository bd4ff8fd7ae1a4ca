// The sandbox proper: state creation with a capped allocator, the CPU budget (count hook with
// the JIT engine off, plus a clock deadline), the safe library set, text-only loading, and runs
// in reusable coroutines with explicit results.
#include "lua/sandbox.h"

#include <re2/re2.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "lua/codec.h"
#include "lua/internal.h"

extern "C" {
#include <luajit.h>
#include <lualib.h>
}

namespace parapet::lua {

namespace {

// Sentinels: the address is the identity (pushed as light userdata, never dereferenced).
char kRunnerMarker;
char kExitSentinel;
constexpr size_t kMaxIdleCoroutines = 8;
// Runner coroutines made per protected call when none is idle: a run that ends in ngx.exit
// drops its coroutine, so a script that always exits needs a new one per run.
constexpr int kRunnerBatch = 8;

const char kTimeoutMessage[] = "cpu budget exceeded";
const char kMemoryMessage[] = "not enough memory";

void* capped_alloc(void* ud, void* ptr, size_t osize, size_t nsize) {
  auto* sb = static_cast<Sandbox*>(ud);
  if (ptr == nullptr) osize = 0;
  if (nsize == 0) {
    std::free(ptr);
    sb->mem_used -= osize;
    return nullptr;
  }
  if (nsize > osize && sb->mem_used + (nsize - osize) > sb->limits.memory_bytes) {
    // Refused: LuaJIT raises "not enough memory". The run is marked so that the error cannot be
    // caught by the script and the result says OutOfMemory.
    sb->mem_failed = true;
    if (sb->run && sb->run->abort == Abort::None) sb->run->abort = Abort::OutOfMemory;
    return nullptr;
  }
  void* p = std::realloc(ptr, nsize);
  if (p == nullptr) {
    if (nsize <= osize) return ptr;  // a shrink may keep the old block
    sb->mem_failed = true;
    if (sb->run && sb->run->abort == Abort::None) sb->run->abort = Abort::OutOfMemory;
    return nullptr;
  }
  sb->mem_used = sb->mem_used - osize + nsize;
  return p;
}

// Records where the running script is into r->near (allocation-free: lua_getinfo "Sl" fills
// fixed fields only).
void note_position(lua_State* L, RunCtx* r) {
  lua_Debug ar;
  for (int level = 0; level < 3 && lua_getstack(L, level, &ar); ++level) {
    if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
      std::snprintf(r->near, sizeof r->near, "%s:%d", ar.short_src, ar.currentline);
      return;
    }
  }
}

void count_hook(lua_State* L, lua_Debug*) {
  Sandbox* sb = sandbox_of(L);
  RunCtx* r = sb->run;
  if (r == nullptr) return;
  r->instructions += static_cast<uint64_t>(sb->limits.hook_interval);
  if (sb->mem_used > sb->limits.memory_bytes / 2) note_position(L, r);
  if (r->abort == Abort::Exit) return;  // unwinding an ngx.exit: let it finish
  if (r->abort == Abort::OutOfMemory) abort_run(L, Abort::OutOfMemory);
  if (r->abort == Abort::Timeout || r->instructions > r->instruction_budget ||
      Clock::now() >= r->deadline) {
    abort_run(L, Abort::Timeout);
  }
}

// --- base library replacements -------------------------------------------------------------

// load(s [, chunkname]) / loadstring: source text only, bounded in size.
int safe_load(lua_State* L) {
  if (lua_type(L, 1) != LUA_TSTRING) {
    lua_pushnil(L);
    lua_pushliteral(L, "load: only source strings are accepted");
    return 2;
  }
  size_t len = 0;
  const char* s = lua_tolstring(L, 1, &len);
  Sandbox* sb = sandbox_of(L);
  if (len > sb->limits.load_source_bytes) {
    lua_pushnil(L);
    lua_pushliteral(L, "load: source too large");
    return 2;
  }
  if (len > 0 && s[0] == '\033') {
    lua_pushnil(L);
    lua_pushliteral(L, "load: binary chunks are not allowed");
    return 2;
  }
  charge(L, len);
  const char* name = luaL_optstring(L, 2, "=(load)");
  if (luaL_loadbufferx(L, s, len, name, "t") != 0) {
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
  }
  return 1;
}

// Writes a value for print/ngx.log without calling metamethods.
void append_plain(lua_State* L, int i, std::string* out) {
  switch (lua_type(L, i)) {
    case LUA_TNIL:
      out->append("nil");
      break;
    case LUA_TBOOLEAN:
      out->append(lua_toboolean(L, i) ? "true" : "false");
      break;
    case LUA_TNUMBER:
    case LUA_TSTRING: {
      size_t n = 0;
      const char* s = lua_tolstring(L, i, &n);  // numbers: converted in place on a copy below
      out->append(s, n);
      break;
    }
    case LUA_TLIGHTUSERDATA:
      out->append(lua_touserdata(L, i) == nullptr ? "null" : "userdata");
      break;
    default:
      out->append(lua_typename(L, lua_type(L, i)));
  }
}

}  // namespace

int log_values(lua_State* L, int level, int first) {
  Sandbox* sb = sandbox_of(L);
  std::string msg;
  int n = lua_gettop(L);
  for (int i = first; i <= n; ++i) {
    if (lua_type(L, i) == LUA_TNUMBER) {
      lua_pushvalue(L, i);  // tolstring converts the copy, not the caller's argument
      append_plain(L, -1, &msg);
      lua_pop(L, 1);
    } else {
      append_plain(L, i, &msg);
    }
    if (msg.size() > 4096) {
      msg.resize(4096);
      msg.append("...");
      break;
    }
  }
  charge(L, msg.size());
  if (sb->log) sb->log(level, sb->tenant, msg);
  return 0;
}

namespace {

int safe_print(lua_State* L) { return log_values(L, kLogNotice, 1); }

int safe_collectgarbage(lua_State* L) {
  const char* opt = luaL_optstring(L, 1, "count");
  if (std::strcmp(opt, "count") != 0) {
    return luaL_error(L, "collectgarbage: only \"count\" is allowed");
  }
  lua_pushnumber(L, lua_gc(L, LUA_GCCOUNT, 0) + lua_gc(L, LUA_GCCOUNTB, 0) / 1024.0);
  return 1;
}

int safe_require(lua_State* L) {
  const char* name = luaL_checkstring(L, 1);
  if (std::strcmp(name, "cjson") == 0) {
    lua_getfield(L, LUA_REGISTRYINDEX, "parapet.cjson");
    return 1;
  }
  return luaL_error(L, "module '%s' not found: only \"cjson\" can be required", name);
}

// xpcall handler of the runner: records the traceback of script errors and of stops by the
// CPU budget or memory cap (where the script was when stopped) into the run's result, and
// returns the error unchanged. ngx.exit is no failure and gets none. LuaJIT does not call the
// handler for an allocation its allocator refused (LUA_ERRMEM): see RunCtx::near.
int on_error(lua_State* L) {
  Sandbox* sb = sandbox_of(L);
  RunCtx* r = sb->run;
  if (r == nullptr || r->abort == Abort::Exit || r->out == nullptr) return 1;
  std::string& tb = r->out->traceback;
  tb = "stack traceback:";
  lua_Debug ar;
  for (int level = 1; level <= 12 && lua_getstack(L, level, &ar); ++level) {
    if (!lua_getinfo(L, "Sln", &ar)) break;
    // The sandbox's own frames (the runner and the pcall wrappers in the prelude, and the raw
    // functions they call) say nothing to the script's author.
    if (std::strcmp(ar.short_src, "prelude") == 0) continue;
    if (*ar.what == 'C' && ar.name != nullptr &&
        (std::strcmp(ar.name, "pcall0") == 0 || std::strcmp(ar.name, "xpcall0") == 0 ||
         std::strcmp(ar.name, "resume0") == 0)) {
      continue;  // the prelude's locals for the raw functions
    }
    char line[256];
    if (ar.currentline > 0) {
      std::snprintf(line, sizeof(line), "\n\t%s:%d:", ar.short_src, ar.currentline);
    } else {
      std::snprintf(line, sizeof(line), "\n\t%s:", ar.short_src);
    }
    tb += line;
    if (ar.name) {
      std::snprintf(line, sizeof(line), " in function '%s'", ar.name);
    } else if (*ar.what == 'm') {
      std::snprintf(line, sizeof(line), " in main chunk");
    } else if (*ar.what == 'C') {
      std::snprintf(line, sizeof(line), " in C function");
    } else {
      std::snprintf(line, sizeof(line), " in function <%s:%d>", ar.short_src, ar.linedefined);
    }
    tb += line;
  }
  return 1;
}

int rethrow_if_stopped(lua_State* L) {
  Sandbox* sb = sandbox_of(L);
  if (sb->run && sb->run->abort != Abort::None) abort_run(L, sb->run->abort);
  return 0;
}

int guard_cf(lua_State* L) {
  check_cstack(L);
  return 0;
}

// table.sort without a comparator runs entirely in C: predict its cost (about 10 ns per
// comparison) and stop now if it cannot finish within what is left of the budget.
int charge_sort_cf(lua_State* L) {
  double n = luaL_checknumber(L, 1);
  Sandbox* sb = sandbox_of(L);
  if (n > 1 && sb->run) {
    double units = n * (std::log2(n) + 1) * 10;
    auto predicted = std::chrono::nanoseconds(static_cast<int64_t>(std::min(units, 1e15)));
    if (Clock::now() + predicted > sb->run->deadline) abort_run(L, Abort::Timeout);
    charge(L, static_cast<uint64_t>(std::min(units, 1e15)));
  }
  return 0;
}

// Runs with the raw functions in a private table (argument), wraps every catch point so that a
// stop cannot be caught, guards C recursion, and returns the runner: the body of every run
// coroutine, which runs one handler per resume and yields its outcome.
const char kPrelude[] = R"lua(
local raw = ...
local G = raw.G
local pcall0, xpcall0, error0, type0 = raw.pcall, raw.xpcall, raw.error, raw.type
local resume0, create0, yield0 = raw.resume, raw.create, raw.yield
local tostring0, format0, sort0 = raw.tostring, raw.format, raw.sort
local rethrow, guard, charge_sort = raw.rethrow, raw.guard, raw.charge_sort
local marker, on_error = raw.marker, raw.on_error
local function pass(ok, ...)
  if not ok then rethrow() end
  return ok, ...
end
G.pcall = function(f, ...) return pass(pcall0(f, ...)) end
G.xpcall = function(f, h, ...) return pass(xpcall0(f, h, ...)) end
G.tostring = function(v) guard() return tostring0(v) end
local co = G.coroutine
co.resume = function(c, ...) guard() return pass(resume0(c, ...)) end
local function unwrap(ok, ...)
  if not ok then rethrow() error0((...), 0) end
  return ...
end
co.wrap = function(f)
  local c = create0(f)
  return function(...) guard() return unwrap(resume0(c, ...)) end
end
G.string.format = function(...) guard() return format0(...) end
G.table.sort = function(t, cmp)
  guard()
  if cmp == nil and type0(t) == "table" then charge_sort(#t) end
  return sort0(t, cmp)
end
return function(fn)
  while true do
    local ok, err = xpcall0(fn, on_error)
    fn = yield0(marker, ok, err)
  end
end
)lua";

// Keeps only `keep` in the table at the top of the stack.
void whitelist(lua_State* L, std::initializer_list<const char*> keep) {
  std::vector<std::string> drop;
  lua_pushnil(L);
  while (lua_next(L, -2) != 0) {
    lua_pop(L, 1);
    bool ok = false;
    if (lua_type(L, -1) == LUA_TSTRING) {
      const char* k = lua_tostring(L, -1);
      for (const char* w : keep) ok = ok || std::strcmp(k, w) == 0;
    }
    if (!ok && lua_type(L, -1) == LUA_TSTRING) drop.emplace_back(lua_tostring(L, -1));
  }
  for (const std::string& k : drop) {
    lua_pushnil(L);
    lua_setfield(L, -2, k.c_str());
  }
}

void set_raw(lua_State* L, const char* name, lua_CFunction f) {
  lua_pushcfunction(L, f);
  lua_setfield(L, -2, name);
}

// Builds the safe environment. Runs inside lua_cpcall (allocation failures are errors).
int build_env(lua_State* L) {
  const struct {
    const char* name;
    lua_CFunction open;
  } libs[] = {{"", luaopen_base},
              {LUA_TABLIBNAME, luaopen_table},
              {LUA_STRLIBNAME, luaopen_string},
              {LUA_MATHLIBNAME, luaopen_math},
              {LUA_BITLIBNAME, luaopen_bit}};
  for (const auto& lib : libs) {
    lua_pushcfunction(L, lib.open);
    lua_pushstring(L, lib.name);
    lua_call(L, 1, 0);
  }
  // Collect the raw functions the prelude wraps before the globals are trimmed.
  lua_newtable(L);  // raw
  int raw = lua_gettop(L);
  lua_pushvalue(L, LUA_GLOBALSINDEX);
  lua_setfield(L, raw, "G");
  for (const char* f : {"pcall", "xpcall", "error", "type", "tostring"}) {
    lua_getglobal(L, f);
    lua_setfield(L, raw, f);
  }
  lua_getglobal(L, "coroutine");
  for (const char* f : {"resume", "create", "yield"}) {
    lua_getfield(L, -1, f);
    lua_setfield(L, raw, f);
  }
  lua_pop(L, 1);
  lua_getglobal(L, "string");
  lua_getfield(L, -1, "format");
  lua_setfield(L, raw, "format");
  lua_pop(L, 1);
  lua_getglobal(L, "table");
  lua_getfield(L, -1, "sort");
  lua_setfield(L, raw, "sort");
  lua_pop(L, 1);
  lua_pushcfunction(L, rethrow_if_stopped);
  lua_setfield(L, raw, "rethrow");
  lua_pushcfunction(L, guard_cf);
  lua_setfield(L, raw, "guard");
  lua_pushcfunction(L, charge_sort_cf);
  lua_setfield(L, raw, "charge_sort");
  lua_pushcfunction(L, on_error);
  lua_setfield(L, raw, "on_error");
  lua_pushlightuserdata(L, &kRunnerMarker);
  lua_setfield(L, raw, "marker");

  // Trim: only the documented globals and library members stay reachable.
  lua_pushvalue(L, LUA_GLOBALSINDEX);
  whitelist(L, {"assert",       "error",     "ipairs",   "pairs",  "next",   "pcall",
                "xpcall",       "rawequal",  "rawget",   "rawset", "select", "setmetatable",
                "getmetatable", "tonumber",  "tostring", "type",   "unpack", "_G",
                "_VERSION",     "coroutine", "string",   "table",  "math",   "bit"});
  set_raw(L, "load", safe_load);
  set_raw(L, "loadstring", safe_load);
  set_raw(L, "print", safe_print);
  set_raw(L, "collectgarbage", safe_collectgarbage);
  set_raw(L, "require", safe_require);
  lua_getfield(L, -1, "coroutine");
  whitelist(L, {"create", "resume", "running", "status", "wrap", "yield", "isyieldable"});
  lua_pop(L, 1);
  lua_getfield(L, -1, "string");
  whitelist(L, {"byte", "char", "find", "format", "gmatch", "gsub", "len", "lower", "match", "rep",
                "reverse", "sub", "upper"});
  lua_pop(L, 1);
  lua_getfield(L, -1, "table");
  whitelist(L, {"concat", "insert", "maxn", "remove", "sort", "getn"});
  lua_pop(L, 1);
  lua_pop(L, 1);  // globals

  open_strlib(L);  // budgeted find/match/gmatch/gsub/rep and table.concat
  open_ngx(L);
  open_cjson(L);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, "parapet.cjson");
  lua_setglobal(L, "cjson");

  if (luaL_loadbufferx(L, kPrelude, sizeof(kPrelude) - 1, "=prelude", "t") != 0) lua_error(L);
  lua_pushvalue(L, raw);
  lua_call(L, 1, 1);
  Sandbox* sb = sandbox_of(L);
  sb->runner_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

// Pushes a tenant's source file compiled as a function, in text mode only (LuaJIT bytecode is
// unverified); raises with the file name on a binary chunk or a syntax error.
void load_source(lua_State* L, const std::string& name, const std::string& text) {
  if (!text.empty() && text[0] == '\033') {
    lua_pushfstring(L, "%s: binary chunks are not allowed", name.c_str());
    lua_error(L);
  }
  const std::string chunk = "=" + name;
  if (luaL_loadbufferx(L, text.data(), text.size(), chunk.c_str(), "t") != 0) lua_error(L);
}

// The phases form: each file's chunk is its phase's handler (nothing runs). In lua_cpcall.
int load_phase_files(lua_State* L) {
  Sandbox* sb = sandbox_of(L);
  const LuaScript& s = *sb->script;
  for (size_t i = 0; i < kPhaseCount; ++i) {
    const LuaSource& f = s.phase_source(static_cast<Phase>(i));
    if (f.name.empty()) continue;
    load_source(L, f.name, f.text);
    sb->phase_ref[i] = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  return 0;
}

// Loads and runs the module top level, then references its phase functions. In lua_cpcall.
int load_module(lua_State* L) {
  Sandbox* sb = sandbox_of(L);
  const LuaScript& s = *sb->script;
  if (s.per_phase_files()) return load_phase_files(L);
  load_source(L, s.name(), s.source());
  lua_call(L, 0, 1);
  if (!lua_istable(L, -1)) {
    lua_pushfstring(L,
                    "%s: the script must return a table of phase functions "
                    "{access = fn, header_filter = fn, log = fn}, got %s",
                    s.name().c_str(), luaL_typename(L, -1));
    lua_error(L);
  }
  int found = 0;
  for (size_t i = 0; i < kPhaseCount; ++i) {
    const char* name = phase_name(static_cast<Phase>(i));
    lua_pushstring(L, name);
    lua_rawget(L, -2);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      continue;
    }
    if (!lua_isfunction(L, -1)) {
      lua_pushfstring(L, "%s: field '%s' of the returned table must be a function, got %s",
                      s.name().c_str(), name, luaL_typename(L, -1));
      lua_error(L);
    }
    sb->phase_ref[i] = luaL_ref(L, LUA_REGISTRYINDEX);
    ++found;
  }
  if (found == 0) {
    lua_pushfstring(L, "%s: the returned table has none of access, header_filter, log",
                    s.name().c_str());
    lua_error(L);
  }
  return 0;
}

// Fills the idle pool with kRunnerBatch new runner coroutines (inside lua_cpcall: an allocation
// that fails raises, and the ones made so far stay in the pool).
int new_runner_threads(lua_State* L) {
  Sandbox* sb = sandbox_of(L);
  for (int i = 0; i < kRunnerBatch; ++i) {
    lua_State* co = lua_newthread(L);
    lua_rawgeti(co, LUA_REGISTRYINDEX, sb->runner_ref);
    sb->coroutines.push_back(luaL_ref(L, LUA_REGISTRYINDEX));
  }
  return 0;
}

std::string message_of(lua_State* L, int idx) {
  if (lua_type(L, idx) == LUA_TSTRING || lua_type(L, idx) == LUA_TNUMBER) {
    size_t n = 0;
    const char* s = lua_tolstring(L, idx, &n);
    return std::string(s, n);
  }
  return std::string("(error object is a ") + luaL_typename(L, idx) + " value)";
}

std::string timeout_text(const LuaLimits& l) {
  char buf[160];
  std::snprintf(buf, sizeof(buf), "%s (%lld us or %llu instructions per run)", kTimeoutMessage,
                static_cast<long long>(l.cpu_time.count()),
                static_cast<unsigned long long>(l.instructions));
  return buf;
}

std::string memory_text(const LuaLimits& l) {
  char buf[160];
  std::snprintf(buf, sizeof(buf), "%s (memory cap %zu bytes)", kMemoryMessage, l.memory_bytes);
  return buf;
}

// The GC pause for the state's heap now: see LuaLimits::gc_pause.
void set_gc_pause(Sandbox* sb) {
  const LuaLimits& l = sb->limits;
  const double used = static_cast<double>(std::max<size_t>(sb->mem_used, 64u << 10));
  double pause = 100.0 * (used + static_cast<double>(l.gc_garbage_bytes)) / used;
  pause = std::min(pause, 100.0 * static_cast<double>(l.memory_bytes) / 2.0 / used);
  const int want = static_cast<int>(std::clamp(pause, static_cast<double>(l.gc_pause), 1000.0));
  if (want != sb->gc_pause_now) {
    lua_gc(sb->L, LUA_GCSETPAUSE, want);
    sb->gc_pause_now = want;
  }
}

// Creates the state, the environment and loads the module. Returns "" or the error.
std::string instantiate(Sandbox* sb) {
  sb->L = lua_newstate(capped_alloc, sb);
  if (sb->L == nullptr) return "cannot create a Lua state (memory cap too small?)";
  lua_State* L = sb->L;
  // The JIT engine stays off: count hooks do not fire inside compiled traces.
  luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
  lua_gc(L, LUA_GCSETPAUSE, sb->limits.gc_pause);
  sb->gc_pause_now = sb->limits.gc_pause;
  // new_runner_threads() pushes inside a protected call: no reallocation there.
  sb->coroutines.reserve(kMaxIdleCoroutines + kRunnerBatch);
  if (lua_cpcall(L, build_env, nullptr) != 0) {
    std::string e = "building the Lua environment: " + message_of(L, -1);
    lua_pop(L, 1);
    return e;
  }
  // The module's top level runs under the same kind of budget as a run (ten times the time:
  // it runs once, at load, off the request path).
  RunCtx r;
  r.loading = true;
  char base = 0;
  r.cstack_base = &base;
  r.start = Clock::now();
  r.deadline = r.start + sb->limits.cpu_time * 10;
  r.instruction_budget = sb->limits.instructions * 10;
  sb->run = &r;
  lua_sethook(L, count_hook, LUA_MASKCOUNT, sb->limits.hook_interval);
  int st = lua_cpcall(L, load_module, nullptr);
  sb->run = nullptr;
  if (st != 0) {
    std::string e;
    if (r.abort == Abort::Timeout) {
      e = sb->script->name() + ": top level: " + timeout_text(sb->limits);
    } else if (r.abort == Abort::OutOfMemory) {
      e = sb->script->name() + ": top level: " + memory_text(sb->limits);
    } else if (r.abort == Abort::Exit) {
      e = sb->script->name() + ": ngx.exit called at the top level";
    } else {
      e = message_of(L, -1);
    }
    lua_pop(L, 1);
    return e;
  }
  lua_gc(L, LUA_GCCOLLECT, 0);
  return "";
}

}  // namespace

// --- shared helpers ----------------------------------------------------------------------------

const char* phase_name(Phase p) {
  switch (p) {
    case Phase::Access:
      return "access";
    case Phase::HeaderFilter:
      return "header_filter";
    case Phase::Log:
      return "log";
  }
  return "?";
}

const char* run_status_name(RunStatus s) {
  switch (s) {
    case RunStatus::Ok:
      return "ok";
    case RunStatus::Error:
      return "error";
    case RunStatus::Timeout:
      return "timeout";
    case RunStatus::OutOfMemory:
      return "out_of_memory";
  }
  return "?";
}

void RunResult::clear() {
  status = RunStatus::Ok;
  action = Action::Continue;
  response.clear();
  error.clear();
  traceback.clear();
  instructions = 0;
  elapsed = std::chrono::nanoseconds(0);
}

int exit_run(lua_State* L) {
  Sandbox* sb = sandbox_of(L);
  if (sb->run != nullptr && L == sb->run->co && lua_isyieldable(L)) {
    sb->run->abort = Abort::Exit;
    return lua_yield(L, 0);
  }
  abort_run(L, Abort::Exit);
}

void abort_run(lua_State* L, Abort why) {
  Sandbox* sb = sandbox_of(L);
  if (sb->run) sb->run->abort = why;
  switch (why) {
    case Abort::Exit:
      lua_pushlightuserdata(L, &kExitSentinel);
      break;
    case Abort::OutOfMemory:
      lua_pushlstring(L, kMemoryMessage, sizeof(kMemoryMessage) - 1);
      break;
    default:
      lua_pushlstring(L, kTimeoutMessage, sizeof(kTimeoutMessage) - 1);
  }
  lua_error(L);
  std::abort();  // not reached: lua_error does not return
}

void charge(lua_State* L, uint64_t units) {
  Sandbox* sb = sandbox_of(L);
  RunCtx* r = sb->run;
  if (r == nullptr) return;
  r->instructions += units;
  r->work_since_clock += static_cast<uint32_t>(units > 1u << 30 ? 1u << 30 : units);
  if (r->instructions > r->instruction_budget) abort_run(L, Abort::Timeout);
  if (r->work_since_clock >= 4096) {
    r->work_since_clock = 0;
    if (Clock::now() >= r->deadline) abort_run(L, Abort::Timeout);
  }
}

void check_cstack(lua_State* L) {
  Sandbox* sb = sandbox_of(L);
  RunCtx* r = sb->run;
  if (r == nullptr || r->cstack_base == nullptr) return;
  char probe = 0;
  const char* here = &probe;
  // Stacks grow down on every platform we build for.
  if (here<r->cstack_base&& static_cast<size_t>(r->cstack_base - here)> sb->limits.c_stack_bytes) {
    luaL_error(L, "C stack overflow (recursion through C functions too deep)");
  }
}

RunCtx* current_run(lua_State* L, const char* what) {
  Sandbox* sb = sandbox_of(L);
  if (sb->run == nullptr || sb->run->loading || sb->run->req == nullptr) {
    luaL_error(L, "%s is only available while a request runs", what);
  }
  return sb->run;
}

bool eq_nocase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = char(x + 32);
    if (y >= 'A' && y <= 'Z') y = char(y + 32);
    if (x != y) return false;
  }
  return true;
}

std::string header_name_from_key(std::string_view key) {
  std::string s(key);
  for (char& c : s) {
    if (c == '_') c = '-';
  }
  return s;
}

// --- Sandbox -----------------------------------------------------------------------------------

Sandbox::~Sandbox() {
  self.reset();
  if (L) lua_close(L);
}

void Sandbox::release_ctx(int ref) {
  if (L && ref != LUA_NOREF && ref != LUA_REFNIL) luaL_unref(L, LUA_REGISTRYINDEX, ref);
}

void Sandbox::bind_ctx(LuaExchangeCtx* c) {
  // A context belongs to one tenant: used with another, it starts over.
  std::shared_ptr<Sandbox*> owner = c->tenant_.lock();
  if (owner != self) {
    c->reset();
    c->tenant_ = self;
  }
}

void Sandbox::push_ctx(lua_State* Ls) {
  RunCtx* r = run;
  int* slot = &r->temp_ctx_ref;
  if (r->ectx) {
    bind_ctx(r->ectx);
    slot = &r->ectx->ref_;
  }
  if (*slot == LUA_NOREF) {
    lua_newtable(Ls);
    lua_pushvalue(Ls, -1);
    *slot = luaL_ref(Ls, LUA_REGISTRYINDEX);
    return;
  }
  lua_rawgeti(Ls, LUA_REGISTRYINDEX, *slot);
}

void Sandbox::set_ctx(lua_State* Ls, int idx) {
  RunCtx* r = run;
  int* slot = &r->temp_ctx_ref;
  if (r->ectx) {
    bind_ctx(r->ectx);
    slot = &r->ectx->ref_;
  }
  lua_pushvalue(Ls, idx);
  int ref = luaL_ref(Ls, LUA_REGISTRYINDEX);
  release_ctx(*slot);
  *slot = ref;
}

LuaExchangeCtx& LuaExchangeCtx::operator=(LuaExchangeCtx&& o) noexcept {
  if (this != &o) {
    reset();
    tenant_ = std::move(o.tenant_);
    ref_ = o.ref_;
    o.ref_ = kNoRef;
  }
  return *this;
}

void LuaExchangeCtx::reset() {
  if (ref_ != kNoRef) {
    if (std::shared_ptr<Sandbox*> owner = tenant_.lock()) (*owner)->release_ctx(ref_);
  }
  tenant_.reset();
  ref_ = kNoRef;
}

// --- LuaScript ---------------------------------------------------------------------------------

LuaScript::CompileResult LuaScript::compile(std::string name, std::string source,
                                            const LuaLimits& limits) {
  auto script = std::shared_ptr<LuaScript>(new LuaScript());
  script->name_ = std::move(name);
  script->source_ = std::move(source);
  script->version_ = sha256_hex(script->source_).substr(0, 12);
  return finish(std::move(script), limits);
}

LuaScript::CompileResult LuaScript::compile_phases(std::array<LuaSource, kPhaseCount> files,
                                                   const LuaLimits& limits) {
  auto script = std::shared_ptr<LuaScript>(new LuaScript());
  script->per_phase_ = true;
  std::string all;
  for (size_t i = 0; i < kPhaseCount; ++i) {
    if (files[i].name.empty()) continue;
    if (!script->name_.empty()) script->name_ += ", ";
    script->name_ += files[i].name;
    // Phase name and length first: moving code between phases changes the version.
    all += phase_name(static_cast<Phase>(i));
    all += ' ' + std::to_string(files[i].text.size()) + '\n';
    all += files[i].text;
  }
  if (script->name_.empty()) {
    CompileResult res;
    res.error = "no phase file given (access, header_filter or log)";
    return res;
  }
  script->version_ = sha256_hex(all).substr(0, 12);
  script->phase_files_ = std::move(files);
  return finish(std::move(script), limits);
}

LuaScript::CompileResult LuaScript::finish(std::shared_ptr<LuaScript> script,
                                           const LuaLimits& limits) {
  CompileResult res;
  // Instantiate once in a throwaway sandbox: syntax, top level and shape are checked here, at
  // config load, so a worker never meets a script that cannot load.
  Sandbox sb;
  sb.script = script;
  sb.limits = limits;
  std::string err = instantiate(&sb);
  if (!err.empty()) {
    res.error = std::move(err);
    return res;
  }
  for (size_t i = 0; i < kPhaseCount; ++i) script->phases_[i] = sb.phase_ref[i] != LUA_NOREF;
  res.script = std::move(script);
  return res;
}

// --- LuaTenant ---------------------------------------------------------------------------------

LuaTenant::LuaTenant(std::unique_ptr<Sandbox> sb) : sb_(std::move(sb)) {}
LuaTenant::~LuaTenant() = default;

std::unique_ptr<LuaTenant> LuaTenant::create(std::shared_ptr<const LuaScript> script,
                                             TenantOptions options, std::string* error) {
  auto sb = std::make_unique<Sandbox>();
  sb->script = std::move(script);
  sb->tenant = std::move(options.tenant);
  sb->limits = options.limits;
  sb->dicts = options.dicts;
  sb->log = std::move(options.log);
  std::string err = instantiate(sb.get());
  if (!err.empty()) {
    if (error) *error = std::move(err);
    return nullptr;
  }
  return std::unique_ptr<LuaTenant>(new LuaTenant(std::move(sb)));
}

bool LuaTenant::has_phase(Phase p) const {
  return sb_->phase_ref[static_cast<size_t>(p)] != LUA_NOREF;
}
uint32_t LuaTenant::consecutive_failures() const { return sb_->consecutive_failures; }
uint64_t LuaTenant::total_runs() const { return sb_->total_runs; }
uint64_t LuaTenant::total_failures() const { return sb_->total_failures; }
size_t LuaTenant::memory_used() const { return sb_->mem_used; }
void LuaTenant::collect_garbage() {
  if (sb_->run == nullptr) lua_gc(sb_->L, LUA_GCCOLLECT, 0);
}
const LuaScript& LuaTenant::script() const { return *sb_->script; }
const std::string& LuaTenant::tenant() const { return sb_->tenant; }

void LuaTenant::run(Phase phase, LuaRequest& req, LuaExchangeCtx* ctx, RunResult& out) {
  out.clear();
  Sandbox* sb = sb_.get();
  int fref = sb->phase_ref[static_cast<size_t>(phase)];
  if (fref == LUA_NOREF) return;
  lua_State* L = sb->L;

  RunCtx r;
  r.phase = phase;
  r.req = &req;
  r.ectx = ctx;
  r.out = &out;
  char base = 0;
  r.cstack_base = &base;
  r.start = Clock::now();
  r.deadline = r.start + sb->limits.cpu_time;
  r.instruction_budget = sb->limits.instructions;
  sb->run = &r;
  sb->mem_failed = false;
  ++sb->total_runs;
  lua_sethook(L, count_hook, LUA_MASKCOUNT, sb->limits.hook_interval);  // resets the count

  int coref = LUA_NOREF;
  if (sb->coroutines.empty() && lua_cpcall(L, new_runner_threads, nullptr) != 0) lua_pop(L, 1);
  if (!sb->coroutines.empty()) {
    coref = sb->coroutines.back();
    sb->coroutines.pop_back();
  }
  bool ours = false;
  int st = LUA_ERRMEM;
  lua_State* co = nullptr;
  if (coref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, coref);
    co = lua_tothread(L, -1);
    lua_pop(L, 1);
    r.co = co;
    lua_rawgeti(co, LUA_REGISTRYINDEX, fref);
    st = lua_resume(co, 1);
    ours = st == LUA_YIELD && lua_gettop(co) == 3 && lua_touserdata(co, 1) == &kRunnerMarker;
  } else if (r.abort == Abort::None) {
    r.abort = Abort::OutOfMemory;
  }

  if (r.abort == Abort::Timeout) {
    out.status = RunStatus::Timeout;
    out.error = timeout_text(sb->limits);
  } else if (r.abort == Abort::OutOfMemory) {
    out.status = RunStatus::OutOfMemory;
    out.error = memory_text(sb->limits);
  } else if (r.abort == Abort::Exit) {
    out.status = RunStatus::Ok;
  } else if (ours && lua_toboolean(co, 2)) {
    out.status = RunStatus::Ok;
  } else if (ours) {
    out.status = RunStatus::Error;
    out.error = message_of(co, 3);
  } else if (st == LUA_YIELD) {
    out.status = RunStatus::Error;
    out.error = "coroutine.yield() from a phase handler is not supported";
  } else {
    out.status = RunStatus::Error;
    out.error = co ? message_of(co, -1) : std::string("cannot start the run");
  }
  if (coref != LUA_NOREF) {
    if (ours && sb->coroutines.size() < kMaxIdleCoroutines) {
      lua_settop(co, 0);
      sb->coroutines.push_back(coref);
    } else {
      luaL_unref(L, LUA_REGISTRYINDEX, coref);  // dead or suspended in the script: dropped
    }
  }

  if (out.status == RunStatus::Ok && phase == Phase::Access && out.action == Action::Continue &&
      (!out.response.body.empty() || out.response.status >= 200)) {
    // Output without ngx.exit still finishes the request, as content would in nginx.
    out.action = Action::Respond;
    if (out.response.status == 0) out.response.status = 200;
  }
  if (out.status == RunStatus::OutOfMemory && out.traceback.empty() && r.near[0] != '\0') {
    out.traceback =
        std::string("stack traceback unavailable (the allocator failed); near ") + r.near;
  }
  if (out.status != RunStatus::Ok) {
    out.action = Action::Continue;
    ++sb->consecutive_failures;
    ++sb->total_failures;
  } else {
    sb->consecutive_failures = 0;
  }
  out.instructions = r.instructions;
  sb->release_ctx(r.temp_ctx_ref);
  sb->run = nullptr;
  if (out.status == RunStatus::OutOfMemory) lua_gc(L, LUA_GCCOLLECT, 0);
  set_gc_pause(sb);
  out.elapsed = Clock::now() - r.start;
}

}  // namespace parapet::lua
