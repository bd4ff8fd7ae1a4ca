// Unit tests of proxy/tls_records.cc against OpenSSL's own TLS client over memory BIOs: after
// the server-side handshake OpenSSL's SSL is freed and TlsRecords must interoperate, for TLS
// 1.2 and 1.3 with every AEAD cipher parapet offers, across record boundaries, KeyUpdate,
// close_notify and tampering.
#include "proxy/tls_records.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cctype>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tests/unit/proxy/tls_test_util.h"

namespace parapet {
namespace {

using testing_tls::drain;
using testing_tls::Identity;

Identity& identity() {
  static Identity id;
  return id;
}

int g_index = -1;  // SSL ex_data slot: the server side's TlsRecords

void keylog(const SSL* ssl, const char* line) {
  auto* r = static_cast<TlsRecords*>(SSL_get_ex_data(ssl, g_index));
  if (r != nullptr) r->on_keylog_line(line);
}

size_t count_records(const std::string& s) {
  size_t n = 0;
  for (size_t i = 0; i + 5 <= s.size(); ++n) {
    i += 5 + (static_cast<size_t>(static_cast<uint8_t>(s[i + 3])) << 8 |
              static_cast<uint8_t>(s[i + 4]));
  }
  return n;
}

struct Param {
  int version;
  const char* cipher;  // TLS 1.2 list or TLS 1.3 suite
  int tickets;
};

class TlsRecordsTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    if (g_index < 0) g_index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    const Param& p = GetParam();
    sctx_ = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate(sctx_, identity().cert);
    SSL_CTX_use_PrivateKey(sctx_, identity().key);
    SSL_CTX_set_keylog_callback(sctx_, keylog);
    SSL_CTX_set_num_tickets(sctx_, static_cast<size_t>(p.tickets));
    SSL_CTX_set_options(sctx_, SSL_OP_NO_RENEGOTIATION);
    cctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(cctx_, p.version);
    SSL_CTX_set_max_proto_version(cctx_, p.version);
    if (p.version == TLS1_3_VERSION) {
      SSL_CTX_set_ciphersuites(cctx_, p.cipher);
    } else {
      SSL_CTX_set_cipher_list(cctx_, p.cipher);
    }
    server_ = SSL_new(sctx_);
    SSL_set_ex_data(server_, g_index, &rec_);
    s_in_ = BIO_new(BIO_s_mem());
    s_out_ = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(s_in_, -1);
    SSL_set_bio(server_, s_in_, s_out_);
    SSL_set_accept_state(server_);
    client_ = SSL_new(cctx_);
    c_in_ = BIO_new(BIO_s_mem());
    c_out_ = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(c_in_, -1);
    SSL_set_bio(client_, c_in_, c_out_);
    SSL_set_connect_state(client_);
  }

  void TearDown() override {
    SSL_free(client_);
    if (server_ != nullptr) SSL_free(server_);
    SSL_CTX_free(sctx_);
    SSL_CTX_free(cctx_);
  }

  // Runs the handshake as the proxy does, then hands the server side over to rec_; the
  // client's first bytes after its Finished (`early`) ride in the same flight.
  void handshake_and_take_over(const std::string& early = "") {
    uint64_t written = 0;
    for (int i = 0; i < 20; ++i) {
      SSL_do_handshake(client_);
      if (SSL_is_init_finished(client_) && !early.empty() && i < 19) {
        SSL_write(client_, early.data(), static_cast<int>(early.size()));
      }
      std::string c2s = drain(c_out_);
      BIO_write(s_in_, c2s.data(), static_cast<int>(c2s.size()));
      int r = SSL_do_handshake(server_);
      std::string s2c = drain(s_out_);
      if (r == 1) {
        written = count_records(s2c);
        BIO_write(c_in_, s2c.data(), static_cast<int>(s2c.size()));
        break;
      }
      BIO_write(c_in_, s2c.data(), static_cast<int>(s2c.size()));
    }
    ASSERT_TRUE(SSL_is_init_finished(server_));
    if (SSL_version(server_) == TLS1_2_VERSION) written = 1;  // its Finished (not counted)
    ASSERT_TRUE(rec_.take_over(server_, SSL_version(server_) == TLS1_3_VERSION ? written : 1));
    leftover_ = drain(s_in_);
    SSL_free(server_);
    server_ = nullptr;
    // The client reads the tickets / the server's Finished.
    char buf[64];
    SSL_read(client_, buf, sizeof buf);
    ERR_clear_error();
  }

  // Feeds ciphertext to rec_ in chunks of random sizes; returns the plaintext.
  TlsRecords::Status open_all(std::string cipher, std::string* plain, unsigned seed = 1) {
    std::mt19937 rng(seed);
    size_t i = 0;
    TlsRecords::Status st = TlsRecords::Status::Ok;
    while (i < cipher.size() && st == TlsRecords::Status::Ok) {
      size_t n = std::min<size_t>(cipher.size() - i, 1 + rng() % 9000);
      st = rec_.open(cipher.data() + i, n, collect, plain);
      i += n;
    }
    return st;
  }

  static bool collect(void* ctx, char* p, size_t n) {
    static_cast<std::string*>(ctx)->append(p, n);
    return true;
  }

  std::string seal(const std::string& a, const std::string& b = "") {
    iovec v[2] = {{const_cast<char*>(a.data()), a.size()}, {const_cast<char*>(b.data()), b.size()}};
    std::string out(rec_.sealed_size(a.size() + b.size()), '\0');
    size_t n = rec_.seal(v, 2, out.data());
    EXPECT_EQ(n, out.size());
    return out;
  }

  std::string client_reads(const std::string& cipher, size_t want) {
    BIO_write(c_in_, cipher.data(), static_cast<int>(cipher.size()));
    std::string got;
    char buf[16384];
    while (got.size() < want) {
      int n = SSL_read(client_, buf, sizeof buf);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
    return got;
  }

  std::string client_writes(const std::string& plain) {
    SSL_write(client_, plain.data(), static_cast<int>(plain.size()));
    return drain(c_out_);
  }

  SSL_CTX *sctx_ = nullptr, *cctx_ = nullptr;
  SSL *server_ = nullptr, *client_ = nullptr;
  BIO *s_in_, *s_out_, *c_in_, *c_out_;
  TlsRecords rec_;
  std::string leftover_;
};

TEST_P(TlsRecordsTest, BothDirectionsAfterTheHandshake) {
  handshake_and_take_over();
  EXPECT_EQ(rec_.tls13(), GetParam().version == TLS1_3_VERSION);
  std::string plain;
  ASSERT_EQ(open_all(leftover_ + client_writes("GET / HTTP/1.1\r\n\r\n"), &plain),
            TlsRecords::Status::Ok);
  EXPECT_EQ(plain, "GET / HTTP/1.1\r\n\r\n");
  EXPECT_EQ(client_reads(seal("HTTP/1.1 200 OK\r\n", "\r\n"), 19), "HTTP/1.1 200 OK\r\n\r\n");
  plain.clear();
  ASSERT_EQ(open_all(client_writes("second"), &plain), TlsRecords::Status::Ok);
  EXPECT_EQ(plain, "second");
  EXPECT_EQ(client_reads(seal("again"), 5), "again");
}

TEST_P(TlsRecordsTest, DataSentWithTheClientFinishedIsKept) {
  // In a full TLS 1.2 handshake the client speaks only after the server's Finished.
  if (GetParam().version != TLS1_3_VERSION) GTEST_SKIP() << "TLS 1.3 only";
  handshake_and_take_over("early request");
  std::string plain;
  ASSERT_EQ(open_all(leftover_, &plain), TlsRecords::Status::Ok);
  EXPECT_EQ(plain, "early request");
}

TEST_P(TlsRecordsTest, LargeBodiesSplitAcrossRecordsAndReads) {
  handshake_and_take_over();
  std::string big(300 * 1024 + 7, '\0');
  std::mt19937 rng(7);
  for (char& c : big) c = static_cast<char>(rng());
  std::string cipher;
  for (size_t i = 0; i < big.size(); i += 50000) cipher += client_writes(big.substr(i, 50000));
  std::string plain;
  ASSERT_EQ(open_all(leftover_ + cipher, &plain, 3), TlsRecords::Status::Ok);
  EXPECT_EQ(plain, big);
  EXPECT_EQ(client_reads(seal(big.substr(0, 100000), big.substr(100000)), big.size()), big);
}

TEST_P(TlsRecordsTest, CloseNotifyBothWays) {
  handshake_and_take_over();
  SSL_shutdown(client_);
  std::string plain;
  EXPECT_EQ(open_all(leftover_ + drain(c_out_), &plain), TlsRecords::Status::Closed);
  std::string alert(TlsRecords::kAlertSize, '\0');
  alert.resize(rec_.seal_close_notify(alert.data()));
  BIO_write(c_in_, alert.data(), static_cast<int>(alert.size()));
  char buf[16];
  EXPECT_EQ(SSL_read(client_, buf, sizeof buf), 0);
  EXPECT_EQ(SSL_get_error(client_, 0), SSL_ERROR_ZERO_RETURN);
}

TEST_P(TlsRecordsTest, TamperedRecordIsAnError) {
  handshake_and_take_over();
  std::string cipher = leftover_ + client_writes("payload");
  cipher[cipher.size() - 3] ^= 1;
  std::string plain;
  EXPECT_EQ(open_all(cipher, &plain), TlsRecords::Status::Error);
  EXPECT_EQ(plain, "");
}

TEST_P(TlsRecordsTest, KeyUpdateRequestedIsAnswered) {
  if (GetParam().version != TLS1_3_VERSION) GTEST_SKIP() << "TLS 1.3 only";
  handshake_and_take_over();
  ASSERT_EQ(SSL_key_update(client_, SSL_KEY_UPDATE_REQUESTED), 1);
  std::string plain;
  ASSERT_EQ(open_all(leftover_ + client_writes("after update"), &plain), TlsRecords::Status::Ok);
  EXPECT_EQ(plain, "after update");
  EXPECT_TRUE(rec_.has_pending());
  // Our KeyUpdate goes first, then data under the new key.
  EXPECT_EQ(client_reads(seal("new key"), 7), "new key");
  EXPECT_FALSE(rec_.has_pending());
  plain.clear();
  ASSERT_EQ(open_all(client_writes("still fine"), &plain), TlsRecords::Status::Ok);
  EXPECT_EQ(plain, "still fine");
}

INSTANTIATE_TEST_SUITE_P(
    Suites, TlsRecordsTest,
    ::testing::Values(Param{TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256", 1},
                      Param{TLS1_3_VERSION, "TLS_AES_256_GCM_SHA384", 2},
                      Param{TLS1_3_VERSION, "TLS_CHACHA20_POLY1305_SHA256", 1},
                      Param{TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256", 0},
                      Param{TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256", 1},
                      Param{TLS1_2_VERSION, "ECDHE-ECDSA-AES256-GCM-SHA384", 1},
                      Param{TLS1_2_VERSION, "ECDHE-ECDSA-CHACHA20-POLY1305", 0}),
    [](const ::testing::TestParamInfo<Param>& p) {
      std::string name = p.param.version == TLS1_3_VERSION ? "tls13_" : "tls12_";
      for (const char* c = p.param.cipher; *c != '\0'; ++c) name += std::isalnum(*c) ? *c : '_';
      return name + "_tickets" + std::to_string(p.param.tickets);
    });

}  // namespace
}  // namespace parapet
