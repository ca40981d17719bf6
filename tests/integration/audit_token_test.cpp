// Audit checkpoints signed with a key in a real SoftHSM token and counted by
// a token-held counter that survives a restart; verified with the exported
// public key alone.
#include <gtest/gtest.h>

#include "audit/audit_log.h"
#include "audit/token_signer.h"
#include "custody_fixture.h"
#include "ra_fixture.h"
#include "support/temp_dir.h"

namespace certcustody::testing {
namespace {

class AuditTokenTest : public CustodyTest {};

TEST_F(AuditTokenTest, TheCounterAdvancesByOneAndSurvivesAReopen) {
  EXPECT_EQ(*custody_->read_counter("audit-counter"), 0u);
  EXPECT_EQ(*custody_->advance_counter("audit-counter"), 1u);
  EXPECT_EQ(*custody_->advance_counter("audit-counter"), 2u);
  open_custody(token_->custody_config());
  EXPECT_EQ(*custody_->read_counter("audit-counter"), 2u);
  EXPECT_EQ(*custody_->advance_counter("audit-counter"), 3u);
  // A label that belongs to something else is refused, not overwritten.
  ASSERT_TRUE(custody_->generate_secret_key("kek", 256));
  auto clash = custody_->read_counter("kek");
  EXPECT_EQ(*clash, 0u);  // a data object is looked up, the key is not one
}

// Data objects labelled `label` holding `values` (8 bytes big-endian each,
// or the raw bytes given).
void add_data_objects(Pkcs11Custody& c, const std::string& label, const std::vector<Bytes>& values) {
  for (const Bytes& v : values) {
    auto r = c.pool().run([&](TokenSession& s) -> Result<CK_OBJECT_HANDLE> {
      CK_OBJECT_CLASS cls = CKO_DATA;
      CK_BBOOL yes = CK_TRUE;
      CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof cls},
                             {CKA_TOKEN, &yes, sizeof yes},
                             {CKA_PRIVATE, &yes, sizeof yes},
                             {CKA_LABEL, const_cast<char*>(label.data()), label.size()},
                             {CKA_VALUE, const_cast<std::uint8_t*>(v.data()), v.size()}};
      return s.create_object(tmpl, "test data");
    });
    ASSERT_TRUE(r) << r.error().to_string();
  }
}

TEST_F(AuditTokenTest, ACrashBetweenCreateAndDestroyNeverMovesTheCounterBack) {
  // Left by an advance from 5 to 6 cut short before the old object went.
  add_data_objects(*custody_, "c", {Bytes{0, 0, 0, 0, 0, 0, 0, 5}, Bytes{0, 0, 0, 0, 0, 0, 0, 6}});
  EXPECT_EQ(*custody_->read_counter("c"), 6u);
  EXPECT_EQ(*custody_->advance_counter("c"), 7u);
  EXPECT_EQ(*custody_->read_counter("c"), 7u);
  add_data_objects(*custody_, "notes", {Bytes{'h', 'i'}});
  auto bad = custody_->advance_counter("notes");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, "custody.counter_invalid");
}

TEST_F(AuditTokenTest, CheckpointsSignedInTheTokenVerifyWithThePublicKey) {
  for (KeyType type : {KeyType::ec_p256, KeyType::rsa2048}) {
    const std::string label = "audit-" + key_type_name(type);
    ASSERT_TRUE(custody_->generate_key_pair(label, type, KeyPurpose::sign));
    auto signer = audit::token_signer(*custody_, label, label + "-counter");
    ASSERT_TRUE(signer) << signer.error().to_string();
    TempDir d;
    {
      auto log = audit::AuditLog::open({.path = d / "audit.log"});
      ASSERT_TRUE(log) << log.error().to_string();
      for (int i = 0; i < 3; ++i) ASSERT_TRUE((*log)->append({.type = "request.received"}));
      ASSERT_TRUE((*log)->checkpoint(*signer));
      ASSERT_TRUE((*log)->append({.type = "daemon.stop"}));
      auto cp = (*log)->checkpoint(*signer);
      ASSERT_TRUE(cp) << cp.error().to_string();
    }
    auto pub = custody_->public_key(label);
    ASSERT_TRUE(pub);
    const std::uint64_t counter = *custody_->read_counter(label + "-counter");
    EXPECT_EQ(counter, 2u);
    auto r = audit::verify_log(read_file(d / "audit.log"), "audit.log",
                               {.public_key = pub->get(), .min_counter = counter});
    ASSERT_TRUE(r) << key_type_name(type) << ": " << r.error().to_string();
    EXPECT_EQ(r->checkpoints, 2u);
    EXPECT_EQ(r->unsigned_tail, 0u);
  }
  auto none = audit::token_signer(*custody_, "no-such-key", "c");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, "audit.key_unusable");
}

}  // namespace
}  // namespace certcustody::testing

namespace certcustody::testing {
namespace {

// The officer's and the auditor's commands: keygen writes the public key,
// verify needs nothing else, counter gives the value older copies fail against.
class AuditCommands : public RaFixture {};

TEST_F(AuditCommands, KeygenCounterAndVerifyFromTheCommandLine) {
  auto kg = cc({"audit", "keygen", "--pubkey-out", path("audit.pub.pem")});
  ASSERT_EQ(kg.exit_code, 0) << kg.output;
  EXPECT_NE(kg.output.find("signs only, never extractable"), std::string::npos) << kg.output;
  // The officer's commands are in the default log, a failed login too.
  const std::string officer_log = token_->dir() + "/state/audit.log";
  ASSERT_EQ(cc({"kek", "create", "--label", "pfx-kek"}).exit_code, 0);
  const std::string pin = read_file(token_->user_pin_file());
  write_file(token_->user_pin_file(), "wrong-pin-123\n");
  auto refused = cc({"kek", "create", "--label", "other"});
  write_file(token_->user_pin_file(), pin);
  EXPECT_NE(refused.exit_code, 0);
  const std::string events = read_file(officer_log);
  EXPECT_NE(events.find(R"("event":"key.generated","outcome":"ok","detail":{"label":"audit")"), std::string::npos)
      << events;
  EXPECT_NE(events.find(R"("event":"key.generated","outcome":"ok","detail":{"label":"pfx-kek")"), std::string::npos)
      << events;
  EXPECT_NE(events.find(R"("event":"token.login","outcome":"failed","error":"custody.pin_incorrect")"),
            std::string::npos)
      << events;
  EXPECT_EQ(events.find("wrong-pin-123"), std::string::npos);
  // Which configuration each command ran under.
  EXPECT_NE(events.find(R"("config_sha256":")"), std::string::npos) << events;
  EXPECT_TRUE(audit::verify_chain(events, officer_log));
  std::string after_first;
  {
    auto c = Pkcs11Custody::open(token_->custody_config());
    ASSERT_TRUE(c) << c.error().to_string();
    auto signer = audit::token_signer(**c, "audit", "audit-counter");
    ASSERT_TRUE(signer) << signer.error().to_string();
    auto log = audit::AuditLog::open({.path = path("audit.log")});
    ASSERT_TRUE(log);
    ASSERT_TRUE((*log)->append({.type = "request.received", .request_id = "r-1"}));
    ASSERT_TRUE((*log)->checkpoint(*signer));
    after_first = read_file(path("audit.log"));
    ASSERT_TRUE((*log)->append({.type = "ca.submitted", .request_id = "r-1"}));
    ASSERT_TRUE((*log)->checkpoint(*signer));
  }
  auto counter = cc({"audit", "counter"});
  ASSERT_EQ(counter.exit_code, 0) << counter.output;
  EXPECT_NE(counter.output.find("2\n"), std::string::npos) << counter.output;

  auto ok = run({CERTCUSTODY_BINARY, "audit", "verify", "--log", path("audit.log"), "--pubkey", path("audit.pub.pem"),
                 "--counter", "2"},
                {});
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_NE(ok.output.find("OK: 4 records (seq 1-4), 2 checkpoints, last counter 2"), std::string::npos) << ok.output;

  write_file(path("old.log"), after_first);  // an older copy put in its place
  auto old = run({CERTCUSTODY_BINARY, "audit", "verify", "--log", path("old.log"), "--pubkey",
                  path("audit.pub.pem"), "--counter", "2"},
                 {});
  EXPECT_NE(old.exit_code, 0);
  EXPECT_NE(old.output.find("error audit.rolled_back"), std::string::npos) << old.output;

  std::string text = read_file(path("audit.log"));
  text.replace(text.find("r-1"), 3, "r-9");
  write_file(path("edited.log"), text);
  auto edited = run({CERTCUSTODY_BINARY, "audit", "verify", "--log", path("edited.log"), "--pubkey",
                     path("audit.pub.pem")},
                    {});
  EXPECT_NE(edited.exit_code, 0);
  EXPECT_NE(edited.output.find("error audit.chain_broken"), std::string::npos) << edited.output;
}

}  // namespace
}  // namespace certcustody::testing
