#include "custody/mechanisms.h"

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include <cstdio>
#include <memory>

namespace certcustody {

namespace {

// PKCS#11 3.0 §6.2x (SHA-3); p11-kit's header predates them.
constexpr CK_MECHANISM_TYPE kCkmSha3_256 = 0x2B0, kCkmSha3_224 = 0x2B5, kCkmSha3_384 = 0x2C0, kCkmSha3_512 = 0x2D0;
constexpr CK_RSA_PKCS_MGF_TYPE kCkgMgf1Sha3_224 = 6, kCkgMgf1Sha3_256 = 7, kCkgMgf1Sha3_384 = 8,
                               kCkgMgf1Sha3_512 = 9;

struct HashMechanisms {
  HashAlg hash;
  CK_MECHANISM_TYPE digest;
  const char* digest_name;
  std::optional<CK_RSA_PKCS_MGF_TYPE> mgf1;
};
const HashMechanisms kHashMechanisms[] = {
    {HashAlg::sha1, CKM_SHA_1, "CKM_SHA_1", CKG_MGF1_SHA1},
    {HashAlg::sha224, CKM_SHA224, "CKM_SHA224", CKG_MGF1_SHA224},
    {HashAlg::sha256, CKM_SHA256, "CKM_SHA256", CKG_MGF1_SHA256},
    {HashAlg::sha384, CKM_SHA384, "CKM_SHA384", CKG_MGF1_SHA384},
    {HashAlg::sha512, CKM_SHA512, "CKM_SHA512", CKG_MGF1_SHA512},
    {HashAlg::sha512_224, CKM_SHA512_224, "CKM_SHA512_224", std::nullopt},
    {HashAlg::sha512_256, CKM_SHA512_256, "CKM_SHA512_256", std::nullopt},
    {HashAlg::sha3_224, kCkmSha3_224, "CKM_SHA3_224", kCkgMgf1Sha3_224},
    {HashAlg::sha3_256, kCkmSha3_256, "CKM_SHA3_256", kCkgMgf1Sha3_256},
    {HashAlg::sha3_384, kCkmSha3_384, "CKM_SHA3_384", kCkgMgf1Sha3_384},
    {HashAlg::sha3_512, kCkmSha3_512, "CKM_SHA3_512", kCkgMgf1Sha3_512},
};

const HashMechanisms& mechanisms_of(HashAlg h) {
  for (const HashMechanisms& m : kHashMechanisms)
    if (m.hash == h) return m;
  return kHashMechanisms[2];
}

Error unsupported(const std::string& what, const std::string& token_name) {
  return Error{"custody.mechanism_unsupported", token_name + " " + what,
               "use what the token's mechanism list offers (`pkcs11-tool --list-mechanisms` shows it), e.g. "
               "SHA-256 with PKCS#1 v1.5, PSS (salt = digest length) or ECDSA"};
}

// The token offers `m` for `flag` (CKF_SIGN, CKF_DECRYPT) with keys of `bits`.
Status require(const MechanismTable& t, CK_MECHANISM_TYPE m, CK_FLAGS flag, unsigned bits,
               const std::string& token_name) {
  const std::string name = ck_mechanism_name(m);
  const char* use = flag == CKF_SIGN ? "signing" : "decryption";
  auto it = t.find(m);
  if (it == t.end()) return unsupported("does not offer " + name + " (not in its mechanism list)", token_name);
  if ((it->second.flags & flag) == 0) return unsupported("offers " + name + " but not for " + use, token_name);
  const CK_MECHANISM_INFO& i = it->second;
  if (bits != 0 && i.ulMaxKeySize != 0 && (bits < i.ulMinKeySize || bits > i.ulMaxKeySize))
    return unsupported("does " + name + " with keys of " + std::to_string(i.ulMinKeySize) + " to " +
                           std::to_string(i.ulMaxKeySize) + " bits, not " + std::to_string(bits),
                       token_name);
  return {};
}

// RSA-PSS and OAEP hash inside the token's mechanism: it must know the digest.
Status require_digest(const MechanismTable& t, HashAlg h, const char* role, const std::string& token_name) {
  const HashMechanisms& m = mechanisms_of(h);
  if (t.count(m.digest) == 0)
    return unsupported("cannot use " + std::string(hash_name(h)) + " as the " + role + " (" + m.digest_name +
                           " is not in its mechanism list)",
                       token_name);
  if (!m.mgf1)
    return unsupported("cannot use " + std::string(hash_name(h)) + " as the " + role +
                           " (PKCS#11 defines no MGF1 with it)",
                       token_name);
  return {};
}

Error data_invalid(const std::string& what, const std::string& remedy) {
  return Error{"custody.data_invalid", what, remedy};
}

}  // namespace

CK_MECHANISM_TYPE ck_hash(HashAlg h) { return mechanisms_of(h).digest; }
std::optional<CK_RSA_PKCS_MGF_TYPE> ck_mgf1(HashAlg h) { return mechanisms_of(h).mgf1; }

std::string ck_mechanism_name(CK_MECHANISM_TYPE m) {
  switch (m) {
    case CKM_RSA_PKCS: return "CKM_RSA_PKCS";
    case CKM_RSA_PKCS_PSS: return "CKM_RSA_PKCS_PSS";
    case CKM_RSA_PKCS_OAEP: return "CKM_RSA_PKCS_OAEP";
    case CKM_RSA_X_509: return "CKM_RSA_X_509";
    case CKM_ECDSA: return "CKM_ECDSA";
    default: break;
  }
  for (const HashMechanisms& h : kHashMechanisms)
    if (h.digest == m) return h.digest_name;
  char buf[32];
  std::snprintf(buf, sizeof buf, "CKM_0x%08lX", static_cast<unsigned long>(m));
  return buf;
}

Result<Bytes> digest_info(HashAlg hash, std::span<const std::uint8_t> digest) {
  std::unique_ptr<X509_SIG, OsslDeleter<X509_SIG_free>> sig(X509_SIG_new());
  X509_ALGOR* alg = nullptr;
  ASN1_OCTET_STRING* os = nullptr;
  if (sig) X509_SIG_getm(sig.get(), &alg, &os);
  if (!sig || X509_ALGOR_set0(alg, OBJ_nid2obj(hash_nid(hash)), V_ASN1_NULL, nullptr) != 1 ||
      ASN1_OCTET_STRING_set(os, digest.data(), static_cast<int>(digest.size())) != 1)
    return openssl_error("crypto.encode_failed", "cannot encode the DigestInfo", "retry; check memory");
  int n = i2d_X509_SIG(sig.get(), nullptr);
  Bytes der(static_cast<std::size_t>(n > 0 ? n : 0));
  unsigned char* p = der.data();
  if (n <= 0 || i2d_X509_SIG(sig.get(), &p) != n)
    return openssl_error("crypto.encode_failed", "cannot encode the DigestInfo", "retry; check memory");
  return der;
}

Result<Bytes> ecdsa_raw_to_der(std::span<const std::uint8_t> raw) {
  if (raw.empty() || raw.size() % 2 != 0)
    return Error{"custody.signature_malformed", "the token returned an ECDSA signature of odd length",
                 "check the HSM firmware; the signature was discarded"};
  const int half = static_cast<int>(raw.size() / 2);
  std::unique_ptr<ECDSA_SIG, OsslDeleter<ECDSA_SIG_free>> sig(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(raw.data(), half, nullptr);
  BIGNUM* s = BN_bin2bn(raw.data() + half, half, nullptr);
  if (!sig || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return openssl_error("crypto.encode_failed", "cannot encode the ECDSA signature", "retry; check memory");
  }
  int n = i2d_ECDSA_SIG(sig.get(), nullptr);
  Bytes der(static_cast<std::size_t>(n > 0 ? n : 0));
  unsigned char* p = der.data();
  if (n <= 0 || i2d_ECDSA_SIG(sig.get(), &p) != n)
    return openssl_error("crypto.encode_failed", "cannot encode the ECDSA signature", "retry; check memory");
  return der;
}

unsigned ec_degree(std::span<const std::uint8_t> der) {
  const unsigned char* p = der.data();
  ASN1_OBJECT* obj = d2i_ASN1_OBJECT(nullptr, &p, static_cast<long>(der.size()));
  if (obj == nullptr) return 0;
  int nid = OBJ_obj2nid(obj);
  ASN1_OBJECT_free(obj);
  std::unique_ptr<EC_GROUP, OsslDeleter<EC_GROUP_free>> g(EC_GROUP_new_by_curve_name(nid));
  return g ? static_cast<unsigned>(EC_GROUP_get_degree(g.get())) : 0;
}

std::size_t ecdsa_signature_size(std::span<const std::uint8_t> der) {
  return 2 * static_cast<std::size_t>((ec_degree(der) + 7) / 8);
}

Result<Bytes> signing_input(const SignParams& p, std::span<const std::uint8_t> input, const SigningKey& key,
                            const MechanismTable& token, const std::string& token_name) {
  if (p.hash) CC_TRY(check_digest_length(*p.hash, input));
  switch (p.scheme) {
    case SignScheme::ecdsa:
      CC_TRY(require(token, CKM_ECDSA, CKF_SIGN, key.bits, token_name));
      return Bytes(input.begin(), input.end());
    case SignScheme::rsa_pkcs1: {
      CC_TRY(require(token, CKM_RSA_PKCS, CKF_SIGN, key.bits, token_name));
      Bytes data(input.begin(), input.end());
      if (p.hash) {
        CC_TRY_ASSIGN(data, digest_info(*p.hash, input));
      }
      // RFC 8017 §9.2: the encoded message needs 11 bytes of padding.
      if (data.size() + 11 > key.modulus_bytes)
        return data_invalid("a PKCS#1 v1.5 signature with the " + std::to_string(key.bits) + "-bit key " + key.name +
                                " covers at most " + std::to_string(key.modulus_bytes - 11) + " bytes, not " +
                                std::to_string(data.size()),
                            "sign a digest of the data (set a digest: -digest / digest:<name>)");
      return data;
    }
    case SignScheme::rsa_pss: {
      if (!p.hash)
        return data_invalid("RSA-PSS signs a digest, and none was named", "set the digest (digest:<name>)");
      const HashAlg mgf1 = p.mgf1.value_or(*p.hash);
      CC_TRY(require(token, CKM_RSA_PKCS_PSS, CKF_SIGN, key.bits, token_name));
      CC_TRY(require_digest(token, *p.hash, "RSA-PSS digest", token_name));
      CC_TRY(require_digest(token, mgf1, "RSA-PSS MGF1 digest", token_name));
      // RFC 8017 §9.1.1: emLen = ceil((modBits - 1) / 8) >= hLen + sLen + 2.
      const std::size_t em_len = (key.bits + 6) / 8, h_len = hash_size(*p.hash);
      const std::size_t max_salt = em_len >= h_len + 2 ? em_len - h_len - 2 : 0;
      if (p.salt_len.value_or(h_len) > max_salt)
        return data_invalid("an RSA-PSS salt of " + std::to_string(p.salt_len.value_or(h_len)) +
                                " bytes does not fit the " + std::to_string(key.bits) + "-bit key " + key.name +
                                " with " + hash_name(*p.hash) + " (at most " + std::to_string(max_salt) + ")",
                            "use rsa_pss_saltlen:digest or max");
      return Bytes(input.begin(), input.end());
    }
  }
  return data_invalid("unknown signature scheme", "report this as a certcustody bug");
}

std::string describe_signature(const SignParams& p) {
  std::string s = p.scheme == SignScheme::ecdsa ? "ECDSA" : p.scheme == SignScheme::rsa_pss ? "RSA-PSS" : "RSA PKCS#1 v1.5";
  s += p.hash ? std::string(" with ") + hash_name(*p.hash) : std::string(" over the input as given");
  if (p.scheme == SignScheme::rsa_pss && p.hash)
    s += std::string(", MGF1 ") + hash_name(p.mgf1.value_or(*p.hash)) + ", a salt of " +
         std::to_string(p.salt_len.value_or(hash_size(*p.hash))) + " bytes";
  return s;
}

Status check_oaep_mechanism(HashAlg hash, unsigned key_bits, const MechanismTable& token,
                            const std::string& token_name) {
  CC_TRY(require(token, CKM_RSA_PKCS_OAEP, CKF_DECRYPT, key_bits, token_name));
  return require_digest(token, hash, "OAEP digest", token_name);
}

}  // namespace certcustody
