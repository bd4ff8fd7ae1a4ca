// Server-side cost of a full TLS 1.3 handshake (ECDSA P-256, X25519) over memory BIOs, as the
// proxy runs it, and what parapet adds on top of OpenSSL: the keylog callback that captures
// the traffic secrets, and the take-over by TlsRecords (key derivation, SSL freed early).
// The client side runs in the same thread; its cost is measured alone (BM_Fixture_Client) and
// must be subtracted from the other arms.
#include <benchmark/benchmark.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <string>

#include "proxy/tls_records.h"

namespace {

struct Pki {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  X509* cert = X509_new();
  Pki() {
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("bench"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509_sign(cert, key, EVP_sha256());
  }
};

int g_index = -1;

void keylog(const SSL* ssl, const char* line) {
  auto* r = static_cast<parapet::TlsRecords*>(SSL_get_ex_data(ssl, g_index));
  if (r != nullptr) r->on_keylog_line(line);
}

std::string drain(BIO* b) {
  std::string s;
  char buf[8192];
  int n;
  while ((n = BIO_read(b, buf, sizeof buf)) > 0) s.append(buf, static_cast<size_t>(n));
  return s;
}

enum class Mode { ClientOnly, OpenSsl, Keylog, TakeOver };

void run(benchmark::State& state, Mode mode) {
  static Pki pki;
  if (g_index < 0) g_index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  SSL_CTX* sctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX_use_certificate(sctx, pki.cert);
  SSL_CTX_use_PrivateKey(sctx, pki.key);
  SSL_CTX_set_min_proto_version(sctx, TLS1_2_VERSION);
  SSL_CTX_set_session_cache_mode(sctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(sctx, 1);
  SSL_CTX_set_mode(sctx, SSL_MODE_RELEASE_BUFFERS);
  if (mode == Mode::Keylog || mode == Mode::TakeOver) SSL_CTX_set_keylog_callback(sctx, keylog);
  SSL_CTX* cctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(cctx, TLS1_3_VERSION);
  SSL_CTX_set1_groups_list(cctx, "X25519");
  for (auto _ : state) {
    parapet::TlsRecords rec;
    SSL* c = SSL_new(cctx);
    BIO* c_in = BIO_new(BIO_s_mem());
    BIO* c_out = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(c_in, -1);
    SSL_set_bio(c, c_in, c_out);
    SSL_set_connect_state(c);
    SSL* s = nullptr;
    BIO *s_in = nullptr, *s_out = nullptr;
    if (mode != Mode::ClientOnly) {
      s = SSL_new(sctx);
      SSL_set_ex_data(s, g_index, &rec);
      s_in = BIO_new(BIO_s_mem());
      s_out = BIO_new(BIO_s_mem());
      BIO_set_mem_eof_return(s_in, -1);
      SSL_set_bio(s, s_in, s_out);
      SSL_set_accept_state(s);
    }
    if (mode == Mode::ClientOnly) {
      SSL_do_handshake(c);  // the ClientHello: key share generation, as in a handshake
      drain(c_out);
    } else {
      for (int i = 0; i < 6; ++i) {
        SSL_do_handshake(c);
        std::string c2s = drain(c_out);
        BIO_write(s_in, c2s.data(), static_cast<int>(c2s.size()));
        int r = SSL_do_handshake(s);
        std::string s2c = drain(s_out);
        BIO_write(c_in, s2c.data(), static_cast<int>(s2c.size()));
        if (r == 1) {
          if (mode == Mode::TakeOver && !rec.take_over(s, 1)) state.SkipWithError("take_over");
          break;
        }
      }
      if (!SSL_is_init_finished(s)) state.SkipWithError("handshake failed");
      SSL_free(s);
    }
    SSL_free(c);
    ERR_clear_error();
  }
  SSL_CTX_free(sctx);
  SSL_CTX_free(cctx);
}

// Only the client's share of the work that the handshake arms include (subtract it... only
// approximately: the client also verifies nothing here but does its own ECDHE and Finished).
void BM_Fixture_Client(benchmark::State& s) { run(s, Mode::ClientOnly); }
void BM_Handshake_OpenSsl(benchmark::State& s) { run(s, Mode::OpenSsl); }
void BM_Handshake_Keylog(benchmark::State& s) { run(s, Mode::Keylog); }
void BM_Handshake_TakeOver(benchmark::State& s) { run(s, Mode::TakeOver); }

}  // namespace

BENCHMARK(BM_Fixture_Client)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Handshake_OpenSsl)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Handshake_Keylog)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Handshake_TakeOver)->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
