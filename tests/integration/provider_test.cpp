// The provider as an operator uses it: the openssl command line with
// -provider certcustody, keys named by pkcs11: URIs.
#include <gtest/gtest.h>

#include "custody/pkcs11_custody.h"
#include "ra_fixture.h"

namespace certcustody::testing {
namespace {

const std::vector<std::string> kOursFirst = {"-provider", "certcustody", "-provider", "default"};
const std::vector<std::string> kDefaultFirst = {"-provider", "default", "-provider", "certcustody"};

std::vector<std::string> with(std::vector<std::string> a, const std::vector<std::string>& providers) {
  a.insert(a.begin() + 1, providers.begin(), providers.end());
  return a;
}

class Provider : public RaFixture {};

TEST_F(Provider, PublicKeyIsSubjectPublicKeyInfoAndMatchesTheCertificate) {
  for (auto [label, type] : {std::pair{"rsa", "rsa2048"}, std::pair{"ec", "ec-p256"}}) {
    const std::string cert = make_ra(label, type);
    auto pub = openssl(with({"pkey", "-in", key_uri(label), "-pubout"}, kOursFirst));
    ASSERT_EQ(pub.exit_code, 0) << pub.output;  // and no crash at exit
    EXPECT_EQ(pub.output.rfind("-----BEGIN PUBLIC KEY-----", 0), 0u) << pub.output;
    auto from_cert = openssl({"x509", "-in", cert, "-noout", "-pubkey"});
    EXPECT_EQ(pub.output, from_cert.output) << label;
  }
}

TEST_F(Provider, PkeyutlSignaturesVerify) {
  make_ra("rsa", "rsa2048");
  make_ra("ec", "ec-p384");
  write_file(path("msg"), "to be signed\n");
  ASSERT_EQ(openssl({"x509", "-in", path("rsa.pem"), "-noout", "-pubkey", "-out", path("rsa.pub")}).exit_code, 0);
  ASSERT_EQ(openssl({"x509", "-in", path("ec.pem"), "-noout", "-pubkey", "-out", path("ec.pub")}).exit_code, 0);
  struct Case {
    std::string label;
    std::vector<std::string> opts;
  };
  for (const Case& c : {Case{"rsa", {}},
                        Case{"rsa", {"-pkeyopt", "rsa_padding_mode:pss", "-pkeyopt", "rsa_pss_saltlen:digest"}},
                        Case{"ec", {}}}) {
    std::vector<std::string> sign = {"pkeyutl", "-sign", "-inkey", key_uri(c.label), "-rawin", "-digest", "sha256",
                                     "-in", path("msg"), "-out", path("sig")};
    sign.insert(sign.end(), c.opts.begin(), c.opts.end());
    auto s = openssl(with(sign, kOursFirst));
    ASSERT_EQ(s.exit_code, 0) << c.label << ": " << s.output;
    std::vector<std::string> verify = {"pkeyutl", "-verify", "-pubin", "-inkey", path(c.label + ".pub"), "-rawin",
                                       "-digest", "sha256", "-in", path("msg"), "-sigfile", path("sig")};
    verify.insert(verify.end(), c.opts.begin(), c.opts.end());
    auto v = openssl(verify);
    EXPECT_EQ(v.exit_code, 0) << c.label << ": " << v.output;
    EXPECT_NE(v.output.find("Signature Verified Successfully"), std::string::npos) << v.output;
  }
}

TEST_F(Provider, ReqNewIsSignedInTheToken) {
  make_ra("ec", "ec-p256");
  auto r = openssl(with({"req", "-new", "-key", key_uri("ec"), "-subj", "/CN=via the provider", "-out", path("p.csr")},
                        kOursFirst));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto v = openssl({"req", "-in", path("p.csr"), "-verify", "-noout", "-subject"});
  EXPECT_EQ(v.exit_code, 0) << v.output;
  EXPECT_NE(v.output.find("verify OK"), std::string::npos) << v.output;
  EXPECT_NE(v.output.find("CN = via the provider"), std::string::npos) << v.output;
}

TEST_F(Provider, RsaOaepDecryptsInTheToken) {
  {
    auto custody = Pkcs11Custody::open(token_->custody_config());
    ASSERT_TRUE(custody);
    ASSERT_TRUE(custody.value()->generate_key_pair("rcpt", KeyType::rsa2048, KeyPurpose::decrypt));
  }
  auto pub = openssl(with({"pkey", "-in", key_uri("rcpt"), "-pubout", "-out", path("rcpt.pub")}, kOursFirst));
  ASSERT_EQ(pub.exit_code, 0) << pub.output;
  write_file(path("secret"), "a content-encryption key");
  ASSERT_EQ(openssl({"pkeyutl", "-encrypt", "-pubin", "-inkey", path("rcpt.pub"), "-pkeyopt", "rsa_padding_mode:oaep",
                     "-in", path("secret"), "-out", path("secret.enc")})
                .exit_code,
            0);
  for (const auto& order : {kOursFirst, kDefaultFirst}) {
    auto dec = openssl(with({"pkeyutl", "-decrypt", "-inkey", key_uri("rcpt"), "-pkeyopt", "rsa_padding_mode:oaep",
                             "-in", path("secret.enc"), "-out", path("secret.out")},
                            order));
    ASSERT_EQ(dec.exit_code, 0) << dec.output;
    EXPECT_EQ(read_file(path("secret.out")), "a content-encryption key");
  }
}

struct TlsCase {
  const char* key_type;
  const char* server_alg;
  const char* version;
  bool ours_first;
  const char* name;
};
void PrintTo(const TlsCase& c, std::ostream* os) { *os << c.name; }

class MutualTls : public RaFixture, public ::testing::WithParamInterface<TlsCase> {};

TEST_P(MutualTls, HandshakeSignedInTheToken) {
  const TlsCase& c = GetParam();
  const std::string cert = make_ra("ra", c.key_type);
  make_server("srv", c.server_alg, "localhost", "DNS:localhost,IP:127.0.0.1");
  int port = 0;
  auto server = start_server("srv", c.version, 1, port);
  ASSERT_TRUE(server);
  auto client = openssl(with({"s_client", "-connect", "127.0.0.1:" + std::to_string(port), std::string("-") + c.version,
                              "-key", key_uri("ra"), "-cert", cert, "-CAfile", path("srv.pem"),
                              "-verify_return_error", "-no_ign_eof"},
                             c.ours_first ? kOursFirst : kDefaultFirst));
  EXPECT_EQ(client.exit_code, 0) << client.output;
  const std::string expected = std::string("New, ") + (c.version == std::string("tls1_3") ? "TLSv1.3" : "TLSv1.2");
  EXPECT_NE(client.output.find(expected), std::string::npos) << client.output;
  server->wait(5000);
  EXPECT_NE(server->log().find("depth=0 CN = RA ra"), std::string::npos) << server->log();
}

INSTANTIATE_TEST_SUITE_P(
    Matrix, MutualTls,
    ::testing::Values(TlsCase{"rsa2048", "ec", "tls1_3", true, "rsa_tls13"},
                      TlsCase{"rsa2048", "ec", "tls1_2", true, "rsa_tls12_ec_server"},
                      TlsCase{"rsa2048", "rsa", "tls1_2", true, "rsa_tls12_rsa_server"},
                      TlsCase{"ec-p256", "ec", "tls1_3", true, "ec_tls13"},
                      TlsCase{"ec-p256", "ec", "tls1_2", true, "ec_tls12"},
                      TlsCase{"ec-p384", "rsa", "tls1_2", false, "p384_tls12_default_first"},
                      TlsCase{"rsa2048", "rsa", "tls1_3", false, "rsa_tls13_default_first"}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

TEST_F(Provider, ErrorsAreNamed) {
  make_ra("ra", "ec-p256");
  auto missing = openssl(with({"pkey", "-in", key_uri("nope"), "-pubout"}, kOursFirst));
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_NE(missing.output.find("custody.key_not_found"), std::string::npos) << missing.output;

  auto other = openssl(with({"pkey", "-in", "pkcs11:token=elsewhere;object=ra;type=private", "-pubout"}, kOursFirst));
  EXPECT_NE(other.exit_code, 0);
  EXPECT_NE(other.output.find("provider.uri_invalid"), std::string::npos) << other.output;

  auto pin = openssl(with({"pkey", "-in", key_uri("ra") + "?pin-value=1234", "-pubout"}, kOursFirst));
  EXPECT_NE(pin.exit_code, 0);
  EXPECT_NE(pin.output.find("custody.pin_in_uri"), std::string::npos) << pin.output;

  write_file(token_->user_pin_file(), "wrong-pin\n");
  auto wrong = openssl(with({"pkey", "-in", key_uri("ra"), "-pubout"}, kOursFirst));
  EXPECT_NE(wrong.exit_code, 0);
  EXPECT_NE(wrong.output.find("custody.pin_incorrect"), std::string::npos) << wrong.output;
  EXPECT_EQ(wrong.output.find("wrong-pin"), std::string::npos);
  write_file(token_->user_pin_file(), token_->user_pin() + "\n");

  auto info = cc({"token", "info"});
  EXPECT_NE(info.output.find("private-key  label=ra"), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("[sensitive, never extractable, generated on token]"), std::string::npos)
      << info.output;
}

}  // namespace
}  // namespace certcustody::testing
