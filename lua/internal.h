// Internals shared by the sandbox's translation units (not part of the proxy's contract).
#pragma once

extern "C" {
#include <lauxlib.h>
#include <lua.h>
}

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "lua/sandbox.h"

namespace re2 {
class RE2;
}

namespace parapet::lua {

using Clock = std::chrono::steady_clock;

// Why a run is being unwound. Anything but None is rethrown by the pcall/xpcall/resume wrappers,
// so a script cannot catch its own timeout, memory exhaustion or ngx.exit.
enum class Abort : uint8_t { None, Exit, Timeout, OutOfMemory };

struct RunCtx {
  Phase phase = Phase::Access;
  bool loading = false;  // module top level (no request)
  LuaRequest* req = nullptr;
  LuaExchangeCtx* ectx = nullptr;
  int temp_ctx_ref = LUA_NOREF;  // ngx.ctx when the caller gave no LuaExchangeCtx
  Clock::time_point start{}, deadline{};
  uint64_t instructions = 0, instruction_budget = 0;
  uint32_t work_since_clock = 0;  // C work units since the last clock read
  Abort abort = Abort::None;
  RunResult* out = nullptr;
  const char* cstack_base = nullptr;
  lua_State* co = nullptr;  // the runner coroutine of this run (null at the module top level)
  // "file:line" the budget check last saw while memory was above half the cap (a growing table
  // or string doubles, so the failing allocation comes after that): the position
  // reported for an allocation LuaJIT failed itself (its error handler is not called then).
  char near[96] = {};
};

struct Sandbox {
  lua_State* L = nullptr;
  std::shared_ptr<const LuaScript> script;
  std::string tenant;
  LuaLimits limits;
  SharedDictStore* dicts = nullptr;
  LuaLogSink log;
  size_t mem_used = 0;
  bool mem_failed = false;  // an allocation was refused since the flag was cleared
  RunCtx* run = nullptr;    // the run in progress (or the module load)
  int gc_pause_now = 0;     // the LUA_GCSETPAUSE in effect
  int phase_ref[kPhaseCount] = {LUA_NOREF, LUA_NOREF, LUA_NOREF};
  int runner_ref = LUA_NOREF;
  std::vector<int> coroutines;  // idle runner coroutines (registry refs)
  uint32_t consecutive_failures = 0;
  uint64_t total_runs = 0, total_failures = 0;
  std::unordered_map<std::string, std::unique_ptr<re2::RE2>> regex_cache;
  // LuaExchangeCtx holds a weak_ptr to this: contexts outliving the tenant release nothing.
  std::shared_ptr<Sandbox*> self = std::make_shared<Sandbox*>(this);

  ~Sandbox();
  void release_ctx(int ref);
  void bind_ctx(LuaExchangeCtx* c);
  // Fetches (creating on first use) the table for ngx.ctx and pushes it.
  void push_ctx(lua_State* L);
  void set_ctx(lua_State* L, int idx);
};

// The Sandbox behind any thread of a state (the allocator's userdata).
inline Sandbox* sandbox_of(lua_State* L) {
  void* ud = nullptr;
  lua_getallocf(L, &ud);
  return static_cast<Sandbox*>(ud);
}

// Budget accounting for C functions: charges `units` of work (about one VM instruction each)
// and raises the timeout error when the run's instruction or time budget is spent.
void charge(lua_State* L, uint64_t units);
// Raises "C stack overflow" when the run has used more C stack than allowed (recursion through
// C functions such as gsub callbacks, __tostring, coroutine.wrap).
void check_cstack(lua_State* L);
// Raises the error that stops the run (timeout, memory, ngx.exit) with the run marked.
[[noreturn]] void abort_run(lua_State* L, Abort why);
// Ends the run after ngx.exit / ngx.redirect (return its result from the C function). Called
// by the script in its runner coroutine, it yields that coroutine, which is then dropped and
// never resumed: no error is raised, so LuaJIT does not unwind with the C++ unwinder (several
// microseconds per request, the largest cost of a script that answers with ngx.exit).
// Anywhere else (a coroutine of the script's own, a C boundary, the top level) it raises the
// exit as an error that nothing can catch, as abort_run does.
int exit_run(lua_State* L);
// The run in progress, or raises "no request: NAME is only available while a request runs".
RunCtx* current_run(lua_State* L, const char* what);

// ngx.log/print: the values from `first` on, without metamethods, to the tenant's sink.
int log_values(lua_State* L, int level, int first);

// Library openers (called on the state while building it).
void open_strlib(lua_State* L);  // replaces string.find/match/gmatch/gsub/rep, table.concat
void open_ngx(lua_State* L);     // the ngx table, ngx.re, ngx.shared
void open_cjson(lua_State* L);   // pushes the cjson table

// Helpers shared by the API.
bool eq_nocase(std::string_view a, std::string_view b);
std::string header_name_from_key(std::string_view key);  // "content_type" -> "content-type"

}  // namespace parapet::lua
