// The connector's HTTPS client: mutual TLS with the RA key in the token,
// against an in-process HTTPS/1.1 server that demands a client certificate.
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <chrono>
#include <thread>

#include "custody/pkcs11_custody.h"
#include "net/https_client.h"
#include "provider.h"
#include "provider_context.h"
#include "ra_fixture.h"
#include "support/tls_server.h"

namespace certcustody::testing {
namespace {

class Https : public RaFixture {
 protected:
  void SetUp() override {
    RaFixture::SetUp();
    ra_cert_ = make_ra("ra", "ec-p256");
    make_server("srv", "ec", "localhost", "DNS:localhost,IP:127.0.0.1");
    share_custody_with_provider();
  }
  void TearDown() override {
    unshare_custody();
    RaFixture::TearDown();
  }

  std::unique_ptr<TlsTestServer> server(int max_version = 0, bool silent = false, const std::string& name = "srv") {
    return std::make_unique<TlsTestServer>(
        TlsTestServer::Options{path(name + ".pem"), path(name + ".key"), path("ca.pem"), max_version, silent});
  }
  std::unique_ptr<HttpsClient> client(HttpsOptions o = {}) {
    if (o.trust_anchor.empty()) o.trust_anchor = path("srv.pem");
    auto id = load_token_identity("pkcs11:token=certcustody-test;object=ra");
    EXPECT_TRUE(id) << id.error().to_string();
    if (!id) return nullptr;
    auto c = HttpsClient::create(o, std::move(id.value()));
    EXPECT_TRUE(c);
    return c ? std::move(c.value()) : nullptr;
  }
  static std::string url(const TlsTestServer& s, const std::string& host = "localhost") {
    return "https://" + host + ":" + std::to_string(s.port()) + "/";
  }

  std::string ra_cert_;
};

TEST_F(Https, MutualTlsWithTls13AndTls12) {
  for (int version : {0, TLS1_2_VERSION}) {
    auto srv = server(version);
    auto c = client();
    ASSERT_TRUE(c);
    auto r = c->get(url(*srv));
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_EQ(r->status, 200);
    EXPECT_NE(r->body.find("CN=RA ra"), std::string::npos) << r->body;
    EXPECT_EQ(srv->full_handshakes(), 1);
    auto posted = c->post(url(*srv) + "enroll", "application/soap+xml", "<request/>");
    ASSERT_TRUE(posted) << posted.error().to_string();
    EXPECT_EQ(posted->status, 200);
  }
}

TEST_F(Https, ABurstReusesOneConnection) {
  auto srv = server();
  auto c = client();
  ASSERT_TRUE(c);
  for (int i = 0; i < 20; ++i) {
    auto r = c->get(url(*srv));
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_EQ(r->reused_connection, i > 0) << i;
  }
  EXPECT_EQ(c->connections_opened(), 1);
  EXPECT_EQ(srv->full_handshakes(), 1);
  EXPECT_EQ(srv->requests(), 20);
}

TEST_F(Https, NewConnectionsResumeTheTlsSession) {
  auto srv = server(TLS1_2_VERSION);
  auto c = client(HttpsOptions{"", std::chrono::milliseconds(10000), std::chrono::milliseconds(60000), false});
  ASSERT_TRUE(c);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(c->get(url(*srv)));
  EXPECT_EQ(c->connections_opened(), 5);
  EXPECT_EQ(srv->full_handshakes(), 1);
  EXPECT_EQ(srv->resumed_handshakes(), 4);
}

TEST_F(Https, EightThreadsHandshakeConcurrently) {
  auto srv = server();
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      // Separate clients, no reuse: every request is a full handshake signed in the token.
      auto c = client(HttpsOptions{"", std::chrono::milliseconds(10000), std::chrono::milliseconds(60000), false});
      for (int i = 0; c && i < 5; ++i) {
        auto r = c->get(url(*srv));
        if (!r || r->status != 200) ++failures;
      }
      if (!c) failures += 5;
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(srv->requests(), 40);
  EXPECT_GE(srv->full_handshakes(), 8);
  for (const auto& s : srv->client_subjects()) EXPECT_EQ(s, "/CN=RA ra");
}

TEST_F(Https, UntrustedServerAndWrongHostNameAreNamed) {
  auto srv = server();
  auto untrusted = client(HttpsOptions{path("ca.pem")});  // not the server's issuer
  auto r = untrusted->get(url(*srv));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "net.ca_untrusted") << r.error().to_string();

  make_server("other", "ec", "other.example", "DNS:other.example");
  auto other = server(0, false, "other");
  auto c = client(HttpsOptions{path("other.pem")});
  auto m = c->get(url(*other));
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code, "net.ca_name_mismatch") << m.error().to_string();
  EXPECT_NE(m.error().what.find("localhost"), std::string::npos);
}

TEST_F(Https, ServerThatNeverAnswersHitsTheTimeout) {
  auto silent = server(0, true);
  for (auto [connect_ms, total_ms] : {std::pair{10000, 1000}, std::pair{1000, 10000}}) {
    auto c = client(HttpsOptions{"", std::chrono::milliseconds(connect_ms), std::chrono::milliseconds(total_ms)});
    auto t0 = std::chrono::steady_clock::now();
    auto r = c->get(url(*silent));
    auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    ASSERT_FALSE(r);
    // The silent server accepts TCP and never completes the TLS handshake:
    // the request never left, which is what the retry logic needs to know.
    EXPECT_EQ(r.error().code, "net.ca_connect_timeout") << r.error().to_string();
    EXPECT_GE(elapsed.count(), 800) << connect_ms << "/" << total_ms;  // 1000 ms +- 20 %
    EXPECT_LE(elapsed.count(), 1200) << connect_ms << "/" << total_ms;
    EXPECT_NE(r.error().remedy.find("CloudCAConnTimeoutInMilliseconds"), std::string::npos);
  }
}

TEST_F(Https, ServerRefusingTheRaCertificate) {
  // The server trusts another client CA: the handshake fails, named.
  ASSERT_EQ(openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                     path("ca2.key"), "-out", path("ca2.pem"), "-subj", "/CN=Another CA", "-days", "2"})
                .exit_code,
            0);
  TlsTestServer strict({path("srv.pem"), path("srv.key"), path("ca2.pem"), 0, false});
  auto c = client();
  auto r = c->get(url(strict));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "net.tls_channel_failed") << r.error().to_string();
}

TEST_F(Https, IdentityErrorsAreNamed) {
  auto missing = load_token_identity("pkcs11:token=certcustody-test;object=nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, "custody.key_not_found") << missing.error().to_string();

  // A certificate for another key, stored beside "ra" behind the importer's back.
  make_ra("ra2", "ec-p256");
  ASSERT_TRUE(custody_->generate_key_pair("lonely", KeyType::ec_p256, KeyPurpose::sign));
  auto other = read_file(path("ra2.pem"));
  BioPtr bio(BIO_new_mem_buf(other.data(), static_cast<int>(other.size())));
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  unsigned char* der = nullptr;
  int n = i2d_X509(cert.get(), &der);
  ASSERT_TRUE(custody_->store_certificate("lonely", {der, static_cast<std::size_t>(n)}, false));
  OPENSSL_free(der);
  auto mismatch = load_token_identity("pkcs11:token=certcustody-test;object=lonely");
  ASSERT_FALSE(mismatch);
  EXPECT_EQ(mismatch.error().code, "net.ra_certificate_mismatch") << mismatch.error().to_string();

  auto no_cert = load_token_identity("pkcs11:token=certcustody-test;object=ra3");
  ASSERT_FALSE(no_cert);

  ASSERT_TRUE(custody_->generate_key_pair("bare", KeyType::ec_p256, KeyPurpose::sign));
  auto bare = load_token_identity("pkcs11:token=certcustody-test;object=bare");
  ASSERT_FALSE(bare);
  EXPECT_EQ(bare.error().code, "net.ra_certificate_missing") << bare.error().to_string();
}

TEST_F(Https, WrongPinIsNamedThroughTheProvider) {
  provider::set_shared_custody(nullptr, {});
  custody_.reset();
  write_file(token_->user_pin_file(), "not-the-pin\n");
  auto c = Pkcs11Custody::open(token_->custody_config());
  ASSERT_TRUE(c);
  custody_ = std::move(c.value());
  provider::set_shared_custody(custody_, token_->custody_config().token);
  auto id = load_token_identity("pkcs11:token=certcustody-test;object=ra");
  ASSERT_FALSE(id);
  EXPECT_EQ(id.error().code, "custody.pin_incorrect") << id.error().to_string();
  EXPECT_EQ(custody_->pool().login_attempts(), 1u);
}

TEST_F(Https, KeyStaysInTheTokenAfterwards) {
  auto srv = server();
  auto c = client();
  ASSERT_TRUE(c->get(url(*srv)));
  auto info = custody_->find_key("ra");
  ASSERT_TRUE(info);
  EXPECT_TRUE(info->sensitive);
  EXPECT_FALSE(info->extractable);
  EXPECT_TRUE(info->never_extractable);
}

}  // namespace
}  // namespace certcustody::testing

namespace certcustody::testing {
namespace {

// `certcustody ca ping` — the operator's check of a CA endpoint, through the
// provider built into the executable.
TEST_F(Https, CaPingFromTheExecutable) {
  auto srv = server();
  auto silent = server(0, true);
  auto config = read_file(config_);
  config += "\n[ra]\nkey = \"pkcs11:token=certcustody-test;object=ra\"\n";
  config += "\n[ca.test]\nurl = \"https://localhost:" + std::to_string(srv->port()) + "/\"\ntrust_anchor = \"" +
            path("srv.pem") + "\"\n";
  config += "\n[ca.silent]\nurl = \"https://localhost:" + std::to_string(silent->port()) + "/\"\ntrust_anchor = \"" +
            path("srv.pem") + "\"\nconnect_timeout_ms = 500\ntimeout_ms = 700\n";
  write_file(config_, config);
  auto ok = cc({"ca", "ping", "--ca", "test"});
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_NE(ok.output.find("HTTP 200 over mutual TLS as \"CN=RA ra\""), std::string::npos) << ok.output;
  auto slow = cc({"ca", "ping", "--ca", "silent"});
  EXPECT_EQ(slow.exit_code, 1);
  EXPECT_NE(slow.output.find("error net.ca_connect_timeout"), std::string::npos) << slow.output;
  auto unknown = cc({"ca", "ping", "--ca", "nope"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.output.find("config.ca_unknown"), std::string::npos) << unknown.output;
}

}  // namespace
}  // namespace certcustody::testing

namespace certcustody::testing {
namespace {

TEST_F(Https, TokenGoneIsNamedAndComesBack) {
  auto srv = server();
  ASSERT_TRUE(client()->get(url(*srv)));
  // A client that has no TLS session to resume: its next handshake must sign.
  auto c = client(HttpsOptions{"", std::chrono::milliseconds(5000), std::chrono::milliseconds(10000), false});
  std::filesystem::path token_subdir;
  for (const auto& e : std::filesystem::directory_iterator(token_->token_dir())) token_subdir = e.path();
  const std::string away = path("away");
  std::filesystem::rename(token_subdir, away);
  custody_->pool().module().finalize();  // the HSM went away
  auto gone = c->get(url(*srv));
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, "custody.token_not_present") << gone.error().to_string();
  std::filesystem::rename(away, token_subdir);
  auto back = c->get(url(*srv));
  EXPECT_TRUE(back) << back.error().to_string();
}

TEST_F(Https, ProviderConfigFromOpensslCnf) {
  // An operator's openssl.cnf names the configuration instead of CERTCUSTODY_CONFIG.
  write_file(path("openssl.cnf"), "openssl_conf = init\n[init]\nproviders = provider_sect\n"
                                  "[provider_sect]\ndefault = default_sect\ncertcustody = certcustody_sect\n"
                                  "[default_sect]\nactivate = 1\n"
                                  "[certcustody_sect]\nmodule = " CERTCUSTODY_PROVIDER_DIR "/certcustody-provider.so\n"
                                  "config = " + config_ + "\nactivate = 1\n");
  std::vector<std::string> e = env();
  std::erase_if(e, [](const std::string& v) { return v.rfind("CERTCUSTODY_CONFIG=", 0) == 0; });
  e.push_back("CERTCUSTODY_CONFIG=");
  e.push_back("OPENSSL_CONF=" + path("openssl.cnf"));
  auto r = run({"openssl", "pkey", "-in", key_uri("ra"), "-pubout"}, e);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.rfind("-----BEGIN PUBLIC KEY-----", 0), 0u) << r.output;
}

}  // namespace
}  // namespace certcustody::testing
