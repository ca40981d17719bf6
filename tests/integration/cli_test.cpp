// The HSM-officer commands, run as the real executable, checked with the
// openssl command line.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "support/softhsm_token.h"

namespace certcustody::testing {
namespace {

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    token_ = std::make_unique<SoftHsmToken>();
    config_ = token_->write_config_file();
  }
  RunResult cc(std::vector<std::string> args) {
    args.insert(args.begin(), {CERTCUSTODY_BINARY, "--config", config_});
    return run(args, {token_->softhsm_env()});
  }
  RunResult openssl(std::vector<std::string> args) {
    args.insert(args.begin(), "openssl");
    return run(args);
  }
  // A throwaway CA that signs what the officer pastes into the CA portal.
  void make_ca() {
    auto r = openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                      token_->dir() + "/ca.key", "-out", token_->dir() + "/ca.pem", "-subj", "/CN=Test RA CA",
                      "-days", "30"});
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  std::string issue(const std::string& csr, const std::string& out) {
    auto r = openssl({"x509", "-req", "-in", csr, "-CA", token_->dir() + "/ca.pem", "-CAkey",
                      token_->dir() + "/ca.key", "-CAcreateserial", "-copy_extensions", "copy", "-days", "30", "-out",
                      out});
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return out;
  }
  void expect_no_pin(const std::string& output) {
    EXPECT_EQ(output.find(token_->user_pin()), std::string::npos);
    EXPECT_EQ(output.find(token_->so_pin()), std::string::npos);
  }

  std::unique_ptr<SoftHsmToken> token_;
  std::string config_;
};

// SoftHSM rewrites its token.object at every C_Login, so a process that
// initialises the module at that moment (a CLI command beside a starting
// daemon, which logs in) sees no initialised token. That state is brief:
// the command looks again for a while before it reports the token missing.
// First the state itself, held for 300 ms; then the real thing, another
// process logging in over and over while commands start.
TEST_F(Cli, ATokenBrieflyHalfWrittenByAnotherProcessIsFoundAfterAll) {
  ASSERT_EQ(cc({"kek", "create", "--label", "kek"}).exit_code, 0);
  std::string object;
  for (const auto& e : std::filesystem::directory_iterator(token_->token_dir()))
    object = (e.path() / "token.object").string();
  ASSERT_TRUE(std::filesystem::exists(object));
  const std::string saved = read_file(object);
  write_file(object, "");  // as another process's rewrite leaves it for a moment
  std::thread writer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    write_file(object, saved);
  });
  auto r = cc({"token", "info"});
  writer.join();
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("kek"), std::string::npos) << r.output;

  std::atomic<bool> stop{false};
  std::thread other([&] {  // a throwaway token: the PIN on pkcs11-tool's command line is acceptable here only
    while (!stop)
      run({"pkcs11-tool", "--module", kSoftHsmModule, "--token-label", token_->label(), "--login", "--pin",
           token_->user_pin(), "--list-objects"},
          {token_->softhsm_env()});
  });
  int failed = 0;
  std::string last;
  for (int i = 0; i < 20; ++i) {
    auto info = cc({"token", "info"});
    if (info.exit_code != 0) {
      ++failed;
      last = info.output;
    }
  }
  stop = true;
  other.join();
  EXPECT_EQ(failed, 0) << last;
}

TEST_F(Cli, RaKeygenCsrImportWithThumbprints) {
  auto keygen = cc({"ra", "keygen", "--label", "ra", "--key-type", "rsa2048"});
  ASSERT_EQ(keygen.exit_code, 0) << keygen.output;
  const std::string csr = token_->dir() + "/ra.csr";
  auto made = cc({"ra", "csr", "--label", "ra", "--subject", "CN=certcustody RA,O=Example", "--out", csr});
  ASSERT_EQ(made.exit_code, 0) << made.output;

  auto verify = openssl({"req", "-in", csr, "-verify", "-noout", "-text"});
  ASSERT_EQ(verify.exit_code, 0) << verify.output;
  EXPECT_NE(verify.output.find("verify OK"), std::string::npos) << verify.output;
  EXPECT_NE(verify.output.find("Subject: O = Example, CN = certcustody RA"), std::string::npos) << verify.output;
  EXPECT_NE(verify.output.find("X509v3 Key Usage: critical"), std::string::npos) << verify.output;
  EXPECT_NE(verify.output.find("Digital Signature, Key Encipherment"), std::string::npos) << verify.output;
  EXPECT_NE(verify.output.find("TLS Web Client Authentication"), std::string::npos) << verify.output;
  EXPECT_NE(verify.output.find("sha256WithRSAEncryption"), std::string::npos) << verify.output;

  make_ca();
  const std::string cert = issue(csr, token_->dir() + "/ra.pem");
  auto imported = cc({"ra", "import", "--label", "ra", "--cert", cert});
  ASSERT_EQ(imported.exit_code, 0) << imported.output;

  auto fp = openssl({"x509", "-in", cert, "-noout", "-fingerprint", "-sha1"});
  ASSERT_EQ(fp.exit_code, 0);
  std::string sha1 = fp.output.substr(fp.output.find('=') + 1);
  std::erase(sha1, ':');
  std::erase(sha1, '\n');
  ASSERT_EQ(sha1.size(), 40u);
  EXPECT_NE(imported.output.find("SHA-1 thumbprint: " + sha1 + "\n"), std::string::npos) << imported.output;
  auto fp256 = openssl({"x509", "-in", cert, "-noout", "-fingerprint", "-sha256"});
  std::string sha256 = fp256.output.substr(fp256.output.find('=') + 1);
  std::erase(sha256, ':');
  std::erase(sha256, '\n');
  EXPECT_NE(imported.output.find("SHA-256 thumbprint: " + sha256), std::string::npos) << imported.output;

  auto info = cc({"token", "info"});
  ASSERT_EQ(info.exit_code, 0) << info.output;
  EXPECT_NE(info.output.find("certificate  label=ra"), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("sha1=" + sha1), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("<- selected"), std::string::npos) << info.output;
  // The certificate object carries the key's CKA_ID.
  auto id_of = [&](const std::string& kind) {
    auto at = info.output.find(kind + " label=ra");
    if (at == std::string::npos) return std::string("missing ") + kind;
    auto id = info.output.find("id=", at);
    return info.output.substr(id + 3, 32);
  };
  EXPECT_EQ(id_of("certificate "), id_of("private-key "));
  for (const auto* r : {&keygen, &made, &imported, &info}) expect_no_pin(r->output);

  // A second import needs --replace (renewal).
  auto again = cc({"ra", "import", "--label", "ra", "--cert", cert});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.output.find("custody.certificate_exists"), std::string::npos) << again.output;
  auto renewed = cc({"ra", "import", "--label", "ra", "--cert", cert, "--replace"});
  EXPECT_EQ(renewed.exit_code, 0) << renewed.output;
  auto info2 = cc({"token", "info"});
  ASSERT_NE(info2.output.find("certificate  label=ra"), std::string::npos) << info2.output;
  EXPECT_EQ(info2.output.find("certificate  label=ra"), info2.output.rfind("certificate  label=ra"))
      << "exactly one certificate after --replace:\n" << info2.output;
}

TEST_F(Cli, EcRaKeyCsrVerifies) {
  ASSERT_EQ(cc({"ra", "keygen", "--label", "ra-ec", "--key-type", "ec-p384"}).exit_code, 0);
  const std::string csr = token_->dir() + "/ec.csr";
  auto made = cc({"ra", "csr", "--label", "ra-ec", "--subject", "CN=ec RA", "--out", csr});
  ASSERT_EQ(made.exit_code, 0) << made.output;
  auto verify = openssl({"req", "-in", csr, "-verify", "-noout", "-text"});
  ASSERT_EQ(verify.exit_code, 0) << verify.output;
  EXPECT_NE(verify.output.find("ecdsa-with-SHA384"), std::string::npos) << verify.output;
  EXPECT_NE(verify.output.find("NIST CURVE: P-384"), std::string::npos) << verify.output;
}

TEST_F(Cli, ImportRefusesACertificateForAnotherKey) {
  ASSERT_EQ(cc({"ra", "keygen", "--label", "ra"}).exit_code, 0);
  make_ca();
  const std::string other_csr = token_->dir() + "/other.csr";
  ASSERT_EQ(openssl({"req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", token_->dir() + "/other.key", "-out",
                     other_csr, "-subj", "/CN=someone else"})
                .exit_code,
            0);
  const std::string cert = issue(other_csr, token_->dir() + "/other.pem");
  auto r = cc({"ra", "import", "--label", "ra", "--cert", cert});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("error ra.certificate_key_mismatch"), std::string::npos) << r.output;
  auto info = cc({"token", "info"});
  EXPECT_EQ(info.output.find("certificate  label"), std::string::npos) << info.output;
}

TEST_F(Cli, KekCreate) {
  auto r = cc({"kek", "create", "--label", "pfx-kek"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto info = cc({"token", "info"});
  EXPECT_NE(info.output.find("secret-key   label=pfx-kek"), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("AES 256 [sensitive, never extractable, generated on token]"), std::string::npos)
      << info.output;
}

TEST_F(Cli, BadInputGetsNamedErrorsAndNonZeroExit) {
  auto type = cc({"ra", "keygen", "--label", "ra", "--key-type", "rsa1024"});
  EXPECT_EQ(type.exit_code, 1);
  EXPECT_NE(type.output.find("custody.key_type_invalid"), std::string::npos) << type.output;

  auto no_key = cc({"ra", "csr", "--label", "missing", "--subject", "CN=x"});
  EXPECT_EQ(no_key.exit_code, 1);
  EXPECT_NE(no_key.output.find("custody.key_not_found"), std::string::npos) << no_key.output;

  ASSERT_EQ(cc({"ra", "keygen", "--label", "ra"}).exit_code, 0);
  auto subject = cc({"ra", "csr", "--label", "ra", "--subject", "CN=a+O=b"});
  EXPECT_EQ(subject.exit_code, 1);
  EXPECT_NE(subject.output.find("ra.subject_invalid"), std::string::npos) << subject.output;

  auto usage = cc({"ra", "keygen"});
  EXPECT_NE(usage.exit_code, 0);
  EXPECT_NE(usage.output.find("--label"), std::string::npos) << usage.output;

  auto none = run({CERTCUSTODY_BINARY, "token", "info"}, {"CERTCUSTODY_CONFIG="});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_NE(none.output.find("config.not_given"), std::string::npos) << none.output;

  write_file(config_, read_file(config_) + "typo_key = 1\n");
  auto bad = cc({"token", "info"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find(config_ + ":9:1: key state.typo_key"), std::string::npos) << bad.output;
}

TEST_F(Cli, ConfigFromEnvironment) {
  auto r = run({CERTCUSTODY_BINARY, "token", "info"}, {token_->softhsm_env(), "CERTCUSTODY_CONFIG=" + config_});
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST_F(Cli, WrongPinNamedWithoutEchoingIt) {
  write_file(token_->user_pin_file(), "999999-wrong\n");
  auto r = cc({"token", "info"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("error custody.pin_incorrect"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(token_->user_pin_file()), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("999999-wrong"), std::string::npos);
  chmod(token_->user_pin_file().c_str(), 0644);
  auto open = cc({"token", "info"});
  EXPECT_NE(open.output.find("custody.pin_file_too_open"), std::string::npos) << open.output;
}

TEST(ProvisioningScript, CreatesTokenAndPinFilesOnceAndIsIdempotent) {
  TempDir d;
  const std::string script = std::string(CERTCUSTODY_SOURCE_DIR) + "/hsm-config/provision-softhsm.sh";
  const std::string dir = d / "hsm";
  auto first = run({"bash", script, "--dir", dir, "--label", "officer-test", "--certcustody", CERTCUSTODY_BINARY});
  ASSERT_EQ(first.exit_code, 0) << first.output;
  struct stat st {};
  for (const char* f : {"so.pin", "user.pin"}) {
    ASSERT_EQ(::stat((dir + "/" + f).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << f;
    std::string pin = read_file(dir + "/" + f);
    EXPECT_GE(pin.size(), 24u);
    EXPECT_EQ(first.output.find(pin), std::string::npos) << "PIN printed";
  }
  const std::string pin_before = read_file(dir + "/user.pin");
  auto second = run({"bash", script, "--dir", dir, "--label", "officer-test", "--certcustody", CERTCUSTODY_BINARY});
  EXPECT_EQ(second.exit_code, 0) << second.output;
  EXPECT_NE(second.output.find("nothing to do"), std::string::npos) << second.output;
  EXPECT_EQ(read_file(dir + "/user.pin"), pin_before);

  auto info = run({CERTCUSTODY_BINARY, "--config", dir + "/certcustody.toml", "token", "info"},
                  {"SOFTHSM2_CONF=" + dir + "/softhsm2.conf"});
  EXPECT_EQ(info.exit_code, 0) << info.output;
  EXPECT_NE(info.output.find("label=\"officer-test\""), std::string::npos) << info.output;
}

}  // namespace
}  // namespace certcustody::testing

namespace certcustody::testing {
namespace {

TEST(PolicyCheck, PrintsTheResolvedSubjectAndSanOrTheNamedError) {
  TempDir d;
  write_file(d / "cc.toml", R"([custody]
backend = "pkcs11"
module = "/usr/lib/softhsm/libsofthsm2.so"
token = "pkcs11:token=x"
pin_file = "user.pin"
[state]
dir = "state"
[profile.users]
ca = "digicert"
template = "2.16.840.1.113733.1.16.1.2.3.1.1.61904612"
subject = "cn-with-email"
san = ["email", "upn"]
[[profile.users.othername]]
oid = "1.3.6.1.4.1.311.25.1"
attribute = "object_guid"
encoding = "hex"
)");
  write_file(d / "ok.json", R"({"version":1,"attributes":{"upn":"IWUser0@contoso.example","email":"IWUser0@contoso.example",
    "common_name":"IWUser0","object_guid":"0410b8ba112233445566778899aabbccddee"}})");
  write_file(d / "no-mail.json", R"({"version":1,"attributes":{"common_name":"IWUser0","object_guid":"0410b8ba112233445566778899aabbccddee"}})");
  write_file(d / "tpl.json", R"({"supported":["subject.cn","subject.email","san.email"]})");
  auto cc = [&](std::vector<std::string> a) {
    a.insert(a.begin(), {CERTCUSTODY_BINARY, "--config", d / "cc.toml", "policy", "check", "--profile"});
    return run(a);
  };
  auto ok = cc({"users", "--request", d / "ok.json"});
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_NE(ok.output.find("subject=CN = IWUser0, emailAddress = IWUser0@contoso.example\n"), std::string::npos)
      << ok.output;
  EXPECT_NE(ok.output.find("X509v3 Subject Alternative Name: email:IWUser0@contoso.example, othername:UPN:"
                           "IWUser0@contoso.example, othername:1.3.6.1.4.1.311.25.1::0410B8BA112233445566778899AABBCCDDEE"),
            std::string::npos)
      << ok.output;

  auto no_mail = cc({"users", "--request", d / "no-mail.json"});
  EXPECT_EQ(no_mail.exit_code, 1);
  EXPECT_NE(no_mail.output.find("error policy.subject_email_missing"), std::string::npos) << no_mail.output;

  auto tpl = cc({"users", "--request", d / "ok.json", "--template-policy", d / "tpl.json"});
  EXPECT_EQ(tpl.exit_code, 1);
  EXPECT_NE(tpl.output.find("attribute san.upn is not in the template's supported attributes"), std::string::npos)
      << tpl.output;

  auto unknown = cc({"nobody", "--request", d / "ok.json"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.output.find("policy.profile_unknown"), std::string::npos) << unknown.output;
}

}  // namespace
}  // namespace certcustody::testing
