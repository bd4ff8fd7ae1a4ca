#include "proxy/tls13_server.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstring>

namespace parapet {

namespace {

constexpr uint8_t kChangeCipherSpec = 20, kAlert = 21, kHandshake = 22, kAppData = 23;
constexpr uint16_t kX25519 = 0x001d;
constexpr uint16_t kEcdsaP256Sha256 = 0x0403;
constexpr size_t kMaxRecord = 16384;
// Alert descriptions (RFC 8446 6.2).
constexpr uint8_t kUnexpectedMessage = 10, kBadRecordMac = 20, kRecordOverflow = 22,
                  kDecodeError = 50, kDecryptError = 51, kInternalError = 80;

// A bounds-checked reader over the ClientHello.
struct Reader {
  const uint8_t* p = nullptr;
  size_t n = 0;
  bool u8(uint8_t* v) {
    if (n < 1) return false;
    *v = p[0];
    ++p;
    --n;
    return true;
  }
  bool u16(uint16_t* v) {
    if (n < 2) return false;
    *v = static_cast<uint16_t>(p[0] << 8 | p[1]);
    p += 2;
    n -= 2;
    return true;
  }
  bool u24(uint32_t* v) {
    if (n < 3) return false;
    *v = static_cast<uint32_t>(p[0]) << 16 | static_cast<uint32_t>(p[1]) << 8 | p[2];
    p += 3;
    n -= 3;
    return true;
  }
  bool take(size_t k, Reader* sub) {
    if (n < k) return false;
    *sub = Reader{p, k};
    p += k;
    n -= k;
    return true;
  }
  bool vec8(Reader* sub) {
    uint8_t l;
    return u8(&l) && take(l, sub);
  }
  bool vec16(Reader* sub) {
    uint16_t l;
    return u16(&l) && take(l, sub);
  }
};

bool has_u16(Reader list, uint16_t v) {
  uint16_t x;
  while (list.u16(&x)) {
    if (x == v) return true;
  }
  return false;
}

void put16(std::string* s, size_t v) {
  s->push_back(static_cast<char>(v >> 8));
  s->push_back(static_cast<char>(v));
}

void put24(std::string* s, size_t v) {
  s->push_back(static_cast<char>(v >> 16));
  put16(s, v);
}

// Sets the 3-byte length of the handshake message that starts at `at`.
void end_message(std::string* s, size_t at) {
  const size_t len = s->size() - at - 4;
  (*s)[at + 1] = static_cast<char>(len >> 16);
  (*s)[at + 2] = static_cast<char>(len >> 8);
  (*s)[at + 3] = static_cast<char>(len);
}

const EVP_MD* md(bool sha384) {
  static const EVP_MD* sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  static const EVP_MD* sha384_md = EVP_MD_fetch(nullptr, "SHA384", nullptr);
  return sha384 ? sha384_md : sha256;
}

// Per-thread contexts: X25519 key generation (initialised once) and a digest context for
// snapshots of the transcript and the CertificateVerify digest.
struct ThreadCtx {
  ThreadCtx()
      : keygen(EVP_PKEY_CTX_new_from_name(nullptr, "X25519", nullptr)), scratch(EVP_MD_CTX_new()) {
    if (keygen != nullptr && EVP_PKEY_keygen_init(keygen) != 1) {
      EVP_PKEY_CTX_free(keygen);
      keygen = nullptr;
    }
  }
  ~ThreadCtx() {
    EVP_PKEY_CTX_free(keygen);
    EVP_MD_CTX_free(scratch);
  }
  ThreadCtx(const ThreadCtx&) = delete;
  ThreadCtx& operator=(const ThreadCtx&) = delete;
  EVP_PKEY_CTX* keygen;
  EVP_MD_CTX* scratch;
};

ThreadCtx& tctx() {
  thread_local ThreadCtx t;
  return t;
}

bool digest(bool sha384, const void* p, size_t n, uint8_t* out) {
  EVP_MD_CTX* c = tctx().scratch;
  return c != nullptr && EVP_DigestInit_ex(c, md(sha384), nullptr) == 1 &&
         EVP_DigestUpdate(c, p, n) == 1 && EVP_DigestFinal_ex(c, out, nullptr) == 1;
}

// The key schedule's constant start without a PSK (RFC 8446 7.1): Derive-Secret(
// HKDF-Extract(0, 0), "derived", ""), and the hash of the empty string.
struct Start {
  uint8_t derived[48];
  uint8_t empty_hash[48];
  bool ok;
  explicit Start(bool sha384) {
    const size_t h = sha384 ? 48 : 32;
    uint8_t zeros[48] = {}, early[64];
    ok = digest(sha384, "", 0, empty_hash) && tls13_hmac(sha384, zeros, h, zeros, h, early) == h &&
         tls13_expand_label(sha384, early, h, "derived", empty_hash, h, derived, h);
  }
};

const Start& start(bool sha384) {
  static const Start s256(false), s384(true);
  return sha384 ? s384 : s256;
}

// Our X25519 share and the shared secret with the client's `peer` (32 bytes each).
bool x25519(const uint8_t* peer, uint8_t pub[32], uint8_t shared[32]) {
  EVP_PKEY_CTX* kg = tctx().keygen;
  EVP_PKEY* mine = nullptr;
  if (kg == nullptr || EVP_PKEY_keygen(kg, &mine) != 1) return false;
  EVP_PKEY* theirs = EVP_PKEY_new_raw_public_key_ex(nullptr, "X25519", nullptr, peer, 32);
  EVP_PKEY_CTX* dc = EVP_PKEY_CTX_new_from_pkey(nullptr, mine, nullptr);
  size_t pub_len = 32, shared_len = 32;
  const bool ok = theirs != nullptr && dc != nullptr &&
                  EVP_PKEY_get_raw_public_key(mine, pub, &pub_len) == 1 && pub_len == 32 &&
                  EVP_PKEY_derive_init(dc) == 1 && EVP_PKEY_derive_set_peer(dc, theirs) == 1 &&
                  EVP_PKEY_derive(dc, shared, &shared_len) == 1 && shared_len == 32;
  EVP_PKEY_CTX_free(dc);
  EVP_PKEY_free(theirs);
  EVP_PKEY_free(mine);
  return ok;
}

std::string plain_alert(uint8_t desc) {
  const char a[] = {kAlert, 3, 3, 0, 2, 2, static_cast<char>(desc)};
  return std::string(a, sizeof a);
}

}  // namespace

bool tls13_group_ids(std::string_view list, std::vector<uint16_t>* ids) {
  static const struct {
    const char* name;
    uint16_t id;
  } kGroups[] = {{"x25519", 0x001d},    {"p-256", 0x0017},     {"prime256v1", 0x0017},
                 {"secp256r1", 0x0017}, {"p-384", 0x0018},     {"secp384r1", 0x0018},
                 {"p-521", 0x0019},     {"secp521r1", 0x0019}, {"x448", 0x001e},
                 {"ffdhe2048", 0x0100}, {"ffdhe3072", 0x0101}, {"ffdhe4096", 0x0102},
                 {"ffdhe6144", 0x0103}, {"ffdhe8192", 0x0104}};
  ids->clear();
  while (!list.empty()) {
    const size_t colon = list.find(':');
    std::string name(list.substr(0, colon));
    list = colon == std::string_view::npos ? std::string_view() : list.substr(colon + 1);
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    const auto* g = std::find_if(std::begin(kGroups), std::end(kGroups),
                                 [&](const auto& k) { return name == k.name; });
    if (g == std::end(kGroups)) return false;
    ids->push_back(g->id);
  }
  return !ids->empty();
}

std::unique_ptr<Tls13Identity> Tls13Identity::make(X509* leaf, STACK_OF(X509) * chain,
                                                   EVP_PKEY* key, const void* owner) {
  char group[32];
  size_t group_len = 0;
  if (leaf == nullptr || key == nullptr || !EVP_PKEY_is_a(key, "EC") ||
      EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                     &group_len) != 1 ||
      std::strcmp(group, "prime256v1") != 0) {
    return nullptr;
  }
  auto id = std::make_unique<Tls13Identity>();
  std::string& m = id->certificate;
  m.push_back(11);  // certificate
  m.append(3, '\0');
  m.push_back(0);  // certificate_request_context
  const size_t list_at = m.size();
  m.append(3, '\0');
  auto add = [&](X509* x) {
    const int len = i2d_X509(x, nullptr);
    if (len <= 0) return false;
    put24(&m, static_cast<size_t>(len));
    const size_t at = m.size();
    m.resize(at + static_cast<size_t>(len));
    auto* p = reinterpret_cast<unsigned char*>(m.data() + at);
    i2d_X509(x, &p);
    put16(&m, 0);  // no extensions
    return true;
  };
  if (!add(leaf)) return nullptr;
  for (int i = 0; chain != nullptr && i < sk_X509_num(chain); ++i) {
    if (!add(sk_X509_value(chain, i))) return nullptr;
  }
  const size_t list_len = m.size() - list_at - 3;
  m[list_at] = static_cast<char>(list_len >> 16);
  m[list_at + 1] = static_cast<char>(list_len >> 8);
  m[list_at + 2] = static_cast<char>(list_len);
  end_message(&m, 0);
  if (EVP_PKEY_up_ref(key) != 1) return nullptr;
  id->key = key;
  id->owner = owner;
  return id;
}

Tls13Identity::~Tls13Identity() { EVP_PKEY_free(key); }

Tls13Server::~Tls13Server() {
  EVP_MD_CTX_free(transcript_);
  OPENSSL_cleanse(client_finished_, sizeof client_finished_);
}

const char* Tls13Server::cipher_name() const {
  switch (suite_) {
    case 0x1301:
      return "TLS_AES_128_GCM_SHA256";
    case 0x1302:
      return "TLS_AES_256_GCM_SHA384";
    case 0x1303:
      return "TLS_CHACHA20_POLY1305_SHA256";
  }
  return "";
}

Tls13Server::Step Tls13Server::feed(const char* data, size_t len, std::string* out) {
  in_.append(data, len);
  switch (state_) {
    case State::Hello:
      return on_client_hello(out);
    case State::Flight:
      return on_client_flight(out);
    case State::Done:
    case State::Failed:
      break;
  }
  return Step::Fail;
}

bool Tls13Server::snapshot(uint8_t* hash) {
  EVP_MD_CTX* c = tctx().scratch;
  return c != nullptr && EVP_MD_CTX_copy_ex(c, transcript_) == 1 &&
         EVP_DigestFinal_ex(c, hash, nullptr) == 1;
}

Tls13Server::Step Tls13Server::fail(uint8_t alert, std::string* out) {
  out->clear();
  if (state_ == State::Flight && app_ != nullptr) {
    // Fatal; our Finished is out, so under our application key (RFC 8446 7.3).
    const uint8_t a[2] = {2, alert};
    out->resize(app_->sealed_size(2));
    out->resize(app_->seal_as(kAlert, a, 2, out->data()));
  } else {
    *out = plain_alert(alert);
  }
  state_ = State::Failed;
  return Step::Fail;
}

Tls13Server::Step Tls13Server::on_client_hello(std::string* out) {
  // One whole ClientHello in one handshake record, nothing after it.
  if (in_.size() < 5) return Step::NeedMore;
  const auto* b = reinterpret_cast<const uint8_t*>(in_.data());
  if (b[0] != kHandshake || b[1] != 3) return Step::Fallback;
  const size_t rlen = static_cast<size_t>(b[3]) << 8 | b[4];
  if (rlen < 4 || rlen > kMaxRecord) return Step::Fallback;
  if (in_.size() < 5 + rlen) return Step::NeedMore;
  if (in_.size() > 5 + rlen) return Step::Fallback;
  Reader r{b + 5, rlen};
  uint8_t type = 0;
  uint32_t mlen = 0;
  if (!r.u8(&type) || type != 1 || !r.u24(&mlen) || mlen != r.n) return Step::Fallback;

  Reader ch = r, random, sid, suites, comp, exts;
  uint16_t legacy = 0;
  if (!ch.u16(&legacy) || legacy != 0x0303 || !ch.take(32, &random) || !ch.vec8(&sid) ||
      sid.n > 32 || !ch.vec16(&suites) || suites.n == 0 || suites.n % 2 != 0 || !ch.vec8(&comp) ||
      comp.n != 1 || comp.p[0] != 0 || !ch.vec16(&exts) || ch.n != 0) {
    return Step::Fallback;
  }
  bool tls13 = false, has_sni = false, has_groups = false, has_shares = false, has_sigalgs = false,
       has_alpn = false;
  Reader groups, shares, sigalgs, alpn;
  uint16_t seen[64];
  size_t nseen = 0;
  while (exts.n > 0) {
    uint16_t et = 0;
    Reader e;
    if (!exts.u16(&et) || !exts.vec16(&e)) return Step::Fallback;
    if (nseen == 64 || std::find(seen, seen + nseen, et) != seen + nseen) return Step::Fallback;
    seen[nseen++] = et;
    switch (et) {
      case 0x0000: {  // server_name (RFC 6066 3)
        // Exactly one host_name filling the list, as OpenSSL requires; it also refuses a
        // name with a NUL byte or over 255 bytes.
        Reader list, name;
        uint8_t nt = 0;
        if (!e.vec16(&list) || e.n != 0 || !list.u8(&nt) || nt != 0 || !list.vec16(&name) ||
            list.n != 0 || name.n == 0 || name.n > 255 ||
            std::memchr(name.p, 0, name.n) != nullptr) {
          return Step::Fallback;
        }
        sni_.assign(reinterpret_cast<const char*>(name.p), name.n);
        has_sni = true;
        break;
      }
      case 0x000a:  // supported_groups
        if (!e.vec16(&groups) || e.n != 0 || groups.n % 2 != 0) return Step::Fallback;
        has_groups = true;
        break;
      case 0x000d:  // signature_algorithms
        if (!e.vec16(&sigalgs) || e.n != 0 || sigalgs.n % 2 != 0) return Step::Fallback;
        has_sigalgs = true;
        break;
      case 0x0010:  // application_layer_protocol_negotiation
        if (!e.vec16(&alpn) || e.n != 0 || alpn.n == 0) return Step::Fallback;
        has_alpn = true;
        break;
      case 0x002b: {  // supported_versions
        Reader v;
        if (!e.vec8(&v) || e.n != 0 || v.n % 2 != 0) return Step::Fallback;
        tls13 = has_u16(v, 0x0304);
        break;
      }
      case 0x0033:  // key_share
        if (!e.vec16(&shares) || e.n != 0) return Step::Fallback;
        has_shares = true;
        break;
      // Bodies OpenSSL checks in a TLS 1.3 ClientHello although a full handshake answered
      // here ignores them: a malformed one goes to OpenSSL for its decode_error. (It skips
      // the TLS 1.2 ones, ec_point_formats, extended_master_secret, renegotiation_info...)
      case 0x002d: {  // psk_key_exchange_modes
        Reader v;
        if (!e.vec8(&v) || e.n != 0 || v.n == 0) return Step::Fallback;
        break;
      }
      case 0x0031:  // post_handshake_auth
        if (e.n != 0) return Step::Fallback;
        break;
      case 0x0005: {  // status_request: OCSP with no responder ids or extensions (DER)
        uint8_t status_type = 0;
        Reader ids, req;
        if (!e.u8(&status_type)) return Step::Fallback;
        if (status_type == 1 &&
            (!e.vec16(&ids) || !e.vec16(&req) || e.n != 0 || ids.n != 0 || req.n != 0)) {
          return Step::Fallback;
        }
        break;
      }
      case 0x0001:  // max_fragment_length: OpenSSL honours it
      case 0x0029:  // pre_shared_key: resumption
      case 0x002a:  // early_data
      case 0x002c:  // cookie: only after a HelloRetryRequest
      case 0x0032:  // signature_algorithms_cert: OpenSSL's certificate choice
        return Step::Fallback;
      default:  // nothing a full handshake answered here depends on
        break;
    }
  }
  if (!tls13 || !has_groups || !has_shares || !has_sigalgs || !has_u16(sigalgs, kEcdsaP256Sha256)) {
    return Step::Fallback;
  }
  if (!has_sni && !allow_no_sni_) return Step::Fallback;  // OpenSSL refuses it
  id_ = l_->pick(l_->arg, has_sni ? std::string_view(sni_) : std::string_view());
  if (id_ == nullptr) return Step::Fallback;
  // The client's order, as OpenSSL does without server preference.
  Reader cs = suites;
  uint16_t s = 0;
  while (cs.u16(&s)) {
    if (std::find(l_->suites.begin(), l_->suites.end(), s) != l_->suites.end()) {
      suite_ = s;
      break;
    }
  }
  if (suite_ != 0x1301 && suite_ != 0x1302 && suite_ != 0x1303) return Step::Fallback;
  // The first key share of a group both sides support (OpenSSL's rule); the other shares are
  // still checked for shape.
  const uint8_t* peer = nullptr;
  bool decided = false;
  while (shares.n > 0) {
    uint16_t g = 0;
    Reader k;
    if (!shares.u16(&g) || !shares.vec16(&k) || k.n == 0) return Step::Fallback;
    if (decided) continue;
    if (!has_u16(groups, g)) return Step::Fallback;  // OpenSSL: illegal_parameter
    if (std::find(l_->groups.begin(), l_->groups.end(), g) == l_->groups.end()) continue;
    decided = true;
    if (g == kX25519 && k.n == 32) peer = k.p;
  }
  if (peer == nullptr) return Step::Fallback;
  bool h11 = false;
  while (has_alpn && alpn.n > 0) {
    Reader name;
    if (!alpn.vec8(&name) || name.n == 0) return Step::Fallback;
    h11 |= name.n == 8 && std::memcmp(name.p, "http/1.1", 8) == 0;
  }

  // From here on, the handshake is ours.
  const bool sha384 = suite_ == 0x1302;
  const size_t h = sha384 ? 48 : 32;
  hash_len_ = static_cast<uint8_t>(h);
  const Start& st = start(sha384);
  uint8_t pub[32], shared[32], srv_random[32];
  // A share OpenSSL would refuse (a low-order point): let it send its alert.
  if (!st.ok || !x25519(peer, pub, shared)) return Step::Fallback;
  if (RAND_bytes(srv_random, sizeof srv_random) != 1) return fail(kInternalError, out);
  transcript_ = EVP_MD_CTX_new();
  if (transcript_ == nullptr || EVP_DigestInit_ex(transcript_, md(sha384), nullptr) != 1 ||
      EVP_DigestUpdate(transcript_, b + 5, rlen) != 1) {
    return fail(kInternalError, out);
  }

  // ServerHello (RFC 8446 4.1.3).
  std::string sh;
  sh.reserve(128);
  sh.push_back(2);
  sh.append(3, '\0');
  put16(&sh, 0x0303);
  sh.append(reinterpret_cast<const char*>(srv_random), 32);
  sh.push_back(static_cast<char>(sid.n));
  sh.append(reinterpret_cast<const char*>(sid.p), sid.n);
  put16(&sh, suite_);
  sh.push_back(0);
  put16(&sh, 6 + 40);
  put16(&sh, 0x002b);  // supported_versions: TLS 1.3
  put16(&sh, 2);
  put16(&sh, 0x0304);
  put16(&sh, 0x0033);  // key_share
  put16(&sh, 36);
  put16(&sh, kX25519);
  put16(&sh, 32);
  sh.append(reinterpret_cast<const char*>(pub), 32);
  end_message(&sh, 0);
  if (EVP_DigestUpdate(transcript_, sh.data(), sh.size()) != 1) return fail(kInternalError, out);

  // Handshake secrets (RFC 8446 7.1); all of them are wiped on every way out.
  struct Secrets {
    uint8_t hs[64], chs[48], shs[48], derived[48], master[64], fkey[48], cap[48], sap[48];
    uint8_t verify[64];
    ~Secrets() { OPENSSL_cleanse(this, sizeof *this); }
  } k;
  uint8_t* const hs = k.hs;
  uint8_t* const chs = k.chs;
  uint8_t* const shs = k.shs;
  uint8_t* const derived = k.derived;
  uint8_t* const master = k.master;
  uint8_t* const fkey = k.fkey;
  uint8_t* const verify = k.verify;
  uint8_t hash[48];
  const uint8_t zeros[48] = {};
  bool ok = snapshot(hash) && tls13_hmac(sha384, st.derived, h, shared, 32, hs) == h &&
            tls13_expand_label(sha384, hs, h, "c hs traffic", hash, h, chs, h) &&
            tls13_expand_label(sha384, hs, h, "s hs traffic", hash, h, shs, h) &&
            tls13_expand_label(sha384, hs, h, "derived", st.empty_hash, h, derived, h) &&
            tls13_hmac(sha384, derived, h, zeros, h, master) == h;
  OPENSSL_cleanse(shared, sizeof shared);
  const TlsRecords::Cipher cipher = suite_ == 0x1301   ? TlsRecords::Cipher::Aes128Gcm
                                    : suite_ == 0x1302 ? TlsRecords::Cipher::Aes256Gcm
                                                       : TlsRecords::Cipher::Chacha20Poly1305;
  if (!ok || !hs_.start13(cipher, sha384, chs, shs)) return fail(kInternalError, out);

  // EncryptedExtensions, Certificate, CertificateVerify, Finished.
  std::string f;
  f.reserve(id_->certificate.size() + 256);
  f.push_back(8);
  f.append(3, '\0');
  const size_t ext_at = f.size();
  f.append(2, '\0');
  if (h11) {
    put16(&f, 0x0010);
    put16(&f, 11);
    put16(&f, 9);
    f.push_back(8);
    f.append("http/1.1");
  }
  if (has_sni) {  // the name was used (RFC 6066 3), as OpenSSL acknowledges it
    put16(&f, 0x0000);
    put16(&f, 0);
  }
  const size_t ext_len = f.size() - ext_at - 2;
  f[ext_at] = static_cast<char>(ext_len >> 8);
  f[ext_at + 1] = static_cast<char>(ext_len);
  end_message(&f, 0);
  f += id_->certificate;
  if (EVP_DigestUpdate(transcript_, f.data(), f.size()) != 1) return fail(kInternalError, out);
  // RFC 8446 4.4.3: 64 spaces, the context string, a zero byte, the transcript hash.
  uint8_t tbs[64 + 33 + 1 + 48], tbs_hash[32];
  std::memset(tbs, ' ', 64);
  std::memcpy(tbs + 64, "TLS 1.3, server CertificateVerify", 33);
  tbs[97] = 0;
  if (!snapshot(tbs + 98) || !digest(false, tbs, 98 + h, tbs_hash)) {
    return fail(kInternalError, out);
  }
  EVP_PKEY_CTX* sc = EVP_PKEY_CTX_new_from_pkey(nullptr, id_->key, nullptr);
  unsigned char sig[80];
  size_t sig_len = sizeof sig;
  ok = sc != nullptr && EVP_PKEY_sign_init(sc) == 1 &&
       EVP_PKEY_sign(sc, sig, &sig_len, tbs_hash, sizeof tbs_hash) == 1;
  EVP_PKEY_CTX_free(sc);
  if (!ok) return fail(kInternalError, out);
  const size_t cv_at = f.size();
  f.push_back(15);
  f.append(3, '\0');
  put16(&f, kEcdsaP256Sha256);
  put16(&f, sig_len);
  f.append(reinterpret_cast<const char*>(sig), sig_len);
  end_message(&f, cv_at);
  ok = EVP_DigestUpdate(transcript_, f.data() + cv_at, f.size() - cv_at) == 1 && snapshot(hash) &&
       tls13_expand_label(sha384, shs, h, "finished", nullptr, 0, fkey, h) &&
       tls13_hmac(sha384, fkey, h, hash, h, verify) == h;
  if (!ok) return fail(kInternalError, out);
  const size_t fin_at = f.size();
  f.push_back(20);
  put24(&f, h);
  f.append(reinterpret_cast<const char*>(verify), h);
  if (EVP_DigestUpdate(transcript_, f.data() + fin_at, f.size() - fin_at) != 1) {
    return fail(kInternalError, out);
  }

  // Application secrets, and the client's Finished we expect (over the same transcript).
  uint8_t* const cap = k.cap;
  uint8_t* const sap = k.sap;
  ok = snapshot(hash) && tls13_expand_label(sha384, master, h, "c ap traffic", hash, h, cap, h) &&
       tls13_expand_label(sha384, master, h, "s ap traffic", hash, h, sap, h) &&
       tls13_expand_label(sha384, chs, h, "finished", nullptr, 0, fkey, h) &&
       tls13_hmac(sha384, fkey, h, hash, h, verify) == h;
  if (ok) {
    std::memcpy(client_finished_, verify, h);
    app_ = std::make_unique<TlsRecords>();
    ok = app_->start13(cipher, sha384, cap, sap);
  }
  if (!ok) return fail(kInternalError, out);

  // ServerHello in the clear, a ChangeCipherSpec for middlebox compatibility when the client
  // sent a session id (RFC 8446 D.4), then the rest under the handshake key.
  state_ = State::Flight;
  out->clear();
  out->push_back(kHandshake);
  put16(out, 0x0303);
  put16(out, sh.size());
  *out += sh;
  if (sid.n > 0) out->append("\x14\x03\x03\x00\x01\x01", 6);
  const size_t at = out->size();
  out->resize(at + hs_.sealed_size(f.size()));
  out->resize(at + hs_.seal_as(kHandshake, reinterpret_cast<const uint8_t*>(f.data()), f.size(),
                               out->data() + at));
  in_.clear();
  return Step::Sent;
}

Tls13Server::Step Tls13Server::on_client_flight(std::string* out) {
  size_t pos = 0;
  while (in_.size() - pos >= 5) {
    auto* b = reinterpret_cast<uint8_t*>(in_.data() + pos);
    const size_t rlen = static_cast<size_t>(b[3]) << 8 | b[4];
    if (rlen > kMaxRecord + 256) return fail(kRecordOverflow, out);
    if (in_.size() - pos < 5 + rlen) break;
    if (b[0] == kChangeCipherSpec) {
      // Once, before anything encrypted (RFC 8446 5).
      if (ccs_seen_ || !hs_msgs_.empty() || rlen != 1 || b[5] != 1) {
        return fail(kUnexpectedMessage, out);
      }
      ccs_seen_ = true;
      pos += 6;
      continue;
    }
    if (b[0] == kAlert) {
      state_ = State::Failed;
      return Step::Fail;
    }
    if (b[0] != kAppData) return fail(kUnexpectedMessage, out);
    if (rlen > kMaxRecord + 1 + 16) return fail(kRecordOverflow, out);  // inner plaintext
    uint8_t type = 0;
    char* plain = nullptr;
    size_t plain_len = 0;
    if (!hs_.open_one(in_.data() + pos, 5 + rlen, &type, &plain, &plain_len)) {
      return fail(kBadRecordMac, out);
    }
    pos += 5 + rlen;
    if (type == kAlert) {
      state_ = State::Failed;
      return Step::Fail;
    }
    if (type != kHandshake || plain_len == 0) return fail(kUnexpectedMessage, out);
    hs_msgs_.append(plain, plain_len);
    if (hs_msgs_.size() < 4) continue;
    const auto* m = reinterpret_cast<const uint8_t*>(hs_msgs_.data());
    if (m[0] != 20) return fail(kUnexpectedMessage, out);  // only a Finished is due
    const size_t mlen = static_cast<size_t>(m[1]) << 16 | static_cast<size_t>(m[2]) << 8 | m[3];
    if (mlen != hash_len_) return fail(kDecodeError, out);
    if (hs_msgs_.size() < 4 + mlen) continue;  // a Finished cut across records
    if (hs_msgs_.size() > 4 + mlen) return fail(kUnexpectedMessage, out);
    if (CRYPTO_memcmp(m + 4, client_finished_, mlen) != 0) return fail(kDecryptError, out);
    leftover_.assign(in_, pos, std::string::npos);
    std::string().swap(in_);
    state_ = State::Done;
    return Step::Done;
  }
  in_.erase(0, pos);
  return Step::NeedMore;
}

}  // namespace parapet
