// encode_enveloped_data against OpenSSL's own CMS decoder, with the sealing
// done in software here (the token does it in production; see
// tests/integration/pfx_envelope_test.cpp), and the recipient checks.
#include "pfx/enveloped_data.h"

#include <openssl/cms.h>
#include <openssl/rand.h>

#include <gtest/gtest.h>

#include "pfx/test_certs.h"

namespace certcustody::testing {
namespace {

using CmsPtr = std::unique_ptr<CMS_ContentInfo, OsslDeleter<CMS_ContentInfo_free>>;
using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, OsslDeleter<EVP_CIPHER_CTX_free>>;

// What Pkcs11Custody::seal_for_recipient does, in software (test only).
SealedContent software_seal(EVP_PKEY* recipient, const Bytes& plaintext) {
  SealedContent s;
  Bytes cek(32);
  s.iv.resize(16);
  EXPECT_EQ(RAND_bytes(cek.data(), 32), 1);
  EXPECT_EQ(RAND_bytes(s.iv.data(), 16), 1);
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  s.ciphertext.resize(plaintext.size() + 16);
  int n1 = 0, n2 = 0;
  EXPECT_EQ(EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_cbc(), nullptr, cek.data(), s.iv.data()), 1);
  EXPECT_EQ(EVP_EncryptUpdate(ctx.get(), s.ciphertext.data(), &n1, plaintext.data(), static_cast<int>(plaintext.size())), 1);
  EXPECT_EQ(EVP_EncryptFinal_ex(ctx.get(), s.ciphertext.data() + n1, &n2), 1);
  s.ciphertext.resize(static_cast<std::size_t>(n1 + n2));
  EvpPkeyCtxPtr pctx(EVP_PKEY_CTX_new_from_pkey(nullptr, recipient, nullptr));
  EXPECT_EQ(EVP_PKEY_encrypt_init(pctx.get()), 1);
  EXPECT_EQ(EVP_PKEY_CTX_set_rsa_padding(pctx.get(), RSA_PKCS1_OAEP_PADDING), 1);  // SHA-1 by default
  std::size_t len = 0;
  EXPECT_EQ(EVP_PKEY_encrypt(pctx.get(), nullptr, &len, cek.data(), cek.size()), 1);
  s.wrapped_key.resize(len);
  EXPECT_EQ(EVP_PKEY_encrypt(pctx.get(), s.wrapped_key.data(), &len, cek.data(), cek.size()), 1);
  s.wrapped_key.resize(len);
  return s;
}

CmsPtr parse_cms(const Bytes& der) {
  const unsigned char* p = der.data();
  return CmsPtr(d2i_CMS_ContentInfo(nullptr, &p, static_cast<long>(der.size())));
}

// CMS_decrypt with the recipient's key and certificate; nullopt on failure.
std::optional<Bytes> cms_decrypt(const Bytes& der, EVP_PKEY* key, X509* cert) {
  CmsPtr cms = parse_cms(der);
  BioPtr out(BIO_new(BIO_s_mem()));
  if (!cms || CMS_decrypt(cms.get(), key, cert, nullptr, out.get(), 0) != 1) return std::nullopt;
  char* p = nullptr;
  const long n = BIO_get_mem_data(out.get(), &p);
  return Bytes(p, p + n);
}

// Steps through one DER header (tag, length) at p; `enter` stays inside the
// element, otherwise p moves past it. Returns the tag number, -1 on error.
int step(const unsigned char*& p, const unsigned char* end, bool enter, long* len_out = nullptr) {
  long len = 0;
  int tag = 0, cls = 0;
  if (ASN1_get_object(&p, &len, &tag, &cls, end - p) & 0x80) return -1;
  if (len_out != nullptr) *len_out = len;
  if (!enter) p += len;
  return tag;
}

// The version fields of EnvelopedData and of its first RecipientInfo, read from the DER.
std::pair<long, long> versions(const Bytes& der) {
  const unsigned char* p = der.data();
  const unsigned char* end = p + der.size();
  long len = 0;
  step(p, end, true);   // ContentInfo SEQUENCE
  step(p, end, false);  // contentType
  step(p, end, true);   // [0] EXPLICIT
  step(p, end, true);   // EnvelopedData SEQUENCE
  if (step(p, end, true, &len) != V_ASN1_INTEGER || len != 1) return {-1, -1};
  const long env_version = *p++;
  if (step(p, end, true) != V_ASN1_SET) return {-1, -1};
  step(p, end, true);  // KeyTransRecipientInfo SEQUENCE
  if (step(p, end, true, &len) != V_ASN1_INTEGER || len != 1) return {-1, -1};
  return {env_version, *p};
}

struct Recipient {
  EvpPkeyPtr key = rsa_key(2048);
  X509Ptr cert = make_cert({.cn = "recipient", .key = key.get(), .key_usage = "critical,keyEncipherment", .serial = 0x1234567});
};

const Recipient& recipient() {
  static const Recipient r;
  return r;
}

TEST(EnvelopedData, DecryptsWithCmsDecryptToThePlaintext) {
  const Recipient& r = recipient();
  Bytes plaintext(3000);
  for (std::size_t i = 0; i < plaintext.size(); ++i) plaintext[i] = static_cast<std::uint8_t>(i * 7);
  for (std::size_t size : {std::size_t{1}, std::size_t{16}, plaintext.size()}) {
    const Bytes pt(plaintext.begin(), plaintext.begin() + static_cast<long>(size));
    auto der = pfx::encode_enveloped_data(r.cert.get(), software_seal(r.key.get(), pt));
    ASSERT_TRUE(der) << der.error().to_string();
    auto back = cms_decrypt(*der, r.key.get(), r.cert.get());
    ASSERT_TRUE(back) << drain_openssl_errors();
    EXPECT_EQ(*back, pt);
    // Without the certificate, CMS_decrypt tries the key on every recipient.
    auto any = cms_decrypt(*der, r.key.get(), nullptr);
    ASSERT_TRUE(any) << drain_openssl_errors();
    EXPECT_EQ(*any, pt);
  }
}

TEST(EnvelopedData, HasTheStructureOfRfc5652InDer) {
  const Recipient& r = recipient();
  const Bytes pt = {'p', 'f', 'x'};
  auto der = pfx::encode_enveloped_data(r.cert.get(), software_seal(r.key.get(), pt));
  ASSERT_TRUE(der);
  CmsPtr cms = parse_cms(*der);
  ASSERT_TRUE(cms);
  EXPECT_EQ(OBJ_obj2nid(CMS_get0_type(cms.get())), NID_pkcs7_enveloped);
  EXPECT_EQ(OBJ_obj2nid(CMS_get0_eContentType(cms.get())), NID_pkcs7_data);
  STACK_OF(CMS_RecipientInfo)* ris = CMS_get0_RecipientInfos(cms.get());
  ASSERT_EQ(sk_CMS_RecipientInfo_num(ris), 1);
  CMS_RecipientInfo* ri = sk_CMS_RecipientInfo_value(ris, 0);
  ASSERT_EQ(CMS_RecipientInfo_type(ri), CMS_RECIPINFO_TRANS);
  EXPECT_EQ(CMS_RecipientInfo_ktri_cert_cmp(ri, r.cert.get()), 0);
  X509_ALGOR* alg = nullptr;
  ASSERT_EQ(CMS_RecipientInfo_ktri_get0_algs(ri, nullptr, nullptr, &alg), 1);
  EXPECT_EQ(OBJ_obj2nid(alg->algorithm), NID_rsaesOaep);
  // RSAES-OAEP-params with every field DEFAULT: an empty SEQUENCE, present.
  ASSERT_NE(alg->parameter, nullptr);
  ASSERT_EQ(alg->parameter->type, V_ASN1_SEQUENCE);
  const ASN1_STRING* seq = alg->parameter->value.sequence;
  EXPECT_EQ(Bytes(ASN1_STRING_get0_data(seq), ASN1_STRING_get0_data(seq) + ASN1_STRING_length(seq)),
            (Bytes{0x30, 0x00}));
  // DER: OpenSSL re-encodes the parsed structure to the same bytes.
  unsigned char* again = nullptr;
  const int n = i2d_CMS_ContentInfo(cms.get(), &again);
  ASSERT_GT(n, 0);
  EXPECT_EQ(Bytes(again, again + n), *der);
  OPENSSL_free(again);
  // EnvelopedData v0 and KeyTransRecipientInfo v0 (RFC 5652 §6.1, §6.2.1).
  EXPECT_EQ(versions(*der), (std::pair<long, long>{0, 0}));
}

TEST(EnvelopedData, RefusesMalformedSealedContent) {
  const Recipient& r = recipient();
  SealedContent s = software_seal(r.key.get(), Bytes{1, 2, 3});
  SealedContent short_iv = s;
  short_iv.iv.resize(12);
  SealedContent no_key = s;
  no_key.wrapped_key.clear();
  SealedContent ragged = s;
  ragged.ciphertext.pop_back();
  for (const SealedContent& bad : {short_iv, no_key, ragged}) {
    auto der = pfx::encode_enveloped_data(r.cert.get(), bad);
    ASSERT_FALSE(der);
    EXPECT_EQ(der.error().code, "pfx.sealed_invalid");
  }
}

std::string recipient_error(const CertSpec& spec) {
  X509Ptr cert = make_cert(spec);
  if (!cert) return "no certificate";
  Status s = pfx::check_recipient(cert.get());
  return s ? "ok" : s.error().code;
}

TEST(EnvelopedData, ChecksTheRecipientCertificate) {
  EvpPkeyPtr rsa = rsa_key(2048), small = rsa_key(1024), ec = ec_key();
  EXPECT_EQ(recipient_error({.cn = "ok", .key = rsa.get(), .key_usage = "critical,keyEncipherment"}), "ok");
  EXPECT_EQ(recipient_error({.cn = "no key usage", .key = rsa.get()}), "ok");
  EXPECT_EQ(recipient_error({.cn = "ec", .key = ec.get(), .key_usage = "keyAgreement"}), "pfx.recipient_unsupported");
  EXPECT_EQ(recipient_error({.cn = "small", .key = small.get(), .key_usage = "keyEncipherment"}),
            "pfx.recipient_unsupported");
  EXPECT_EQ(recipient_error({.cn = "expired", .key = rsa.get(), .not_before_s = -172800, .not_after_s = -86400}),
            "pfx.recipient_expired");
  EXPECT_EQ(recipient_error({.cn = "future", .key = rsa.get(), .not_before_s = 86400, .not_after_s = 172800}),
            "pfx.recipient_expired");
  EXPECT_EQ(recipient_error({.cn = "signing only", .key = rsa.get(), .key_usage = "critical,digitalSignature"}),
            "pfx.recipient_key_usage");

  X509Ptr ec_cert = make_cert({.cn = "ec", .key = ec.get()});
  Status s = pfx::check_recipient(ec_cert.get());
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().what.find("CN=ec"), std::string::npos) << s.error().what;
  EXPECT_NE(s.error().what.find(" EC"), std::string::npos) << s.error().what;
  EXPECT_NE(s.error().remedy.find("RSA certificate (2048 bits or more)"), std::string::npos);
  X509Ptr small_cert = make_cert({.cn = "small", .key = small.get()});
  Status s2 = pfx::check_recipient(small_cert.get());
  ASSERT_FALSE(s2);
  EXPECT_NE(s2.error().what.find("RSA-1024"), std::string::npos) << s2.error().what;
}

}  // namespace
}  // namespace certcustody::testing
