// Finding token objects by label and id, public objects without the PIN, and
// the token's mechanism list read once per connection.
#include <gtest/gtest.h>

#include <filesystem>

#include "custody_fixture.h"
#include "custody/token_uri.h"

namespace certcustody::testing {
namespace {

const std::uint8_t kDigest[32] = {1, 2, 3};

// A certificate for the custody key `label`, self-signed by a software key
// (only its subject public key matters here).
Bytes certificate_for(EVP_PKEY* subject_key) {
  EvpPkeyPtr issuer(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  X509Ptr cert(X509_new());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("t"), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 7);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), 0);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 3600);
  X509_set_pubkey(cert.get(), subject_key);
  X509_sign(cert.get(), issuer.get(), EVP_sha256());
  unsigned char* der = nullptr;
  const int n = i2d_X509(cert.get(), &der);
  Bytes out(der, der + (n > 0 ? n : 0));
  OPENSSL_free(der);
  return out;
}

TEST_F(CustodyTest, FindsObjectsByIdAndLabel) {
  auto made = custody_->generate_key_pair("ra", KeyType::ec_p256, KeyPurpose::sign);
  ASSERT_TRUE(made) << made.error().to_string();
  ASSERT_TRUE(custody_->generate_key_pair("other", KeyType::rsa2048, KeyPurpose::sign));
  ObjectQuery by_id;
  by_id.id = made->id;
  auto found = custody_->find_objects(by_id);
  ASSERT_TRUE(found) << found.error().to_string();
  ASSERT_EQ(found->size(), 2u);  // the private key, then the public key
  EXPECT_EQ((*found)[0].info.kind, ObjectKind::private_key);
  EXPECT_EQ((*found)[1].info.kind, ObjectKind::public_key);
  EXPECT_EQ(EVP_PKEY_eq((*found)[0].public_key.get(), (*found)[1].public_key.get()), 1);
  // The private key's name signs, wherever its label is ambiguous or missing.
  const std::string name = (*found)[0].key_name;
  EXPECT_EQ(name, TokenUri::object_name(std::string("ra"), made->id));
  auto sig = custody_->sign_digest(name, SignScheme::ecdsa, HashAlg::sha256, kDigest);
  EXPECT_TRUE(sig) << sig.error().to_string();

  ObjectQuery all;
  all.public_keys = false;
  all.certificates = false;
  auto keys = custody_->find_objects(all);
  ASSERT_TRUE(keys);
  EXPECT_EQ(keys->size(), 2u);
}

TEST_F(CustodyTest, PublicObjectsAreReadWithoutThePin) {
  ASSERT_TRUE(custody_->generate_key_pair("ra", KeyType::rsa2048, KeyPurpose::sign));
  auto pub = custody_->public_key("ra");
  ASSERT_TRUE(pub);
  ASSERT_TRUE(custody_->store_certificate("ra", certificate_for(pub->get()), false));
  const std::string pin = token_->user_pin_file();
  std::filesystem::rename(pin, pin + ".away");
  open_custody(token_->custody_config());

  ObjectQuery q;
  q.private_keys = false;
  auto found = custody_->find_objects(q);
  ASSERT_TRUE(found) << found.error().to_string();
  EXPECT_EQ(found->size(), 2u);  // the public key and the certificate
  EXPECT_TRUE(custody_->public_key("ra"));
  auto cert = custody_->find_certificate("ra");
  ASSERT_TRUE(cert);
  EXPECT_TRUE(cert->has_value());
  EXPECT_EQ(custody_->pool().login_attempts(), 0u);

  // The PIN is read when a private key is asked for.
  ObjectQuery priv;
  auto refused = custody_->find_objects(priv);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, "custody.pin_file_unreadable");
  std::filesystem::rename(pin + ".away", pin);
  EXPECT_TRUE(custody_->find_objects(priv));
}

TEST_F(CustodyTest, MechanismListIsReadOncePerConnection) {
  ASSERT_TRUE(custody_->generate_key_pair("ra", KeyType::rsa2048, KeyPurpose::sign));
  auto& module = custody_->pool().module();
  ASSERT_TRUE(custody_->sign_digest("ra", SignScheme::rsa_pss, HashAlg::sha256, kDigest));
  const std::uint64_t before = module.call_count();
  ASSERT_TRUE(custody_->sign_digest("ra", SignScheme::rsa_pkcs1, HashAlg::sha256, kDigest));
  EXPECT_EQ(module.call_count() - before, 2u);  // C_SignInit + C_Sign, nothing asked again

  // After a reconnect (the token may have changed) it is read again, once.
  module.finalize();
  ASSERT_TRUE(custody_->sign_digest("ra", SignScheme::rsa_pss, HashAlg::sha256, kDigest));
  const std::uint64_t after = module.call_count();
  ASSERT_TRUE(custody_->sign_digest("ra", SignScheme::rsa_pss, HashAlg::sha256, kDigest));
  EXPECT_EQ(module.call_count() - after, 2u);
}

}  // namespace
}  // namespace certcustody::testing
