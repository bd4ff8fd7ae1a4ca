#include "proxy/tls_records.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <algorithm>
#include <cstring>

namespace parapet {

namespace {

constexpr size_t kMaxPlain = 16 * 1024;
constexpr size_t kTag = 16;
constexpr uint8_t kChangeCipherSpec = 20, kAlert = 21, kHandshake = 22, kAppData = 23;
constexpr uint8_t kKeyUpdate = 24;

const EVP_CIPHER* evp_cipher(TlsRecords::Cipher c) {
  // Fetched once: an implicit fetch per record would cost a provider lookup each time.
  static const EVP_CIPHER* aes128 = EVP_CIPHER_fetch(nullptr, "AES-128-GCM", nullptr);
  static const EVP_CIPHER* aes256 = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  static const EVP_CIPHER* chacha = EVP_CIPHER_fetch(nullptr, "ChaCha20-Poly1305", nullptr);
  switch (c) {
    case TlsRecords::Cipher::Aes128Gcm:
      return aes128;
    case TlsRecords::Cipher::Aes256Gcm:
      return aes256;
    case TlsRecords::Cipher::Chacha20Poly1305:
      return chacha;
  }
  return nullptr;
}

// One AEAD context per thread and direction. Re-keying (the AES key schedule) happens only
// when the thread moves to another connection's key; each record just sets its nonce.
struct Aead {
  Aead() : ctx(EVP_CIPHER_CTX_new()) {}
  ~Aead() { EVP_CIPHER_CTX_free(ctx); }
  Aead(const Aead&) = delete;
  Aead& operator=(const Aead&) = delete;

  bool start(TlsRecords::Cipher c, const uint8_t* k, size_t key_len, const uint8_t* nonce,
             int encrypt) {
    if (!ready || cipher != c) {
      ready = EVP_CipherInit_ex(ctx, evp_cipher(c), nullptr, k, nonce, encrypt) == 1;
      cipher = c;
      std::memcpy(key, k, key_len);
      return ready;
    }
    if (std::memcmp(key, k, key_len) != 0) {
      std::memcpy(key, k, key_len);
      return EVP_CipherInit_ex(ctx, nullptr, nullptr, k, nonce, encrypt) == 1;
    }
    return EVP_CipherInit_ex(ctx, nullptr, nullptr, nullptr, nonce, encrypt) == 1;
  }

  EVP_CIPHER_CTX* ctx;
  TlsRecords::Cipher cipher = TlsRecords::Cipher::Aes128Gcm;
  uint8_t key[32] = {};
  bool ready = false;
};

thread_local Aead t_seal, t_open;

void put_u64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<uint8_t>(v);
    v >>= 8;
  }
}

// RFC 8446 5.3 (and RFC 7905 for ChaCha20-Poly1305 in TLS 1.2): the IV XOR the sequence number.
void xor_nonce(const uint8_t iv[12], uint64_t seq, uint8_t out[12]) {
  std::memcpy(out, iv, 12);
  uint8_t s[8];
  put_u64(s, seq);
  for (int i = 0; i < 8; ++i) out[4 + i] ^= s[i];
}

// HMAC-SHA256/384 with the digest fetched once per thread: the key derivations below are a
// handful of HMACs per handshake, and a generic KDF object per derivation cost more than them.
class Hmac {
 public:
  explicit Hmac(const char* digest) {
    EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    ctx_ = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>(digest), 0),
        OSSL_PARAM_construct_end()};
    EVP_MAC_CTX_set_params(ctx_, params);
  }
  ~Hmac() { EVP_MAC_CTX_free(ctx_); }
  Hmac(const Hmac&) = delete;
  Hmac& operator=(const Hmac&) = delete;
  // out = HMAC(key, a || b); returns the MAC length.
  size_t mac(const uint8_t* key, size_t key_len, const uint8_t* a, size_t a_len, const uint8_t* b,
             size_t b_len, uint8_t* out) {
    size_t n = 0;
    if (EVP_MAC_init(ctx_, key, key_len, nullptr) != 1) return 0;
    EVP_MAC_update(ctx_, a, a_len);
    if (b_len > 0) EVP_MAC_update(ctx_, b, b_len);
    if (EVP_MAC_final(ctx_, out, &n, 64) != 1) return 0;
    return n;
  }

 private:
  EVP_MAC_CTX* ctx_;
};

Hmac& hmac(bool sha384) {
  thread_local Hmac h256("SHA256"), h384("SHA384");
  return sha384 ? h384 : h256;
}

}  // namespace

// RFC 8446 7.1: HKDF-Expand-Label(secret, label, context, length). Every length used here fits
// in one hash block, so HKDF-Expand is a single HMAC(secret, info || 0x01) (RFC 5869 2.3).
bool tls13_expand_label(bool sha384, const uint8_t* secret, size_t secret_len, const char* label,
                        const uint8_t* context, size_t context_len, uint8_t* out, size_t out_len) {
  uint8_t info[2 + 1 + 64 + 1 + 64 + 1];
  if (context_len > 64 || std::strlen(label) > 58) return false;
  size_t n = 0;
  info[n++] = static_cast<uint8_t>(out_len >> 8);
  info[n++] = static_cast<uint8_t>(out_len);
  const size_t llen = 6 + std::strlen(label);
  info[n++] = static_cast<uint8_t>(llen);
  std::memcpy(info + n, "tls13 ", 6);
  std::memcpy(info + n + 6, label, llen - 6);
  n += llen;
  info[n++] = static_cast<uint8_t>(context_len);
  if (context_len > 0) std::memcpy(info + n, context, context_len);
  n += context_len;
  info[n++] = 1;  // the block counter
  uint8_t t[64];
  const size_t len = hmac(sha384).mac(secret, secret_len, info, n, nullptr, 0, t);
  if (len < out_len) return false;
  std::memcpy(out, t, out_len);
  OPENSSL_cleanse(t, sizeof t);
  return true;
}

size_t tls13_hmac(bool sha384, const uint8_t* key, size_t key_len, const uint8_t* data, size_t len,
                  uint8_t* out) {
  return hmac(sha384).mac(key, key_len, data, len, nullptr, 0, out);
}

namespace {

bool expand_label(bool sha384, const uint8_t* secret, size_t secret_len, const char* label,
                  uint8_t* out, size_t out_len) {
  return tls13_expand_label(sha384, secret, secret_len, label, nullptr, 0, out, out_len);
}

// RFC 5246 5 and 6.3: the key block, P_hash(master_secret, "key expansion" + server_random +
// client_random): A(i) = HMAC(secret, A(i-1)), output HMAC(secret, A(i) + seed) ...
bool key_block(bool sha384, const uint8_t* master, size_t master_len, const uint8_t* seed,
               size_t seed_len, uint8_t* out, size_t out_len) {
  Hmac& h = hmac(sha384);
  uint8_t a[64], block[64];
  size_t alen = h.mac(master, master_len, seed, seed_len, nullptr, 0, a);
  if (alen == 0) return false;
  for (size_t done = 0; done < out_len;) {
    size_t blen = h.mac(master, master_len, a, alen, seed, seed_len, block);
    if (blen == 0) return false;
    size_t take = std::min(blen, out_len - done);
    std::memcpy(out + done, block, take);
    done += take;
    alen = h.mac(master, master_len, a, alen, nullptr, 0, a);
  }
  OPENSSL_cleanse(a, sizeof a);
  OPENSSL_cleanse(block, sizeof block);
  return true;
}

// The additional data of a TLS 1.2 record (RFC 5246 6.2.3.3): seq, type, version, length.
void aad12(uint8_t aad[13], uint64_t seq, uint8_t type, size_t len) {
  put_u64(aad, seq);
  aad[8] = type;
  aad[9] = 3;
  aad[10] = 3;
  aad[11] = static_cast<uint8_t>(len >> 8);
  aad[12] = static_cast<uint8_t>(len);
}

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

void TlsRecords::on_keylog_line(std::string_view line) {
  // "LABEL <client_random hex> <secret hex>" (NSS key log format).
  const bool client = line.starts_with("CLIENT_TRAFFIC_SECRET_0 ");
  const bool server = line.starts_with("SERVER_TRAFFIC_SECRET_0 ");
  if (!client && !server) return;
  size_t sp = line.rfind(' ');
  std::string_view h = line.substr(sp + 1);
  if (h.size() % 2 != 0 || h.size() / 2 > sizeof rd_.secret) return;
  Direction* d = client ? &rd_ : &wr_;
  for (size_t i = 0; i < h.size() / 2; ++i) {
    int hi = hex(h[2 * i]), lo = hex(h[2 * i + 1]);
    if (hi < 0 || lo < 0) return;
    d->secret[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  secret_len_ = static_cast<uint8_t>(h.size() / 2);
  (client ? have_client_secret_ : have_server_secret_) = true;
}

bool TlsRecords::derive13(Direction* d) const {
  return expand_label(sha384_, d->secret, secret_len_, "key", d->key, key_len_) &&
         expand_label(sha384_, d->secret, secret_len_, "iv", d->iv, 12);
}

bool TlsRecords::key_update(Direction* d) const {
  uint8_t next[48];
  if (!expand_label(sha384_, d->secret, secret_len_, "traffic upd", next, secret_len_)) {
    return false;
  }
  std::memcpy(d->secret, next, secret_len_);
  d->seq = 0;
  return derive13(d);
}

bool TlsRecords::start13(Cipher c, bool sha384, const uint8_t* client_secret,
                         const uint8_t* server_secret) {
  cipher_ = c;
  key_len_ = c == Cipher::Aes128Gcm ? 16 : 32;
  sha384_ = sha384;
  secret_len_ = sha384 ? 48 : 32;
  tls13_ = true;
  std::memcpy(rd_.secret, client_secret, secret_len_);
  std::memcpy(wr_.secret, server_secret, secret_len_);
  rd_.seq = wr_.seq = 0;
  return derive13(&rd_) && derive13(&wr_);
}

size_t TlsRecords::seal_as(uint8_t type, const uint8_t* p, size_t n, char* out) {
  iovec v{const_cast<uint8_t*>(p), n};
  size_t w = 0;
  for (size_t off = 0; off < n; off += kMaxPlain) {
    w += seal_record(type, &v, 1, off, std::min(kMaxPlain, n - off), out + w);
  }
  return w;
}

bool TlsRecords::open_one(char* rec, size_t len, uint8_t* type, char** plain, size_t* plain_len) {
  uint8_t* p = nullptr;
  if (!tls13_ || !decrypt(rec, len, type, &p, plain_len)) return false;
  *plain = reinterpret_cast<char*>(p);
  return true;
}

bool TlsRecords::take_over(SSL* ssl, uint64_t write_seq) {
  const SSL_CIPHER* c = SSL_get_current_cipher(ssl);
  if (c == nullptr) return false;
  switch (SSL_CIPHER_get_cipher_nid(c)) {
    case NID_aes_128_gcm:
      cipher_ = Cipher::Aes128Gcm;
      key_len_ = 16;
      break;
    case NID_aes_256_gcm:
      cipher_ = Cipher::Aes256Gcm;
      key_len_ = 32;
      break;
    case NID_chacha20_poly1305:
      cipher_ = Cipher::Chacha20Poly1305;
      key_len_ = 32;
      break;
    default:
      return false;
  }
  if (evp_cipher(cipher_) == nullptr) return false;
  const EVP_MD* md = SSL_CIPHER_get_handshake_digest(c);
  if (md == nullptr) return false;
  const int md_type = EVP_MD_get_type(md);
  if (md_type != NID_sha256 && md_type != NID_sha384) return false;
  sha384_ = md_type == NID_sha384;
  const int version = SSL_version(ssl);
  if (version == TLS1_3_VERSION) {
    if (!have_client_secret_ || !have_server_secret_ ||
        secret_len_ != static_cast<size_t>(EVP_MD_get_size(md))) {
      return false;
    }
    tls13_ = true;
    if (!derive13(&rd_) || !derive13(&wr_)) return false;
    rd_.seq = 0;  // the handshake read nothing past the client's Finished
    wr_.seq = write_seq;
    return true;
  }
  if (version != TLS1_2_VERSION) return false;
  tls13_ = false;
  uint8_t master[48];
  const size_t mlen = SSL_SESSION_get_master_key(SSL_get_session(ssl), master, sizeof master);
  uint8_t seed[13 + 64];
  std::memcpy(seed, "key expansion", 13);
  if (mlen == 0 || SSL_get_server_random(ssl, seed + 13, 32) != 32 ||
      SSL_get_client_random(ssl, seed + 45, 32) != 32) {
    return false;
  }
  const size_t iv_len = cipher_ == Cipher::Chacha20Poly1305 ? 12 : 4;  // GCM: the salt
  uint8_t block[2 * 32 + 2 * 12];
  const size_t need = 2 * key_len_ + 2 * iv_len;  // AEAD suites have no MAC keys
  const bool ok = key_block(sha384_, master, mlen, seed, sizeof seed, block, need);
  OPENSSL_cleanse(master, sizeof master);
  if (!ok) return false;
  std::memcpy(rd_.key, block, key_len_);
  std::memcpy(wr_.key, block + key_len_, key_len_);
  std::memcpy(rd_.iv, block + 2 * key_len_, iv_len);
  std::memcpy(wr_.iv, block + 2 * key_len_ + iv_len, iv_len);
  OPENSSL_cleanse(block, sizeof block);
  // Each side's Finished was the first record under these keys.
  rd_.seq = 1;
  wr_.seq = 1;
  return true;
}

size_t TlsRecords::overhead() const {
  if (tls13_) return 5 + 1 + kTag;  // header, inner content type, tag
  return cipher_ == Cipher::Chacha20Poly1305 ? 5 + kTag : 5 + 8 + kTag;  // GCM: explicit nonce
}

size_t TlsRecords::sealed_size(size_t plain) const {
  const size_t records = (plain + kMaxPlain - 1) / kMaxPlain;
  return pending_.size() + plain + records * overhead();
}

size_t TlsRecords::seal_record(uint8_t type, const iovec* pieces, size_t n, size_t skip,
                               size_t plen, char* out) {
  auto* o = reinterpret_cast<uint8_t*>(out);
  uint8_t nonce[12];
  uint8_t aad[13];
  size_t aad_len;
  size_t body;  // bytes after the header
  uint8_t* ct;  // where the ciphertext goes
  if (tls13_) {
    body = plen + 1 + kTag;
    o[0] = kAppData;  // the real type is inside (RFC 8446 5.2)
    xor_nonce(wr_.iv, wr_.seq, nonce);
    ct = o + 5;
  } else {
    body = plen + kTag;
    o[0] = type;
    if (cipher_ == Cipher::Chacha20Poly1305) {
      xor_nonce(wr_.iv, wr_.seq, nonce);
      ct = o + 5;
    } else {
      body += 8;
      std::memcpy(nonce, wr_.iv, 4);
      put_u64(nonce + 4, wr_.seq);
      std::memcpy(o + 5, nonce + 4, 8);  // the explicit part travels in the record
      ct = o + 13;
    }
  }
  o[1] = 3;
  o[2] = 3;
  o[3] = static_cast<uint8_t>(body >> 8);
  o[4] = static_cast<uint8_t>(body);
  if (tls13_) {
    std::memcpy(aad, o, 5);
    aad_len = 5;
  } else {
    aad12(aad, wr_.seq, type, plen);
    aad_len = 13;
  }
  EVP_CIPHER_CTX* ctx = t_seal.ctx;
  int len = 0;
  t_seal.start(cipher_, wr_.key, key_len_, nonce, 1);
  EVP_EncryptUpdate(ctx, nullptr, &len, aad, static_cast<int>(aad_len));
  size_t done = 0;
  for (size_t i = 0; i < n && done < plen; ++i) {
    size_t l = pieces[i].iov_len;
    if (skip >= l) {
      skip -= l;
      continue;
    }
    const auto* p = static_cast<const uint8_t*>(pieces[i].iov_base) + skip;
    l = std::min(l - skip, plen - done);
    skip = 0;
    EVP_EncryptUpdate(ctx, ct + done, &len, p, static_cast<int>(l));
    done += l;
  }
  if (tls13_) {
    EVP_EncryptUpdate(ctx, ct + done, &len, &type, 1);
    ++done;
  }
  EVP_EncryptFinal_ex(ctx, ct + done, &len);
  EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, kTag, ct + done);
  ++wr_.seq;
  return 5 + body;
}

size_t TlsRecords::seal(const iovec* pieces, size_t n, char* out) {
  size_t w = 0;
  if (!pending_.empty()) {
    std::memcpy(out, pending_.data(), pending_.size());
    w = pending_.size();
    std::string().swap(pending_);
  }
  size_t total = 0;
  for (size_t i = 0; i < n; ++i) total += pieces[i].iov_len;
  for (size_t off = 0; off < total; off += kMaxPlain) {
    w += seal_record(kAppData, pieces, n, off, std::min(kMaxPlain, total - off), out + w);
  }
  return w;
}

size_t TlsRecords::seal_close_notify(char* out) {
  const uint8_t alert[2] = {1, 0};  // warning, close_notify
  iovec v{const_cast<uint8_t*>(alert), 2};
  size_t w = 0;
  if (!pending_.empty()) {  // cannot be larger than one KeyUpdate record
    std::memcpy(out, pending_.data(), pending_.size());
    w = pending_.size();
    std::string().swap(pending_);
  }
  return w + seal_record(kAlert, &v, 1, 0, 2, out + w);
}

bool TlsRecords::decrypt(char* rec, size_t len, uint8_t* type, uint8_t** plain, size_t* plain_len) {
  auto* r = reinterpret_cast<uint8_t*>(rec);
  uint8_t* body = r + 5;
  size_t blen = len - 5;
  uint8_t nonce[12];
  uint8_t aad[13];
  size_t aad_len;
  uint8_t* ct;
  size_t clen;
  if (tls13_) {
    if (r[0] != kAppData || blen < kTag + 1) return false;
    xor_nonce(rd_.iv, rd_.seq, nonce);
    std::memcpy(aad, r, 5);
    aad_len = 5;
    ct = body;
    clen = blen - kTag;
  } else {
    if (r[0] < kChangeCipherSpec || r[0] > kAppData) return false;
    if (cipher_ == Cipher::Chacha20Poly1305) {
      if (blen < kTag) return false;
      xor_nonce(rd_.iv, rd_.seq, nonce);
      ct = body;
      clen = blen - kTag;
    } else {
      if (blen < 8 + kTag) return false;
      std::memcpy(nonce, rd_.iv, 4);
      std::memcpy(nonce + 4, body, 8);
      ct = body + 8;
      clen = blen - 8 - kTag;
    }
    aad12(aad, rd_.seq, r[0], clen);
    aad_len = 13;
  }
  EVP_CIPHER_CTX* c = t_open.ctx;
  int out = 0;
  if (!t_open.start(cipher_, rd_.key, key_len_, nonce, 0) ||
      EVP_DecryptUpdate(c, nullptr, &out, aad, static_cast<int>(aad_len)) != 1 ||
      EVP_DecryptUpdate(c, ct, &out, ct, static_cast<int>(clen)) != 1 ||
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, kTag, ct + clen) != 1 ||
      EVP_DecryptFinal_ex(c, ct + clen, &out) != 1) {
    return false;  // bad_record_mac
  }
  ++rd_.seq;
  *type = r[0];
  if (tls13_) {
    while (clen > 0 && ct[clen - 1] == 0) --clen;  // padding
    if (clen == 0) return false;
    *type = ct[--clen];
  }
  *plain = ct;
  *plain_len = clen;
  return true;
}

TlsRecords::Status TlsRecords::open_record(char* rec, size_t len, PlainFn fn, void* ctx,
                                           bool* stop) {
  uint8_t type = 0;
  uint8_t* ct = nullptr;
  size_t clen = 0;
  if (!decrypt(rec, len, &type, &ct, &clen)) return Status::Error;
  switch (type) {
    case kAppData:
      if (clen > 0 && !fn(ctx, reinterpret_cast<char*>(ct), clen)) *stop = true;
      return Status::Ok;
    case kAlert:
      if (clen != 2) return Status::Error;
      return ct[1] == 0 ? Status::Closed : Status::Error;
    case kHandshake: {
      // After the handshake only a TLS 1.3 KeyUpdate is welcome (no renegotiation).
      if (!tls13_) return Status::Error;
      size_t i = 0;
      while (i + 5 <= clen && ct[i] == kKeyUpdate && ct[i + 1] == 0 && ct[i + 2] == 0 &&
             ct[i + 3] == 1 && ct[i + 4] <= 1) {
        if (!key_update(&rd_)) return Status::Error;
        if (ct[i + 4] == 1) {
          // Answer with our own KeyUpdate (update_not_requested) under the old key, then
          // switch (RFC 8446 4.6.3).
          const uint8_t msg[5] = {kKeyUpdate, 0, 0, 1, 0};
          iovec v{const_cast<uint8_t*>(msg), sizeof msg};
          const size_t at = pending_.size();
          pending_.resize(at + 5 + sizeof msg + 1 + kTag);
          seal_record(kHandshake, &v, 1, 0, sizeof msg, pending_.data() + at);
          if (!key_update(&wr_)) return Status::Error;
        }
        i += 5;
      }
      return i == clen ? Status::Ok : Status::Error;
    }
    default:
      return Status::Error;
  }
}

TlsRecords::Status TlsRecords::open(char* data, size_t len, PlainFn fn, void* ctx) {
  const size_t max_body = kMaxPlain + (tls13_ ? 256 : 2048);
  bool stop = false;
  auto record_len = [&](const char* h) -> size_t {
    const auto* u = reinterpret_cast<const uint8_t*>(h);
    return 5 + (static_cast<size_t>(u[3]) << 8 | u[4]);
  };
  if (!partial_.empty()) {
    // Complete the record cut by the previous read.
    if (partial_.size() < 5) {
      size_t take = std::min(len, 5 - partial_.size());
      partial_.append(data, take);
      data += take;
      len -= take;
      if (partial_.size() < 5) return Status::Ok;
    }
    const size_t total = record_len(partial_.data());
    if (total - 5 > max_body) return Status::Error;
    size_t take = std::min(len, total - partial_.size());
    partial_.append(data, take);
    data += take;
    len -= take;
    if (partial_.size() < total) return Status::Ok;
    std::string rec;
    rec.swap(partial_);  // frees the buffer once the record is done
    Status s = open_record(rec.data(), rec.size(), fn, ctx, &stop);
    if (s != Status::Ok || stop) return s;
  }
  while (len >= 5) {
    const size_t total = record_len(data);
    if (total - 5 > max_body) return Status::Error;
    if (len < total) break;
    Status s = open_record(data, total, fn, ctx, &stop);
    if (s != Status::Ok || stop) return s;
    data += total;
    len -= total;
  }
  if (len > 0) partial_.assign(data, len);
  return Status::Ok;
}

}  // namespace parapet
