// The user's PKCS#10: the CA template's extensions (issue 16 item 17) and the
// template's stronger request digest (item 19) go into it as given.
#include <gtest/gtest.h>
#include <openssl/x509.h>

#include "pipeline/user_key.h"

namespace certcustody::pipeline {
namespace {

policy::RequestSpec spec_for(std::vector<policy::RequestExtension> extensions, std::string digest) {
  policy::RequestSpec spec;
  spec.subject.reset(X509_NAME_new());
  X509_NAME_add_entry_by_txt(spec.subject.get(), "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>("u"),
                             -1, -1, 0);
  spec.key_type = KeyType::ec_p256;
  spec.extensions = std::move(extensions);
  spec.digest = std::move(digest);
  return spec;
}

X509ReqPtr parse(const Bytes& der) {
  const unsigned char* p = der.data();
  return X509ReqPtr(d2i_X509_REQ(nullptr, &p, static_cast<long>(der.size())));
}

TEST(UserKey, CsrCarriesTheTemplatesExtensionsAsGiven) {
  auto key = generate_user_key(KeyType::ec_p256);
  ASSERT_TRUE(key);
  // SEQUENCE { OID 1.3.6.1.4.1.311.21.8.1.2, INTEGER 100 }, as the MS client makes it.
  const Bytes value = {0x30, 0x0e, 0x06, 0x09, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x15, 0x08,
                       0x02, 0x01, 0x64};
  auto csr = build_csr(spec_for({{"1.3.6.1.4.1.311.21.7", value, false}}, ""), key->get());
  ASSERT_TRUE(csr) << csr.error().to_string();
  X509ReqPtr req = parse(*csr);
  ASSERT_TRUE(req);
  EXPECT_EQ(X509_REQ_verify(req.get(), X509_REQ_get0_pubkey(req.get())), 1);
  std::unique_ptr<STACK_OF(X509_EXTENSION), decltype([](STACK_OF(X509_EXTENSION)* s) {
                    sk_X509_EXTENSION_pop_free(s, X509_EXTENSION_free);
                  })>
      exts(X509_REQ_get_extensions(req.get()));
  ASSERT_TRUE(exts);
  bool found = false;
  for (int i = 0; i < sk_X509_EXTENSION_num(exts.get()); ++i) {
    X509_EXTENSION* e = sk_X509_EXTENSION_value(exts.get(), i);
    char oid[64];
    OBJ_obj2txt(oid, sizeof oid, X509_EXTENSION_get_object(e), 1);
    if (std::string(oid) != "1.3.6.1.4.1.311.21.7") continue;
    found = true;
    const ASN1_OCTET_STRING* data = X509_EXTENSION_get_data(e);
    EXPECT_EQ(Bytes(ASN1_STRING_get0_data(data), ASN1_STRING_get0_data(data) + ASN1_STRING_length(data)), value);
    EXPECT_EQ(X509_EXTENSION_get_critical(e), 0);
  }
  EXPECT_TRUE(found);
  EXPECT_EQ(X509_REQ_get_signature_nid(req.get()), NID_ecdsa_with_SHA256);  // no digest named: SHA-256
}

TEST(UserKey, CsrIsSignedWithTheTemplatesDigest) {
  auto key = generate_user_key(KeyType::ec_p256);
  ASSERT_TRUE(key);
  auto csr = build_csr(spec_for({}, "SHA384"), key->get());
  ASSERT_TRUE(csr) << csr.error().to_string();
  X509ReqPtr req = parse(*csr);
  ASSERT_TRUE(req);
  EXPECT_EQ(X509_REQ_get_signature_nid(req.get()), NID_ecdsa_with_SHA384);
  auto unknown = build_csr(spec_for({}, "NO-SUCH-DIGEST"), key->get());
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, "pipeline.csr_failed");
}

}  // namespace
}  // namespace certcustody::pipeline
