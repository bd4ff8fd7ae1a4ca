// Fuzz target: parapet's own TLS 1.3 handshake (proxy/tls13_server.h) fed arbitrary bytes. The
// first input byte splits the rest into what arrives first (the ClientHello) and what arrives
// after our flight (the client's records): the ClientHello parser and the record checks must
// never read out of bounds, and whatever they decide must be one of their steps.
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "proxy/tls13_server.h"

namespace {

struct Setup {
  std::unique_ptr<parapet::Tls13Identity> id;
  parapet::Tls13Listener listener;
  Setup() {
    EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    X509* cert = X509_new();
    X509_set_version(cert, 2);
    X509_gmtime_adj(X509_getm_notBefore(cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_sign(cert, key, EVP_sha256());
    id = parapet::Tls13Identity::make(cert, nullptr, key, this);
    X509_free(cert);
    EVP_PKEY_free(key);
    listener.suites = {0x1301, 0x1302, 0x1303};
    listener.groups = {0x001d, 0x0017};
    listener.arg = this;
    listener.pick = [](const void* arg, std::string_view name) -> const parapet::Tls13Identity* {
      const auto* s = static_cast<const Setup*>(arg);
      return name == "unknown" ? nullptr : s->id.get();
    };
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Setup setup;
  if (size < 1) return 0;
  const size_t split = 1 + (static_cast<size_t>(data[0]) * (size - 1)) / 256;
  const auto* p = reinterpret_cast<const char*>(data);
  parapet::Tls13Server server(&setup.listener, (data[0] & 1) != 0);
  std::string out;
  using Step = parapet::Tls13Server::Step;
  Step s = server.feed(p + 1, split - 1, &out);
  if (s == Step::Sent || s == Step::NeedMore) {
    s = server.feed(p + split, size - split, &out);
  }
  if (s == Step::Fallback && server.input().size() > size) __builtin_trap();
  return 0;
}
