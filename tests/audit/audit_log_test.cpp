// The audit log's hash chain: records verify, every kind of tampering with
// the records is named at the first bad one, a torn last line is cut off and
// recorded, and concurrent appends keep the chain whole.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "audit/audit_log.h"
#include "common/ossl.h"
#include "support/temp_dir.h"

namespace certcustody::audit {
namespace {

using testing::read_file;
using testing::TempDir;
using testing::write_file;

std::unique_ptr<AuditLog> open_or_die(const std::string& path) {
  auto log = AuditLog::open({.path = path, .host = "test-host", .actor = current_actor("test")});
  EXPECT_TRUE(log) << log.error().to_string();
  return log ? std::move(log.value()) : nullptr;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

// A log of `n` request events.
std::string make_log(const TempDir& d, int n) {
  auto log = open_or_die(d / "audit.log");
  for (int i = 1; i <= n; ++i)
    EXPECT_TRUE(log->append({.type = "request.received", .request_id = "r-" + std::to_string(i)}));
  EXPECT_TRUE(log->sync());
  return read_file(d / "audit.log");
}

TEST(AuditLog, RecordsFormAChainThatVerifiesAndContinuesAfterReopen) {
  TempDir d;
  const std::string text = make_log(d, 5);
  auto lines = lines_of(text);
  ASSERT_EQ(lines.size(), 5u);
  auto first = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(first["seq"], 1);
  EXPECT_EQ(first["prev"], kGenesis);
  EXPECT_EQ(first["event"], "request.received");
  EXPECT_EQ(first["request"], "r-1");
  EXPECT_EQ(first["host"], "test-host");
  EXPECT_EQ(first["actor"]["command"], "test");
  EXPECT_EQ(first["ts"].get<std::string>().back(), 'Z');
  auto r = verify_chain(text, "audit.log");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->records, 5u);
  EXPECT_EQ(r->last_seq, 5u);

  auto log = open_or_die(d / "audit.log");
  EXPECT_EQ(log->last_seq(), 5u);
  EXPECT_EQ(log->head(), r->head);
  ASSERT_TRUE(log->append({.type = "daemon.stop", .outcome = "failed", .error_code = "x.y", .detail = {{"k", "v"}}}));
  auto again = verify_chain(read_file(d / "audit.log"), "audit.log");
  ASSERT_TRUE(again) << again.error().to_string();
  EXPECT_EQ(again->last_seq, 6u);
  auto last = nlohmann::json::parse(lines_of(read_file(d / "audit.log")).back());
  EXPECT_EQ(last["error"], "x.y");
  EXPECT_EQ(last["detail"]["k"], "v");
}

struct Tamper {
  const char* name;
  std::vector<std::string> (*apply)(std::vector<std::string>);
  const char* must_mention;
};

class AuditTamper : public ::testing::TestWithParam<Tamper> {};

TEST_P(AuditTamper, IsFoundAtTheFirstBadRecord) {
  TempDir d;
  const auto lines = lines_of(make_log(d, 6));
  auto r = verify_chain(joined(GetParam().apply(lines)), "audit.log");
  ASSERT_FALSE(r) << GetParam().name;
  EXPECT_EQ(r.error().code, "audit.chain_broken");
  EXPECT_NE(r.error().what.find(GetParam().must_mention), std::string::npos) << r.error().what;
}

INSTANTIATE_TEST_SUITE_P(
    Kinds, AuditTamper,
    ::testing::Values(
        Tamper{"modification",
               [](std::vector<std::string> l) {
                 auto j = nlohmann::ordered_json::parse(l[2]);
                 j["outcome"] = "failed";  // a field changed, its own prev intact
                 l[2] = j.dump();
                 return l;
               },
               "audit.log:4: seq 4 names a previous record that is not the one before it: that record was changed"},
        Tamper{"deletion",
               [](std::vector<std::string> l) {
                 l.erase(l.begin() + 2);
                 return l;
               },
               "audit.log:3: seq 4 follows seq 2: records are missing"},
        Tamper{"insertion",
               [](std::vector<std::string> l) {
                 l.insert(l.begin() + 3, l[2]);  // a copy of a real record
                 return l;
               },
               "audit.log:4: seq 3 follows seq 3: a record was inserted or moved"},
        Tamper{"reordering",
               [](std::vector<std::string> l) {
                 std::swap(l[3], l[4]);
                 return l;
               },
               "audit.log:4: seq 5 follows seq 3"},
        Tamper{"first record removed",
               [](std::vector<std::string> l) {
                 l.erase(l.begin());
                 return l;
               },
               "audit.log:1: seq 2 names a previous record that is not the one before it (the chain does not start "
               "here)"},
        Tamper{"garbage line", [](std::vector<std::string> l) {
                 l[1] = "{\"seq\": \"two\"}";
                 return l;
               },
               "audit.log:2: a record without seq or prev"}),
    [](const auto& param_info) {
      std::string n = param_info.param.name;
      std::replace(n.begin(), n.end(), ' ', '_');
      return n;
    });

TEST(AuditLog, ATornLastLineIsCutOffAndRecorded) {
  TempDir d;
  const std::string text = make_log(d, 3);
  const std::string torn = R"({"seq":4,"ts":"2026-11-29T1)";
  write_file(d / "audit.log", text + torn);
  auto partial = verify_chain(read_file(d / "audit.log"), "audit.log");
  ASSERT_FALSE(partial);
  EXPECT_EQ(partial.error().code, "audit.torn_tail");

  auto log = open_or_die(d / "audit.log");
  ASSERT_TRUE(log);
  EXPECT_EQ(log->last_seq(), 4u);  // the repair is record 4
  const std::string repaired = read_file(d / "audit.log");
  EXPECT_EQ(repaired.substr(0, text.size()), text);
  auto last = nlohmann::json::parse(lines_of(repaired).back());
  EXPECT_EQ(last["event"], "audit.torn_tail_repaired");
  EXPECT_EQ(last["detail"]["bytes"], std::to_string(torn.size()));
  auto r = verify_chain(repaired, "audit.log");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->records, 4u);
}

TEST(AuditLog, AFileWhoseLastLineIsNoRecordIsRefused) {
  TempDir d;
  write_file(d / "audit.log", "hello\n");
  auto log = AuditLog::open({.path = d / "audit.log"});
  ASSERT_FALSE(log);
  EXPECT_EQ(log.error().code, "audit.corrupt");
}

TEST(AuditLog, EightThreadsAppendingKeepTheChainWhole) {
  TempDir d;
  auto log = open_or_die(d / "audit.log");
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < 250; ++i)
        EXPECT_TRUE(log->append({.type = "request.received", .request_id = std::to_string(t) + "-" + std::to_string(i)}));
    });
  for (auto& t : ts) t.join();
  auto r = verify_chain(read_file(d / "audit.log"), "audit.log");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->records, 2000u);
  EXPECT_EQ(r->head, log->head());
}

TEST(AuditLog, ValuesThatAreNotUtf8AreEscapedNotDropped) {
  TempDir d;
  auto log = open_or_die(d / "audit.log");
  ASSERT_TRUE(log->append({.type = "request.received", .request_id = std::string("bad\xff\xfe id")}));
  auto r = verify_chain(read_file(d / "audit.log"), "audit.log");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->records, 1u);
}

// A software stand-in for the token's audit key and counter (the token-backed
// signer is exercised by the integration tests).
class SoftwareAuditKey {
 public:
  SoftwareAuditKey() : key_(EVP_EC_gen("P-256")) {}
  EVP_PKEY* key() const { return key_.get(); }
  std::uint64_t counter = 0;
  CheckpointSigner signer() {
    return {.advance_counter = [this]() -> Result<std::uint64_t> { return ++counter; },
            .sign = [this](std::span<const std::uint8_t> md) -> Result<Bytes> {
              EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key_.get(), nullptr));
              std::size_t len = 0;
              if (!ctx || EVP_PKEY_sign_init(ctx.get()) != 1 ||
                  EVP_PKEY_CTX_set_signature_md(ctx.get(), EVP_sha256()) != 1 ||
                  EVP_PKEY_sign(ctx.get(), nullptr, &len, md.data(), md.size()) != 1)
                return Error{"test.sign", "cannot sign", ""};
              Bytes sig(len);
              if (EVP_PKEY_sign(ctx.get(), sig.data(), &len, md.data(), md.size()) != 1)
                return Error{"test.sign", "cannot sign", ""};
              sig.resize(len);
              return sig;
            },
            .key_id = to_hex_lower(*digest("SHA256", public_key_der(key_.get())))};
  }

 private:
  EvpPkeyPtr key_;
};

// 3 records, checkpoint (counter 1), 2 records, checkpoint (counter 2).
std::string signed_log(const TempDir& d, SoftwareAuditKey& k, std::string* after_first = nullptr) {
  auto log = open_or_die(d / "audit.log");
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(log->append({.type = "request.received"}));
  EXPECT_TRUE(log->checkpoint(k.signer()));
  if (after_first != nullptr) *after_first = read_file(d / "audit.log");
  for (int i = 0; i < 2; ++i) EXPECT_TRUE(log->append({.type = "ca.submitted"}));
  EXPECT_TRUE(log->checkpoint(k.signer()));
  return read_file(d / "audit.log");
}

// Recomputes every prev (and a checkpoint's named head) from line `from` on,
// as a forger who rewrote history would: the signatures are what stops him.
std::vector<std::string> rechained(std::vector<std::string> l, std::size_t from) {
  for (std::size_t i = from; i < l.size(); ++i) {
    auto j = nlohmann::ordered_json::parse(l[i]);
    const std::string prev = to_hex_lower(*digest(
        "SHA256", {reinterpret_cast<const std::uint8_t*>(l[i - 1].data()), l[i - 1].size()}));
    j["prev"] = prev;
    if (j["event"] == "audit.checkpoint") j["detail"]["head"] = prev;
    l[i] = j.dump();
  }
  return l;
}

TEST(AuditCheckpoints, ASignedLogVerifiesWithThePublicKeyAlone) {
  TempDir d;
  SoftwareAuditKey k;
  const std::string text = signed_log(d, k);
  auto r = verify_log(text, "audit.log", {.public_key = k.key(), .min_counter = 2});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->records, 7u);
  EXPECT_EQ(r->checkpoints, 2u);
  EXPECT_EQ(r->last_counter, 2u);
  EXPECT_EQ(r->last_checkpoint_seq, 7u);
  EXPECT_EQ(r->unsigned_tail, 0u);
  auto cp = nlohmann::json::parse(lines_of(text)[3]);
  EXPECT_EQ(cp["event"], "audit.checkpoint");
  EXPECT_EQ(cp["detail"]["covers_seq"], "3");
  EXPECT_EQ(cp["detail"]["counter"], "1");
}

TEST(AuditCheckpoints, ARewrittenHistoryFailsAtTheFirstCheckpointAfterIt) {
  TempDir d;
  SoftwareAuditKey k;
  auto l = lines_of(signed_log(d, k));
  auto j = nlohmann::ordered_json::parse(l[1]);
  j["outcome"] = "failed";
  l[1] = j.dump();
  l = rechained(l, 2);
  ASSERT_TRUE(verify_chain(joined(l), "audit.log"));  // the chain alone cannot tell
  auto r = verify_log(joined(l), "audit.log", {.public_key = k.key()});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "audit.checkpoint_invalid");
  EXPECT_NE(r.error().what.find("audit.log:4: the signature does not verify"), std::string::npos) << r.error().what;
}

TEST(AuditCheckpoints, TruncationBeforeACheckpointAndAnOlderCopyAreRollBacks) {
  TempDir d;
  SoftwareAuditKey k;
  std::string older;
  const std::string text = signed_log(d, k, &older);
  // Cut after the first checkpoint and one more record: a valid chain,
  // signed up to counter 1.
  auto l = lines_of(text);
  l.resize(5);
  for (const std::string& copy : {joined(l), older}) {
    auto plain = verify_log(copy, "audit.log", {.public_key = k.key()});
    ASSERT_TRUE(plain) << plain.error().to_string();
    EXPECT_EQ(plain->last_counter, 1u);
    auto r = verify_log(copy, "audit.log", {.public_key = k.key(), .min_counter = k.counter});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, "audit.rolled_back");
    EXPECT_NE(r.error().what.find("counter 1, the audit counter has reached 2"), std::string::npos) << r.error().what;
  }
  auto cut = verify_log(joined(l), "audit.log", {.public_key = k.key()});
  EXPECT_EQ(cut->unsigned_tail, 1u);  // what the last checkpoint does not cover
}

TEST(AuditCheckpoints, ACheckpointOfAnotherKeyIsNamed) {
  TempDir d;
  SoftwareAuditKey k, other;
  const std::string text = signed_log(d, k);
  auto r = verify_log(text, "audit.log", {.public_key = other.key()});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "audit.foreign_key");
  // A forger's key id in place of the real one does not help him either.
  auto l = lines_of(text);
  auto j = nlohmann::ordered_json::parse(l[3]);
  j["detail"]["key"] = other.signer().key_id;
  l[3] = j.dump();
  auto forged = verify_log(joined(rechained(l, 4)), "audit.log", {.public_key = other.key()});
  ASSERT_FALSE(forged);
  EXPECT_EQ(forged.error().code, "audit.checkpoint_invalid");
}

TEST(AuditCheckpoints, AnUnsignedLogOrACounterGoingBackIsRefused) {
  TempDir d;
  SoftwareAuditKey k;
  auto r = verify_log(make_log(d, 3), "audit.log", {.public_key = k.key()});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "audit.unsigned");

  TempDir d2;
  auto log = open_or_die(d2 / "audit.log");
  k.counter = 5;
  ASSERT_TRUE(log->checkpoint(k.signer()));
  k.counter = 2;  // a token restored from an old backup
  ASSERT_TRUE(log->checkpoint(k.signer()));
  auto back = verify_log(read_file(d2 / "audit.log"), "audit.log", {.public_key = k.key()});
  ASSERT_FALSE(back);
  EXPECT_EQ(back.error().code, "audit.checkpoint_invalid");
  EXPECT_NE(back.error().what.find("counter 3 after counter 6"), std::string::npos) << back.error().what;
}

// Two writers on one file, as the daemon and a CLI command are: each sees
// the other's records (file lock, head read again) and the chain stays whole.
TEST(AuditLog, TwoProcessesAppendingToOneFileKeepOneChain) {
  TempDir d;
  auto a = open_or_die(d / "audit.log");
  auto b = open_or_die(d / "audit.log");
  ASSERT_TRUE(a->append({.type = "daemon.start"}));
  ASSERT_TRUE(b->append({.type = "kek.created"}));
  ASSERT_TRUE(a->append({.type = "request.received"}));
  std::thread ta([&] {
    for (int i = 0; i < 300; ++i) EXPECT_TRUE(a->append({.type = "request.received"}));
  });
  std::thread tb([&] {
    for (int i = 0; i < 300; ++i) EXPECT_TRUE(b->append({.type = "request.redelivered"}));
  });
  ta.join();
  tb.join();
  auto r = verify_chain(read_file(d / "audit.log"), "audit.log");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->records, 603u);
}

TEST(AuditCheckpoints, EveryNRecordsAndOnTheTimer) {
  TempDir d;
  SoftwareAuditKey k;
  auto opened = AuditLog::open({.path = d / "audit.log", .signer = k.signer(), .checkpoint_every = 3});
  ASSERT_TRUE(opened) << opened.error().to_string();
  auto& log = *opened;
  for (int i = 0; i < 7; ++i) ASSERT_TRUE(log->append({.type = "request.received"}));
  EXPECT_EQ(k.counter, 2u);  // after records 3 and 6 (+ the checkpoints themselves: seq 4 and 8)
  ASSERT_TRUE(log->maybe_checkpoint(std::chrono::hours(1)));
  EXPECT_EQ(k.counter, 2u);  // not yet due
  ASSERT_TRUE(log->maybe_checkpoint(std::chrono::milliseconds(0)));
  EXPECT_EQ(k.counter, 3u);  // record 7 was not covered
  ASSERT_TRUE(log->maybe_checkpoint(std::chrono::milliseconds(0)));
  EXPECT_EQ(k.counter, 3u);  // nothing new to cover
  auto r = verify_log(read_file(d / "audit.log"), "audit.log", {.public_key = k.key(), .min_counter = 3});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->checkpoints, 3u);
  EXPECT_EQ(r->unsigned_tail, 0u);
}

// The token goes away: a checkpoint due after an append fails, yet the
// record is written and append() succeeds (a caller that saw a failure would
// record the same step again and again); the failure is reported once by
// maybe_checkpoint(), and the signer is not called on every append.
TEST(AuditCheckpoints, AFailingCheckpointNeitherFailsTheAppendNorIsRetriedPerRecord) {
  TempDir d;
  SoftwareAuditKey k;
  bool token_away = false;
  int sign_calls = 0;
  CheckpointSigner flaky = k.signer();
  auto sign = flaky.sign;
  flaky.sign = [&](std::span<const std::uint8_t> md) -> Result<Bytes> {
    ++sign_calls;
    if (token_away) return Error{"custody.token_not_present", "the token is away", "bring it back"};
    return sign(md);
  };
  auto opened = AuditLog::open({.path = d / "audit.log", .signer = flaky, .checkpoint_every = 2});
  ASSERT_TRUE(opened) << opened.error().to_string();
  auto& log = *opened;
  token_away = true;
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(log->append({.type = "request.received", .request_id = std::to_string(i)}));
  EXPECT_EQ(sign_calls, 1) << "one attempt, then the backoff";
  auto chain = verify_chain(read_file(d / "audit.log"), "audit.log");
  ASSERT_TRUE(chain) << chain.error().to_string();
  EXPECT_EQ(chain->records, 50u) << "every record written once";
  auto reported = log->maybe_checkpoint(std::chrono::milliseconds(0));
  ASSERT_FALSE(reported);
  EXPECT_EQ(reported.error().code, "custody.token_not_present");
  EXPECT_TRUE(log->maybe_checkpoint(std::chrono::milliseconds(0))) << "reported once; backing off";
  EXPECT_EQ(sign_calls, 1);

  token_away = false;  // back: after the backoff the timer signs the whole tail
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  ASSERT_TRUE(log->maybe_checkpoint(std::chrono::milliseconds(0)));
  auto r = verify_log(read_file(d / "audit.log"), "audit.log", {.public_key = k.key()});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->unsigned_tail, 0u);
}

// What a killed daemon left unsigned is signed by the next one at its start;
// a log that ends in a checkpoint gets none.
TEST(AuditCheckpoints, TheUnsignedTailOfAnEarlierRunIsSignedAtStart) {
  TempDir d;
  SoftwareAuditKey k;
  {
    auto killed = AuditLog::open({.path = d / "audit.log", .signer = k.signer(), .checkpoint_every = 1000});
    ASSERT_TRUE(killed);
    for (int i = 0; i < 5; ++i) ASSERT_TRUE((*killed)->append({.type = "request.received"}));
  }
  auto next = AuditLog::open({.path = d / "audit.log", .signer = k.signer()});
  ASSERT_TRUE(next);
  ASSERT_TRUE((*next)->checkpoint_unsigned_tail());
  EXPECT_EQ(k.counter, 1u);
  ASSERT_TRUE((*next)->checkpoint_unsigned_tail());
  EXPECT_EQ(k.counter, 1u) << "the log already ends in a checkpoint";
  auto r = verify_log(read_file(d / "audit.log"), "audit.log", {.public_key = k.key(), .min_counter = 1});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->unsigned_tail, 0u);
  EXPECT_EQ(r->records, 6u);
  auto reopened = AuditLog::open({.path = d / "audit.log", .signer = k.signer()});
  ASSERT_TRUE((*reopened)->checkpoint_unsigned_tail());
  EXPECT_EQ(k.counter, 1u) << "found to end in a checkpoint after reopening too";
}

// Audit-key rotation: checkpoints by the old key, then by the new one (the
// token's counter runs on). Verified with both keys, oldest first; the old
// key alone, or the keys in the wrong order, name the checkpoint.
TEST(AuditRotation, ANewAuditKeyTakesOverAndTheOldOneMayNotComeBack) {
  TempDir d;
  SoftwareAuditKey old_key, new_key;
  auto log = open_or_die(d / "audit.log");
  ASSERT_TRUE(log->append({.type = "daemon.start"}));
  ASSERT_TRUE(log->checkpoint(old_key.signer()));
  ASSERT_TRUE(log->append({.type = "key.generated"}));
  new_key.counter = old_key.counter;  // one counter in the token
  ASSERT_TRUE(log->checkpoint(new_key.signer()));
  const std::string text = read_file(d / "audit.log");
  auto both = verify_log(text, "audit.log", {.public_key = old_key.key(), .successor_keys = {new_key.key()}});
  ASSERT_TRUE(both) << both.error().to_string();
  EXPECT_EQ(both->key_index, 1u);
  auto old_only = verify_log(text, "audit.log", {.public_key = old_key.key()});
  ASSERT_FALSE(old_only);
  EXPECT_EQ(old_only.error().code, "audit.foreign_key");
  auto reversed = verify_log(text, "audit.log", {.public_key = new_key.key(), .successor_keys = {old_key.key()}});
  ASSERT_FALSE(reversed);
  EXPECT_EQ(reversed.error().code, "audit.foreign_key");
  // A retired key signing again after its successor.
  old_key.counter = new_key.counter;
  ASSERT_TRUE(log->checkpoint(old_key.signer()));
  auto back = verify_log(read_file(d / "audit.log"), "audit.log",
                         {.public_key = old_key.key(), .successor_keys = {new_key.key()}});
  ASSERT_FALSE(back);
  EXPECT_NE(back.error().what.find("retired by a later key"), std::string::npos) << back.error().what;
}

// Rotation: the closed file ends with a checkpoint, the next starts with
// audit.rotated continuing the chain; a writer that had the old file open
// moves over; verified across files, a missing or reordered file is named.
TEST(AuditRotation, FilesChainOnAndVerifyTogether) {
  TempDir d;
  SoftwareAuditKey k;
  auto opened = AuditLog::open({.path = d / "audit.log", .signer = k.signer()});
  ASSERT_TRUE(opened) << opened.error().to_string();
  auto& daemon = *opened;
  auto cli = open_or_die(d / "audit.log");  // another process's view
  ASSERT_TRUE(daemon->append({.type = "daemon.start"}));
  ASSERT_TRUE(cli->append({.type = "kek.created"}));
  ASSERT_TRUE(daemon->rotate(d / "audit.log.1"));
  EXPECT_EQ(daemon->rotate(d / "audit.log.1").error().code, "audit.unwritable");  // never over a kept file
  ASSERT_TRUE(cli->append({.type = "request.redelivery"}));  // lands in the new file
  ASSERT_TRUE(daemon->append({.type = "request.received"}));
  ASSERT_TRUE(daemon->maybe_rotate(1));  // past 1 byte: rotates to audit.log.<seq>
  ASSERT_TRUE(daemon->append({.type = "daemon.stop"}));
  ASSERT_TRUE(daemon->checkpoint(k.signer()));

  const std::string f1 = read_file(d / "audit.log.1"), f3 = read_file(d / "audit.log");
  // The second archive is named after its last record: 1-3 in the first file
  // (its checkpoint last), audit.rotated 4, 5 and 6, its checkpoint 7.
  ASSERT_EQ(::access((d / "audit.log.000000000007").c_str(), F_OK), 0);
  const std::string f2 = read_file(d / "audit.log.000000000007");
  EXPECT_NE(lines_of(f2).front().find("\"event\":\"audit.rotated\""), std::string::npos) << f2;
  EXPECT_NE(f2.find("\"event\":\"request.redelivery\""), std::string::npos) << f2;  // the CLI moved over
  EXPECT_EQ(f1.find("request.redelivery"), std::string::npos);

  auto r1 = verify_log(f1, "1", {.public_key = k.key()});
  ASSERT_TRUE(r1) << r1.error().to_string();
  auto r2 = verify_log(f2, "2",
                       {.public_key = k.key(), .previous_head = r1->head, .previous_seq = r1->last_seq,
                        .previous_counter = r1->last_counter});
  ASSERT_TRUE(r2) << r2.error().to_string();
  auto r3 = verify_log(f3, "3",
                       {.public_key = k.key(), .min_counter = k.counter, .previous_head = r2->head,
                        .previous_seq = r2->last_seq, .previous_counter = r2->last_counter});
  ASSERT_TRUE(r3) << r3.error().to_string();
  EXPECT_EQ(r3->unsigned_tail, 0u);
  // Alone, a later file does not start a chain; skipping a file breaks it.
  EXPECT_EQ(verify_log(f2, "2", {.public_key = k.key()}).error().code, "audit.chain_broken");
  auto skipped = verify_log(f3, "3",
                            {.public_key = k.key(), .previous_head = r1->head, .previous_seq = r1->last_seq,
                             .previous_counter = r1->last_counter});
  ASSERT_FALSE(skipped);
  EXPECT_NE(skipped.error().what.find("does not continue the previous file"), std::string::npos)
      << skipped.error().what;
}

}  // namespace
}  // namespace certcustody::audit
