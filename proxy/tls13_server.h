// parapet's own TLS 1.3 server handshake, for the common full handshake only.
//
// A full TLS 1.3 handshake through libssl costs about 2.3M instructions, and less than half of
// them are the cryptography (X25519 twice, one ECDSA signature): the rest is OpenSSL 3.0's
// state machine and its per-handshake fetches, parameter lists and allocations. This class
// answers the ClientHello of the common case itself, with the same primitives (libcrypto's
// X25519, ECDSA, SHA-2 and AEADs, contexts set up once per thread) and nothing else, then
// hands the application keys to TlsRecords, like the OpenSSL path does after its handshake.
//
// The common case, and only it: TLS 1.3 offered; an X25519 key share that the listener's
// groups take first; a cipher suite TlsRecords supports; ecdsa_secp256r1_sha256 accepted and
// a tenant with an ECDSA P-256 certificate and no client-certificate verification; no
// pre_shared_key, early_data, cookie, max_fragment_length or signature_algorithms_cert; one
// ClientHello in one record with nothing behind it; a listener without session tickets (this
// path issues none). Anything else is declined before a byte is sent, and the connection's
// bytes go to OpenSSL unchanged (Step::Fallback), so every other case, every alert about a
// bad ClientHello, resumption and HelloRetryRequest keep OpenSSL's behaviour.
//
// Once our flight is out, the client's answer is checked as RFC 8446 requires (at most one
// ChangeCipherSpec, its Finished under the handshake key, compared in constant time); a
// failure sends an alert and fails the connection.
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/tls_records.h"

namespace parapet {

// A certificate this path may serve: ECDSA P-256, its chain encoded once as a Certificate
// message.
struct Tls13Identity {
  // nullptr when `key` is not an ECDSA P-256 key.
  static std::unique_ptr<Tls13Identity> make(X509* leaf, STACK_OF(X509) * chain, EVP_PKEY* key,
                                             const void* owner);
  ~Tls13Identity();
  std::string certificate;      // the whole Certificate handshake message
  EVP_PKEY* key = nullptr;      // a reference of our own
  const void* owner = nullptr;  // what it stands for (the tenant's SSL_CTX)
};

// What one listener allows.
struct Tls13Listener {
  std::vector<uint16_t> suites;  // TLS 1.3 cipher suites allowed (IANA ids)
  std::vector<uint16_t> groups;  // key exchange groups allowed (IANA ids)
  // The identity for SNI `name` (empty: the client sent none); nullptr declines.
  const Tls13Identity* (*pick)(const void* arg, std::string_view name) = nullptr;
  const void* arg = nullptr;
};

// Maps a groups list in OpenSSL's syntax ("X25519:P-256") to IANA ids; false if a name is
// not one this path knows.
bool tls13_group_ids(std::string_view list, std::vector<uint16_t>* ids);

class Tls13Server {
 public:
  enum class Step {
    NeedMore,  // waiting for more bytes
    Sent,      // *out holds our flight (ServerHello to Finished)
    Done,      // the client's Finished checked: take_records(), then take_leftover()
    Fallback,  // declined before sending anything: input() goes to OpenSSL
    Fail,      // *out may hold an alert to send; then close
  };

  // `allow_no_sni`: a ClientHello without SNI gets the default certificate (else: declined).
  Tls13Server(const Tls13Listener* listener, bool allow_no_sni)
      : l_(listener), allow_no_sni_(allow_no_sni) {}
  ~Tls13Server();
  Tls13Server(const Tls13Server&) = delete;
  Tls13Server& operator=(const Tls13Server&) = delete;

  Step feed(const char* data, size_t len, std::string* out);
  // Every byte received so far (whole, until Sent).
  const std::string& input() const { return in_; }
  // The application record layer, once Done.
  std::unique_ptr<TlsRecords> take_records() { return std::move(app_); }
  // Records that came after the client's Finished (application data), once Done.
  std::string take_leftover() { return std::move(leftover_); }
  const Tls13Identity* identity() const { return id_; }
  const std::string& sni() const { return sni_; }
  const char* cipher_name() const;

 private:
  Step on_client_hello(std::string* out);
  Step on_client_flight(std::string* out);
  Step fail(uint8_t alert, std::string* out);
  bool snapshot(uint8_t* hash);  // the transcript hash so far

  const Tls13Listener* l_;
  std::string in_;
  std::string hs_msgs_;  // the client's handshake messages after ServerHello (its Finished)
  std::string leftover_;
  std::string sni_;
  const Tls13Identity* id_ = nullptr;
  EVP_MD_CTX* transcript_ = nullptr;
  TlsRecords hs_;  // handshake traffic keys
  std::unique_ptr<TlsRecords> app_;
  uint8_t client_finished_[48] = {};
  uint16_t suite_ = 0;
  uint8_t hash_len_ = 32;
  enum class State : uint8_t { Hello, Flight, Done, Failed } state_ = State::Hello;
  bool ccs_seen_ = false;
  bool allow_no_sni_;
};

}  // namespace parapet
