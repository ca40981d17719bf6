// The session pool: login, PIN handling, many threads, and recovery when the
// session, the module or the token goes away and comes back.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <set>
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

// What a daemon meets: the token's storage goes away under a running pool
// and comes back, with nobody finalising the module. SoftHSM then answers
// like a network HSM does, not with CKR_TOKEN_NOT_PRESENT: a cached handle
// or a key that vanished, CKR_GENERAL_ERROR for a new object. Every kind of
// operation is refused by name while it is away (never a key reported as
// deleted for good, never a counter gone back) and works again after,
// without a restart.
class TokenGoesAway : public CustodyTest, public ::testing::WithParamInterface<bool> {};

TEST_P(TokenGoesAway, EveryOperationRecoversWithoutHelp) {
  const bool whole_directory = GetParam();
  ASSERT_TRUE(custody_->generate_key_pair("ra", KeyType::ec_p256, KeyPurpose::sign));
  ASSERT_TRUE(custody_->generate_secret_key("kek", 256));
  auto counter = custody_->advance_counter("ctr");
  ASSERT_TRUE(counter) << counter.error().to_string();
  ASSERT_TRUE(custody_->sign("ra", SignScheme::ecdsa, HashAlg::sha256, kMsg));
  auto sealed = custody_->aes_gcm_encrypt("kek", kMsg, {});
  ASSERT_TRUE(sealed);
  EXPECT_TRUE(custody_->health().available);

  std::filesystem::path from = token_->token_dir();
  if (!whole_directory)
    for (const auto& e : std::filesystem::directory_iterator(token_->token_dir())) from = e.path();
  const std::string away = token_->dir() + "/away";
  std::filesystem::rename(from, away);
  const std::set<std::string> waiting = {"custody.token_not_present", "custody.module_unavailable",
                                         "custody.key_vanished", "custody.counter_vanished"};
  auto expect_waiting = [&](const Status& s, const char* what) {
    ASSERT_FALSE(s) << what;
    EXPECT_TRUE(waiting.count(s.error().code)) << what << ": " << s.error().to_string();
  };
  expect_waiting(custody_->sign("ra", SignScheme::ecdsa, HashAlg::sha256, kMsg).status(), "sign");
  expect_waiting(custody_->aes_gcm_decrypt("kek", *sealed, {}).status(), "unseal");
  expect_waiting(custody_->aes_gcm_encrypt("kek", kMsg, {}).status(), "seal");
  expect_waiting(custody_->advance_counter("ctr").status(), "counter");
  auto health = custody_->health();
  EXPECT_FALSE(health.available);
  ASSERT_TRUE(health.error.has_value());
  EXPECT_TRUE(waiting.count(health.error->code)) << health.error->to_string();
  EXPECT_GT(health.since_ms, 0);

  std::filesystem::rename(away, from);
  // The backoff may hold the next reconnect back for up to 8 s; check()
  // (the daemon's timer) and operations both bring the token back.
  Status back = custody_->check();
  for (int i = 0; i < 120 && !back; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    back = custody_->check();
  }
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_TRUE(custody_->health().available);
  auto sig = custody_->sign("ra", SignScheme::ecdsa, HashAlg::sha256, kMsg);
  EXPECT_TRUE(sig) << sig.error().to_string();
  auto opened = custody_->aes_gcm_decrypt("kek", *sealed, {});
  ASSERT_TRUE(opened) << opened.error().to_string();
  auto next = custody_->advance_counter("ctr");
  ASSERT_TRUE(next) << next.error().to_string();
  EXPECT_EQ(*next, *counter + 1) << "the counter never went back or forked";
}

INSTANTIATE_TEST_SUITE_P(Directory, TokenGoesAway, ::testing::Values(false, true),
                         [](const auto& p) { return p.param ? "whole_token_dir" : "token_subdir"; });

// A key deleted from a token that is otherwise fine: probed, not mistaken for
// a lost token (no reconnect), named as vanished.
TEST_F(CustodyTest, AKeyDeletedFromAHealthyTokenIsNamedWithoutReconnecting) {
  ASSERT_TRUE(custody_->generate_key_pair("ra", KeyType::ec_p256, KeyPurpose::sign));
  ASSERT_TRUE(custody_->sign("ra", SignScheme::ecdsa, HashAlg::sha256, kMsg));
  const auto gen = custody_->pool().generation();
  // A throwaway test token: the PIN on pkcs11-tool's command line is acceptable here only.
  auto del = run({"pkcs11-tool", "--module", kSoftHsmModule, "--token-label", token_->label(), "--login",
                  "--pin", token_->user_pin(), "--delete-object", "--type", "privkey", "--label", "ra"},
                 {token_->softhsm_env()});
  ASSERT_EQ(del.exit_code, 0) << del.output;
  auto sig = custody_->sign("ra", SignScheme::ecdsa, HashAlg::sha256, kMsg);
  ASSERT_FALSE(sig);
  EXPECT_EQ(sig.error().code, "custody.key_vanished") << sig.error().to_string();
  EXPECT_EQ(custody_->pool().generation(), gen) << "a healthy token is not reconnected";
  EXPECT_TRUE(custody_->health().available);
}

// PKCS#11 forbids a child to use its parent's sessions: after fork() the
// child's pool initialises the module again and logs in anew, while the
// parent carries on with its own. Forks happen while another thread of the
// parent keeps signing: the fork waits for the call in flight, and no child
// inherits a lock held by a thread it does not have.
TEST_F(CustodyTest, AForkedChildStartsItsOwnSessionsWhileTheParentGoesOn) {
  ASSERT_TRUE(custody_->generate_key_pair("ra", KeyType::ec_p256, KeyPurpose::sign));
  ASSERT_TRUE(custody_->sign("ra", SignScheme::ecdsa, HashAlg::sha256, kMsg));
  std::atomic<bool> stop{false};
  std::atomic<int> parent_failures{0};
  std::thread signer([&] {
    while (!stop)
      if (!custody_->sign("ra", SignScheme::ecdsa, HashAlg::sha256, kMsg)) ++parent_failures;
  });
  for (int i = 0; i < 10; ++i) {
    const auto gen = custody_->pool().generation();
    const unsigned logins = custody_->pool().login_attempts();
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {  // the child: no gtest assertions, an exit code; no destructors of the parent's objects
      auto sig = custody_->sign("ra", SignScheme::ecdsa, HashAlg::sha256, kMsg);
      int code = 0;
      if (!sig) code = 1;
      else if (custody_->pool().generation() <= gen) code = 2;       // it used the parent's sessions
      else if (custody_->pool().login_attempts() != logins + 1) code = 3;
      ::_exit(code);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status)) << "child " << i << " did not exit (signal " << WTERMSIG(status) << ")";
    EXPECT_EQ(WEXITSTATUS(status), 0) << "child " << i << ": 1 sign failed, 2 parent's sessions used, 3 no new login";
    EXPECT_EQ(custody_->pool().generation(), gen) << "the parent keeps its sessions";
  }
  stop = true;
  signer.join();
  EXPECT_EQ(parent_failures.load(), 0);
}

}  // namespace
}  // namespace certcustody::testing
