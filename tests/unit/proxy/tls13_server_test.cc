// Unit tests of proxy/tls13_server.cc against OpenSSL's TLS client over memory BIOs: the
// handshake completes for every suite, the client verifies our certificate and signature, the
// application keys interoperate both ways, and everything outside the common case is declined
// before a byte is sent (so OpenSSL can take the connection over). Tampering fails with an alert.
#include "proxy/tls13_server.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "tests/unit/proxy/tls_test_util.h"

namespace parapet {
namespace {

using testing_tls::drain;
using testing_tls::Identity;

Identity& ec_identity() {
  static Identity id;
  return id;
}

struct Fixture {
  std::unique_ptr<Tls13Identity> id;
  Tls13Listener listener;
  std::string last_name;
  bool serve = true;

  Fixture() {
    id = Tls13Identity::make(ec_identity().cert, nullptr, ec_identity().key, this);
    listener.suites = {0x1301, 0x1302, 0x1303};
    listener.groups = {0x001d, 0x0017, 0x0018};
    listener.arg = this;
    listener.pick = [](const void* arg, std::string_view name) -> const Tls13Identity* {
      auto* f = static_cast<Fixture*>(const_cast<void*>(arg));
      f->last_name = std::string(name);
      return f->serve ? f->id.get() : nullptr;
    };
  }
};

class Client {
 public:
  Client() {
    ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
    X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx_), ec_identity().cert);
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
  }
  ~Client() {
    SSL_free(ssl_);
    SSL_CTX_free(ctx_);
  }
  SSL_CTX* ctx() { return ctx_; }
  SSL* ssl() { return ssl_; }
  // Makes the SSL (after ctx() settings) and returns its ClientHello.
  std::string start(const char* sni = "test", const std::function<void(SSL*)>& setup = {}) {
    ssl_ = SSL_new(ctx_);
    if (setup) setup(ssl_);
    in_ = BIO_new(BIO_s_mem());
    out_ = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(in_, -1);
    SSL_set_bio(ssl_, in_, out_);
    SSL_set_connect_state(ssl_);
    if (sni != nullptr) {
      SSL_set_tlsext_host_name(ssl_, sni);
      SSL_set1_host(ssl_, "test");
    }
    SSL_do_handshake(ssl_);
    return drain(out_);
  }
  // Gives the client `bytes` from the server; returns what it answers.
  std::string receive(const std::string& bytes) {
    BIO_write(in_, bytes.data(), static_cast<int>(bytes.size()));
    SSL_do_handshake(ssl_);
    return drain(out_);
  }
  std::string write(const std::string& plain) {
    SSL_write(ssl_, plain.data(), static_cast<int>(plain.size()));
    return drain(out_);
  }
  std::string read(const std::string& cipher) {
    BIO_write(in_, cipher.data(), static_cast<int>(cipher.size()));
    std::string got;
    char buf[4096];
    int n;
    while ((n = SSL_read(ssl_, buf, sizeof buf)) > 0) got.append(buf, static_cast<size_t>(n));
    ERR_clear_error();
    return got;
  }

 private:
  SSL_CTX* ctx_;
  SSL* ssl_ = nullptr;
  BIO *in_ = nullptr, *out_ = nullptr;
};

using Step = Tls13Server::Step;

bool collect(void* ctx, char* p, size_t n) {
  static_cast<std::string*>(ctx)->append(p, n);
  return true;
}

// A full handshake; returns the server's records.
std::unique_ptr<TlsRecords> handshake(Fixture& f, Client& c, Tls13Server& s,
                                      std::string* leftover = nullptr,
                                      const std::string& early = "") {
  std::string hello = c.start();
  std::string flight;
  EXPECT_EQ(s.feed(hello.data(), hello.size(), &flight), Step::Sent);
  std::string answer = c.receive(flight);
  EXPECT_EQ(SSL_is_init_finished(c.ssl()), 1) << ERR_error_string(ERR_get_error(), nullptr);
  if (!early.empty()) answer += c.write(early);
  std::string out;
  EXPECT_EQ(s.feed(answer.data(), answer.size(), &out), Step::Done);
  if (leftover != nullptr) *leftover = s.take_leftover();
  (void)f;
  return s.take_records();
}

// ClientHello in, our flight out: the client's answer (its CCS and Finished).
std::string client_flight(Client& c, Tls13Server& s) {
  std::string hello = c.start();
  std::string flight;
  EXPECT_EQ(s.feed(hello.data(), hello.size(), &flight), Step::Sent);
  return c.receive(flight);
}

class Tls13ServerSuites : public ::testing::TestWithParam<const char*> {};

TEST_P(Tls13ServerSuites, HandshakeAndDataBothWays) {
  Fixture f;
  Client c;
  SSL_CTX_set_ciphersuites(c.ctx(), GetParam());
  SSL_CTX_set_alpn_protos(c.ctx(), reinterpret_cast<const unsigned char*>("\x02h2\x08http/1.1"),
                          12);
  Tls13Server s(&f.listener, true);
  std::unique_ptr<TlsRecords> rec = handshake(f, c, s);
  ASSERT_NE(rec, nullptr);
  EXPECT_STREQ(s.cipher_name(), GetParam());
  EXPECT_STREQ(SSL_get_cipher_name(c.ssl()), GetParam());
  EXPECT_EQ(SSL_get_verify_result(c.ssl()), X509_V_OK);  // our chain, our CertificateVerify
  const unsigned char* alpn = nullptr;
  unsigned alpn_len = 0;
  SSL_get0_alpn_selected(c.ssl(), &alpn, &alpn_len);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(alpn), alpn_len), "http/1.1");
  EXPECT_EQ(f.last_name, "test");
  EXPECT_EQ(s.sni(), "test");

  std::string cipher = c.write("GET / HTTP/1.1\r\n\r\n");
  std::string plain;
  ASSERT_EQ(rec->open(cipher.data(), cipher.size(), collect, &plain), TlsRecords::Status::Ok);
  EXPECT_EQ(plain, "GET / HTTP/1.1\r\n\r\n");
  const std::string body(40000, 'x');
  iovec v{const_cast<char*>(body.data()), body.size()};
  std::string sealed(rec->sealed_size(body.size()), '\0');
  sealed.resize(rec->seal(&v, 1, sealed.data()));
  EXPECT_EQ(c.read(sealed), body);
}

INSTANTIATE_TEST_SUITE_P(All, Tls13ServerSuites,
                         ::testing::Values("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
                                           "TLS_CHACHA20_POLY1305_SHA256"));

TEST(Tls13Server, DataWithTheClientFinishedIsLeftOver) {
  Fixture f;
  Client c;
  Tls13Server s(&f.listener, true);
  std::string leftover;
  std::unique_ptr<TlsRecords> rec = handshake(f, c, s, &leftover, "ping");
  ASSERT_NE(rec, nullptr);
  std::string plain;
  ASSERT_EQ(rec->open(leftover.data(), leftover.size(), collect, &plain), TlsRecords::Status::Ok);
  EXPECT_EQ(plain, "ping");
}

TEST(Tls13Server, ClientHelloInPiecesAndWithoutCompatibilityMode) {
  Fixture f;
  Client c;
  SSL_CTX_clear_options(c.ctx(), SSL_OP_ENABLE_MIDDLEBOX_COMPAT);  // empty session id: no CCS
  Tls13Server s(&f.listener, true);
  std::string hello = c.start(nullptr);  // no SNI: the default identity
  std::string flight;
  for (size_t i = 0; i + 1 < hello.size(); ++i) {
    ASSERT_EQ(s.feed(hello.data() + i, 1, &flight), Step::NeedMore);
  }
  ASSERT_EQ(s.feed(hello.data() + hello.size() - 1, 1, &flight), Step::Sent);
  EXPECT_EQ(f.last_name, "");
  EXPECT_NE(flight[5 + ((uint8_t)flight[3] << 8 | (uint8_t)flight[4])], 0x14);  // no CCS
  std::string answer = c.receive(flight);
  ASSERT_EQ(SSL_is_init_finished(c.ssl()), 1);
  std::string out;
  for (size_t i = 0; i + 1 < answer.size(); ++i) {
    ASSERT_EQ(s.feed(answer.data() + i, 1, &out), Step::NeedMore);
  }
  EXPECT_EQ(s.feed(answer.data() + answer.size() - 1, 1, &out), Step::Done);
}

// Each case is declined with nothing sent, and input() keeps every byte for OpenSSL.
TEST(Tls13Server, DeclinesWhatIsNotTheCommonCase) {
  struct Case {
    const char* what;
    void (*setup)(SSL*, Fixture&);
    bool allow_no_sni = true;
    const char* sni = "test";
  };
  const Case cases[] = {
      {"TLS 1.2 only", [](SSL* c, Fixture&) { SSL_set_max_proto_version(c, TLS1_2_VERSION); }},
      {"P-256 share first", [](SSL* c, Fixture&) { SSL_set1_groups_list(c, "P-256:X25519"); }},
      {"no X25519 on the listener", [](SSL*, Fixture& f) { f.listener.groups = {0x0017}; }},
      {"no ECDSA signature", [](SSL* c, Fixture&) { SSL_set1_sigalgs_list(c, "RSA-PSS+SHA256"); }},
      {"suite not allowed",
       [](SSL* c, Fixture& f) {
         f.listener.suites = {0x1302};
         SSL_set_ciphersuites(c, "TLS_AES_128_GCM_SHA256");
       }},
      {"no identity for the name", [](SSL*, Fixture& f) { f.serve = false; }},
      {"no SNI where it is refused", [](SSL*, Fixture&) {}, false, nullptr},
      {"max_fragment_length",
       [](SSL* c, Fixture&) {
         SSL_set_tlsext_max_fragment_length(c, TLSEXT_max_fragment_length_512);
       }},
  };
  for (const Case& k : cases) {
    Fixture f;
    Client c;
    std::string hello = c.start(k.sni, [&](SSL* ssl) { k.setup(ssl, f); });
    ASSERT_FALSE(hello.empty()) << k.what;
    Tls13Server s(&f.listener, k.allow_no_sni);
    std::string out;
    EXPECT_EQ(s.feed(hello.data(), hello.size(), &out), Step::Fallback) << k.what;
    EXPECT_TRUE(out.empty()) << k.what;
    EXPECT_EQ(s.input(), hello) << k.what;
  }
}

// `hello` (one ClientHello record) with extension `type`'s body replaced, or the extension
// added at the end (lengths fixed).
std::string with_extension(const std::string& hello, uint16_t type, const std::string& body) {
  auto u16 = [&](size_t at) {
    return static_cast<size_t>(static_cast<uint8_t>(hello[at])) << 8 |
           static_cast<uint8_t>(hello[at + 1]);
  };
  size_t p = 5 + 4 + 2 + 32;                // record and message headers, version, random
  p += 1 + static_cast<uint8_t>(hello[p]);  // session id
  p += 2 + u16(p);                          // cipher suites
  p += 1 + static_cast<uint8_t>(hello[p]);  // compression methods
  const size_t exts_at = p;
  std::string exts;
  bool found = false;
  auto add = [&] {
    exts.push_back(static_cast<char>(type >> 8));
    exts.push_back(static_cast<char>(type));
    exts.push_back(static_cast<char>(body.size() >> 8));
    exts.push_back(static_cast<char>(body.size()));
    exts += body;
  };
  for (size_t i = exts_at + 2; i < hello.size();) {
    const size_t len = u16(i + 2);
    if (u16(i) == type) {
      add();
      found = true;
    } else {
      exts += hello.substr(i, 4 + len);
    }
    i += 4 + len;
  }
  if (!found) add();
  std::string body_start = hello.substr(9, exts_at - 9);
  std::string msg = body_start;
  msg.push_back(static_cast<char>(exts.size() >> 8));
  msg.push_back(static_cast<char>(exts.size()));
  msg += exts;
  std::string out = hello.substr(0, 3);
  out.push_back(static_cast<char>((msg.size() + 4) >> 8));
  out.push_back(static_cast<char>(msg.size() + 4));
  out.push_back(1);
  out.push_back(static_cast<char>(msg.size() >> 16));
  out.push_back(static_cast<char>(msg.size() >> 8));
  out.push_back(static_cast<char>(msg.size()));
  return out + msg;
}

// OpenSSL's server refuses `hello`: the reason of its first error.
int openssl_refuses(const std::string& hello) {
  SSL_CTX* sctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX_use_certificate(sctx, ec_identity().cert);
  SSL_CTX_use_PrivateKey(sctx, ec_identity().key);
  SSL* server = SSL_new(sctx);
  BIO* in = BIO_new(BIO_s_mem());
  BIO_write(in, hello.data(), static_cast<int>(hello.size()));
  SSL_set_bio(server, in, BIO_new(BIO_s_mem()));
  SSL_set_accept_state(server);
  ERR_clear_error();
  const int r = SSL_do_handshake(server);
  const int reason = r == 1 ? 0 : ERR_GET_REASON(ERR_peek_error());
  ERR_clear_error();
  SSL_free(server);
  SSL_CTX_free(sctx);
  return reason;
}

// Extensions that OpenSSL checks and refuses when malformed are left to it (it answers with
// its alert); the same ClientHello with a well-formed body is answered here.
TEST(Tls13Server, MalformedExtensionsOpenSslRefusesAreLeftToIt) {
  struct Case {
    const char* what;
    uint16_t type;
    std::string good, bad;
  };
  const Case cases[] = {
      {"server_name with a second entry", 0x0000, std::string("\x00\x07\x00\x00\x04test", 9),
       std::string("\x00\x0b\x00\x00\x04test\x01\x00\x01x", 13)},
      {"psk_key_exchange_modes empty", 0x002d, std::string("\x01\x01", 2), std::string("\x00", 1)},
      {"post_handshake_auth with a body", 0x0031, "", std::string("\x00", 1)},
      {"status_request with a responder id", 0x0005, std::string("\x01\x00\x00\x00\x00", 5),
       std::string("\x01\x00\x04\x00\x02\x30\x00\x00\x00", 9)},
  };
  for (const Case& k : cases) {
    Fixture f;
    Client c;
    const std::string hello = c.start("test");
    for (const auto& [body, answered] : {std::pair(k.good, true), std::pair(k.bad, false)}) {
      const std::string patched = with_extension(hello, k.type, body);
      Tls13Server s(&f.listener, true);
      std::string out;
      EXPECT_EQ(s.feed(patched.data(), patched.size(), &out),
                answered ? Step::Sent : Step::Fallback)
          << k.what << (answered ? " (well formed)" : "");
      if (!answered) {
        EXPECT_NE(openssl_refuses(patched), 0) << k.what;
      }
    }
  }
}

TEST(Tls13Server, DeclinesGarbageAndExtraBytes) {
  Fixture f;
  std::string out;
  Tls13Server garbage(&f.listener, true);
  EXPECT_EQ(garbage.feed("GET / HTTP/1.1\r\n", 16, &out), Step::Fallback);
  Client c;
  std::string hello = c.start() + "x";
  Tls13Server extra(&f.listener, true);
  EXPECT_EQ(extra.feed(hello.data(), hello.size(), &out), Step::Fallback);
}

TEST(Tls13Server, TamperedFinishedFailsWithAnAlert) {
  Fixture f;
  Client c;
  Tls13Server s(&f.listener, true);
  std::string answer = client_flight(c, s);
  ASSERT_FALSE(answer.empty());
  answer[answer.size() - 20] ^= 1;  // inside the encrypted Finished
  std::string out;
  EXPECT_EQ(s.feed(answer.data(), answer.size(), &out), Step::Fail);
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out[0], 23);  // an alert, under our application key (our Finished is out)
  ERR_clear_error();
  BIO_write(SSL_get_rbio(c.ssl()), out.data(), static_cast<int>(out.size()));
  char buf[64];
  const int n = SSL_read(c.ssl(), buf, sizeof buf);
  EXPECT_LE(n, 0);
  EXPECT_EQ(SSL_get_error(c.ssl(), n), SSL_ERROR_SSL);
  // The client decrypted our alert: bad_record_mac, not a decryption failure of its own.
  EXPECT_EQ(ERR_GET_REASON(ERR_peek_last_error()), SSL_R_SSLV3_ALERT_BAD_RECORD_MAC);
  ERR_clear_error();
}

TEST(Tls13Server, SecondChangeCipherSpecFails) {
  Fixture f;
  Client c;
  Tls13Server s(&f.listener, true);
  std::string answer = client_flight(c, s);
  const std::string ccs("\x14\x03\x03\x00\x01\x01", 6);
  ASSERT_EQ(answer.substr(0, 6), ccs);  // OpenSSL clients send one in compatibility mode
  std::string twice = ccs + answer;
  std::string out;
  EXPECT_EQ(s.feed(twice.data(), twice.size(), &out), Step::Fail);
}

TEST(Tls13Server, OnlyEcdsaP256IdentitiesAreMade) {
  Identity rsa("RSA");
  Identity p384("EC", "P-384");
  EXPECT_EQ(Tls13Identity::make(rsa.cert, nullptr, rsa.key, nullptr), nullptr);
  EXPECT_EQ(Tls13Identity::make(p384.cert, nullptr, p384.key, nullptr), nullptr);
  EXPECT_NE(Tls13Identity::make(ec_identity().cert, nullptr, ec_identity().key, nullptr), nullptr);
}

TEST(Tls13Server, GroupNames) {
  std::vector<uint16_t> ids;
  ASSERT_TRUE(tls13_group_ids("X25519:P-256:secp384r1", &ids));
  EXPECT_EQ(ids, (std::vector<uint16_t>{0x1d, 0x17, 0x18}));
  EXPECT_FALSE(tls13_group_ids("X25519:brainpoolP256r1", &ids));
}

}  // namespace
}  // namespace parapet
