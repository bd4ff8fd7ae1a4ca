// The record layer of an established server-side TLS connection, done by parapet itself.
//
// OpenSSL runs the handshake (memory BIOs, proxy/tls.h), or parapet's own TLS 1.3 handshake
// does (proxy/tls13_server.h, which also uses this class for its handshake records). Once it
// is done, the connection's traffic keys are taken over and the SSL object is freed: an idle
// OpenSSL connection holds about 15 KiB (the SSL struct, the CERT copy, two cipher contexts, the
// session, the BIOs), while this holds keys, IVs, secrets and sequence numbers, a few hundred
// bytes. It also saves copies: records are sealed straight from the outbox's pieces into the
// outgoing buffer and opened in place in the worker's read buffer.
//
// Scope: TLS 1.2 and 1.3 with the AEAD ciphers parapet offers (AES-128-GCM, AES-256-GCM,
// ChaCha20-Poly1305). TLS 1.3 KeyUpdate is honoured (and answered when requested); close_notify
// ends the stream; anything else after the handshake (renegotiation, unexpected records or
// alerts, a record that fails authentication) is an error and the caller closes. Where
// take_over() declines, the caller keeps the SSL (the OpenSSL path stays complete).
//
// Thread use: one connection's TlsRecords belongs to its worker; the cipher contexts are per
// thread (re-keyed only when the thread switches connection).
#pragma once

#include <openssl/ssl.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace parapet {

class TlsRecords {
 public:
  enum class Cipher : uint8_t { Aes128Gcm, Aes256Gcm, Chacha20Poly1305 };
  enum class Status { Ok, Closed, Error };
  // Receives a run of plaintext (valid during the call only); false stops the processing.
  using PlainFn = bool (*)(void* ctx, char* p, size_t n);

  // The keylog callback's line of a TLS 1.3 handshake: the application traffic secrets are
  // kept for take_over() (other lines are ignored).
  void on_keylog_line(std::string_view line);
  // Takes over from `ssl`, whose handshake (server side) has just completed, after `write_seq`
  // records were written under the application keys (TLS 1.3 session tickets). The caller
  // then frees the SSL and hands the ciphertext left in its read BIO to open(). False: not
  // supported (version, cipher, missing secrets), keep using the SSL.
  bool take_over(SSL* ssl, uint64_t write_seq);
  // TLS 1.3 keys from traffic secrets (hash length: 32, or 48 with SHA-384), both sequence
  // numbers at 0: the handshake keys of parapet's own handshake (proxy/tls13_server.h), then
  // its application keys. False: the keys could not be derived.
  bool start13(Cipher c, bool sha384, const uint8_t* client_secret, const uint8_t* server_secret);
  // TLS 1.3 handshake messages (or an alert) as records of that inner type; returns the
  // length written to `out`, which holds sealed_size(n) bytes.
  size_t seal_as(uint8_t type, const uint8_t* p, size_t n, char* out);
  // Opens one whole TLS 1.3 record in place; *type and the plaintext (in rec) are what it
  // carried. False: not a valid record under the read key.
  bool open_one(char* rec, size_t len, uint8_t* type, char** plain, size_t* plain_len);

  // Opens the records in data[0..len), in place; a record cut at the end is kept and
  // completed by the next call. Closed: the peer sent close_notify. A record this side must
  // send in answer (a TLS 1.3 KeyUpdate) becomes pending: the caller flushes its outbox.
  Status open(char* data, size_t len, PlainFn fn, void* ctx);
  // A sealed record waits to go out before anything sealed later (it is written first by
  // the next seal()).
  bool has_pending() const { return !pending_.empty(); }
  // The size of what seal() writes for `plain` bytes of pieces (pending record included).
  size_t sealed_size(size_t plain) const;
  // Seals the pieces into application-data records (at most 16 KiB of plaintext each) after
  // the pending record, writing sealed_size(total) bytes to `out`; returns that length.
  size_t seal(const iovec* pieces, size_t n, char* out);
  // Writes a close_notify alert record (at most kAlertSize bytes) to `out`; returns its length.
  static constexpr size_t kAlertSize = 64;
  size_t seal_close_notify(char* out);
  bool tls13() const { return tls13_; }

 private:
  struct Direction {
    uint8_t key[32];
    uint8_t iv[12];
    uint8_t secret[48];  // TLS 1.3: the current traffic secret (KeyUpdate derives the next)
    uint64_t seq = 0;
  };

  bool derive13(Direction* d) const;
  bool key_update(Direction* d) const;
  // Authenticates and decrypts one whole record in place (TLS 1.3: padding and inner type
  // removed); false: malformed, or not authentic under the read key.
  bool decrypt(char* rec, size_t len, uint8_t* type, uint8_t** plain, size_t* plain_len);
  Status open_record(char* rec, size_t len, PlainFn fn, void* ctx, bool* stop);
  // One record of `type` over `plen` bytes of the pieces, starting `skip` bytes into them.
  size_t seal_record(uint8_t type, const iovec* pieces, size_t n, size_t skip, size_t plen,
                     char* out);
  size_t overhead() const;

  Direction rd_, wr_;
  std::string partial_;  // a record cut by the end of a read (freed once complete)
  std::string pending_;  // sealed records to send before anything else (KeyUpdate answer)
  Cipher cipher_ = Cipher::Aes128Gcm;
  uint8_t key_len_ = 16;
  uint8_t secret_len_ = 0;  // TLS 1.3 hash length (32 or 48)
  bool tls13_ = false;
  bool have_client_secret_ = false, have_server_secret_ = false;
  bool sha384_ = false;
};

// RFC 8446 7.1 HKDF-Expand-Label with SHA-256 (or SHA-384), for lengths up to one hash
// block; and HMAC (HKDF-Extract is HMAC(salt, ikm)). Both return 0/false on failure.
bool tls13_expand_label(bool sha384, const uint8_t* secret, size_t secret_len, const char* label,
                        const uint8_t* context, size_t context_len, uint8_t* out, size_t out_len);
size_t tls13_hmac(bool sha384, const uint8_t* key, size_t key_len, const uint8_t* data, size_t len,
                  uint8_t* out);

}  // namespace parapet
