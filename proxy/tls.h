// TLS termination over memory BIOs, in the worker's loop (no blocking call anywhere).
//
// TlsContexts is built once per config snapshot, off the hot path, and shared read-only by all
// workers: one SSL_CTX per tenant certificate (TLS 1.2 and 1.3 only, Mozilla "intermediate"
// ciphers, no renegotiation, no compression, ALPN http/1.1, SSL_MODE_RELEASE_BUFFERS so idle
// connections give their record buffers back). The ClientHello callback picks the context by
// the SNI's exact name, then the longest "*." wildcard; without SNI a listener serves the
// default (first) certificate or refuses the handshake.
//
// TlsConn is one connection's state: the SSL object with two memory BIOs (or, first, parapet's
// own TLS 1.3 handshake on listeners without session tickets: proxy/tls13_server.h). Ciphertext
// read from the socket goes into `rbio`; plaintext comes out of SSL_read; plaintext written with
// SSL_write leaves as ciphertext through `wbio`, which the Outbox drains to the socket.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/config.h"
#include "proxy/tls13_server.h"
#include "proxy/tls_records.h"

namespace parapet {

class TlsContexts {
 public:
  // The server contexts of one set of listener settings: one per tenant with certificates
  // (ctxs[0], the first, is the default certificate), found by SNI.
  struct ServerSet {
    ServerSet() = default;
    ServerSet(const ServerSet&) = delete;
    ServerSet& operator=(const ServerSet&) = delete;
    ~ServerSet();
    SSL_CTX* find(std::string_view name) const;  // exact name, then the longest "*." wildcard
    std::vector<SSL_CTX*> ctxs;
    std::unordered_map<std::string, SSL_CTX*> exact, wildcard;  // wildcard key: ".example.com"
    // parapet's own TLS 1.3 handshake (proxy/tls13_server.h): on for listeners without
    // session tickets, for the tenants whose context has an identity it can serve.
    bool fast_on = false;
    Tls13Listener fast;
    std::unordered_map<const SSL_CTX*, std::unique_ptr<Tls13Identity>> fast_ids;
  };

  // Loads and checks every certificate of `cfg`; nullptr and errors ("file:line:col: reason")
  // when one is missing, unreadable, expired, or does not match its key.
  static std::shared_ptr<const TlsContexts> build(const config::Config& cfg,
                                                  std::vector<std::string>* errors);
  ~TlsContexts();
  bool empty() const { return sets_.empty() || sets_[0]->ctxs.empty(); }
  // A server-side SSL for a new connection on listener `listener` (its name: the listener's
  // tls settings apply); nullptr if no certificate exists.
  SSL* new_ssl(std::string_view listener, bool reject_no_sni) const;
  // The settings set of listener `listener`, and an SSL from it (as new_ssl).
  const ServerSet* server_set_of(std::string_view listener) const;
  static SSL* new_ssl(const ServerSet* set, bool reject_no_sni);
  // Client context for TLS to origin `origin` of tenant `tenant`, or nullptr when that origin
  // has no https:// server. Owned here; holders that outlive the snapshot take a reference.
  SSL_CTX* origin_ctx(size_t tenant, size_t origin) const;
  // The tenant whose certificate context `ctx` is ("" for a context not built here).
  const std::string& tenant_of(const SSL_CTX* ctx) const;

 private:
  static int on_client_hello(SSL* ssl, int* alert, void* arg);  // arg: the ServerSet
  static int on_servername(SSL* ssl, int* alert, void* arg);
  std::unique_ptr<ServerSet> server_set(const config::Config& cfg,
                                        const config::ListenerTls& settings,
                                        std::vector<std::string>* errors);
  // A server context for `tenant`'s certificates with `settings`, in `set`; nullptr and
  // errors if one of its files is unusable.
  SSL_CTX* server_ctx(const config::Tenant& tenant, const config::ListenerTls& settings,
                      const ServerSet* set, std::vector<std::string>* errors,
                      std::unique_ptr<Tls13Identity>* fast_id);
  static const Tls13Identity* fast_pick(const void* set, std::string_view name);

  std::vector<std::unique_ptr<ServerSet>> sets_;  // sets_[0]: the default settings
  std::unordered_map<std::string, const ServerSet*> listener_set_;  // listeners with their own
  std::vector<std::vector<SSL_CTX*>> origin_ctxs_;                  // [tenant][origin]
  std::unordered_map<const SSL_CTX*, std::string> tenant_;          // context -> tenant name
};

// Per-connection TLS state: OpenSSL with two memory BIOs for the handshake. A client
// connection then hands its records to TlsRecords and frees the SSL (finish_handshake());
// an origin connection keeps its SSL (it needs the sessions the server sends later).
struct TlsConn {
  explicit TlsConn(SSL* s);  // s may be null (parapet's own handshake first): see attach()
  void attach(SSL* s);
  ~TlsConn();
  TlsConn(const TlsConn&) = delete;
  TlsConn& operator=(const TlsConn&) = delete;

  // Ciphertext waits to be read: in the read BIO, or buffered inside the SSL. The read loops
  // stop when there is none instead of calling SSL_read once more only to get WANT_READ.
  bool has_input() const { return BIO_ctrl_pending(rbio) > 0 || SSL_has_pending(ssl) == 1; }
  // Records waiting in the write BIO (TLS 1.3 session tickets right after the handshake).
  uint64_t pending_records() const;
  // Server side, the handshake just completed and its output was flushed: keeps what it
  // settled (version, cipher, SNI, resumption, client certificate) and, when TlsRecords can
  // take over (`written`: records already sent under the application keys), frees the SSL
  // and appends the ciphertext left in the read BIO to *leftover. False: the SSL stays.
  bool finish_handshake(uint64_t written, std::string* leftover);

  SSL* ssl;   // null once `records` took over
  BIO* rbio;  // ciphertext in (owned by ssl)
  BIO* wbio;  // ciphertext out (owned by ssl)
  bool handshake_done = false;
  bool resumed = false;
  bool client_cert_ok = false;  // a client certificate was presented and verified
  // The tenant whose context completed the handshake: its certificate was served and its
  // client_ca verified the client's certificate. A verified client certificate only counts for
  // requests to that tenant (without SNI it is the default tenant's, whatever the Host says).
  std::string cert_tenant;
  const char* version = "";  // libssl's static names, valid after the SSL is gone
  const char* cipher = "";
  std::string sni;
  // Filled by the keylog callback during the handshake (TLS 1.3 secrets); in use once ssl is
  // null.
  std::unique_ptr<TlsRecords> records;
  // parapet's own handshake, while it runs (ssl is null then, until it declines: the SSL is
  // made from `set` and gets the bytes).
  std::unique_ptr<Tls13Server> fast;
  const TlsContexts::ServerSet* set = nullptr;
  bool reject_no_sni = false;
  // Keeps the contexts (and the SNI callback's data) alive during the handshake.
  std::shared_ptr<const TlsContexts> ctx;
};

// The last session an origin server gave us (TLS 1.3 tickets arrive after the handshake, so
// the client context's new-session callback fills it), for resuming the next connection.
// One per server per worker: only that worker's loop touches it.
struct TlsSessionSlot {
  TlsSessionSlot() = default;
  TlsSessionSlot(const TlsSessionSlot&) = delete;
  TlsSessionSlot& operator=(const TlsSessionSlot&) = delete;
  ~TlsSessionSlot() { reset(); }
  void reset(SSL_SESSION* s = nullptr) {
    if (session != nullptr) SSL_SESSION_free(session);
    session = s;
  }
  SSL_SESSION* session = nullptr;
};

// A client-side SSL to an origin server: SNI and certificate name `name` (an IP literal is
// checked against the certificate's IP addresses and sends no SNI), resuming `slot`'s session
// and storing the sessions the server issues there. `slot` must outlive the SSL's callbacks.
SSL* tls_origin_ssl(SSL_CTX* ctx, const std::string& name, TlsSessionSlot* slot);

// Session ticket keys, one set per process, shared by every worker and every certificate
// context (also across reloads), so a ticket issued by one worker resumes on any other.
// rotate() makes a new current key and keeps the previous two for decryption (tickets are
// accepted for up to three rotation periods, renewed when made with an older key).
void tls_rotate_ticket_keys();
// The keys as bytes, newest first (for a binary upgrade to hand over), and back: import
// replaces the keys and returns false (changing nothing) on a malformed blob.
std::string tls_export_ticket_keys();
bool tls_import_ticket_keys(std::string_view blob);

// Error text of the OpenSSL error queue (and clears it).
std::string tls_error_text();

}  // namespace parapet
