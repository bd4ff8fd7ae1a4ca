// Helpers shared by the TLS unit tests: a throwaway ECDSA P-256 identity and memory-BIO reads.
#pragma once

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <string>

namespace parapet::testing_tls {

struct Identity {
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  explicit Identity(const char* type = "EC", const char* arg = "P-256") {
    key = std::string(type) == "RSA" ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048})
                                     : EVP_PKEY_Q_keygen(nullptr, nullptr, type, arg);
    cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("test"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509_sign(cert, key, EVP_sha256());
  }
  ~Identity() {
    X509_free(cert);
    EVP_PKEY_free(key);
  }
  Identity(const Identity&) = delete;
  Identity& operator=(const Identity&) = delete;
};

inline std::string drain(BIO* b) {
  std::string s;
  char buf[4096];
  int n;
  while ((n = BIO_read(b, buf, sizeof buf)) > 0) s.append(buf, static_cast<size_t>(n));
  return s;
}

}  // namespace parapet::testing_tls
