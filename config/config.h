// The validated, immutable configuration of one parapet process.
//
// load() turns a YAML file into a Config or a list of errors, each "file:line:col: reason".
// Nothing in here touches the network or the event loop: the proxy compiles a Config into
// its runtime snapshot (routing tables, pools) after load() succeeded, so a bad file never
// replaces a good one.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace parapet::config {

// A socket address resolved at load time (the hot path never resolves names).
struct Address {
  std::string text;  // as written, for logs: "127.0.0.1:9000"
  std::string host;  // host part without brackets
  uint16_t port = 0;
  bool tls = false;  // "https://": TLS to this server
  sockaddr_storage sa{};
  socklen_t sa_len = 0;
};

// The TLS settings of a listener ("" = parapet's defaults: Mozilla "intermediate" ciphers,
// X25519 then P-256 then P-384, tickets on). They apply to every handshake on the listener,
// whichever tenant's certificate SNI selects.
struct ListenerTls {
  std::string ciphers;       // TLS 1.2 cipher list (OpenSSL syntax)
  std::string ciphersuites;  // TLS 1.3 suites
  std::string curves;        // key exchange groups, e.g. "X25519:P-256"
  bool session_tickets = true;
  std::string where;  // "file:line:col" of the listener's tls, for errors found building it
  bool is_default() const {
    return ciphers.empty() && ciphersuites.empty() && curves.empty() && session_tickets;
  }
};

struct Listener {
  std::string name;
  Address address;
  bool tls = false;
  bool tls_reject_no_sni = false;  // tls.no_sni: reject (else the default certificate)
  ListenerTls tls_settings;
};

struct Certificate {
  std::string cert, key;  // PEM files (chain in cert)
  std::string where;      // "file:line:col" of the entry, for errors found when loading them
};

struct Limits {
  uint32_t max_header_bytes = 16 * 1024;   // request line + headers -> 431
  uint32_t max_header_count = 100;         // -> 431
  uint32_t max_uri_bytes = 8 * 1024;       // -> 414
  uint64_t max_body_bytes = 100ull << 20;  // -> 413; 0 = unlimited
};

struct Timeouts {
  uint32_t client_header_ms = 10'000;  // accept/first byte -> end of head (slowloris)
  uint32_t client_body_ms = 30'000;    // longest gap between two reads of a request body
  uint32_t client_send_ms = 60'000;    // longest stall of a client that does not read its response
  uint32_t keepalive_ms = 60'000;      // idle keep-alive client connection
  uint32_t shutdown_ms = 10'000;       // graceful drain on SIGTERM
};

enum class Balance { RoundRobin, LeastConn, Hash };

// What the consistent hash is computed over.
struct HashKey {
  enum Kind { Uri, ClientIp, Header } kind = Uri;
  std::string header;  // for Header
};

// TLS to an origin's https:// servers.
struct OriginTls {
  std::string ca;           // PEM bundle of trusted CAs ("" = the system's CA store)
  std::string server_name;  // SNI and the name the certificate must carry ("" = the server's host)
  bool verify = true;       // false: accept any certificate (testing only)
  std::string cert, key;    // client certificate and key (PEM), optional
  std::string where;        // "file:line:col" of the origin, for errors found loading the files
};

struct Origin {
  std::string name;
  OriginTls tls;
  std::vector<Address> servers;
  Balance balance = Balance::RoundRobin;
  HashKey hash_key;
  uint32_t connect_timeout_ms = 5'000;
  uint32_t response_timeout_ms = 60'000;
  uint32_t max_idle = 32;  // idle keep-alive connections kept per server per worker
  uint32_t idle_timeout_ms = 60'000;
  uint32_t max_fails = 3;  // consecutive failures before a server rests
  uint32_t fail_timeout_ms = 10'000;
};

struct Route {
  std::string path;  // prefix, starts with '/'
  std::string origin;
  size_t origin_index = 0;  // into Tenant::origins, resolved at load
};

// Where a scalar's value sits in the file, so that an error found inside the value (an
// expression's line:column) is reported at the file's line:column.
struct ScalarPos {
  int line = 0, column = 0;  // 1-based, of the scalar's first character (a quote, a '|')
  // A quoted scalar on one line: the file column of each byte of the value, then of the closing
  // quote (escapes and the quote itself shift them). Empty for other scalars.
  std::vector<int> byte_columns;
  int block_indent = 0;  // a literal block scalar ('|'): the column before its content's lines
  // The file's line:column of 1-based position (line, column) inside the value. Exact for plain
  // one-line, quoted one-line and literal block scalars; otherwise the scalar's line plus the
  // position's line, which may be off for folded or multi-line quoted scalars.
  std::pair<int, int> locate(int value_line, int value_column) const;
};

// A value of an action parameter: a literal, or an expression of the rules language evaluated
// per request (e.g. concat("/v2", http.request.uri.path)).
struct RuleValue {
  std::string value;
  bool expression = false;
  ScalarPos pos;  // for errors found compiling it
};

// A header change of a rewrite action.
struct HeaderRewrite {
  std::string name;
  enum class Op { Set, Add, Remove } op = Op::Set;
  RuleValue value;
};

// What a block answers: the status, and a body (empty: the standard error with reason
// policy.blocked).
struct BlockAnswer {
  uint16_t status = 403;
  std::string content_type = "text/plain";
  std::string body;
};

// One rule of the rules language (filters/): {id, expression, action, action_parameters,
// enabled, description}, in a shared policy or a tenant's own list.
struct RuleConfig {
  enum class Action {
    Block,
    Allow,
    Skip,
    Log,
    Redirect,
    Rewrite,
    SetCacheSettings,
    RateLimit,
    Challenge
  };
  std::string id;
  std::string expression;
  ScalarPos pos;  // of the expression scalar
  std::string description;
  Action action = Action::Block;
  enum class Phase { Request, Response } phase = Phase::Request;
  bool enabled = true;
  bool log_only = false;  // shadow mode: record what it would have done
  // block
  BlockAnswer block;
  // redirect
  uint16_t redirect_status = 302;
  RuleValue target;
  bool preserve_query = false;
  // skip
  std::vector<std::string> skip_rules;  // these ids, for the rest of the request
  bool skip_ruleset = false;            // the rest of this phase's rules ("ruleset: current")
  bool skip_response_phase = false;     // phases: [response]
  bool skip_cache = false;              // products: [cache]
  bool skip_lua = false;                // products: [lua]
  // rewrite
  bool has_path = false, has_query = false;
  RuleValue path, query;
  std::vector<HeaderRewrite> headers;
  // set_cache_settings
  bool cache_bypass = false;
  int64_t cache_ttl_s = -1;
  // rate_limit
  std::vector<std::string> characteristics;  // field expressions whose values make the key
  uint32_t period_s = 60;
  uint32_t requests_per_period = 0;
  uint32_t mitigation_timeout_s = 0;  // 0: blocked for the rest of the period only
  // Requests counted: those matching this expression (value "": those matching the rule's).
  RuleValue counting;
  // challenge
  uint32_t challenge_ttl_s = 1800;  // how long a passed challenge lets the client through
  std::string where;                // "file:line:col" of the rule
};

// A shared policy: an ordered rule list defined once, attached to tenants by name.
struct PolicyConfig {
  std::string name;
  std::vector<RuleConfig> rules;
};

// A tenant's change to a rule of a policy it uses: another action, or disabled.
struct RuleOverride {
  std::string id;
  bool has_enabled = false, enabled = true;
  bool has_action = false;
  RuleConfig::Action action = RuleConfig::Action::Block;
  // action block: its own answer; without one, the rule's if it blocks, else the defaults.
  bool has_block = false;
  BlockAnswer block;
  bool has_log_only = false, log_only = false;
  std::string where;
};

// A named list for `in $name`: IP addresses and CIDRs, or strings.
struct ListConfig {
  std::string name;
  bool ip = true;
  std::vector<std::string> items;  // inline items
  std::string file;                // or a file, one item per line, '#' comments
  std::string where;
};

// One cache rule of a tenant: the first whose conditions all hold decides for the request.
struct CacheRule {
  std::string path;               // path prefix ("" = any)
  std::string bypass_cookie;      // condition: the request has this cookie
  std::string bypass_header;      // condition: the request has this header
  bool bypass = false;            // neither look up nor store
  bool cache_everything = false;  // store any final GET response (no-store still honoured)
  int64_t ttl_s = -1;             // lifetime override, seconds (-1: the origin's)
};

// A tenant's HTTP cache settings (the store itself is process-wide: Config::cache).
struct TenantCache {
  bool enabled = false;
  bool ignore_query = false;
  std::vector<std::string> key_headers;  // request headers whose values join the key
  std::vector<std::string> key_cookies;  // cookies whose values join the key
  bool store_set_cookie = false;
  double heuristic_fraction = 0.1;
  std::vector<std::pair<uint16_t, int64_t>> ttl_by_status;  // status -> seconds
  int64_t stale_if_error_s = 0;  // served stale this long when the origin fails (default)
  std::vector<CacheRule> rules;
};

struct CacheStoreConfig {
  uint64_t max_bytes = 256ull << 20;        // everything stored, all tenants
  uint64_t max_object_bytes = 16ull << 20;  // larger responses pass through
};

// A tenant's Lua script (lua/): phases access, header_filter, log. Either a module (`script`)
// or OpenResty-style files, one per phase (`phase_files`); never both.
struct TenantLua {
  std::string script;           // module file ("" = none)
  std::string phase_files[3];   // access, header_filter, log ("" = none)
  bool fail_open = false;       // a failing access run lets the request through
  uint16_t error_status = 500;  // else the request gets this status
  uint64_t memory_bytes = 32u << 20;
  uint32_t time_us = 5000;             // CPU budget per run
  uint64_t instructions = 50'000'000;  // VM instructions per run
  uint32_t breaker_failures = 5;       // consecutive stopped runs that open the breaker (0: never)
  uint32_t breaker_cooldown_ms = 10'000;  // how long an open breaker skips the script
  bool any() const {
    return !script.empty() || !phase_files[0].empty() || !phase_files[1].empty() ||
           !phase_files[2].empty();
  }
  std::vector<std::pair<std::string, uint64_t>> shared_dicts;  // ngx.shared.NAME, bytes
  std::string where;
};

struct Tenant {
  std::string name;
  TenantCache cache;
  TenantLua lua;
  std::vector<ListConfig> lists;      // for the tenant's own rules, beside the shared lists
  std::vector<std::string> policies;  // shared policies, by name, run first, in this order
  std::vector<RuleOverride> policy_overrides;
  std::vector<RuleConfig> rules;          // the tenant's own rules, after the policies'
  std::vector<std::string> hosts;         // lowercased; "*.example.com" for any subdomain
  std::vector<Certificate> certificates;  // served by SNI for the tenant's hosts
  std::string hsts;            // Strict-Transport-Security value added over TLS ("" = none)
  bool redirect_http = false;  // plain HTTP requests get 308 to https://
  // mTLS: clients must present a certificate signed by client_ca (PEM bundle); without a
  // valid one the handshake fails, or (client_cert_failure: status) requests get 403.
  std::string client_ca;
  bool client_cert_403 = false;
  std::vector<Origin> origins;
  std::vector<Route> routes;  // sorted by path length, longest first
};

struct AccessLogConfig {
  bool enabled = false;
  std::string path;  // a file, or "-" for stdout
  enum Format { Json, Combined } format = Json;
  uint64_t buffer_bytes = 1 << 20;  // per worker; lines beyond are dropped and counted
};

struct Config {
  std::string file;
  unsigned workers = 0;  // 0 = auto (number of cores)
  std::vector<Listener> listeners;
  bool has_admin = false;
  Address admin;
  uint32_t admin_idle_ms = 30'000;  // an admin request must come and be answered within this
  Limits limits;
  Timeouts timeouts;
  AccessLogConfig access_log;
  CacheStoreConfig cache;
  std::vector<ListConfig> lists;
  std::vector<PolicyConfig> policies;
  std::vector<Tenant> tenants;
};

struct LoadResult {
  bool ok() const { return errors.empty(); }
  Config config;
  std::vector<std::string> errors;  // "file:line:col: reason"
};

LoadResult load_file(const std::string& path);
// Same, from text; `name` is used in error messages.
LoadResult load_text(const std::string& text, const std::string& name);

// "64KiB", "256MiB", "1GiB", "512kb" or a plain number of bytes. False on anything else.
bool parse_size(const std::string& text, uint64_t* out);
// "10s", "250ms", "2m", "1h" or a plain number of seconds. False on anything else.
bool parse_duration_ms(const std::string& text, uint64_t* out_ms);
// "host:port", "[v6]:port", optionally prefixed with "http://" or "https://" (port defaults to
// 80 or 443 then). Resolves names (blocking).
bool parse_address(const std::string& text, Address* out, std::string* why);

}  // namespace parapet::config
