#include "proxy/tls.h"

#include <arpa/inet.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cstring>
#include <mutex>

namespace parapet {

namespace {

// Mozilla "intermediate" (TLS 1.2 suites; TLS 1.3 suites are OpenSSL's defaults, all AEAD).
constexpr const char* kCiphers12 =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";
// Key exchange groups unless a listener sets its own.
constexpr const char* kGroups = "X25519:P-256:P-384";

int on_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
            unsigned int inlen, void*) {
  static const unsigned char kHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  unsigned char* sel = nullptr;
  if (SSL_select_next_proto(&sel, outlen, kHttp11, sizeof kHttp11, in, inlen) ==
      OPENSSL_NPN_NEGOTIATED) {
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;  // no common protocol: carry on without ALPN (HTTP/1.1)
}

// The SSL ex_data slot of a connection's TlsConn.
int conn_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

struct TicketKey {
  unsigned char name[16];
  unsigned char aes[32];
  unsigned char hmac[32];
};

class TicketKeys {
 public:
  TicketKeys() { rotate(); }
  void rotate() {
    TicketKey k;
    RAND_bytes(k.name, sizeof k.name);
    RAND_bytes(k.aes, sizeof k.aes);
    RAND_bytes(k.hmac, sizeof k.hmac);
    std::lock_guard<std::mutex> lock(mu_);
    keys_.insert(keys_.begin(), k);
    if (keys_.size() > 3) keys_.pop_back();
  }
  // Returns 0 if no key has this name, 1 for the current key, 2 for an older one.
  int get(const unsigned char* name, TicketKey* out) {
    std::lock_guard<std::mutex> lock(mu_);
    if (name == nullptr) {
      *out = keys_.front();
      return 1;
    }
    for (size_t i = 0; i < keys_.size(); ++i) {
      if (std::memcmp(keys_[i].name, name, sizeof keys_[i].name) == 0) {
        *out = keys_[i];
        return i == 0 ? 1 : 2;
      }
    }
    return 0;
  }
  std::string export_all() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::string(reinterpret_cast<const char*>(keys_.data()),
                       keys_.size() * sizeof(TicketKey));
  }
  bool import_all(std::string_view blob) {
    if (blob.empty() || blob.size() % sizeof(TicketKey) != 0 || blob.size() / sizeof(TicketKey) > 3)
      return false;
    std::vector<TicketKey> keys(blob.size() / sizeof(TicketKey));
    std::memcpy(keys.data(), blob.data(), blob.size());
    std::lock_guard<std::mutex> lock(mu_);
    keys_ = std::move(keys);
    return true;
  }

 private:
  std::mutex mu_;  // taken once per handshake that issues or presents a ticket
  std::vector<TicketKey> keys_;
};

TicketKeys& ticket_keys() {
  static TicketKeys k;
  return k;
}

int on_ticket_key(SSL*, unsigned char key_name[16], unsigned char* iv, EVP_CIPHER_CTX* ctx,
                  EVP_MAC_CTX* hctx, int enc) {
  TicketKey k;
  int found = ticket_keys().get(enc ? nullptr : key_name, &k);
  if (found == 0) return 0;  // unknown key: full handshake
  if (enc) {
    std::memcpy(key_name, k.name, sizeof k.name);
    if (RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1) return -1;
  }
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof k.hmac),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>("SHA256"), 0),
      OSSL_PARAM_construct_end()};
  if (EVP_MAC_CTX_set_params(hctx, params) != 1) return -1;
  // Fetched once: EVP_aes_256_cbc() would make OpenSSL 3 look the cipher up per handshake.
  static const EVP_CIPHER* aes = EVP_CIPHER_fetch(nullptr, "AES-256-CBC", nullptr);
  int ok = enc ? EVP_EncryptInit_ex(ctx, aes, nullptr, k.aes, iv)
               : EVP_DecryptInit_ex(ctx, aes, nullptr, k.aes, iv);
  if (ok != 1) return -1;
  return found;  // 2: decrypted with an older key, issue a fresh ticket
}

// The traffic secrets of a client connection's handshake, for TlsRecords to take over.
void on_keylog(const SSL* ssl, const char* line) {
  auto* t = static_cast<TlsConn*>(SSL_get_ex_data(ssl, conn_index()));
  if (t == nullptr) return;
  if (!t->records) t->records = std::make_unique<TlsRecords>();
  t->records->on_keylog_line(line);
}

// Status mode of mTLS: the handshake completes whatever the client sent; the verify result
// stays recorded (SSL_get_verify_result) and phase_route answers 403 when it is not OK.
int accept_any_client_cert(int, X509_STORE_CTX*) { return 1; }

// A new session from an origin server: keep it (the slot takes our reference) for the next
// connection to that server.
int on_origin_session(SSL* ssl, SSL_SESSION* session) {
  auto* slot = static_cast<TlsSessionSlot*>(SSL_get_app_data(ssl));
  if (slot == nullptr) return 0;
  slot->reset(session);
  return 1;
}

void set_protocols(SSL_CTX* ctx) {
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_cipher_list(ctx, kCiphers12);
  // Mozilla intermediate order for TLS 1.3 (OpenSSL's default puts AES-256 first).
  SSL_CTX_set_ciphersuites(ctx,
                           "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                           "TLS_CHACHA20_POLY1305_SHA256");
  SSL_CTX_set1_groups_list(ctx, kGroups);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
}

// A listener's own cipher lists, groups and ticket setting over the defaults.
bool apply_listener_settings(SSL_CTX* ctx, const config::ListenerTls& s, std::string* why) {
  if (!s.ciphers.empty() && SSL_CTX_set_cipher_list(ctx, s.ciphers.c_str()) != 1) {
    *why = "no usable cipher in tls.ciphers '" + s.ciphers + "'";
  } else if (!s.ciphersuites.empty() &&
             SSL_CTX_set_ciphersuites(ctx, s.ciphersuites.c_str()) != 1) {
    *why = "bad tls.ciphersuites '" + s.ciphersuites + "'";
  } else if (!s.curves.empty() && SSL_CTX_set1_groups_list(ctx, s.curves.c_str()) != 1) {
    *why = "bad tls.curves '" + s.curves + "'";
  } else {
    return true;
  }
  ERR_clear_error();
  return false;
}

// The client context of one origin: protocols as for clients, the origin's trust anchors
// (or the system's), an optional client certificate, and a session callback for resumption.
SSL_CTX* build_origin_ctx(const config::Tenant& tenant, const config::Origin& o,
                          std::vector<std::string>* errors) {
  const std::string who =
      o.tls.where + ": origin '" + o.name + "' of tenant '" + tenant.name + "': ";
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  set_protocols(ctx);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  bool ok = true;
  if (!o.tls.ca.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, o.tls.ca.c_str(), nullptr) != 1) {
      errors->push_back(who + "cannot load tls.ca '" + o.tls.ca + "': " + tls_error_text());
      ok = false;
    }
  } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
    errors->push_back(who + "cannot load the system CA store: " + tls_error_text());
    ok = false;
  }
  SSL_CTX_set_verify(ctx, o.tls.verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
  if (!o.tls.cert.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, o.tls.cert.c_str()) != 1) {
      errors->push_back(who + "cannot load tls.cert '" + o.tls.cert + "': " + tls_error_text());
      ok = false;
    } else if (SSL_CTX_use_PrivateKey_file(ctx, o.tls.key.c_str(), SSL_FILETYPE_PEM) != 1) {
      errors->push_back(who + "cannot load tls.key '" + o.tls.key + "': " + tls_error_text());
      ok = false;
    } else if (SSL_CTX_check_private_key(ctx) != 1) {
      errors->push_back(who + "tls.key '" + o.tls.key + "' does not match tls.cert '" + o.tls.cert +
                        "'");
      ok = false;
    }
  }
  static const unsigned char kAlpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  SSL_CTX_set_alpn_protos(ctx, kAlpn, sizeof kAlpn);
  // Sessions live in each server's slot (per worker), not in OpenSSL's shared cache.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx, on_origin_session);
  ERR_clear_error();
  if (!ok) {
    SSL_CTX_free(ctx);
    return nullptr;
  }
  return ctx;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

}  // namespace

std::string tls_error_text() {
  std::string out;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown TLS error" : out;
}

std::shared_ptr<const TlsContexts> TlsContexts::build(const config::Config& cfg,
                                                      std::vector<std::string>* errors) {
  auto t = std::shared_ptr<TlsContexts>(new TlsContexts());
  for (const config::Tenant& tenant : cfg.tenants) {
    std::vector<SSL_CTX*>& octx = t->origin_ctxs_.emplace_back();
    for (const config::Origin& o : tenant.origins) {
      bool any_tls = false;
      for (const config::Address& a : o.servers) any_tls |= a.tls;
      octx.push_back(any_tls ? build_origin_ctx(tenant, o, errors) : nullptr);
    }
  }
  t->sets_.push_back(t->server_set(cfg, config::ListenerTls{}, errors));
  // A listener with settings of its own gets contexts of its own for every tenant: OpenSSL
  // reads the cipher lists from the SSL's current context, which SNI switches, so settings
  // applied to one starting context would not hold for the other tenants.
  for (const config::Listener& l : cfg.listeners) {
    if (!l.tls || l.tls_settings.is_default()) continue;
    SSL_CTX* probe = SSL_CTX_new(TLS_server_method());
    std::string why;
    const bool usable = apply_listener_settings(probe, l.tls_settings, &why);
    SSL_CTX_free(probe);
    if (!usable) {
      errors->push_back(l.tls_settings.where + ": listener tls: " + why);
      continue;
    }
    t->sets_.push_back(t->server_set(cfg, l.tls_settings, errors));
    t->listener_set_.emplace(l.name, t->sets_.back().get());
  }
  if (!errors->empty()) return nullptr;
  return t;
}

std::unique_ptr<TlsContexts::ServerSet> TlsContexts::server_set(const config::Config& cfg,
                                                                const config::ListenerTls& settings,
                                                                std::vector<std::string>* errors) {
  auto set = std::make_unique<ServerSet>();
  for (const config::Tenant& tenant : cfg.tenants) {
    if (tenant.certificates.empty()) continue;
    std::unique_ptr<Tls13Identity> fast_id;
    SSL_CTX* ctx = server_ctx(tenant, settings, set.get(), errors, &fast_id);
    if (ctx == nullptr) continue;
    set->ctxs.push_back(ctx);
    if (fast_id != nullptr && tenant.client_ca.empty())
      set->fast_ids.emplace(ctx, std::move(fast_id));
    tenant_.emplace(ctx, tenant.name);
    for (const std::string& h : tenant.hosts) {
      std::string host = lower(h);
      if (host.rfind("*.", 0) == 0)
        set->wildcard.emplace(host.substr(1), ctx);
      else
        set->exact.emplace(host, ctx);
    }
  }
  // parapet's own TLS 1.3 handshake issues no session tickets: it serves listeners that have
  // them off, where every connection is a full handshake.
  if (!settings.session_tickets && !set->ctxs.empty() &&
      tls13_group_ids(settings.curves.empty() ? kGroups : settings.curves, &set->fast.groups)) {
    STACK_OF(SSL_CIPHER)* ciphers = SSL_CTX_get_ciphers(set->ctxs[0]);
    for (int i = 0; i < sk_SSL_CIPHER_num(ciphers); ++i) {
      const uint16_t id = SSL_CIPHER_get_protocol_id(sk_SSL_CIPHER_value(ciphers, i));
      if (id >> 8 == 0x13) set->fast.suites.push_back(id);
    }
    set->fast.pick = fast_pick;
    set->fast.arg = set.get();
    set->fast_on = !set->fast.suites.empty();
  }
  return set;
}

TlsContexts::ServerSet::~ServerSet() {
  for (SSL_CTX* c : ctxs) SSL_CTX_free(c);
}

SSL_CTX* TlsContexts::server_ctx(const config::Tenant& tenant, const config::ListenerTls& settings,
                                 const ServerSet* set, std::vector<std::string>* errors,
                                 std::unique_ptr<Tls13Identity>* fast_id) {
  // One context per tenant holding all its pairs (one per key type): OpenSSL serves the
  // ECDSA certificate to clients that support it and the RSA one to the others.
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  bool ok = true;
  for (const config::Certificate& c : tenant.certificates) {
    auto fail = [&](const std::string& why) {
      errors->push_back(c.where + ": certificate of tenant '" + tenant.name + "': " + why);
      ok = false;
    };
    if (SSL_CTX_use_certificate_chain_file(ctx, c.cert.c_str()) != 1) {
      fail("cannot load cert '" + c.cert + "': " + tls_error_text());
      continue;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, c.key.c_str(), SSL_FILETYPE_PEM) != 1) {
      fail("cannot load key '" + c.key + "': " + tls_error_text());
      continue;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      fail("key '" + c.key + "' does not match cert '" + c.cert + "'");
      continue;
    }
    X509* x = SSL_CTX_get0_certificate(ctx);  // the pair just loaded
    if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0) {
      fail("cert '" + c.cert + "' has expired");
    } else if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0) {
      fail("cert '" + c.cert + "' is not valid yet");
    } else if (EVP_PKEY* key = SSL_CTX_get0_privatekey(ctx); EVP_PKEY_is_a(key, "EC")) {
      // A later EC pair takes the EC slot in OpenSSL: the same here (null if not P-256).
      STACK_OF(X509)* chain = nullptr;
      SSL_CTX_get0_chain_certs(ctx, &chain);
      *fast_id = Tls13Identity::make(x, chain, key, ctx);
    }
  }
  if (ok && !tenant.client_ca.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, tenant.client_ca.c_str(), nullptr) != 1) {
      errors->push_back(tenant.certificates[0].where + ": tenant '" + tenant.name +
                        "': cannot load client_ca '" + tenant.client_ca + "': " + tls_error_text());
      ok = false;
    } else {
      STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(tenant.client_ca.c_str());
      if (names != nullptr) SSL_CTX_set_client_CA_list(ctx, names);
      // Handshake mode: no valid client certificate, no handshake. Status mode: the
      // handshake completes and requests are answered 403 (proxy/phase_route.cc).
      SSL_CTX_set_verify(ctx,
                         tenant.client_cert_403 ? SSL_VERIFY_PEER
                                                : SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                         tenant.client_cert_403 ? accept_any_client_cert : nullptr);
      SSL_CTX_set_verify_depth(ctx, 4);
    }
  }
  if (ok) {
    set_protocols(ctx);
    std::string why;
    if (!apply_listener_settings(ctx, settings, &why)) {
      errors->push_back(settings.where + ": listener tls: " + why);
      ok = false;
    }
  }
  if (!ok) {
    SSL_CTX_free(ctx);
    return nullptr;
  }
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_dh_auto(ctx, 1);  // the DHE-RSA suites of the intermediate profile (ffdhe2048)
  // The chain sent is the one in the certificate file. Without this OpenSSL builds a chain
  // from the context's trust store on every handshake (an X509_STORE_CTX and a verification
  // per connection), and with client_ca that store holds the client CAs, not ours.
  SSL_CTX_set_mode(ctx, SSL_MODE_NO_AUTO_CHAIN);
  // Resumption by stateless tickets only (keys shared by all workers, rotated): no
  // per-process session cache, so a handshake adds no state on the server.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  // A session (ticket) resumes only in the context that made it: a ticket of one tenant
  // presented under another tenant's SNI gets a full handshake, so a client certificate
  // verified against one tenant's client_ca is never carried into another tenant. With
  // client verification on, OpenSSL also refuses TLS 1.2 resumption without a context.
  unsigned char sid[SHA256_DIGEST_LENGTH];
  const std::string sid_src = tenant.name + '\0' + tenant.client_ca;
  SHA256(reinterpret_cast<const unsigned char*>(sid_src.data()), sid_src.size(), sid);
  SSL_CTX_set_session_id_context(ctx, sid, SSL_MAX_SID_CTX_LENGTH);
  if (settings.session_tickets) {
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket_key);
  } else {
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 0);
  }
  SSL_CTX_set_alpn_select_cb(ctx, on_alpn, nullptr);
  SSL_CTX_set_keylog_callback(ctx, on_keylog);
  SSL_CTX_set_client_hello_cb(ctx, on_client_hello, const_cast<ServerSet*>(set));
  SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
  return ctx;
}

TlsContexts::~TlsContexts() {
  for (const auto& per_tenant : origin_ctxs_) {
    for (SSL_CTX* c : per_tenant) SSL_CTX_free(c);  // null-safe
  }
}

SSL_CTX* TlsContexts::origin_ctx(size_t tenant, size_t origin) const {
  if (tenant >= origin_ctxs_.size() || origin >= origin_ctxs_[tenant].size()) return nullptr;
  return origin_ctxs_[tenant][origin];
}

const std::string& TlsContexts::tenant_of(const SSL_CTX* ctx) const {
  static const std::string kNone;
  auto it = tenant_.find(ctx);
  return it == tenant_.end() ? kNone : it->second;
}

SSL* tls_origin_ssl(SSL_CTX* ctx, const std::string& name, TlsSessionSlot* slot) {
  SSL* ssl = SSL_new(ctx);
  if (ssl == nullptr) return nullptr;
  SSL_set_connect_state(ssl);
  in6_addr ip6;
  in_addr ip4;
  const bool is_ip =
      inet_pton(AF_INET, name.c_str(), &ip4) == 1 || inet_pton(AF_INET6, name.c_str(), &ip6) == 1;
  if (is_ip) {
    // RFC 6066: no SNI for an address; the certificate must carry it as an IP SAN.
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl, name.c_str());
    SSL_set1_host(ssl, name.c_str());
  }
  SSL_set_app_data(ssl, slot);
  if (slot->session != nullptr) SSL_set_session(ssl, slot->session);
  return ssl;
}

SSL_CTX* TlsContexts::ServerSet::find(std::string_view name) const {
  std::string host = lower(std::string(name));
  if (auto it = exact.find(host); it != exact.end()) return it->second;
  for (size_t dot = host.find('.'); dot != std::string::npos; dot = host.find('.', dot + 1)) {
    if (auto it = wildcard.find(host.substr(dot)); it != wildcard.end()) return it->second;
  }
  return nullptr;
}

namespace {

// The host_name of a server_name extension body (RFC 6066 section 3); false when malformed.
// An extension without a host_name entry leaves *name empty.
bool parse_server_name(const unsigned char* p, size_t len, std::string_view* name) {
  if (len < 2 || (static_cast<size_t>(p[0]) << 8 | p[1]) != len - 2) return false;
  size_t i = 2;
  while (i < len) {
    if (len - i < 3) return false;
    const unsigned type = p[i];
    const size_t n = static_cast<size_t>(p[i + 1]) << 8 | p[i + 2];
    i += 3;
    if (n > len - i) return false;
    if (type == TLSEXT_NAMETYPE_host_name) {
      if (n == 0 || !name->empty()) return false;  // empty, or a second host_name
      *name = std::string_view(reinterpret_cast<const char*>(p + i), n);
    }
    i += n;
  }
  return true;
}

}  // namespace

// Runs first when a ClientHello arrives (again after a HelloRetryRequest), before OpenSSL
// looks for a session to resume or negotiates anything: the SSL moves to the context of the
// tenant SNI names here, so its session id context (tickets resume only for the tenant that
// issued them), certificates and client verification are that tenant's from the start.
int TlsContexts::on_client_hello(SSL* ssl, int* alert, void* arg) {
  auto* self = static_cast<const ServerSet*>(arg);
  const unsigned char* ext = nullptr;
  size_t len = 0;
  std::string_view name;
  if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &len) == 1 &&
      !parse_server_name(ext, len, &name)) {
    *alert = SSL_AD_DECODE_ERROR;
    return SSL_CLIENT_HELLO_ERROR;
  }
  if (name.empty()) {
    if (SSL_get_ex_data(ssl, 0) != nullptr) {  // the listener's no_sni: reject
      *alert = SSL_AD_UNRECOGNIZED_NAME;
      return SSL_CLIENT_HELLO_ERROR;
    }
    return SSL_CLIENT_HELLO_SUCCESS;  // the default certificate
  }
  SSL_CTX* ctx = self->find(name);
  if (ctx == nullptr) {
    *alert = SSL_AD_UNRECOGNIZED_NAME;
    return SSL_CLIENT_HELLO_ERROR;  // no tenant of ours: nothing to serve
  }
  if (ctx != SSL_get_SSL_CTX(ssl)) {
    SSL_set_SSL_CTX(ssl, ctx);
    // SSL_set_SSL_CTX keeps the verify settings of the context the SSL was made from.
    SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx), SSL_CTX_get_verify_callback(ctx));
    if (STACK_OF(X509_NAME)* cas = SSL_CTX_get_client_CA_list(ctx); sk_X509_NAME_num(cas) > 0)
      SSL_set_client_CA_list(ssl, SSL_dup_CA_list(cas));
  }
  return SSL_CLIENT_HELLO_SUCCESS;
}

// The context was chosen in on_client_hello; acknowledging the name keeps it in the session
// (TLS 1.2 resumption reports the name of the original handshake).
int TlsContexts::on_servername(SSL*, int*, void*) { return SSL_TLSEXT_ERR_OK; }

const TlsContexts::ServerSet* TlsContexts::server_set_of(std::string_view listener) const {
  const ServerSet* set = sets_[0].get();
  if (!listener_set_.empty()) {
    if (auto it = listener_set_.find(std::string(listener)); it != listener_set_.end())
      set = it->second;
  }
  return set;
}

SSL* TlsContexts::new_ssl(std::string_view listener, bool reject_no_sni) const {
  return new_ssl(server_set_of(listener), reject_no_sni);
}

const Tls13Identity* TlsContexts::fast_pick(const void* arg, std::string_view name) {
  const auto* set = static_cast<const ServerSet*>(arg);
  SSL_CTX* ctx = name.empty() ? set->ctxs[0] : set->find(name);
  if (ctx == nullptr) return nullptr;  // OpenSSL answers unrecognized_name
  auto it = set->fast_ids.find(ctx);
  return it == set->fast_ids.end() ? nullptr : it->second.get();
}

SSL* TlsContexts::new_ssl(const ServerSet* set, bool reject_no_sni) {
  if (set->ctxs.empty()) return nullptr;
  SSL_CTX* base = set->ctxs[0];
  SSL* ssl = SSL_new(base);
  SSL_set_ex_data(ssl, 0, reject_no_sni ? reinterpret_cast<void*>(1) : nullptr);
  SSL_set_accept_state(ssl);
  return ssl;
}

void tls_rotate_ticket_keys() { ticket_keys().rotate(); }
std::string tls_export_ticket_keys() { return ticket_keys().export_all(); }
bool tls_import_ticket_keys(std::string_view blob) { return ticket_keys().import_all(blob); }

TlsConn::TlsConn(SSL* s) : ssl(nullptr), rbio(nullptr), wbio(nullptr) {
  if (s != nullptr) attach(s);
}

void TlsConn::attach(SSL* s) {
  ssl = s;
  rbio = BIO_new(BIO_s_mem());
  wbio = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(rbio, -1);  // "no more data yet", not EOF
  SSL_set_bio(ssl, rbio, wbio);
  SSL_set_ex_data(ssl, conn_index(), this);
}

TlsConn::~TlsConn() {
  if (ssl != nullptr) SSL_free(ssl);
}

uint64_t TlsConn::pending_records() const {
  char* data = nullptr;
  long n = BIO_get_mem_data(wbio, &data);
  uint64_t count = 0;
  for (long i = 0; i + 5 <= n; ++count) {
    i += 5 + (static_cast<long>(static_cast<unsigned char>(data[i + 3])) << 8 |
              static_cast<unsigned char>(data[i + 4]));
  }
  return count;
}

bool TlsConn::finish_handshake(uint64_t written, std::string* leftover) {
  version = SSL_get_version(ssl);
  cipher = SSL_get_cipher_name(ssl);
  if (const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name)) sni = name;
  resumed = SSL_session_reused(ssl) == 1;
  client_cert_ok =
      SSL_get0_peer_certificate(ssl) != nullptr && SSL_get_verify_result(ssl) == X509_V_OK;
  if (ctx) cert_tenant = ctx->tenant_of(SSL_get_SSL_CTX(ssl));
  if (!records) records = std::make_unique<TlsRecords>();
  if (SSL_has_pending(ssl) == 1 || BIO_ctrl_pending(wbio) > 0 ||
      !records->take_over(ssl, written)) {
    records.reset();
    return false;
  }
  char buf[4096];
  int n;
  while ((n = BIO_read(rbio, buf, sizeof buf)) > 0) leftover->append(buf, static_cast<size_t>(n));
  SSL_free(ssl);
  ssl = nullptr;
  rbio = wbio = nullptr;
  ctx.reset();
  return true;
}

}  // namespace parapet
