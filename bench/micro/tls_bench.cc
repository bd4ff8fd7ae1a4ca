// Server-side cost of a full TLS 1.3 handshake (ECDSA P-256, X25519) over memory BIOs, as the
// proxy runs it, and what parapet adds on top of OpenSSL: the keylog callback that captures
// the traffic secrets, and the take-over by TlsRecords (key derivation, SSL freed early).
// parapet's own TLS 1.3 handshake (proxy/tls13_server.h) is the Own arm.
// The client side runs in the same thread; its cost is measured alone (BM_Fixture_Client) and
// must be subtracted from the other arms.
#include <benchmark/benchmark.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <string>
#include <string_view>

#include "proxy/tls13_server.h"
#include "proxy/tls_records.h"
#include "tests/unit/proxy/tls_test_util.h"

namespace {

using parapet::testing_tls::Identity;

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

enum class Mode { ClientOnly, OpenSsl, Keylog, TakeOver, Own };

void run(benchmark::State& state, Mode mode) {
  static Identity pki;
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
  auto own_id = parapet::Tls13Identity::make(pki.cert, nullptr, pki.key, nullptr);
  parapet::Tls13Listener listener;
  listener.suites = {0x1301, 0x1302, 0x1303};
  listener.groups = {0x001d};
  listener.arg = own_id.get();
  listener.pick = [](const void* arg, std::string_view) {
    return static_cast<const parapet::Tls13Identity*>(arg);
  };
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
    if (mode != Mode::ClientOnly && mode != Mode::Own) {
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
    } else if (mode == Mode::Own) {
      parapet::Tls13Server server(&listener, true);
      std::string out;
      SSL_do_handshake(c);
      std::string hello = drain(c_out);
      if (server.feed(hello.data(), hello.size(), &out) != parapet::Tls13Server::Step::Sent) {
        state.SkipWithError("own handshake declined");
      }
      BIO_write(c_in, out.data(), static_cast<int>(out.size()));
      SSL_do_handshake(c);
      std::string answer = drain(c_out);
      if (server.feed(answer.data(), answer.size(), &out) != parapet::Tls13Server::Step::Done) {
        state.SkipWithError("own handshake failed");
      }
      benchmark::DoNotOptimize(server.take_records());
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
void BM_Handshake_Own(benchmark::State& s) { run(s, Mode::Own); }

}  // namespace

BENCHMARK(BM_Fixture_Client)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Handshake_OpenSsl)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Handshake_Keylog)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Handshake_TakeOver)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Handshake_Own)->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
