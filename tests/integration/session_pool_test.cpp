// The session pool: login, PIN handling, many threads, and recovery when the
// session, the module or the token goes away and comes back.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "custody_fixture.h"

namespace certcustody::testing {
namespace {

const std::uint8_t kMsg[] = "pool test";

CK_FLAGS selected_token_flags(Pkcs11Custody& c) {
  auto slots = c.pool().slots();
  if (!slots) return ~0UL;
  for (const auto& s : *slots)
    if (s.selected) return s.token_flags;
  return ~0UL;
}

TEST_F(CustodyTest, WrongPinIsNamedAndNeverRetried) {
  ASSERT_TRUE(custody_->generate_key_pair("ra", KeyType::ec_p256, KeyPurpose::sign));
  custody_.reset();
  write_file(token_->user_pin_file(), "000000-wrong\n");
  open_custody(token_->custody_config());
  for (int i = 0; i < 20; ++i) {
    auto sig = custody_->sign("ra", SignScheme::ecdsa, HashAlg::sha256, kMsg);
    ASSERT_FALSE(sig);
    EXPECT_EQ(sig.error().code, "custody.pin_incorrect");
    EXPECT_NE(sig.error().remedy.find(token_->user_pin_file()), std::string::npos) << sig.error().remedy;
  }
  EXPECT_EQ(custody_->pool().login_attempts(), 1u);
  CK_FLAGS flags = selected_token_flags(*custody_);
  EXPECT_EQ(flags & (CKF_USER_PIN_LOCKED | CKF_USER_PIN_FINAL_TRY), 0u);

  // The operator fixes the PIN file: the next operation logs in and works.
  write_file(token_->user_pin_file(), token_->user_pin() + "\n");
  auto ok = custody_->sign("ra", SignScheme::ecdsa, HashAlg::sha256, kMsg);
  EXPECT_TRUE(ok) << ok.error().to_string();
  EXPECT_EQ(custody_->pool().login_attempts(), 2u);
}

TEST_F(CustodyTest, MissingTokenIsNamed) {
  CustodyConfig c = token_->custody_config();
  c.token = "pkcs11:token=no-such-token";
  open_custody(c);
  auto r = custody_->list_objects();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "custody.token_not_present");
  EXPECT_NE(r.error().what.find("pkcs11:token=no-such-token"), std::string::npos);
}

TEST_F(CustodyTest, EightThreadsThousandSignaturesEach) {
  ASSERT_TRUE(custody_->generate_key_pair("ra", KeyType::ec_p256, KeyPurpose::sign));
  auto pub = custody_->public_key("ra");
  ASSERT_TRUE(pub);
  std::atomic<int> failures{0}, bad_signatures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 1000; ++i) {
        auto sig = custody_->sign("ra", SignScheme::ecdsa, HashAlg::sha256, kMsg);
        if (!sig) {
          ++failures;
          continue;
        }
        if (i % 100 == t) {  // verify a sample in software
          EvpMdCtxPtr ctx(EVP_MD_CTX_new());
          if (EVP_DigestVerifyInit_ex(ctx.get(), nullptr, "SHA256", nullptr, nullptr, pub->get(), nullptr) != 1 ||
              EVP_DigestVerify(ctx.get(), sig->data(), sig->size(), kMsg, sizeof kMsg) != 1)
            ++bad_signatures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(bad_signatures.load(), 0);
  EXPECT_EQ(custody_->pool().login_attempts(), 1u);
}

TEST_F(CustodyTest, RecoversWhenTheModuleIsFinalised) {
  ASSERT_TRUE(custody_->generate_key_pair("ra", KeyType::rsa2048, KeyPurpose::sign));
  ASSERT_TRUE(custody_->sign("ra", SignScheme::rsa_pss, HashAlg::sha256, kMsg));
  auto gen = custody_->pool().generation();
  custody_->pool().module().finalize();  // as if another component or the HSM reset it
  auto sig = custody_->sign("ra", SignScheme::rsa_pss, HashAlg::sha256, kMsg);
  ASSERT_TRUE(sig) << sig.error().to_string();
  EXPECT_GT(custody_->pool().generation(), gen);
  EXPECT_EQ(custody_->pool().login_attempts(), 2u);
}

TEST_F(CustodyTest, RecoversWhenSessionsAreClosedUnderIt) {
  ASSERT_TRUE(custody_->generate_key_pair("ra", KeyType::ec_p256, KeyPurpose::sign));
  ASSERT_TRUE(custody_->sign("ra", SignScheme::ecdsa, HashAlg::sha256, kMsg));
  auto slots = custody_->pool().slots();
  ASSERT_TRUE(slots);
  CK_SLOT_ID slot = 0;
  for (const auto& s : *slots)
    if (s.selected) slot = s.id;
  ASSERT_EQ(P11_CALL(custody_->pool().module(), C_CloseAllSessions, slot), CKR_OK);
  auto sig = custody_->sign("ra", SignScheme::ecdsa, HashAlg::sha256, kMsg);
  ASSERT_TRUE(sig) << sig.error().to_string();
}

TEST_F(CustodyTest, TokenTakenAwayAndBroughtBack) {
  ASSERT_TRUE(custody_->generate_key_pair("ra", KeyType::ec_p256, KeyPurpose::sign));
  ASSERT_TRUE(custody_->sign("ra", SignScheme::ecdsa, HashAlg::sha256, kMsg));
  // SoftHSM keeps each token in its own directory under the token dir.
  std::filesystem::path token_subdir;
  for (const auto& e : std::filesystem::directory_iterator(token_->token_dir())) token_subdir = e.path();
  ASSERT_FALSE(token_subdir.empty());
  const std::string away = token_->dir() + "/away";
  std::filesystem::rename(token_subdir, away);
  custody_->pool().module().finalize();  // the module notices only when it starts again

  for (int i = 0; i < 3; ++i) {
    auto gone = custody_->sign("ra", SignScheme::ecdsa, HashAlg::sha256, kMsg);
    ASSERT_FALSE(gone);
    EXPECT_EQ(gone.error().code, "custody.token_not_present") << gone.error().to_string();
  }

  std::filesystem::rename(away, token_subdir);  // no help from the test: the pool rescans by itself
  auto back = custody_->sign("ra", SignScheme::ecdsa, HashAlg::sha256, kMsg);
  ASSERT_TRUE(back) << back.error().to_string();

  // And many threads carry on with it.
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 100; ++i)
        if (!custody_->sign("ra", SignScheme::ecdsa, HashAlg::sha256, kMsg)) ++failures;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST_F(CustodyTest, WholeTokenDirectoryGoneAndBack) {
  ASSERT_TRUE(custody_->generate_key_pair("ra", KeyType::ec_p256, KeyPurpose::sign));
  const std::string dir = token_->token_dir(), away = token_->dir() + "/tokens.away";
  std::filesystem::rename(dir, away);
  custody_->pool().module().finalize();
  auto gone = custody_->sign("ra", SignScheme::ecdsa, HashAlg::sha256, kMsg);
  ASSERT_FALSE(gone);
  EXPECT_FALSE(gone.error().code.empty());
  EXPECT_FALSE(gone.error().remedy.empty());
  std::filesystem::rename(away, dir);
  auto back = custody_->sign("ra", SignScheme::ecdsa, HashAlg::sha256, kMsg);
  ASSERT_TRUE(back) << back.error().to_string();
}

}  // namespace
}  // namespace certcustody::testing
