#include "custody/mechanisms.h"

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include <memory>

namespace certcustody {

CK_MECHANISM_TYPE ck_hash(HashAlg h) {
  switch (h) {
    case HashAlg::sha1: return CKM_SHA_1;
    case HashAlg::sha256: return CKM_SHA256;
    case HashAlg::sha384: return CKM_SHA384;
    case HashAlg::sha512: return CKM_SHA512;
  }
  return CKM_SHA256;
}

CK_RSA_PKCS_MGF_TYPE ck_mgf1(HashAlg h) {
  switch (h) {
    case HashAlg::sha1: return CKG_MGF1_SHA1;
    case HashAlg::sha256: return CKG_MGF1_SHA256;
    case HashAlg::sha384: return CKG_MGF1_SHA384;
    case HashAlg::sha512: return CKG_MGF1_SHA512;
  }
  return CKG_MGF1_SHA256;
}

static int hash_nid(HashAlg h) {
  switch (h) {
    case HashAlg::sha1: return NID_sha1;
    case HashAlg::sha256: return NID_sha256;
    case HashAlg::sha384: return NID_sha384;
    case HashAlg::sha512: return NID_sha512;
  }
  return NID_sha256;
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

std::size_t ecdsa_signature_size(std::span<const std::uint8_t> der) {
  const unsigned char* p = der.data();
  ASN1_OBJECT* obj = d2i_ASN1_OBJECT(nullptr, &p, static_cast<long>(der.size()));
  if (obj == nullptr) return 0;
  int nid = OBJ_obj2nid(obj);
  ASN1_OBJECT_free(obj);
  std::unique_ptr<EC_GROUP, OsslDeleter<EC_GROUP_free>> g(EC_GROUP_new_by_curve_name(nid));
  if (!g) return 0;
  return 2 * static_cast<std::size_t>((EC_GROUP_get_degree(g.get()) + 7) / 8);
}

}  // namespace certcustody
