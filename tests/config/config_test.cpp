#include "config/config.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include "support/temp_dir.h"

namespace certcustody {
namespace {

const char* kGood = R"([custody]
backend  = "pkcs11"
module   = "/usr/lib/softhsm/libsofthsm2.so"
token    = "pkcs11:token=certcustody"
pin_file = "/etc/certcustody/user.pin"

[state]
dir = "/var/lib/certcustody"
)";

TEST(Config, ParsesTheContractKeys) {
  auto c = parse_config(kGood, "/etc/certcustody/certcustody.toml");
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ(c->custody.backend, "pkcs11");
  EXPECT_EQ(c->custody.module, "/usr/lib/softhsm/libsofthsm2.so");
  EXPECT_EQ(c->custody.token, "pkcs11:token=certcustody");
  EXPECT_EQ(c->custody.pin_file, "/etc/certcustody/user.pin");
  EXPECT_EQ(c->custody.sessions, 8u);
  EXPECT_EQ(c->state.dir, "/var/lib/certcustody");
}

TEST(Config, RelativePathsAreRelativeToTheFile) {
  std::string text = kGood;
  text.replace(text.find("/etc/certcustody/user.pin"), 25, "pins/user.pin");
  text.replace(text.find("/var/lib/certcustody"), 20, "state");
  auto c = parse_config(text, "/opt/cc/certcustody.toml");
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ(c->custody.pin_file, "/opt/cc/pins/user.pin");
  EXPECT_EQ(c->state.dir, "/opt/cc/state");
}

TEST(Config, CredentialNameIsKeptAsIs) {
  std::string text = kGood;
  text.replace(text.find("/etc/certcustody/user.pin"), 25, "user.pin");
  auto c = parse_config(text, "/etc/certcustody/certcustody.toml");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->custody.pin_file, "user.pin");
}

struct BadCase {
  const char* name;
  std::string from, to;
  const char* code;
  const char* must_mention;  // file:line and/or key
};

void PrintTo(const BadCase& b, std::ostream* os) { *os << b.name; }

class ConfigErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(ConfigErrors, NameFileLineAndKey) {
  const BadCase& b = GetParam();
  std::string text = kGood;
  auto at = text.find(b.from);
  ASSERT_NE(at, std::string::npos);
  text.replace(at, b.from.size(), b.to);
  auto c = parse_config(text, "cc.toml");
  ASSERT_FALSE(c) << b.name;
  EXPECT_EQ(c.error().code, b.code) << c.error().to_string();
  EXPECT_NE(c.error().what.find(b.must_mention), std::string::npos) << c.error().to_string();
  EXPECT_FALSE(c.error().remedy.empty());
}

INSTANTIATE_TEST_SUITE_P(
    Table, ConfigErrors,
    ::testing::Values(
        BadCase{"missing module", "module   = \"/usr/lib/softhsm/libsofthsm2.so\"\n", "", "config.missing_key",
                "cc.toml:1:1: key custody.module"},
        BadCase{"wrong type", "\"/usr/lib/softhsm/libsofthsm2.so\"", "42", "config.wrong_type",
                "cc.toml:3:12: key custody.module"},
        BadCase{"unknown key", "pin_file", "pin_fille", "config.unknown_key", "cc.toml:5:1: key custody.pin_fille"},
        BadCase{"bad backend", "\"pkcs11\"", "\"softhsm\"", "config.invalid_value", "cc.toml:2:12: key custody.backend"},
        BadCase{"bad uri", "\"pkcs11:token=certcustody\"", "\"token=certcustody\"", "config.invalid_value",
                "key custody.token"},
        BadCase{"syntax", "[state]", "[state", "config.syntax", "cc.toml:7:"},
        BadCase{"empty", "\"/var/lib/certcustody\"", "\"\"", "config.empty_value", "cc.toml:8:7: key state.dir"},
        BadCase{"missing section", "[state]\ndir = \"/var/lib/certcustody\"\n", "", "config.missing_section",
                "[state]"}),
    [](const auto& param_info) {
      std::string n = param_info.param.name;
      for (char& ch : n)
        if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
      return n;
    });

// Found by the config fuzzer: toml++ converts floats to integers on request,
// with undefined behaviour for huge ones. Numbers must be TOML integers.
TEST(Config, FloatsAreNotIntegers) {
  for (const char* v : {"1e300", "-1e300", "8.0", "nan", "inf"}) {
    std::string text = kGood;
    text.insert(text.find("[state]"), std::string("sessions = ") + v + "\n");
    auto c = parse_config(text, "cc.toml");
    ASSERT_FALSE(c) << v;
    EXPECT_EQ(c.error().code, "config.invalid_value") << v;
    auto t = parse_config(std::string(kGood) + "[ca.x]\ntype = \"cmp\"\nurl = \"http://c/\"\ntrust_anchor = \"r\"\n" +
                              "timeout_ms = " + v + "\n",
                          "cc.toml");
    ASSERT_FALSE(t) << v;
    EXPECT_EQ(t.error().code, "config.invalid_value") << v;
  }
}

TEST(Config, SessionsOutOfRange) {
  std::string text = kGood;
  text.insert(text.find("[state]"), "sessions = 0\n");
  auto c = parse_config(text, "cc.toml");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, "config.invalid_value");
  EXPECT_NE(c.error().what.find("cc.toml:7:12: key custody.sessions"), std::string::npos) << c.error().what;
}

TEST(Config, PathFromFlagThenEnvironment) {
  ::unsetenv("CERTCUSTODY_CONFIG");
  auto none = resolve_config_path(std::nullopt);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, "config.not_given");
  ::setenv("CERTCUSTODY_CONFIG", "/from/env.toml", 1);
  EXPECT_EQ(*resolve_config_path(std::nullopt), "/from/env.toml");
  EXPECT_EQ(*resolve_config_path(std::string("/from/flag.toml")), "/from/flag.toml");
  ::unsetenv("CERTCUSTODY_CONFIG");
}

TEST(Config, UnreadableFileIsNamed) {
  auto c = load_config("/nonexistent/certcustody.toml");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, "config.unreadable");
  EXPECT_NE(c.error().what.find("/nonexistent/certcustody.toml"), std::string::npos);
}

TEST(Config, CaEndpointsAndRaKey) {
  std::string text = std::string(kGood) +
                     "\n[ra]\nkey = \"pkcs11:token=certcustody;object=ra\"\n"
                     "\n[ca.digicert]\nurl = \"https://pki-ws.symauth.com/pki-ws/\"\ntrust_anchor = \"roots.pem\"\n"
                     "connect_timeout_ms = 2500\n"
                     "\n[ca.msca]\nurl = \"https://ces.example/\"\ntrust_anchor = \"/etc/roots.pem\"\n";
  auto c = parse_config(text, "/etc/cc/certcustody.toml");
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ(c->ra.key, "pkcs11:token=certcustody;object=ra");
  ASSERT_EQ(c->cas.size(), 2u);
  auto d = c->ca("digicert");
  ASSERT_TRUE(d);
  EXPECT_EQ((*d)->trust_anchor, "/etc/cc/roots.pem");
  EXPECT_EQ((*d)->connect_timeout_ms, 2500u);
  EXPECT_EQ((*d)->timeout_ms, 60000u);
  auto none = c->ca("nope");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, "config.ca_unknown");

  auto http = parse_config(std::string(kGood) + "[ca.x]\nurl = \"http://ca\"\ntrust_anchor = \"r\"\n", "cc.toml");
  ASSERT_FALSE(http);
  EXPECT_NE(http.error().what.find("key ca.x.url"), std::string::npos) << http.error().what;
  auto zero = parse_config(std::string(kGood) + "[ca.x]\nurl = \"https://ca\"\ntrust_anchor = \"r\"\ntimeout_ms = 0\n",
                           "cc.toml");
  ASSERT_FALSE(zero);
  EXPECT_NE(zero.error().what.find("key ca.x.timeout_ms"), std::string::npos) << zero.error().what;
}

TEST(Config, CaTypesAndTheirKeys) {
  const std::string base = std::string(kGood);
  auto ok = parse_config(base +
                             "[ca.d]\ntype = \"digicert\"\nfqdn = \"pki-ws.symauth.com\"\nca_name = \"Symantec\"\n"
                             "trust_anchor = \"r.pem\"\nretries = 0\nbreaker_failures = 2\n"
                             "[ca.m]\ntype = \"mscep\"\nurl = \"https://ces/CES\"\npolicy_url = \"https://cep/CEP\"\n"
                             "trust_anchor = \"r.pem\"\n"
                             "[ca.c]\ntype = \"cmp\"\nurl = \"http://127.0.0.1:1/pkix/\"\ntrust_anchor = \"r.pem\"\n",
                         "/etc/cc/cc.toml");
  ASSERT_TRUE(ok) << ok.error().to_string();
  const CaEndpointConfig* d = *ok->ca("d");
  EXPECT_EQ(d->url, "https://pki-ws.symauth.com/pki-ws/");
  EXPECT_EQ(d->retries, 0u);
  EXPECT_EQ(d->breaker_failures, 2u);
  EXPECT_EQ((*ok->ca("m"))->policy_url, "https://cep/CEP");
  EXPECT_EQ((*ok->ca("c"))->url, "http://127.0.0.1:1/pkix/");

  struct Bad {
    std::string section;
    std::string key;
  };
  const Bad bad[] = {
      {"type = \"digicert\"\nfqdn = \"https://pki-ws.symauth.com\"\nca_name = \"Symantec\"\n", "ca.x.fqdn"},
      {"type = \"digicert\"\nfqdn = \"pki-ws.symauth.com/\"\nca_name = \"Symantec\"\n", "ca.x.fqdn"},
      {"type = \"digicert\"\nfqdn = \"pki-ws.symauth.com/pki-ws\"\nca_name = \"Symantec\"\n", "ca.x.fqdn"},
      {"type = \"digicert\"\nfqdn = \"pki-ws.symauth.com\"\nca_name = \"symantec\"\n", "ca.x.ca_name"},
      {"type = \"digicert\"\nurl = \"https://x/\"\nfqdn = \"a\"\nca_name = \"Symantec\"\n", "ca.x.url"},
      {"type = \"mscep\"\nurl = \"http://ces/\"\n", "ca.x.url"},
      {"type = \"mscep\"\nurl = \"https://ces/\"\nfqdn = \"a\"\n", "ca.x.fqdn"},
      {"type = \"cmp\"\nurl = \"https://c/\"\npolicy_url = \"https://p/\"\n", "ca.x.policy_url"},
      {"type = \"scep\"\nurl = \"https://c/\"\n", "ca.x.type"},
      {"type = \"cmp\"\nurl = \"ftp://c/\"\n", "ca.x.url"},
      {"type = \"cmp\"\nurl = \"http://c/\"\nretries = 11\n", "ca.x.retries"},
  };
  for (const Bad& b : bad) {
    auto r = parse_config(base + "[ca.x]\n" + b.section + "trust_anchor = \"r\"\n", "cc.toml");
    ASSERT_FALSE(r) << b.section;
    EXPECT_NE(r.error().what.find("key " + b.key), std::string::npos) << b.section << " -> " << r.error().what;
  }
}

TEST(Config, TheShippedExampleParses) {
  auto c = load_config(std::string(CERTCUSTODY_SOURCE_DIR) + "/hsm-config/certcustody.toml.example");
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ(c->custody.token, "pkcs11:token=certcustody");
  EXPECT_TRUE(c->ca("digicert"));
  ASSERT_TRUE(c->pipeline);
  EXPECT_EQ(c->pipeline->kek, "pfx-kek");
  EXPECT_TRUE(c->audit.configured);
  EXPECT_EQ(c->audit.log, "/var/log/certcustody/audit.log");
  EXPECT_EQ(c->audit.key, "audit");
  EXPECT_EQ(c->pipeline->recipients.size(), 1u);
}

TEST(Config, AuditDefaultsToTheStateDirectory) {
  auto c = parse_config(kGood, "cc.toml");
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_FALSE(c->audit.configured);
  EXPECT_EQ(c->audit.log, c->state.dir + "/audit.log");
  EXPECT_EQ(c->audit.checkpoint_every, 1000u);
  EXPECT_EQ(c->sha256.size(), 64u);
  EXPECT_NE(parse_config(std::string(kGood) + "\n# changed\n", "cc.toml")->sha256, c->sha256);
  auto bad = parse_config(std::string(kGood) + "\n[audit]\ncheckpoint_every = 0\n", "cc.toml");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().what.find("audit.checkpoint_every"), std::string::npos) << bad.error().what;
}

TEST(Config, PipelineDefaultsAndLimits) {
  auto c = parse_config(std::string(kGood) + "\n[pipeline]\nkek = \"k\"\nrecipients = [\"r.pem\"]\n", "/etc/cc/cc.toml");
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ(c->pipeline->recipients[0], "/etc/cc/r.pem");  // relative to the file
  EXPECT_EQ(c->pipeline->workers, 0u);
  EXPECT_EQ(c->pipeline->max_request_bytes, 65536u);
  EXPECT_EQ(c->pipeline->max_attempts, 20u);
  EXPECT_FALSE(parse_config(kGood, "cc.toml")->pipeline);
  for (const char* bad : {"max_attempts = 0", "max_request_bytes = 100", "max_request_bytes = 1000000",
                          "workers = -1", "scan_interval_ms = 1.5", "spool = \"x\""}) {
    auto r = parse_config(std::string(kGood) + "\n[pipeline]\nkek = \"k\"\n" + bad + "\n", "cc.toml");
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().what.find("pipeline."), std::string::npos) << r.error().to_string();
  }
  auto nokek = parse_config(std::string(kGood) + "\n[pipeline]\n", "cc.toml");
  ASSERT_FALSE(nokek);
  EXPECT_EQ(nokek.error().code, "config.missing_key");
}

TEST(Config, LoadsFromFile) {
  testing::TempDir d;
  testing::write_file(d / "c.toml", kGood);
  auto c = load_config(d / "c.toml");
  ASSERT_TRUE(c) << c.error().to_string();
  EXPECT_EQ(c->path, d / "c.toml");
}

}  // namespace
}  // namespace certcustody
