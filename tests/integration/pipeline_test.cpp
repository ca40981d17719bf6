// The issuance pipeline end to end, as an operator runs it: the certcustody
// executable (submit, serve, status, redeliver, revoke) on a SoftHSM token,
// the CA simulator as the CA, and the openssl CLI alone opening the output.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "pfx/test_certs.h"
#include "pipeline/recipients.h"
#include "pipeline_fixture.h"

namespace certcustody::testing {
namespace {

TEST_F(Pipeline, IssuesAndDeliversAPfxOnlyItsRecipientCanOpen) {
  submit("dc-1", "users", "IWUser0");
  submit("ms-1", "ms", "IWUser1");
  submit("legacy-1", "legacy", "IWUser2");
  auto s = serve();
  ASSERT_EQ(s.exit_code, 0) << s.output;
  for (const char* id : {"dc-1", "ms-1", "legacy-1"}) EXPECT_EQ(status(id)["state"], "delivered") << id;
  EXPECT_EQ(sim_->issued_total(), 3);

  Opened dc = open_output("dc-1");
  EXPECT_NE(dc.cert_text.find("subject=CN = IWUser0"), std::string::npos) << dc.cert_text;
  EXPECT_NE(dc.cert_text.find("email:IWUser0@contoso.example"), std::string::npos) << dc.cert_text;
  EXPECT_NE(dc.key_text.find("BEGIN PRIVATE KEY"), std::string::npos);
  EXPECT_NE(dc.info.find("MAC: sha256"), std::string::npos) << dc.info;
  EXPECT_NE(dc.info.find("Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC"), std::string::npos) << dc.info;
  EXPECT_EQ(dc.info.find("RC2"), std::string::npos) << dc.info;

  Opened ms = open_output("ms-1");
  EXPECT_NE(ms.cert_text.find("subject=CN = IWUser1"), std::string::npos) << ms.cert_text;

  Opened legacy = open_output("legacy-1");  // the compatibility form for older devices
  EXPECT_NE(legacy.info.find("MAC: sha1"), std::string::npos) << legacy.info;
  EXPECT_NE(legacy.info.find("pbeWithSHA1And3-KeyTripleDES-CBC"), std::string::npos) << legacy.info;
  EXPECT_EQ(legacy.info.find("RC2"), std::string::npos) << legacy.info;

  // Another key cannot open the envelope.
  ASSERT_EQ(openssl({"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", path("other.key"), "-out",
                     path("other.pem"), "-subj", "/CN=other", "-days", "1"})
                .exit_code,
            0);
  EXPECT_NE(openssl({"cms", "-decrypt", "-inform", "DER", "-in", outgoing() + "/dc-1.pfx.p7m", "-recip",
                     path("other.pem"), "-inkey", path("other.key"), "-out", path("nope")})
                .exit_code,
            0);
  // The status record the device-management service reads.
  auto st = nlohmann::json::parse(read_file(outgoing() + "/dc-1.status.json"));
  EXPECT_EQ(st["state"], "delivered");
  EXPECT_FALSE(st["certificate"]["serial"].get<std::string>().empty());
}

TEST_F(Pipeline, RedeliverWritesTheSameCertificateWithoutACaRequest) {
  submit("dc-1", "users");
  ASSERT_EQ(serve().exit_code, 0);
  const std::string first = open_output("dc-1").cert_text;
  const long requests = sim_->requests();
  auto r = cc({"redeliver", "dc-1"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(open_output("dc-1").cert_text, first);
  EXPECT_EQ(sim_->requests(), requests);
  EXPECT_EQ(sim_->issued_total(), 1);
  EXPECT_EQ(status("dc-1")["state"], "delivered");
  auto bad = cc({"redeliver", "nope"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("store.not_found"), std::string::npos) << bad.output;
}

TEST_F(Pipeline, RevokeRevokesAtTheCaAndRecordsTheStatus) {
  submit("dc-1", "users");
  ASSERT_EQ(serve().exit_code, 0);
  auto r = cc({"revoke", "dc-1", "--reason", "keyCompromise"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_EQ(sim_->revoked().size(), 1u);
  auto st = status("dc-1");
  EXPECT_EQ(st["revocation"]["status"], "revoked");
  EXPECT_EQ(st["revocation"]["reason"], "keyCompromise");
  EXPECT_NE(sim_->revoked()[0].find(st["certificate"]["serial"].get<std::string>()), std::string::npos);
  auto rec = nlohmann::json::parse(read_file(outgoing() + "/dc-1.revocation.json"));
  EXPECT_EQ(rec["status"], "revoked");
  // The Microsoft CA has no revocation over MS-WSTEP: a named error, recorded.
  submit("ms-1", "ms");
  ASSERT_EQ(serve().exit_code, 0);
  auto ms = cc({"revoke", "ms-1", "--reason", "superseded"});
  EXPECT_NE(ms.exit_code, 0);
  EXPECT_NE(ms.output.find("ca.operation_unsupported"), std::string::npos) << ms.output;
  EXPECT_EQ(status("ms-1")["revocation"]["status"], "failed");
}

TEST_F(Pipeline, BadRequestFilesFailWithNamedErrorsAndTheDaemonGoesOn) {
  drop("malformed.json", "{\"version\": 2, \"attributes\": ");
  drop("no-profile.json", request("no-profile", "nosuchprofile"));
  nlohmann::json wrong = nlohmann::json::parse(request("wrong-type", "users"));
  wrong["attributes"]["common_name"] = 42;
  drop("wrong-type.json", wrong.dump());
  nlohmann::json stranger = nlohmann::json::parse(request("stranger", "users"));
  stranger["recipient"] = "sha256:" + std::string(64, 'a');
  drop("stranger.json", stranger.dump());
  drop("huge.json", std::string(10 << 20, ' '));
  drop("good.json", request("good", "users"));
  const bool can_lock_out = ::geteuid() != 0;  // root reads a mode-0 file anyway
  if (can_lock_out) {
    drop("unreadable.json", request("unreadable", "users"));
    ASSERT_EQ(::chmod((incoming() + "/unreadable.json").c_str(), 0), 0);
  }
  auto s = serve();
  ASSERT_EQ(s.exit_code, 0) << s.output;
  EXPECT_EQ(status("malformed")["error"]["code"], "policy.request_invalid");
  EXPECT_EQ(status("no-profile")["error"]["code"], "request.profile_unknown");
  EXPECT_EQ(status("wrong-type")["error"]["code"], "policy.request_invalid");
  EXPECT_EQ(status("stranger")["error"]["code"], "request.recipient_unknown");
  EXPECT_EQ(status("huge")["error"]["code"], "request.too_large");
  for (const char* id : {"malformed", "no-profile", "wrong-type", "stranger", "huge"}) {
    auto st = status(id);
    EXPECT_EQ(st["state"], "failed") << id;
    EXPECT_FALSE(st["error"]["remedy"].get<std::string>().empty()) << id;
  }
  if (can_lock_out) {
    EXPECT_EQ(status("unreadable")["error"]["code"], "spool.unwritable");
  }
  EXPECT_EQ(status("good")["state"], "delivered");
  EXPECT_EQ(sim_->issued_total(), 1);
  // Nothing is left in the spool.
  for (const std::string& dir : {incoming(), state() + "/requests/claimed"}) {
    auto ls = run({"ls", "-A", dir}, {});
    EXPECT_EQ(ls.output, "") << dir;
  }
  // submit refuses a bad file at once.
  write_file(path("bad.json"), "{\"version\": 3}");
  auto sub = cc({"submit", path("bad.json")});
  EXPECT_NE(sub.exit_code, 0);
  EXPECT_NE(sub.output.find("policy.request_invalid"), std::string::npos) << sub.output;
}

TEST_F(Pipeline, APolicyViolationFailsWithItsNamedErrorBeforeTheCa) {
  append_config("[profile.strict]\nca = \"digicert\"\ntemplate = \"" + std::string(kDigicertProfile) +
                "\"\nsubject = \"cn\"\nsan = [\"email\"]\nkey_type = \"ec-p256\"\n"
                "allowed_email_domains = [\"fabrikam.example\"]\n");
  submit("strict-1", "strict");
  ASSERT_EQ(serve().exit_code, 0);
  auto st = status("strict-1");
  EXPECT_EQ(st["state"], "failed");
  EXPECT_EQ(st["error"]["code"].get<std::string>().rfind("policy.", 0), 0u) << st.dump();
  EXPECT_EQ(sim_->issued_total(), 0);
}

// Issue 16 item 21: DigiCert polls name the certificate profile (the
// simulator refuses a poll without it, as the request's own).
TEST_F(Pipeline, PendingRequestsArePolledUntilIssued) {
  for (const char* key : {kMsTemplate, kDigicertProfile})
    sim_->script(key, SimBehaviour{.kind = SimBehaviour::Kind::pend_then_issue, .pending_polls = 1});
  submit("ms-1", "ms");
  submit("dc-1", "users");
  auto s = serve();
  ASSERT_EQ(s.exit_code, 0) << s.output;
  EXPECT_EQ(status("ms-1")["state"], "delivered") << s.output;
  EXPECT_EQ(status("dc-1")["state"], "delivered") << status("dc-1").dump();
  EXPECT_EQ(sim_->issued_total(), 2);
}

// Issue 16 item 5: an HTTP 200 answer from the Microsoft CA that cannot be
// read — after the CA issued — ends the request as an unknown outcome with
// the lookup remedy, not as a definitive failure, and it is never re-sent.
TEST_F(Pipeline, AnUnreadableMicrosoftAnswerIsAnUnknownOutcomeNeverResent) {
  sim_->script(kMsTemplate, SimBehaviour{.kind = SimBehaviour::Kind::html_page});
  submit("ms-1", "ms");
  auto s = serve();
  ASSERT_EQ(s.exit_code, 0) << s.output;
  auto st = status("ms-1");
  EXPECT_EQ(st["state"], "failed") << st.dump();
  EXPECT_EQ(st["error"]["code"], "ca.outcome_unknown") << st.dump();
  EXPECT_NE(st["error"]["remedy"].get<std::string>().find("look the request up"), std::string::npos) << st.dump();
  EXPECT_EQ(sim_->requests_to("/CA_CES_Certificate/service.svc/CES"), 1);
  EXPECT_EQ(sim_->issued_for(st.value("csr_public_key_sha256", "")), 1);  // the CA did issue
}

TEST_F(Pipeline, ATransientCaFailureIsRetriedLater) {
  sim_->script(kDigicertProfile, SimBehaviour{.kind = SimBehaviour::Kind::http_error, .http_status = 503, .times = 3});
  submit("dc-1", "users");
  auto s = serve();
  ASSERT_EQ(s.exit_code, 0) << s.output;
  auto st = status("dc-1");
  EXPECT_EQ(st["state"], "delivered") << s.output;
  EXPECT_GE(st["attempts"].get<int>(), 2);
  EXPECT_EQ(sim_->issued_total(), 1);
}

TEST_F(Pipeline, SigtermFinishesTheRequestsInHandAndSighupReloads) {
  Process daemon({CERTCUSTODY_BINARY, "--config", config_, "serve", "--workers", "2"}, env(), path("serve.log"));
  ASSERT_TRUE(daemon.wait_for_output("started with", 20000)) << daemon.log();
  for (int i = 0; i < 6; ++i) submit("dc-" + std::to_string(i), "users", "User" + std::to_string(i));
  ASSERT_TRUE(daemon.wait_for_output("delivered to", 20000)) << daemon.log();
  // A profile added while running, picked up on SIGHUP.
  append_config("[profile.added]\nca = \"digicert\"\ntemplate = \"" + std::string(kDigicertProfile) +
                "\"\nsubject = \"cn\"\nkey_type = \"ec-p256\"\n");
  daemon.signal(SIGHUP);
  ASSERT_TRUE(daemon.wait_for_output("configuration reloaded", 20000)) << daemon.log();
  submit("added-1", "added");
  daemon.signal(SIGTERM);
  ASSERT_EQ(daemon.wait(60000), 0) << daemon.log();
  auto list = cc({"status"});
  EXPECT_EQ(list.output.find("processing"), std::string::npos) << list.output;
  ASSERT_EQ(serve().exit_code, 0);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(status("dc-" + std::to_string(i))["state"], "delivered");
  EXPECT_EQ(status("added-1")["state"], "delivered");
  EXPECT_EQ(sim_->issued_total(), 7);
}

// A recipient that cannot receive is found before the CA is asked: an
// expired one fails the request at intake; a key that can never be sealed
// for (EC) stops the daemon at start with the file named.
TEST_F(Pipeline, RecipientsAreCheckedBeforeAnythingIsIssued) {
  EvpPkeyPtr rsa = rsa_key(2048), ec = ec_key();
  X509Ptr expired = make_cert({.cn = "Old MDM", .key = rsa.get(), .not_before_s = -172800, .not_after_s = -86400});
  X509Ptr ec_cert = make_cert({.cn = "EC MDM", .key = ec.get()});
  ASSERT_TRUE(expired && ec_cert);
  write_file(path("expired.pem"), to_pem(expired.get()));
  write_file(path("ec.pem"), to_pem(ec_cert.get()));
  const std::string config = read_file(config_);
  const std::string listed = "recipients = [\"" + path("mdm.pem") + "\"]";
  ASSERT_NE(config.find(listed), std::string::npos);
  auto with_recipients = [&](const std::string& extra) {
    std::string c = config;
    c.replace(c.find(listed), listed.size(),
              "recipients = [\"" + path("mdm.pem") + "\", \"" + path(extra) + "\"]");
    write_file(config_, c);
  };
  with_recipients("expired.pem");
  nlohmann::json req = nlohmann::json::parse(request("old-1", "users"));
  req["recipient"] = "sha256:" + *pipeline::RecipientSet::thumbprint(expired.get());
  write_file(path("old-1.json"), req.dump());
  ASSERT_EQ(cc({"submit", path("old-1.json")}).exit_code, 0);
  ASSERT_EQ(serve().exit_code, 0);
  EXPECT_EQ(status("old-1")["error"]["code"], "pfx.recipient_expired");
  EXPECT_EQ(sim_->issued_total(), 0);

  with_recipients("ec.pem");
  auto s = serve();
  EXPECT_NE(s.exit_code, 0);
  EXPECT_NE(s.output.find("pfx.recipient_unsupported"), std::string::npos) << s.output;
  EXPECT_NE(s.output.find(path("ec.pem")), std::string::npos) << s.output;
}

// The audit log of a full run: every step of each request, the daemon's start
// and stop, signed checkpoints that verify with the public key and the
// token's counter; and none of the secrets of the run in it.
TEST_F(Pipeline, TheAuditLogRecordsEveryStepSignedAndWithoutSecrets) {
  ASSERT_EQ(cc({"audit", "keygen", "--pubkey-out", path("audit.pub.pem")}).exit_code, 0);
  submit("dc-1", "users", "IWUser0");
  submit("ms-1", "ms", "IWUser1");
  auto s = serve();
  ASSERT_EQ(s.exit_code, 0) << s.output;
  EXPECT_EQ(s.output.find("is not signed"), std::string::npos) << s.output;
  ASSERT_EQ(cc({"redeliver", "dc-1"}).exit_code, 0);
  ASSERT_EQ(cc({"revoke", "dc-1", "--reason", "superseded"}).exit_code, 0);
  ASSERT_EQ(serve().exit_code, 0);  // its checkpoint covers the two commands' records

  auto counter = cc({"audit", "counter"});
  ASSERT_EQ(counter.exit_code, 0) << counter.output;
  const std::string n = counter.output.substr(0, counter.output.find('\n'));
  const std::string log = state() + "/audit.log";
  auto v = run({CERTCUSTODY_BINARY, "audit", "verify", "--log", log, "--pubkey", path("audit.pub.pem"), "--counter", n},
               env());
  EXPECT_EQ(v.exit_code, 0) << v.output;
  EXPECT_NE(v.output.find("0 records after the last checkpoint"), std::string::npos) << v.output;

  const std::string text = read_file(log);
  for (const char* event : {"daemon.start", "request.received", "policy.decision", "request.csr_made", "ca.submitted",
                            "ca.result", "pfx.wrapped", "request.delivered", "request.redelivery",
                            "certificate.revoked", "daemon.stop", "audit.checkpoint"})
    EXPECT_NE(text.find(std::string("\"event\":\"") + event + "\""), std::string::npos) << event;
  // Secrets of the run: the token PINs, and each PKCS#12 password.
  std::vector<std::string> secrets = {token_->user_pin(), token_->so_pin()};
  for (const char* id : {"dc-1", "ms-1"}) {
    open_output(id);
    secrets.push_back(read_file(path(std::string(id) + ".password")));
  }
  for (const std::string& secret : secrets) {
    ASSERT_GE(secret.size(), 8u);
    EXPECT_EQ(text.find(secret), std::string::npos) << "a secret is in the audit log";
  }
}

// A daemon killed before any checkpoint leaves its records unsigned; verify
// says so plainly (and fails with --require-signed-tail); the next daemon
// signs that tail first thing, even if it too is killed soon after.
TEST_F(Pipeline, TheUnsignedTailOfAKilledRunIsReportedAndSignedAtTheNextStart) {
#ifndef CERTCUSTODY_FAULT_POINTS
  GTEST_SKIP() << "built without CERTCUSTODY_FAULT_POINTS";
#endif
  ASSERT_EQ(cc({"audit", "keygen", "--pubkey-out", path("audit.pub.pem")}).exit_code, 0);
  const std::string log = state() + "/audit.log";
  auto verify = [&](std::vector<std::string> extra = {}) {
    std::vector<std::string> a = {CERTCUSTODY_BINARY, "audit", "verify", "--log", log, "--pubkey", path("audit.pub.pem")};
    a.insert(a.end(), extra.begin(), extra.end());
    return run(a, env());
  };
  submit("dc-1", "users");
  ASSERT_EQ(serve({"CERTCUSTODY_FAULT_POINT=after_claim"}).exit_code, 128 + SIGKILL);
  auto records = [&] {
    std::vector<nlohmann::json> out;
    std::istringstream in(read_file(log));
    for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
    return out;
  };
  const std::uint64_t first_run_last = records().back()["seq"];

  auto plain = verify();
  EXPECT_EQ(plain.exit_code, 0) << plain.output;
  EXPECT_NE(plain.output.find("NOT SIGNED: "), std::string::npos) << plain.output;
  EXPECT_NE(plain.output.find("rollback NOT checked"), std::string::npos) << plain.output;
  auto strict = verify({"--require-signed-tail"});
  EXPECT_NE(strict.exit_code, 0) << strict.output;
  EXPECT_NE(strict.output.find("audit.unsigned_tail"), std::string::npos) << strict.output;

  submit("dc-2", "users");
  ASSERT_EQ(serve({"CERTCUSTODY_FAULT_POINT=after_claim"}).exit_code, 128 + SIGKILL);
  std::uint64_t covered = 0;
  for (const auto& r : records())
    if (r["event"] == "audit.checkpoint") covered = std::stoull(r["detail"]["covers_seq"].get<std::string>());
  EXPECT_GE(covered, first_run_last) << "the second run signed the first run's tail at its start";

  ASSERT_EQ(serve().exit_code, 0);
  auto clean = verify({"--require-signed-tail"});
  EXPECT_EQ(clean.exit_code, 0) << clean.output;
  EXPECT_NE(clean.output.find("0 records after the last checkpoint"), std::string::npos) << clean.output;
  EXPECT_EQ(status("dc-1")["state"], "delivered");
  EXPECT_EQ(status("dc-2")["state"], "delivered");
}

// OpenSSL's CMP mock server as the CA. It answers every enrolment with one
// fixed certificate (../shared/notes/real-peers.md), so the daemon is stopped
// after the CSR is made and persisted, the mock is given a certificate for
// that CSR's key, and the resumed daemon enrols over CMP (p10cr, certConf,
// RA-signed), wraps and delivers; the rr revocation goes to the mock too.
TEST_F(Pipeline, CmpMockServerAsTheCa) {
#ifndef CERTCUSTODY_FAULT_POINTS
  GTEST_SKIP() << "built without CERTCUSTODY_FAULT_POINTS";
#endif
  const int port = free_loopback_port();
  append_config("[ca.cmp]\ntype = \"cmp\"\nurl = \"http://127.0.0.1:" + std::to_string(port) +
                "/pkix/\"\ntrust_anchor = \"" + path("ca.pem") + "\"\nretries = 1\nretry_base_ms = 20\n\n"
                "[profile.cmp]\nca = \"cmp\"\ntemplate = \"mock\"\nsubject = \"cn\"\nsan = [\"email\"]\n"
                "key_type = \"ec-p256\"\n");
  submit("cmp-1", "cmp");
  ASSERT_EQ(serve({"CERTCUSTODY_FAULT_POINT=after_csr"}).exit_code, 128 + SIGKILL);
  auto csr = cc({"status", "cmp-1", "--csr"});
  ASSERT_EQ(csr.exit_code, 0) << csr.output;
  write_file(path("cmp-1.csr"), csr.output);
  ASSERT_EQ(openssl({"x509", "-req", "-in", path("cmp-1.csr"), "-CA", path("ca.pem"), "-CAkey", path("ca.key"),
                     "-CAcreateserial", "-copy_extensions", "copy", "-days", "2", "-out", path("cmp-1.issued.pem")})
                .exit_code,
            0);
  Process mock({"openssl", "cmp", "-port", std::to_string(port), "-srv_cert", path("ca.pem"), "-srv_key",
                path("ca.key"), "-srv_trusted", path("ca.pem"), "-rsp_cert", path("cmp-1.issued.pem"),
                "-rsp_extracerts", path("ca.pem"), "-rsp_capubs", path("ca.pem")},
               {}, path("cmp-mock.log"));
  ASSERT_TRUE(mock.wait_for_output("ACCEPT", 5000)) << mock.log();
  auto s = serve();
  ASSERT_EQ(s.exit_code, 0) << s.output;
  EXPECT_EQ(status("cmp-1")["state"], "delivered") << s.output << mock.log();
  Opened o = open_output("cmp-1");
  EXPECT_NE(o.cert_text.find("subject=CN = IWUser0"), std::string::npos) << o.cert_text;
  EXPECT_NE(o.cert_text.find("email:IWUser0@contoso.example"), std::string::npos) << o.cert_text;
  EXPECT_NE(o.key_text.find("BEGIN PRIVATE KEY"), std::string::npos);
  auto rv = cc({"revoke", "cmp-1", "--reason", "superseded"});
  EXPECT_EQ(rv.exit_code, 0) << rv.output << mock.log();
  EXPECT_EQ(status("cmp-1")["revocation"]["status"], "revoked");
}

// SIGKILL at every fault point, then a normal run: every request ends
// delivered (issued exactly once at the CA) or failed with a reason (and
// issued at most once).
class PipelineCrash : public Pipeline, public ::testing::WithParamInterface<const char*> {};

TEST_P(PipelineCrash, KilledAtThisPointEveryRequestIsIssuedAtMostOnce) {
#ifndef CERTCUSTODY_FAULT_POINTS
  GTEST_SKIP() << "built without CERTCUSTODY_FAULT_POINTS";
#endif
  const std::vector<std::pair<std::string, std::string>> reqs = {
      {"ms-1", "ms"}, {"dc-1", "users"}, {"ms-2", "ms"}, {"dc-2", "users"}};
  for (const auto& [id, profile] : reqs) submit(id, profile, id);
  auto killed = serve({std::string("CERTCUSTODY_FAULT_POINT=") + GetParam()});
  EXPECT_EQ(killed.exit_code, 128 + SIGKILL) << killed.output;
  auto again = serve();
  ASSERT_EQ(again.exit_code, 0) << again.output;
  long delivered = 0;
  for (const auto& [id, profile] : reqs) {
    auto st = status(id);
    const std::string state = st["state"];
    // DigiCert counts per clientTransactionID; the MS CA per CSR public key.
    const std::string key = profile == "users" ? st.value("transaction_id", "") : st.value("csr_public_key_sha256", "");
    const long issued = key.empty() ? 0 : sim_->issued_for(key);
    EXPECT_LE(issued, 1) << id;
    if (state == "delivered") {
      ++delivered;
      EXPECT_EQ(issued, 1) << id;
      EXPECT_NE(open_output(id).cert_text.find("CN = " + id), std::string::npos) << id;
    } else {
      ASSERT_EQ(state, "failed") << id << ": " << st.dump();
      // Only a non-deduplicating CA may leave this doubt, and it is named.
      EXPECT_EQ(profile, "ms") << st.dump();
      EXPECT_EQ(st["error"]["code"], "ca.outcome_unknown") << st.dump();
    }
  }
  EXPECT_GE(delivered, 2);  // the DigiCert ones always
  EXPECT_LE(sim_->issued_total(), static_cast<long>(reqs.size()));

  // What the outside sees matches the store: every request has its status
  // record, in its state; every certificate the store holds has its ca.result
  // in the audit log; no temporary file of the killed run is left.
  std::map<std::string, std::string> issued_serials;
  std::istringstream audit(read_file(state() + "/audit.log"));
  for (std::string line; std::getline(audit, line);) {
    auto r = nlohmann::json::parse(line);
    if (r["event"] == "ca.result" && r["detail"].value("status", "") == "issued")
      issued_serials[r["request"]] = r["detail"]["serial"];
  }
  for (const auto& [id, profile] : reqs) {
    auto st = status(id);
    const std::string file = outgoing() + "/" + id + ".status.json";
    ASSERT_TRUE(std::filesystem::exists(file)) << id << " has no status record";
    EXPECT_EQ(nlohmann::json::parse(read_file(file))["state"], st["state"]) << id;
    if (st.contains("certificate")) {
      EXPECT_EQ(issued_serials[id], st["certificate"]["serial"]) << id << ": no ca.result for its certificate";
    }
  }
  EXPECT_TRUE(std::filesystem::is_empty(state() + "/requests/tmp"));
}

INSTANTIATE_TEST_SUITE_P(FaultPoints, PipelineCrash,
                         ::testing::Values("after_intake", "after_claim", "after_csr", "before_submit", "after_submit",
                                           "after_issue", "after_bundle", "after_write", "after_delivered",
                                           "spool_tmp_written"));

// A `certcustody redeliver` killed half-way leaves its request in
// processing; the running daemon sees that its owner is gone and takes it
// back, without a restart, while a live command's request is never touched.
TEST_F(Pipeline, ARequestOfAKilledCommandIsTakenBackByTheRunningDaemon) {
#ifndef CERTCUSTODY_FAULT_POINTS
  GTEST_SKIP() << "built without CERTCUSTODY_FAULT_POINTS";
#endif
  submit("dc-1", "users");
  ASSERT_EQ(serve().exit_code, 0);
  Process daemon({CERTCUSTODY_BINARY, "--config", config_, "serve"}, env(), path("serve.log"));
  ASSERT_TRUE(daemon.wait_for_output("started with", 20000)) << daemon.log();
  std::vector<std::string> e = env();
  e.push_back("CERTCUSTODY_FAULT_POINT=after_write");
  auto killed = run({CERTCUSTODY_BINARY, "--config", config_, "redeliver", "dc-1"}, e);
  ASSERT_EQ(killed.exit_code, 128 + SIGKILL) << killed.output;
  std::string state_now;
  for (int i = 0; i < 100 && state_now != "delivered"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    state_now = status("dc-1")["state"];
  }
  EXPECT_EQ(state_now, "delivered") << daemon.log();
  EXPECT_TRUE(daemon.wait_for_output("dc-1: resumed: the process that had it", 1000)) << daemon.log();
  EXPECT_EQ(sim_->issued_total(), 1);
  EXPECT_NE(open_output("dc-1").cert_text.find("CN = IWUser0"), std::string::npos);
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(30000), 0) << daemon.log();
}

// Issue 16 item 17: an AD CS CA behind a CES that does not pass the SOAP
// AdditionalContext on finds the template in the CSR (the extension the
// enrollment policy gives); without it, it refuses (0x80094801).
class PipelineCaReadingTheCsrOnly : public Pipeline {
 protected:
  CaSimulator::Options sim_options() const override {
    CaSimulator::Options o = Pipeline::sim_options();
    o.ignore_additional_context = true;
    return o;
  }
};

TEST_F(PipelineCaReadingTheCsrOnly, TheTemplateTravelsInTheCsr) {
  submit("ms-1", "ms");
  auto s = serve();
  ASSERT_EQ(s.exit_code, 0) << s.output;
  EXPECT_EQ(status("ms-1")["state"], "delivered") << status("ms-1").dump();
  EXPECT_EQ(sim_->issued_total(), 1);
}

// Many requests through one daemon run: none lost, each issued once; under
// the ASan build the daemon's exit also checks that nothing leaked.
TEST_F(Pipeline, SoakThousandRequestsNoneLost) {
  const int n = std::getenv("CERTCUSTODY_SOAK") != nullptr ? std::atoi(std::getenv("CERTCUSTODY_SOAK")) : 1000;
  for (int i = 0; i < n; ++i) drop("s" + std::to_string(i) + ".json", request("s" + std::to_string(i), "users", "S" + std::to_string(i)));
  auto s = serve();
  ASSERT_EQ(s.exit_code, 0) << s.output.substr(s.output.size() > 4000 ? s.output.size() - 4000 : 0);
  auto list = cc({"status"});
  int delivered = 0;
  for (std::size_t pos = 0; (pos = list.output.find(" delivered ", pos)) != std::string::npos; ++pos) ++delivered;
  EXPECT_EQ(delivered, n);
  EXPECT_EQ(sim_->issued_total(), n);
}

// The same pipeline with every key in a TPM (swtpm): the RA key (mutual TLS
// to the CA), the PFX key-encryption key and the audit key, with the audit
// counter in TPM NV. Same results as IssuesAndDeliversAPfxOnlyItsRecipientCanOpen.
class TpmPipeline : public Pipeline {
 protected:
  TpmPipeline() { tpm_backend_ = true; }
};

TEST_F(TpmPipeline, IssuesAndDeliversWithTheKeysInTheTpm) {
  ASSERT_EQ(cc({"audit", "keygen", "--pubkey-out", path("audit.pub.pem")}).exit_code, 0);
  for (const char* label : {"ra", "pfx-kek", "audit"})
    EXPECT_TRUE(std::filesystem::exists(tpm_->blob(label))) << label;
  submit("dc-1", "users", "IWUser0");
  submit("ms-1", "ms", "IWUser1");
  auto s = serve();
  ASSERT_EQ(s.exit_code, 0) << s.output;
  EXPECT_EQ(s.output.find("is not signed"), std::string::npos) << s.output;
  for (const char* id : {"dc-1", "ms-1"}) EXPECT_EQ(status(id)["state"], "delivered") << id << s.output;
  EXPECT_EQ(sim_->issued_total(), 2);

  Opened dc = open_output("dc-1");
  EXPECT_NE(dc.cert_text.find("subject=CN = IWUser0"), std::string::npos) << dc.cert_text;
  EXPECT_NE(dc.cert_text.find("email:IWUser0@contoso.example"), std::string::npos) << dc.cert_text;
  EXPECT_NE(dc.key_text.find("BEGIN PRIVATE KEY"), std::string::npos);
  EXPECT_NE(dc.info.find("MAC: sha256"), std::string::npos) << dc.info;
  EXPECT_NE(dc.info.find("Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC"), std::string::npos) << dc.info;
  Opened ms = open_output("ms-1");
  EXPECT_NE(ms.cert_text.find("subject=CN = IWUser1"), std::string::npos) << ms.cert_text;

  ASSERT_EQ(cc({"redeliver", "dc-1"}).exit_code, 0);  // unwraps with the KEK in the TPM
  EXPECT_EQ(open_output("dc-1").cert_text, dc.cert_text);
  EXPECT_EQ(sim_->issued_total(), 2);

  auto counter = cc({"audit", "counter"});
  ASSERT_EQ(counter.exit_code, 0) << counter.output;
  const std::string n = counter.output.substr(0, counter.output.find('\n'));
  ASSERT_FALSE(n.empty());
  EXPECT_NE(n, "0") << counter.output;
  ASSERT_EQ(serve().exit_code, 0);  // a checkpoint after redeliver's records
  auto counter2 = cc({"audit", "counter"});
  const std::string n2 = counter2.output.substr(0, counter2.output.find('\n'));
  auto v = run({CERTCUSTODY_BINARY, "audit", "verify", "--log", state() + "/audit.log", "--pubkey",
                path("audit.pub.pem"), "--counter", n2},
               env());
  EXPECT_EQ(v.exit_code, 0) << v.output;
  EXPECT_NE(v.output.find("OK: "), std::string::npos) << v.output;
  EXPECT_NE(v.output.find("0 records after the last checkpoint"), std::string::npos) << v.output;
  EXPECT_GT(std::stoull(n2), std::stoull(n)) << "the second run's checkpoint advanced the TPM counter";
  // A log older than the counter says is refused.
  auto old = run({CERTCUSTODY_BINARY, "audit", "verify", "--log", state() + "/audit.log", "--pubkey",
                  path("audit.pub.pem"), "--counter", std::to_string(std::stoull(n2) + 1)},
                 env());
  EXPECT_NE(old.exit_code, 0) << old.output;
  EXPECT_EQ(tpm_->transient_handles(), "") << "left loaded after the daemon stopped";
  auto nv = tpm_->tool({"tpm2_getcap", "handles-nv-index"});
  EXPECT_NE(nv.output.find("- 0x13"), std::string::npos) << "the audit counter is an NV index: " << nv.output;
  // No auth value in the log or the outputs.
  EXPECT_EQ(read_file(state() + "/audit.log").find(tpm_->auth_value()), std::string::npos);
  EXPECT_EQ(s.output.find(tpm_->auth_value()), std::string::npos);
}

}  // namespace
}  // namespace certcustody::testing
