// Known answers for the TPM session arithmetic (src/custody/tpm2_session_crypto.h).
//
// Sources of the vectors:
// - KDFa: the TPM's own KDFa self-test, TCG TPM 2.0 Library Specification
//   Part 4 ("Supporting Routines – Code"), KdfTestData.h, run by TestKDFa()
//   in AlgorithmTests.c; the same file ships in libtpms (src/tpm2/KdfTestData.h,
//   the TPM swtpm runs) and Microsoft's ms-tpm-20-ref. One vector per hash.
// - KDFe: chrisfenner/tpm-test-vectors, vectors/kdfe.json (KDFe of TPM 2.0
//   Part 1 §11.4.10.3, generated with go-tpm), the whole-byte cases.
// - ECDH session salt: chrisfenner/tpm-test-vectors,
//   vectors/ecc_labeled_encaps.json, the cases with label "SECRET" that the
//   file marks "Validated": "TPM2_StartAuthSession" (accepted by a TPM
//   simulator as the salt of a session): ephemeral private key, the
//   storage key's TPMT_PUBLIC, the salt and the encrypted secret.
// - The session HMAC, cpHash and rpHash have no published vectors that we
//   know of; tests/integration/tpm_test.cpp (TpmSessions.
//   OurSessionArithmeticAgreesWithTpm2TssAndTheTpm) checks them, and KDFa
//   once more, against what tpm2-tss sends and swtpm answers on the wire.
#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/param_build.h>
#include <tss2/tss2_mu.h>

#include <string>

#include "custody/tpm2_key_file.h"
#include "custody/tpm2_session_crypto.h"

namespace certcustody {
namespace {

Bytes hex(const std::string& h) {
  Bytes out;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2) out.push_back(static_cast<std::uint8_t>(std::stoi(h.substr(i, 2), nullptr, 16)));
  return out;
}

struct KdfCase {
  const char* name;
  TPMI_ALG_HASH alg;
  const char* key;  // KDFa: the HMAC key; KDFe: Z
  const char* label;
  const char* context_u;
  const char* context_v;
  const char* result;
};

TEST(TpmKdfa, MatchesTheTpmSelfTestVectors) {
  // KdfTestData.h: c_kdfTestKeyIn, c_kdfTestLabel ("KDFSELFTESTLABEL" and
  // its NUL, which KDFa writes once), c_kdfTestContextU/V, 160 bits out;
  // c_kdfTestKeyOut for each hash the TPM may be built with.
  const char* key = "271fa08bbdc5060ec3dfa928ff9b73123a12da0c";
  for (const KdfCase& c : {
           KdfCase{"SHA-1", TPM2_ALG_SHA1, key, "KDFSELFTESTLABEL", "ce244f395dca7391", "da504031ddf12e83",
                   "55b5a7184aa07423c47dae766c26a2377d7cf851"},
           KdfCase{"SHA-256", TPM2_ALG_SHA256, key, "KDFSELFTESTLABEL", "ce244f395dca7391", "da504031ddf12e83",
                   "bb0259e1c8ba607e6a2cd704b69a902e9ade84c4"},
           KdfCase{"SHA-384", TPM2_ALG_SHA384, key, "KDFSELFTESTLABEL", "ce244f395dca7391", "da504031ddf12e83",
                   "1dce70c9113eb2dba47bd9cfc72bf46f45b09312"},
           KdfCase{"SHA-512", TPM2_ALG_SHA512, key, "KDFSELFTESTLABEL", "ce244f395dca7391", "da504031ddf12e83",
                   "8be2c1b85b78569b9fa759f5857c56d684810fd3"}}) {
    SCOPED_TRACE(c.name);
    Bytes out(20);
    ASSERT_TRUE(tpm_kdfa({}, c.alg, hex(c.key), c.label, hex(c.context_u), hex(c.context_v), out));
    EXPECT_EQ(out, hex(c.result));
  }
}

TEST(TpmKdfe, MatchesPublishedVectors) {
  for (const KdfCase& c : {
           KdfCase{"06_SHA1_32", TPM2_ALG_SHA1, "9b050039c8e5ca60deeb978f2faf573c94af61", "IDENTITY",
                   "ff1a1852db7b60a5c963f17eb306f3a905d100ae", "0047ee45771a256d58b091b6d6", "94c3c160"},
           KdfCase{"11_SHA1_488", TPM2_ALG_SHA1, "ff91ed7a50947619ba87", "SECRET", "dfdf401d4eeaab4e0105bc159d483600",
                   "ff6edce14a",
                   "3a235d45be65331fddbf6d60807df8f65e66f73775528d77b40bcf409f114ffa9f1447db1743aeabcc61602d1e710fd6b1f0a0"
                   "c901d850d30b2e6938e8"},
           KdfCase{"35_SHA256_336", TPM2_ALG_SHA256, "8995a6318a0217c7c7bf543f50da29016c4ff2a1ea5daf54ebcb00",
                   "INTEGRITY", "8852f14d8e9b68", "74ff",
                   "92343ef558feb95fd14838f9ca39c8618598a7eeb31af7fc276030b8c3ff326d4870f190e54abbec9da4"},
           KdfCase{"38_SHA256_496", TPM2_ALG_SHA256, "00", "OBFUSCATE",
                   "ebcb3cd4a002941ed496ef1d32a70b0b7f6f05b8a51803d5a9ff9b",
                   "a1f79a7ee2beee21e2bfaee67769874687bfe21b2468fc8e721b6e967e12ff",
                   "dcd14d72e0d5d8ec15b5ea15ae060e02f0e042f3af7efbd73650bb4457d73b060ef8f78bdf8cea099fe98fad6359bcfe92c1c6"
                   "be8a157c1064c85ada3ad2"},
           KdfCase{"48_SHA256_744", TPM2_ALG_SHA256, "fd4f9daba331a0a50a4e4c5fdf55034267", "CFB", "93bc3d509a00",
                   "beb773b718a4642d40ac3f80d34f2361b7c5f47cf7f69bb397a45b00",
                   "cf21b4a548a004a64acf5e5a5a199cfa3407fe691f0eb73a7ec664a973bb22c9fd79155cd0972e0f2b1c135e61749723833e7c"
                   "fc9e82df2e74e46ab0c3a9a25d64016c1de347bb48d134d9c92e37043497839c57aec585b0f434c79ff5"},
           KdfCase{"58_SHA384_232", TPM2_ALG_SHA384, "ff1f419e5f1dbb2077d6a82e82a928a56bedf5c8c223a10c6646ca5f0db99f91f0",
                   "XOR", "6dcf4b9a62a0438b83c7e27d18ecd75075341ae7bd1d3a2615ff09885363abcef324eb1396816c3bb196",
                   "004352c8abc6f41bc955e09f9eeab29e83b3451f",
                   "af807b1ff3cf665c976579e765cb93d6c1f35159364fb8e5b6f1742015"}}) {
    SCOPED_TRACE(c.name);
    Bytes out(hex(c.result).size());
    ASSERT_TRUE(tpm_kdfe({}, c.alg, hex(c.key), c.label, hex(c.context_u), hex(c.context_v), out));
    EXPECT_EQ(out, hex(c.result));
  }
}

// The ephemeral key pair of a vector: its private scalar and d·G.
EvpPkeyPtr ephemeral_key(const char* group_name, int nid, const Bytes& d) {
  std::unique_ptr<EC_GROUP, OsslDeleter<EC_GROUP_free>> group(EC_GROUP_new_by_curve_name(nid));
  std::unique_ptr<BIGNUM, OsslDeleter<BN_free>> priv(BN_bin2bn(d.data(), static_cast<int>(d.size()), nullptr));
  std::unique_ptr<EC_POINT, OsslDeleter<EC_POINT_free>> pub(group ? EC_POINT_new(group.get()) : nullptr);
  if (!pub || EC_POINT_mul(group.get(), pub.get(), priv.get(), nullptr, nullptr, nullptr) != 1) return nullptr;
  unsigned char point[1 + 2 * 66];
  const std::size_t len =
      EC_POINT_point2oct(group.get(), pub.get(), POINT_CONVERSION_UNCOMPRESSED, point, sizeof point, nullptr);
  std::unique_ptr<OSSL_PARAM_BLD, OsslDeleter<OSSL_PARAM_BLD_free>> bld(OSSL_PARAM_BLD_new());
  OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group_name, 0);
  OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_PRIV_KEY, priv.get());
  OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point, len);
  std::unique_ptr<OSSL_PARAM, OsslDeleter<OSSL_PARAM_free>> params(OSSL_PARAM_BLD_to_param(bld.get()));
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  EVP_PKEY* key = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_KEYPAIR, params.get()) != 1)
    return nullptr;
  return EvpPkeyPtr(key);
}

struct SaltCase {
  const char* name;
  const char* group;
  int nid;
  const char* ephemeral_private;
  const char* public_key;  // TPMT_PUBLIC of the storage key
  const char* secret;
  const char* ciphertext;  // TPM2B_ENCRYPTED_SECRET contents: the ephemeral TPMS_ECC_POINT
};

TEST(TpmSessionSalt, EcdhMatchesVectorsATpmAcceptedAsSessionSalts) {
  for (const SaltCase& c : {
           SaltCase{"06_P256_SHA256_128_restricted", "P-256", NID_X9_62_prime256v1,
                    "897989c19f950c5f32f3a2156832bb49b39b0562f372e6e180be309c2bbc07c0",
                    "0023000b00030460000000060080004300100003001000207d1f639091f4f93753e5ca964f537491e2ee50058bdf8d93c2"
                    "f6f165d02a6f2c00205b4e618a7dad9e0cbc7d974ff78ac75ac3ca7be3c54a2b064e0f42f3b43de892",
                    "428bee6074a8d9c43979617363ca78cedc7b56673d43750678c965d0fddeb4be",
                    "00208588b3516e0cc43073b2577362ff1b712373213043bcb0c7364c74bfc6f626e200203534ac662cd4462172cdd0dbe3f0"
                    "d0e28edb9e08484a3a34b8e8e00d9cb5b4c1"},
           SaltCase{"22_P256_SHA384_256_restricted", "P-256", NID_X9_62_prime256v1,
                    "7ab6e4461509bc96e42de81b6ace267b70bea0ef280eea3b2739e424161bf0cb",
                    "0023000c000304600000000601000043001000030010002071f00a80dc755a5d1cf0276ab6991922eb30d8585ade524bc3"
                    "85056e84fe20a300203b606eefdb63718d8d3e2c726b346471fad7ef02f66e4488d96d7afc77be55c6",
                    "fc2c863f0418b5050f74493cfce81a27e5e89cb345f389b34035dbf8546c558d9fc0050b4456431457718fcc7bc31317",
                    "0020ac3f7d587b7decb2f6c2119b689e50b591d845a7c5fe93fe1788085631d8712e0020a8e12dfdfc22f5aaf21109ae1c69"
                    "509ed60a29f3bc65f5e9c9c754808b500842"},
           SaltCase{"51_P384_SHA384_128_restricted", "P-384", NID_secp384r1,
                    "a0eb65a0d5c5d8ae3a0785fdce2aa9eb528ef10ca25716fc9e5bf206c63e76335df7c5fec044e869c241411af4ccd507",
                    "0023000c000304600000000600800043001000040010003000bbbc63d7afe86127176a72229a8e52820f1638a929d76bfb"
                    "aa71dc2bf3c7cb27cbc7d480f58c736bd154bf99f444e20030c6d8b0d9d8f1992b247ce64f6a24a09ff5310677df04784a"
                    "84b6324663c19da8b93ddd201d8e558adbb38d1da78efd9c",
                    "b0490a3974276bb21851a32c3de58abfa17d82b84678395dfa93ab4ec054587411221f1c6564e329a0c47181e262d6b2",
                    "003052db424c78e89623edc972e7551ccb758f1cc64a336314012a5d23f0f6e828248a3c8404aa9aef749946bbcadf3ef91f"
                    "00307e7c9428fe3050374fe0b7152f168845b3a13852db2b8015699181a3826fddf7347f14dc04fc42e4a9112321e9eb0b92"}}) {
    SCOPED_TRACE(c.name);
    const Bytes marshalled = hex(c.public_key);
    TPMT_PUBLIC pub{};
    std::size_t off = 0;
    ASSERT_EQ(Tss2_MU_TPMT_PUBLIC_Unmarshal(marshalled.data(), marshalled.size(), &off, &pub), TSS2_RC_SUCCESS);
    ASSERT_EQ(off, marshalled.size());
    EXPECT_FALSE(session_salt_unsupported(pub));
    EvpPkeyPtr ephemeral = ephemeral_key(c.group, c.nid, hex(c.ephemeral_private));
    ASSERT_TRUE(ephemeral);
    SessionSalt salt;
    ASSERT_TRUE(ecdh_session_salt({}, pub, ephemeral.get(), salt));
    EXPECT_EQ(Bytes(salt.salt.begin(), salt.salt.end()), hex(c.secret));
    EXPECT_EQ(Bytes(salt.encrypted.secret, salt.encrypted.secret + salt.encrypted.size), hex(c.ciphertext));
    // A fresh salt to the same key: nameAlg-sized, another ephemeral point each time.
    SessionSalt a, b;
    ASSERT_TRUE(make_session_salt({}, pub, a));
    ASSERT_TRUE(make_session_salt({}, pub, b));
    EXPECT_EQ(a.salt.size(), tpm_hash_size(pub.nameAlg));
    EXPECT_NE(Bytes(a.encrypted.secret, a.encrypted.secret + a.encrypted.size),
              Bytes(b.encrypted.secret, b.encrypted.secret + b.encrypted.size));
  }
}

TEST(TpmSessionSalt, CurvesAndNameAlgorithmsItCannotSaltToAreNamed) {
  auto tmpl = srk_template(KeyType::ec_p256);
  ASSERT_TRUE(tmpl);
  TPMT_PUBLIC p = tmpl->publicArea;
  EXPECT_FALSE(session_salt_unsupported(p));
  p.parameters.eccDetail.curveID = TPM2_ECC_BN_P256;
  auto why = session_salt_unsupported(p);
  ASSERT_TRUE(why);
  EXPECT_NE(why->find("curve"), std::string::npos) << *why;
  SessionSalt s;
  EXPECT_FALSE(make_session_salt({}, p, s));
  p = tmpl->publicArea;
  p.nameAlg = TPM2_ALG_SM3_256;
  why = session_salt_unsupported(p);
  ASSERT_TRUE(why);
  EXPECT_NE(why->find("name algorithm"), std::string::npos) << *why;
  auto rsa = srk_template(KeyType::rsa2048);
  ASSERT_TRUE(rsa);
  EXPECT_FALSE(session_salt_unsupported(rsa->publicArea));
  EXPECT_FALSE(srk_template(KeyType::rsa3072)) << "storage keys are rsa2048, ec-p256 or ec-p384";
}

// The name of a SHA-384 storage key is 000c and a SHA-384 digest of its
// public area (names used to be hashed with SHA-256 whatever the nameAlg).
TEST(TpmSessionSalt, NamesFollowTheNameAlgorithm) {
  for (KeyType t : {KeyType::rsa2048, KeyType::ec_p256, KeyType::ec_p384}) {
    auto tmpl = srk_template(t);
    ASSERT_TRUE(tmpl);
    const TPMT_PUBLIC& p = tmpl->publicArea;
    std::uint8_t buf[sizeof(TPMT_PUBLIC)];
    std::size_t len = 0;
    ASSERT_EQ(Tss2_MU_TPMT_PUBLIC_Marshal(&p, buf, sizeof buf, &len), TSS2_RC_SUCCESS);
    auto h = digest(tpm_hash_name(p.nameAlg), {buf, len});
    ASSERT_TRUE(h);
    Bytes expected = {static_cast<std::uint8_t>(p.nameAlg >> 8), static_cast<std::uint8_t>(p.nameAlg)};
    expected.insert(expected.end(), h->begin(), h->end());
    EXPECT_EQ(public_area_name(p), expected);
    EXPECT_EQ(public_area_name(p).size(), 2 + tpm_hash_size(p.nameAlg));
  }
}

TEST(TpmAuthValue, OnlyTrailingZeroBytesAreRemoved) {
  auto stripped = [](std::initializer_list<std::uint8_t> in) {
    SecureBytes v(in);
    strip_trailing_zeros(v);
    return Bytes(v.begin(), v.end());
  };
  EXPECT_EQ(stripped({'a', 'b', 0, 0}), (Bytes{'a', 'b'}));
  EXPECT_EQ(stripped({'a', 0, 'b', 0}), (Bytes{'a', 0, 'b'}));  // an inner zero is part of the value
  EXPECT_EQ(stripped({0, 'a'}), (Bytes{0, 'a'}));
  EXPECT_EQ(stripped({0, 0, 0}), Bytes{});
  EXPECT_EQ(stripped({'a', 'b'}), (Bytes{'a', 'b'}));
}

}  // namespace
}  // namespace certcustody
