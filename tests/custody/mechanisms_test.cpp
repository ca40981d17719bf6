// What C_Sign is given for a signature, and what a token's mechanism list
// allows (no token needed: the list is made up here).
#include "custody/mechanisms.h"

#include <gtest/gtest.h>

#include <openssl/x509.h>

namespace certcustody {
namespace {

CK_MECHANISM_INFO sign_info(CK_ULONG min_bits, CK_ULONG max_bits) { return CK_MECHANISM_INFO{min_bits, max_bits, CKF_SIGN}; }

// What SoftHSM 2.6 lists, in the parts that matter here.
MechanismTable softhsm() {
  MechanismTable t;
  t[CKM_RSA_PKCS] = sign_info(512, 16384);
  t[CKM_RSA_PKCS_PSS] = sign_info(512, 16384);
  t[CKM_ECDSA] = sign_info(112, 521);
  for (CK_MECHANISM_TYPE d : {CKM_SHA_1, CKM_SHA224, CKM_SHA256, CKM_SHA384, CKM_SHA512})
    t[d] = CK_MECHANISM_INFO{0, 0, CKF_DIGEST};
  return t;
}

const SigningKey kRsa2048{false, 2048, 256, "'ra'"};
const SigningKey kP256{true, 256, 0, "'ec'"};
const std::string kToken = "token pkcs11:token=test";

Result<Bytes> input_for(const SignParams& p, std::size_t n, const SigningKey& key = kRsa2048,
                        const MechanismTable& t = softhsm()) {
  return signing_input(p, Bytes(n, 0x61), key, t, kToken);
}

TEST(SigningInput, Pkcs1WithADigestIsItsDigestInfo) {
  auto in = input_for({SignScheme::rsa_pkcs1, HashAlg::sha3_256, {}, {}}, 32);
  ASSERT_TRUE(in) << in.error().to_string();
  const unsigned char* p = in->data();
  std::unique_ptr<X509_SIG, OsslDeleter<X509_SIG_free>> sig(d2i_X509_SIG(nullptr, &p, static_cast<long>(in->size())));
  ASSERT_TRUE(sig);
  const X509_ALGOR* alg = nullptr;
  const ASN1_OCTET_STRING* digest = nullptr;
  X509_SIG_get0(sig.get(), &alg, &digest);
  const ASN1_OBJECT* oid = nullptr;
  X509_ALGOR_get0(&oid, nullptr, nullptr, alg);
  EXPECT_EQ(OBJ_obj2nid(oid), NID_sha3_256);
  EXPECT_EQ(ASN1_STRING_length(digest), 32);
}

TEST(SigningInput, Pkcs1WithoutADigestIsTheInputUpToKMinus11) {
  auto in = input_for({SignScheme::rsa_pkcs1, {}, {}, {}}, 245);
  ASSERT_TRUE(in) << in.error().to_string();
  EXPECT_EQ(*in, Bytes(245, 0x61));
  auto over = input_for({SignScheme::rsa_pkcs1, {}, {}, {}}, 246);
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code, "custody.data_invalid");
  EXPECT_NE(over.error().what.find("at most 245 bytes"), std::string::npos) << over.error().what;
}

TEST(SigningInput, ADigestOfTheWrongLengthIsNamed) {
  auto r = input_for({SignScheme::ecdsa, HashAlg::sha384, {}, {}}, 32, kP256);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "custody.digest_length");
}

TEST(SigningInput, PssSaltUpToEmLenMinusHLenMinus2) {
  // RSA-2048, SHA-256: emLen 256, so at most 222 bytes of salt.
  EXPECT_TRUE(input_for({SignScheme::rsa_pss, HashAlg::sha256, {}, std::size_t{222}}, 32));
  auto over = input_for({SignScheme::rsa_pss, HashAlg::sha256, {}, std::size_t{223}}, 32);
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code, "custody.data_invalid");
  // A 2049-bit modulus has emLen 256 too (RFC 8017 §9.1.1: ceil((modBits - 1) / 8)).
  const SigningKey odd{false, 2049, 257, "'odd'"};
  EXPECT_TRUE(input_for({SignScheme::rsa_pss, HashAlg::sha256, {}, std::size_t{222}}, 32, odd));
  EXPECT_FALSE(input_for({SignScheme::rsa_pss, HashAlg::sha256, {}, std::size_t{223}}, 32, odd));
  auto none = input_for({SignScheme::rsa_pss, {}, {}, {}}, 32);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, "custody.data_invalid");
}

TEST(SigningInput, WhatTheTokenDoesNotListIsNamed) {
  auto sha3 = input_for({SignScheme::rsa_pss, HashAlg::sha3_256, {}, {}}, 32);
  ASSERT_FALSE(sha3);
  EXPECT_EQ(sha3.error().code, "custody.mechanism_unsupported");
  EXPECT_NE(sha3.error().what.find("CKM_SHA3_256"), std::string::npos) << sha3.error().what;
  EXPECT_NE(sha3.error().what.find(kToken), std::string::npos) << sha3.error().what;
  // PKCS#1 v1.5 hashes nothing in the token: SHA-3 works with CKM_RSA_PKCS.
  EXPECT_TRUE(input_for({SignScheme::rsa_pkcs1, HashAlg::sha3_256, {}, {}}, 32));

  auto no_mgf1 = input_for({SignScheme::rsa_pss, HashAlg::sha256, HashAlg::sha512_256, {}}, 32);
  ASSERT_FALSE(no_mgf1);
  EXPECT_NE(no_mgf1.error().what.find("MGF1"), std::string::npos) << no_mgf1.error().what;

  MechanismTable no_pss = softhsm();
  no_pss.erase(CKM_RSA_PKCS_PSS);
  auto pss = input_for({SignScheme::rsa_pss, HashAlg::sha256, {}, {}}, 32, kRsa2048, no_pss);
  ASSERT_FALSE(pss);
  EXPECT_NE(pss.error().what.find("CKM_RSA_PKCS_PSS"), std::string::npos) << pss.error().what;

  MechanismTable verify_only = softhsm();
  verify_only[CKM_ECDSA].flags = CKF_VERIFY;
  auto ec = input_for({SignScheme::ecdsa, HashAlg::sha256, {}, {}}, 32, kP256, verify_only);
  ASSERT_FALSE(ec);
  EXPECT_NE(ec.error().what.find("not for signing"), std::string::npos) << ec.error().what;

  MechanismTable small = softhsm();
  small[CKM_RSA_PKCS] = sign_info(1024, 2048);
  const SigningKey rsa4096{false, 4096, 512, "'big'"};
  auto big = input_for({SignScheme::rsa_pkcs1, HashAlg::sha256, {}, {}}, 32, rsa4096, small);
  ASSERT_FALSE(big);
  EXPECT_NE(big.error().what.find("1024 to 2048 bits, not 4096"), std::string::npos) << big.error().what;
}

TEST(SigningInput, EcdsaTakesAnyInputAsTheHash) {
  for (std::size_t n : {20u, 32u, 48u, 64u}) EXPECT_TRUE(input_for({SignScheme::ecdsa, {}, {}, {}}, n, kP256)) << n;
}

TEST(Hashes, ByNidAndName) {
  EXPECT_EQ(hash_by_nid(NID_sha3_384), HashAlg::sha3_384);
  EXPECT_EQ(hash_by_nid(NID_sha224), HashAlg::sha224);
  EXPECT_FALSE(hash_by_nid(NID_md5));
  EXPECT_STREQ(hash_name(HashAlg::sha512_256), "SHA512-256");
  EXPECT_EQ(hash_size(HashAlg::sha3_224), 28u);
}

}  // namespace
}  // namespace certcustody
