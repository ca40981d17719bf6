// Pkcs11Custody::seal_for_recipient: the token half of a CMS EnvelopedData.
// The content key is a session object (sensitive, extractable only by
// wrapping); only the IV, the ciphertext and the wrapped key leave the token.
#include <openssl/core_names.h>

#include "custody/pkcs11_custody.h"

namespace certcustody {
namespace {

constexpr int kMinRecipientBits = 2048;
constexpr std::size_t kCbcIvSize = 16;
constexpr unsigned kContentKeyBits = 256;

struct RsaPublicParts {
  Bytes n;
  Bytes e;
};

Error recipient_unsupported(const std::string& alg) {
  return Error{"pfx.recipient_unsupported", "the recipient key is " + alg + "; keys are sealed for RSA only",
               "issue the recipient an RSA certificate (2048 bits or more)"};
}

Result<Bytes> bn_param(const EVP_PKEY* key, const char* name) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &bn) != 1)
    return openssl_error("pfx.recipient_unsupported", std::string("the recipient RSA key has no ") + name,
                         "issue the recipient an RSA certificate (2048 bits or more)");
  Bytes out(static_cast<std::size_t>(BN_num_bytes(bn)));
  BN_bn2bin(bn, out.data());
  BN_free(bn);
  return out;
}

// n and e of an RSA key of at least kMinRecipientBits.
Result<RsaPublicParts> rsa_public_parts(const EVP_PKEY* key) {
  if (key == nullptr) return recipient_unsupported("missing");
  if (EVP_PKEY_is_a(key, "RSA") != 1) {
    const char* name = EVP_PKEY_get0_type_name(key);
    return recipient_unsupported(name != nullptr ? name : "not RSA");
  }
  const int bits = EVP_PKEY_get_bits(key);
  if (bits < kMinRecipientBits) return recipient_unsupported("RSA-" + std::to_string(bits));
  RsaPublicParts parts;
  CC_TRY_ASSIGN(parts.n, bn_param(key, OSSL_PKEY_PARAM_RSA_N));
  CC_TRY_ASSIGN(parts.e, bn_param(key, OSSL_PKEY_PARAM_RSA_E));
  return parts;
}

// The recipient's key as a session object that may only encrypt and wrap.
Result<CK_OBJECT_HANDLE> create_wrapping_key(TokenSession& s, RsaPublicParts& rsa) {
  CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
  CK_KEY_TYPE kt = CKK_RSA;
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  CK_ATTRIBUTE tmpl[] = {
      {CKA_CLASS, &cls, sizeof cls},
      {CKA_KEY_TYPE, &kt, sizeof kt},
      {CKA_TOKEN, &no, sizeof no},
      {CKA_PRIVATE, &no, sizeof no},
      {CKA_ENCRYPT, &yes, sizeof yes},
      {CKA_WRAP, &yes, sizeof yes},
      {CKA_VERIFY, &no, sizeof no},
      {CKA_MODULUS, rsa.n.data(), rsa.n.size()},
      {CKA_PUBLIC_EXPONENT, rsa.e.data(), rsa.e.size()},
  };
  return s.create_object(tmpl, "recipient public key");
}

}  // namespace

Result<SealedContent> Pkcs11Custody::seal_for_recipient(const EVP_PKEY* recipient_rsa_public,
                                                        std::span<const std::uint8_t> plaintext) {
  CC_TRY_ASSIGN(RsaPublicParts rsa, rsa_public_parts(recipient_rsa_public));
  return pool_->run([&](TokenSession& s) -> Result<SealedContent> {
    SealedContent out;
    CC_TRY_ASSIGN(CK_OBJECT_HANDLE cek_h, s.generate_aes_key("", {}, kContentKeyBits, false));
    ScopedObject cek(s, cek_h);
    CC_TRY_ASSIGN(out.iv, s.random(kCbcIvSize));
    CK_MECHANISM cbc{CKM_AES_CBC_PAD, out.iv.data(), static_cast<CK_ULONG>(out.iv.size())};
    CC_TRY_ASSIGN(out.ciphertext, s.encrypt(cek.get(), cbc, plaintext, "content key"));

    CC_TRY_ASSIGN(CK_OBJECT_HANDLE pub_h, create_wrapping_key(s, rsa));
    ScopedObject pub(s, pub_h);
    // SHA-1 with no label: the OAEP defaults of RFC 8017, all SoftHSM 2.6.1 offers.
    CK_RSA_PKCS_OAEP_PARAMS oaep{CKM_SHA_1, CKG_MGF1_SHA1, CKZ_DATA_SPECIFIED, nullptr, 0};
    CK_MECHANISM wrap{CKM_RSA_PKCS_OAEP, &oaep, sizeof oaep};
    CC_TRY_ASSIGN(out.wrapped_key, s.wrap(pub.get(), wrap, cek.get(), "content key"));
    return out;
  });
}

}  // namespace certcustody
