// The tenant Lua sandbox: one LuaJIT state per tenant per worker thread, with a memory cap, a
// CPU budget per run and an OpenResty-compatible subset of the ngx API over an abstract request
// (LuaRequest). docs/lua.md is the user-facing description; this header is the proxy's contract.
//
// Lifetimes (STYLE.md habit 3 and 10):
//   LuaScript      compiled at config load, immutable, shared by all workers (source + version).
//   LuaTenant      one per tenant per worker thread; owns the lua_State; used only from that
//                  thread. Created from a LuaScript, it loads the source into its own state.
//   LuaExchangeCtx one per request (exchange); holds that request's ngx.ctx table so that the
//                  access, header_filter and log runs of the same request share it. It must be
//                  destroyed on the tenant's thread, before the tenant.
//   LuaRequest     implemented by the proxy (and by a fake in tests); borrowed for one run only.
//
// A run never throws and never crashes the process on tenant input: it returns a RunResult whose
// status is Ok, Error, Timeout (CPU budget) or OutOfMemory, plus what the script decided.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct lua_State;

namespace parapet::lua {

class SharedDictStore;

enum class Phase : uint8_t { Access, HeaderFilter, Log };
inline constexpr size_t kPhaseCount = 3;
const char* phase_name(Phase p);  // "access", "header_filter", "log"

// nginx's log levels, as ngx.ERR etc. expose them.
enum LogLevel : int {
  kLogStderr = 0,
  kLogEmerg = 1,
  kLogAlert = 2,
  kLogCrit = 3,
  kLogErr = 4,
  kLogWarn = 5,
  kLogNotice = 6,
  kLogInfo = 7,
  kLogDebug = 8,
};

struct HeaderView {
  std::string_view name;
  std::string_view value;
};

// The request as a script sees it. Implemented by the proxy per exchange. Every call happens on
// the tenant's worker thread during LuaTenant::run; returned views need only stay valid until the
// next call on the same object. Header names are compared case-insensitively by the sandbox;
// implementations get them as the script wrote them.
class LuaRequest {
 public:
  virtual ~LuaRequest() = default;

  // Request line and connection ($request_method, $uri, $request_uri, $args, $scheme, $host,
  // $remote_addr). uri() is the path without the query; args() the query without '?'.
  virtual std::string_view method() = 0;
  virtual std::string_view uri() = 0;
  virtual std::string_view request_uri() = 0;
  virtual std::string_view args() = 0;
  virtual std::string_view scheme() = 0;
  virtual std::string_view host() = 0;
  virtual std::string_view remote_addr() = 0;

  // Request headers in wire order. set_request_header replaces every header of that name with
  // the given values (none: removes them). Only called in the access phase.
  virtual size_t request_header_count() = 0;
  virtual HeaderView request_header(size_t i) = 0;
  virtual void set_request_header(std::string_view name,
                                  std::span<const std::string_view> values) = 0;
  // ngx.req.set_uri / set_uri_args (access phase). The path is validated by the sandbox (starts
  // with '/', no control characters or spaces); args are already encoded.
  virtual void set_uri(std::string_view path) = 0;
  virtual void set_args(std::string_view args) = 0;

  // The origin's response (header_filter and log phases). set_* only in header_filter.
  // response_status() reflects a status set earlier. set_response_status gets 200..599, and a
  // 204/304 only in place of a 204/304 (the sandbox checks): the origin's body framing holds.
  virtual int response_status() = 0;
  virtual void set_response_status(int status) = 0;
  virtual size_t response_header_count() = 0;
  virtual HeaderView response_header(size_t i) = 0;
  virtual void set_response_header(std::string_view name,
                                   std::span<const std::string_view> values) = 0;

  // Any other ngx.var.NAME (e.g. server_port, request_id). Return false for "nil".
  virtual bool variable(std::string_view name, std::string* out) { return false; }
};

// Where ngx.log and print go. Called on the worker thread during a run; must not block.
using LuaLogSink = std::function<void(int level, std::string_view tenant, std::string_view msg)>;

struct LuaLimits {
  size_t memory_bytes = 32u << 20;           // lua_State allocation cap
  std::chrono::microseconds cpu_time{5000};  // wall-clock budget per run
  uint64_t instructions = 50'000'000;        // VM instructions (+ C work units) per run
  int hook_interval = 1000;                  // instructions between budget checks
  // The GC pause (LUA_GCSETPAUSE) is set after each run from the heap's size: a collection
  // starts once about gc_garbage_bytes of garbage has piled up (a small heap is not marked
  // again after every few requests), but never later than at half the memory cap, and with
  // gc_pause at least (LuaJIT has no emergency GC: near the cap a collection must start early
  // enough to finish before it).
  int gc_pause = 120;
  size_t gc_garbage_bytes = 1u << 20;
  size_t pattern_subject_bytes = 1u << 20;  // string.find/match/gsub, ngx.re.* subjects
  size_t response_body_bytes = 1u << 20;    // ngx.say/print total
  size_t load_source_bytes = 256u << 10;    // load()/loadstring() source size
  int json_max_depth = 64;                  // cjson nesting
  size_t json_max_bytes = 1u << 20;         // cjson.decode input
  size_t c_stack_bytes = 512u << 10;        // C stack a run may use (recursion via C)
};

enum class RunStatus : uint8_t { Ok, Error, Timeout, OutOfMemory };
const char* run_status_name(RunStatus s);  // "ok", "error", "timeout", "out_of_memory"

// What the script decided. Continue: go on to the next phase. Respond (access only): finish the
// request with `response` (ngx.exit(status >= 200), or a body printed with ngx.say/print).
// Redirect (access only): like Respond, with a Location header and a 3xx status.
enum class Action : uint8_t { Continue, Respond, Redirect };

struct LuaResponse {
  int status = 0;  // 0: not set (ngx.status never assigned)
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  void clear() {
    status = 0;
    headers.clear();
    body.clear();
  }
};

struct RunResult {
  RunStatus status = RunStatus::Ok;
  Action action = Action::Continue;
  // Access: the generated response (Respond/Redirect). An empty body with Respond means "the
  // proxy's default page for that status", like nginx after ngx.exit(403).
  LuaResponse response;
  std::string error;          // Error/Timeout/OutOfMemory: "file:line: message" or the limit hit
  std::string traceback;      // Error: "stack traceback:\n\tfile:line: in function ..."
  uint64_t instructions = 0;  // approximate (counted per hook interval)
  std::chrono::nanoseconds elapsed{0};
  bool ok() const { return status == RunStatus::Ok; }
  void clear();
};

// One file of Lua source: its name (for messages: "name:line: ...") and its text.
struct LuaSource {
  std::string name;
  std::string text;
};

// A tenant script compiled at config load, in one of two forms:
//   module   one file whose top level returns {access = fn, header_filter = fn, log = fn};
//            compile() instantiates it once in a throwaway sandbox, so a module that fails at
//            load or does not return a table of phase functions is refused here.
//   phases   OpenResty style, one file per phase (access_by_lua_file etc.): each file's chunk
//            is that phase's handler and runs once per request; compile_phases() syntax-checks
//            every file (nothing runs at load).
// Errors read "name:line: message". Sources are loaded in text mode only.
class LuaScript {
 public:
  struct CompileResult {
    std::shared_ptr<const LuaScript> script;
    std::string error;
    bool ok() const { return script != nullptr; }
  };
  static CompileResult compile(std::string name, std::string source,
                               const LuaLimits& limits = LuaLimits());
  // files[phase]: an empty name means the script has no handler for that phase (at least one
  // must be given).
  static CompileResult compile_phases(std::array<LuaSource, kPhaseCount> files,
                                      const LuaLimits& limits = LuaLimits());

  // The module's file, or the phase files' names joined with ", ".
  const std::string& name() const { return name_; }
  // The module's source ("" for the phases form).
  const std::string& source() const { return source_; }
  // The phases form's file of phase p (empty name: none); empty for a module.
  const LuaSource& phase_source(Phase p) const { return phase_files_[static_cast<size_t>(p)]; }
  bool per_phase_files() const { return per_phase_; }
  // First 12 hex of SHA-256: of the source (module), or of the phase files' texts, each
  // preceded by its phase name (phases).
  const std::string& version() const { return version_; }
  bool has_phase(Phase p) const { return phases_[static_cast<size_t>(p)]; }

 private:
  LuaScript() = default;
  static CompileResult finish(std::shared_ptr<LuaScript> script, const LuaLimits& limits);
  std::string name_, source_, version_;
  std::array<LuaSource, kPhaseCount> phase_files_;
  bool per_phase_ = false;
  bool phases_[kPhaseCount] = {false, false, false};
};

struct Sandbox;
class LuaTenant;

// ngx.ctx of one request. Default-constructed: empty; LuaTenant::run fills it on first use of
// ngx.ctx. Move-only; destroy it on the tenant's thread. Destroying it after its tenant is safe
// (it then releases nothing).
class LuaExchangeCtx {
 public:
  LuaExchangeCtx() = default;
  ~LuaExchangeCtx() { reset(); }
  LuaExchangeCtx(LuaExchangeCtx&& o) noexcept : tenant_(std::move(o.tenant_)), ref_(o.ref_) {
    o.ref_ = kNoRef;
  }
  LuaExchangeCtx& operator=(LuaExchangeCtx&& o) noexcept;
  LuaExchangeCtx(const LuaExchangeCtx&) = delete;
  LuaExchangeCtx& operator=(const LuaExchangeCtx&) = delete;
  void reset();  // releases the table

 private:
  friend struct Sandbox;
  static constexpr int kNoRef = -2;  // LUA_NOREF
  std::weak_ptr<Sandbox*> tenant_;   // expires with the tenant's state
  int ref_ = kNoRef;
};

struct TenantOptions {
  std::string tenant;  // tenant name: scopes ngx.shared and log lines
  LuaLimits limits;
  SharedDictStore* dicts = nullptr;  // ngx.shared; must outlive the LuaTenant (null: none)
  LuaLogSink log;                    // ngx.log / print (null: dropped)
};

class LuaTenant {
 public:
  // Creates the state, loads the script's source into it (text mode) and runs its top level
  // under the limits. On failure returns null and sets *error.
  static std::unique_ptr<LuaTenant> create(std::shared_ptr<const LuaScript> script,
                                           TenantOptions options, std::string* error);
  ~LuaTenant();
  LuaTenant(const LuaTenant&) = delete;
  LuaTenant& operator=(const LuaTenant&) = delete;

  bool has_phase(Phase p) const;
  // Runs the script's handler for `phase` against `req`. `ctx` carries ngx.ctx across the
  // phases of one request (null: a fresh ngx.ctx for this run only). A phase the script does not
  // define returns Ok/Continue without entering Lua. Never throws.
  void run(Phase phase, LuaRequest& req, LuaExchangeCtx* ctx, RunResult& out);
  RunResult run(Phase phase, LuaRequest& req, LuaExchangeCtx* ctx = nullptr) {
    RunResult r;
    run(phase, req, ctx, r);
    return r;
  }

  // Runs that ended in Error/Timeout/OutOfMemory since the last Ok run (the proxy may disable a
  // tenant's script after N), and totals.
  uint32_t consecutive_failures() const;
  uint64_t total_runs() const;
  uint64_t total_failures() const;
  size_t memory_used() const;  // bytes currently allocated by the state
  // A full collection now (between runs). Garbage otherwise waits for the GC pause (see
  // LuaLimits::gc_garbage_bytes).
  void collect_garbage();
  const LuaScript& script() const;
  const std::string& tenant() const;

 private:
  explicit LuaTenant(std::unique_ptr<Sandbox> sb);
  std::unique_ptr<Sandbox> sb_;
};

}  // namespace parapet::lua
