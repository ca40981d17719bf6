// Keys are generated inside the token and can never be read out.
#include <gtest/gtest.h>

#include "custody_fixture.h"
#include "custody/mechanisms.h"

namespace certcustody::testing {
namespace {

class KeyGeneration : public CustodyTest, public ::testing::WithParamInterface<KeyType> {};

TEST_P(KeyGeneration, KeyIsSensitiveNeverExtractableAndLocal) {
  auto info = custody_->generate_key_pair("ra", GetParam(), KeyPurpose::sign);
  ASSERT_TRUE(info) << info.error().to_string();
  EXPECT_EQ(info->kind, ObjectKind::private_key);
  EXPECT_EQ(info->label, "ra");
  EXPECT_EQ(info->id.size(), 16u);
  EXPECT_TRUE(info->sensitive);
  EXPECT_FALSE(info->extractable);
  EXPECT_TRUE(info->always_sensitive);
  EXPECT_TRUE(info->never_extractable);
  EXPECT_TRUE(info->local);
  switch (GetParam()) {
    case KeyType::rsa2048: EXPECT_EQ(info->bits, 2048u); break;
    case KeyType::rsa3072: EXPECT_EQ(info->bits, 3072u); break;
    case KeyType::rsa4096: EXPECT_EQ(info->bits, 4096u); break;
    case KeyType::ec_p256: EXPECT_EQ(info->curve, "P-256"); break;
    case KeyType::ec_p384: EXPECT_EQ(info->curve, "P-384"); break;
  }
  auto pub = custody_->public_key("ra");
  ASSERT_TRUE(pub) << pub.error().to_string();
  EXPECT_EQ(EVP_PKEY_is_a(pub->get(), info->algorithm == "RSA" ? "RSA" : "EC"), 1);
}

INSTANTIATE_TEST_SUITE_P(AllTypes, KeyGeneration,
                         ::testing::Values(KeyType::rsa2048, KeyType::rsa3072, KeyType::rsa4096, KeyType::ec_p256,
                                           KeyType::ec_p384),
                         [](const auto& param_info) {
                           std::string n = key_type_name(param_info.param);
                           std::erase(n, '-');
                           return n;
                         });

TEST_F(CustodyTest, AesKeyEncryptionKeyIsNeverExtractable) {
  auto info = custody_->generate_secret_key("pfx-kek", 256);
  ASSERT_TRUE(info) << info.error().to_string();
  EXPECT_EQ(info->algorithm, "AES");
  EXPECT_EQ(info->bits, 256u);
  EXPECT_TRUE(info->sensitive);
  EXPECT_FALSE(info->extractable);
  EXPECT_TRUE(info->never_extractable);
}

TEST_F(CustodyTest, LabelsAreUnique) {
  ASSERT_TRUE(custody_->generate_key_pair("ra", KeyType::ec_p256, KeyPurpose::sign));
  auto again = custody_->generate_key_pair("ra", KeyType::rsa2048, KeyPurpose::sign);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, "custody.label_exists");
  auto kek = custody_->generate_secret_key("ra", 256);
  ASSERT_FALSE(kek);
  EXPECT_EQ(kek.error().code, "custody.label_exists");
}

TEST_F(CustodyTest, PrivateValuesCannotBeReadOrWrapped) {
  ASSERT_TRUE(custody_->generate_key_pair("ra", KeyType::rsa2048, KeyPurpose::sign));
  ASSERT_TRUE(custody_->generate_key_pair("ec", KeyType::ec_p256, KeyPurpose::sign));
  ASSERT_TRUE(custody_->generate_secret_key("kek", 256));
  ASSERT_TRUE(custody_->generate_secret_key("kek2", 256));
  Status s = custody_->pool().run([&](TokenSession& t) -> Status {
    auto ra = *t.find_by_label(CKO_PRIVATE_KEY, "ra").value();
    auto ec = *t.find_by_label(CKO_PRIVATE_KEY, "ec").value();
    auto kek = *t.find_by_label(CKO_SECRET_KEY, "kek").value();
    auto kek2 = *t.find_by_label(CKO_SECRET_KEY, "kek2").value();
    // C_GetAttributeValue of the secret parts is refused.
    for (auto [h, a] : {std::pair{ra, CKA_PRIVATE_EXPONENT}, std::pair{ra, CKA_PRIME_1}, std::pair{ec, CKA_VALUE},
                        std::pair{kek, CKA_VALUE}}) {
      auto v = t.attribute(h, a, "secret part");
      EXPECT_FALSE(v);
      if (!v) {
        EXPECT_EQ(v.error().native, CKR_ATTRIBUTE_SENSITIVE);
        EXPECT_EQ(v.error().code, "custody.key_not_exportable");
      }
    }
    // C_WrapKey is refused for every one of them, even under our own KEK.
    for (auto h : {ra, ec, kek2}) {
      CK_MECHANISM m{CKM_AES_KEY_WRAP_PAD, nullptr, 0};
      auto w = t.wrap(kek, m, h, "key");
      EXPECT_FALSE(w);
      if (!w) {
        EXPECT_EQ(w.error().native, CKR_KEY_UNEXTRACTABLE) << w.error().to_string();
      }
    }
    return {};
  });
  ASSERT_TRUE(s) << s.error().to_string();
}

TEST_F(CustodyTest, Pkcs11ToolCannotReadTheKeys) {
  ASSERT_TRUE(custody_->generate_key_pair("ra", KeyType::rsa2048, KeyPurpose::sign));
  ASSERT_TRUE(custody_->generate_secret_key("kek", 256));
  custody_.reset();  // release the token to the other process
  const std::vector<std::string> env = {token_->softhsm_env()};
  // A throwaway test token: the PIN on pkcs11-tool's command line is acceptable here only.
  auto tool = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {"pkcs11-tool", "--module", kSoftHsmModule, "--token-label", token_->label(),
                                     "--login", "--pin", token_->user_pin()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, env);
  };
  auto list = tool({"--list-objects", "--type", "privkey"});
  ASSERT_EQ(list.exit_code, 0) << list.output;
  EXPECT_NE(list.output.find("Access:     sensitive, always sensitive, never extractable, local"), std::string::npos)
      << list.output;
  auto secret = tool({"--read-object", "--type", "secrkey", "--label", "kek"});
  EXPECT_NE(secret.exit_code, 0) << secret.output;
  EXPECT_NE(secret.output.find("CKR_ATTRIBUTE_SENSITIVE"), std::string::npos) << secret.output;
  // pkcs11-tool offers no private-key export at all; whatever it prints holds no key.
  auto priv = tool({"--read-object", "--type", "privkey", "--label", "ra"});
  EXPECT_EQ(priv.output.find("PRIVATE KEY"), std::string::npos) << priv.output;
  EXPECT_LT(priv.output.size(), 200u) << priv.output;
}

}  // namespace
}  // namespace certcustody::testing
