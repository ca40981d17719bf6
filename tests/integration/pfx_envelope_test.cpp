// CMS EnvelopedData sealed in a real SoftHSM token, opened by OpenSSL (library
// and `openssl cms` CLI), with a PKCS#12 inside that `openssl pkcs12` reads.
#include <openssl/cms.h>

#include <gtest/gtest.h>

#include "custody_fixture.h"
#include "pfx/enveloped_data.h"
#include "pfx/pkcs12_builder.h"
#include "pfx/test_certs.h"
#include "support/temp_dir.h"

namespace certcustody::testing {
namespace {

using CmsPtr = std::unique_ptr<CMS_ContentInfo, OsslDeleter<CMS_ContentInfo_free>>;

std::optional<Bytes> cms_decrypt(const Bytes& der, EVP_PKEY* key, X509* cert) {
  const unsigned char* p = der.data();
  CmsPtr cms(d2i_CMS_ContentInfo(nullptr, &p, static_cast<long>(der.size())));
  BioPtr out(BIO_new(BIO_s_mem()));
  if (!cms || CMS_decrypt(cms.get(), key, cert, nullptr, out.get(), 0) != 1) return std::nullopt;
  char* data = nullptr;
  const long n = BIO_get_mem_data(out.get(), &data);
  return Bytes(data, data + n);
}

std::string as_string(const auto& bytes) { return std::string(bytes.begin(), bytes.end()); }

class PfxEnvelopeTest : public CustodyTest {
 protected:
  // Session objects (CKA_TOKEN false) visible to the application's sessions.
  std::size_t session_objects() {
    auto r = custody_->pool().run([](TokenSession& s) -> Result<std::size_t> {
      CK_BBOOL no = CK_FALSE;
      CK_ATTRIBUTE tmpl[] = {{CKA_TOKEN, &no, sizeof no}};
      CC_TRY_ASSIGN(auto found, s.find(tmpl));
      return found.size();
    });
    EXPECT_TRUE(r) << r.error().to_string();
    return r ? *r : 9999;
  }

  // `openssl cms -decrypt` on the DER file, with the recipient's PEM files; the output bytes.
  std::string cli_decrypt(const Bytes& der, X509* cert, EVP_PKEY* key) {
    write_file(dir_ / "env.der", as_string(der));
    write_file(dir_ / "cert.pem", to_pem(cert));
    write_file(dir_ / "key.pem", to_pem(key));
    auto r = run({"openssl", "cms", "-decrypt", "-inform", "DER", "-in", dir_ / "env.der", "-recip",
                  dir_ / "cert.pem", "-inkey", dir_ / "key.pem", "-out", dir_ / "out"});
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return read_file(dir_ / "out");
  }

  TempDir dir_;
  EvpPkeyPtr key_ = rsa_key(2048);
  X509Ptr cert_ = make_cert({.cn = "pfx-recipient.example", .key = key_.get(),
                             .key_usage = "critical,keyEncipherment", .serial = 77});
};

TEST_F(PfxEnvelopeTest, TokenSealedEnvelopeOpensWithCmsDecryptAndTheOpensslCli) {
  Bytes plaintext(5000);
  for (std::size_t i = 0; i < plaintext.size(); ++i) plaintext[i] = static_cast<std::uint8_t>(i % 251);
  const std::size_t before = session_objects();
  auto der = pfx::envelope_for(*custody_, cert_.get(), plaintext);
  ASSERT_TRUE(der) << der.error().to_string();
  EXPECT_EQ(session_objects(), before);  // content key and recipient key destroyed
  auto objs = custody_->list_objects();
  ASSERT_TRUE(objs);
  EXPECT_TRUE(objs->empty());

  auto lib = cms_decrypt(*der, key_.get(), cert_.get());
  ASSERT_TRUE(lib) << drain_openssl_errors();
  EXPECT_EQ(*lib, plaintext);
  EXPECT_EQ(cli_decrypt(*der, cert_.get(), key_.get()), as_string(plaintext));

  // A fresh content key and IV per call.
  auto again = pfx::envelope_for(*custody_, cert_.get(), plaintext);
  ASSERT_TRUE(again);
  EXPECT_NE(*again, *der);
}

TEST_F(PfxEnvelopeTest, EnvelopedPkcs12OpensWithOpensslPkcs12) {
  EvpPkeyPtr ca_key = rsa_key(2048), leaf_key = ec_key();
  X509Ptr ca = make_cert({.cn = "PFX Integration CA", .key = ca_key.get(), .ca = true, .serial = 1});
  X509Ptr leaf = make_cert({.cn = "device-42.example", .key = leaf_key.get(), .issuer = ca.get(),
                            .issuer_key = ca_key.get(), .serial = 2});
  std::vector<X509Ptr> chain;
  chain.emplace_back(X509_dup(ca.get()));
  for (auto format : {pfx::PfxFormat::aes256_sha256, pfx::PfxFormat::compat_3des_sha1}) {
    SCOPED_TRACE(pfx::pfx_format_name(format));
    SecureBytes pw = pfx::random_password();
    auto p12 = pfx::build_pkcs12(leaf_key.get(), leaf.get(), chain, "device-42", pw, format);
    ASSERT_TRUE(p12) << p12.error().to_string();
    auto der = pfx::envelope_for(*custody_, cert_.get(), *p12);
    ASSERT_TRUE(der) << der.error().to_string();
    const std::string opened = cli_decrypt(*der, cert_.get(), key_.get());
    EXPECT_EQ(opened, as_string(*p12));

    write_file(dir_ / "out.p12", opened);
    write_file(dir_ / "pw", std::string(as_string_view(pw)));
    auto r = run({"openssl", "pkcs12", "-in", dir_ / "out.p12", "-passin", "file:" + dir_ / "pw", "-nodes"});
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("subject=CN = device-42.example"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("friendlyName: device-42"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("BEGIN PRIVATE KEY"), std::string::npos);
  }
}

TEST_F(PfxEnvelopeTest, RefusesRecipientsItCannotSealFor) {
  EvpPkeyPtr ec = ec_key(), small = rsa_key(1024);
  const Bytes pt = {1, 2, 3};
  for (EVP_PKEY* k : {ec.get(), small.get()}) {
    auto sealed = custody_->seal_for_recipient(k, pt);
    ASSERT_FALSE(sealed);
    EXPECT_EQ(sealed.error().code, "pfx.recipient_unsupported") << sealed.error().to_string();
    EXPECT_NE(sealed.error().remedy.find("2048"), std::string::npos);
  }
  X509Ptr signing_only = make_cert({.cn = "signer", .key = key_.get(), .key_usage = "critical,digitalSignature"});
  auto r = pfx::envelope_for(*custody_, signing_only.get(), pt);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "pfx.recipient_key_usage");
  EXPECT_EQ(session_objects(), 0u);
}

TEST_F(PfxEnvelopeTest, SealedContentHasTheExpectedShape) {
  const Bytes pt(33, 0x5a);
  auto sealed = custody_->seal_for_recipient(key_.get(), pt);
  ASSERT_TRUE(sealed) << sealed.error().to_string();
  EXPECT_EQ(sealed->iv.size(), 16u);
  EXPECT_EQ(sealed->ciphertext.size(), 48u);  // 33 bytes + PKCS#7 padding to 3 blocks
  EXPECT_EQ(sealed->wrapped_key.size(), 256u);
  // The wrapped key opens with the recipient's key: RSAES-OAEP SHA-1, no label.
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key_.get(), nullptr));
  ASSERT_EQ(EVP_PKEY_decrypt_init(ctx.get()), 1);
  ASSERT_EQ(EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_OAEP_PADDING), 1);
  Bytes cek(256);
  std::size_t n = cek.size();
  ASSERT_EQ(EVP_PKEY_decrypt(ctx.get(), cek.data(), &n, sealed->wrapped_key.data(), sealed->wrapped_key.size()), 1);
  EXPECT_EQ(n, 32u);
}

}  // namespace
}  // namespace certcustody::testing
