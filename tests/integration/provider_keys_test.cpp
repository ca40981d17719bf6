// What our provider does with keys (issue 16, items 12 and 14): no key
// generation to keep, URIs by id=, listing a token, public objects without
// the PIN, a key known by its certificate only, and `pkey -text` on a
// private URI.
#include <gtest/gtest.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <filesystem>

#include "software_keys_fixture.h"

namespace certcustody::testing {
namespace {

class ProviderKeys : public SoftwareKeysFixture {
 protected:
  static int count(const std::string& text, const std::string& needle) {
    int n = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
    return n;
  }
  // Runs `f` with the PIN file gone: nothing may read it.
  template <class F>
  void without_pin(F&& f) {
    const std::string pin = token_->user_pin_file(), away = pin + ".away";
    std::filesystem::rename(pin, away);
    f();
    std::filesystem::rename(away, pin);
  }
};

// --- item 12: no software key from our provider ----------------------------

TEST_F(ProviderKeys, GenpkeyThroughTheProviderIsRefusedAndWritesNoKey) {
  struct Gen {
    const char* name;
    std::vector<std::string> args;
    bool offered;  // a key management we offer (named refusal expected)
  };
  const Gen gens[] = {{"rsa", {"-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"}, true},
                      {"ec_p256", {"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"}, true},
                      {"ec_p384", {"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"}, true},
                      {"rsa_pss", {"-algorithm", "RSA-PSS"}, false}};
  for (const Gen& g : gens)
    for (bool ours_first : {true, false}) {
      SCOPED_TRACE(std::string(g.name) + (ours_first ? ", certcustody first" : ", default first"));
      const std::string out = path(std::string(g.name) + ".pem");
      std::vector<std::string> args = {"genpkey", "-propquery", "provider=certcustody"};
      args.insert(args.end(), g.args.begin(), g.args.end());
      args.insert(args.end(), {"-out", out});
      auto r = ours(args, ours_first);
      EXPECT_NE(r.exit_code, 0) << r.output;
      // openssl opens the output before generating: at most an empty file.
      EXPECT_TRUE(!std::filesystem::exists(out) || std::filesystem::file_size(out) == 0) << read_file(out);
      EXPECT_EQ(r.output.find("PRIVATE KEY"), std::string::npos) << r.output;
      if (g.offered) {
        EXPECT_NE(r.output.find("error provider.key_generation_refused"), std::string::npos) << r.output;
      }
    }
  // The same for a request that would make its key on the way.
  auto req = ours({"req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-propquery",
                   "provider=certcustody", "-nodes", "-keyout", path("req.key"), "-subj", "/CN=x", "-out",
                   path("req.csr")});
  EXPECT_NE(req.exit_code, 0) << req.output;
  EXPECT_TRUE(!std::filesystem::exists(path("req.key")) || std::filesystem::file_size(path("req.key")) == 0);
  EXPECT_NE(req.output.find("error provider.key_generation_refused"), std::string::npos) << req.output;
}

TEST_F(ProviderKeys, KeyGeneratedInProcessNeverYieldsItsPrivateHalf) {
  share_custody_with_provider();
  EvpPkeyPtr ec(EVP_PKEY_Q_keygen(nullptr, "provider=certcustody", "EC", "P-256"));
  ASSERT_TRUE(ec);  // exists for TLS key exchange only
  BIGNUM* priv = nullptr;
  EXPECT_NE(EVP_PKEY_get_bn_param(ec.get(), OSSL_PKEY_PARAM_PRIV_KEY, &priv), 1);
  BN_clear_free(priv);
  ERR_clear_error();
  std::unique_ptr<BIO, OsslDeleter<BIO_free>> mem(BIO_new(BIO_s_mem()));
  EXPECT_NE(PEM_write_bio_PrivateKey(mem.get(), ec.get(), nullptr, nullptr, 0, nullptr, nullptr), 1);
  EXPECT_EQ(BIO_ctrl_pending(mem.get()), 0u);
  EXPECT_NE(error_queue().find("provider.key_generation_refused"), std::string::npos);
  EvpMdCtxPtr md(EVP_MD_CTX_new());
  EXPECT_NE(EVP_DigestSignInit_ex(md.get(), nullptr, "SHA256", nullptr, nullptr, ec.get(), nullptr), 1);
  EXPECT_NE(error_queue().find("provider.key_generation_refused"), std::string::npos);

  EXPECT_FALSE(EvpPkeyPtr(EVP_PKEY_Q_keygen(nullptr, "provider=certcustody", "RSA", size_t{2048})));
  EXPECT_NE(error_queue().find("provider.key_generation_refused"), std::string::npos);
  unshare_custody();
}

// --- item 14: URIs, listing, PIN only for private objects --------------------

TEST_F(ProviderKeys, UrisById) {
  write_file(path("in"), std::string(32, '\x42'));
  ASSERT_EQ(openssl({"pkeyutl", "-sign", "-inkey", path("swrsa.key"), "-in", path("in"), "-out", path("expected")})
                .exit_code,
            0);
  const std::string expected_pub = read_file(path("swrsa.pub"));
  for (const std::string& u : {std::string("pkcs11:id=%0a%01"), std::string("pkcs11:id=%0A%01;type=private"),
                               std::string("pkcs11:token=certcustody-test;object=swrsa;id=%0a%01"),
                               std::string("pkcs11:object=swrsa;id=%0a%01;type=private")}) {
    SCOPED_TRACE(u);
    auto pub = ours({"pkey", "-in", u, "-pubout"});
    ASSERT_EQ(pub.exit_code, 0) << pub.output;
    EXPECT_EQ(pub.output, expected_pub);
    auto s = ours({"pkeyutl", "-sign", "-inkey", u, "-in", path("in"), "-out", path("sig")}, false);
    ASSERT_EQ(s.exit_code, 0) << s.output;
    EXPECT_EQ(read_file(path("sig")), read_file(path("expected")));
  }
  auto pub_only = ours({"pkey", "-pubin", "-in", "pkcs11:id=%0a%02;type=public", "-pubout"});
  ASSERT_EQ(pub_only.exit_code, 0) << pub_only.output;
  EXPECT_EQ(pub_only.output, read_file(path("swec.pub")));
  auto none = ours({"pkey", "-in", "pkcs11:id=%0a%09", "-pubout"});
  EXPECT_NE(none.exit_code, 0);
  EXPECT_NE(none.output.find("error custody.key_not_found"), std::string::npos) << none.output;
}

TEST_F(ProviderKeys, StoreutlListsTheTokenWithFilters) {
  make_ra("ra", "ec-p256");  // a key made by certcustody, with its certificate
  auto all = ours({"storeutl", "-noout", "pkcs11:token=certcustody-test"});
  ASSERT_EQ(all.exit_code, 0) << all.output;
  EXPECT_EQ(count(all.output, ": Pkey"), 3) << all.output;
  EXPECT_EQ(count(all.output, ": Public key"), 3) << all.output;
  EXPECT_EQ(count(all.output, ": Certificate"), 1) << all.output;
  EXPECT_NE(all.output.find("Total found: 7"), std::string::npos) << all.output;

  auto keys = ours({"storeutl", "-noout", "-keys", "pkcs11:token=certcustody-test"}, false);
  ASSERT_EQ(keys.exit_code, 0) << keys.output;
  EXPECT_EQ(count(keys.output, ": Pkey"), 3) << keys.output;
  EXPECT_EQ(count(keys.output, ": Certificate") + count(keys.output, ": Public key"), 0) << keys.output;

  auto certs = ours({"storeutl", "-certs", "pkcs11:token=certcustody-test"});
  ASSERT_EQ(certs.exit_code, 0) << certs.output;
  EXPECT_EQ(count(certs.output, ": Certificate"), 1) << certs.output;
  EXPECT_EQ(count(certs.output, "BEGIN CERTIFICATE"), 1) << certs.output;

  // type= narrows a listing too; -text shows each key's public part.
  auto pubs = ours({"storeutl", "-text", "pkcs11:token=certcustody-test;type=public"});
  ASSERT_EQ(pubs.exit_code, 0) << pubs.output;
  EXPECT_EQ(count(pubs.output, ": Public key"), 3) << pubs.output;
  EXPECT_EQ(count(pubs.output, "BEGIN PUBLIC KEY"), 3) << pubs.output;
}

TEST_F(ProviderKeys, PublicObjectsNeedNoPin) {
  const std::string cert = make_ra("ra", "rsa2048");
  without_pin([&] {
    auto x = ours({"x509", "-in", "pkcs11:token=certcustody-test;object=ra", "-noout", "-fingerprint"});
    EXPECT_EQ(x.exit_code, 0) << x.output;
    EXPECT_EQ(x.output, openssl({"x509", "-in", cert, "-noout", "-fingerprint"}).output);
    auto pub = ours({"pkey", "-pubin", "-in", "pkcs11:object=ra;type=public", "-pubout"}, false);
    EXPECT_EQ(pub.exit_code, 0) << pub.output;
    EXPECT_EQ(pub.output, openssl({"x509", "-in", cert, "-noout", "-pubkey"}).output);
    auto certs = ours({"storeutl", "-noout", "-certs", "pkcs11:token=certcustody-test"});
    EXPECT_EQ(certs.exit_code, 0) << certs.output;
    // A private key still needs the PIN, read then and named when missing.
    auto priv = ours({"pkey", "-in", "pkcs11:object=ra;type=private", "-pubout"});
    EXPECT_NE(priv.exit_code, 0);
    EXPECT_NE(priv.output.find("error custody.pin_file_unreadable"), std::string::npos) << priv.output;
  });
}

TEST_F(ProviderKeys, KeyWithoutPublicKeyObjectIsUsableThroughItsCertificate) {
  // An EC key pair known by its private key and certificate only (EC private
  // key objects carry no public point), and an RSA key with neither.
  import_key("certonly", "0b01", {"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"}, false);
  write_object("certonly", "0b01", self_signed("certonly"), "cert");
  import_key("bare", "0b02", {"-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"}, false);
  write_file(path("msg"), "signed by a key without a public-key object\n");
  for (const std::string label : {"certonly", "bare"}) {
    SCOPED_TRACE(label);
    auto pub = ours({"pkey", "-in", uri(label), "-pubout"});
    ASSERT_EQ(pub.exit_code, 0) << pub.output;
    EXPECT_EQ(pub.output, read_file(path(label + ".pub")));
    auto s = ours({"pkeyutl", "-sign", "-inkey", uri(label), "-rawin", "-digest", "sha384", "-in", path("msg"),
                   "-out", path("sig")});
    ASSERT_EQ(s.exit_code, 0) << s.output;
    auto v = openssl({"pkeyutl", "-verify", "-pubin", "-inkey", path(label + ".pub"), "-rawin", "-digest", "sha384",
                      "-in", path("msg"), "-sigfile", path("sig")});
    EXPECT_EQ(v.exit_code, 0) << v.output;
    // The connector's own commands find it too.
    auto csr = cc({"ra", "csr", "--label", label, "--subject", "CN=" + label, "--out", path(label + ".csr")});
    EXPECT_EQ(csr.exit_code, 0) << csr.output;
  }
  // Asked for public keys, the certificate stands in for the missing object.
  auto pub = ours({"pkey", "-pubin", "-in", "pkcs11:object=certonly;type=public", "-pubout"});
  ASSERT_EQ(pub.exit_code, 0) << pub.output;
  EXPECT_EQ(pub.output, read_file(path("certonly.pub")));
}

TEST_F(ProviderKeys, PkeyTextOnAPrivateUriPrintsThePublicPart) {
  for (const std::string label : {"swrsa", "swec"}) {
    for (bool ours_first : {true, false}) {
      SCOPED_TRACE(label + (ours_first ? ", certcustody first" : ", default first"));
      auto t = ours({"pkey", "-in", uri(label), "-text", "-noout"}, ours_first);
      ASSERT_EQ(t.exit_code, 0) << t.output;
      const std::string expected = openssl({"pkey", "-pubin", "-in", path(label + ".pub"), "-text_pub", "-noout"}).output;
      EXPECT_NE(t.output.find(expected), std::string::npos) << t.output;
      EXPECT_NE(t.output.find("Private-Key: in the token"), std::string::npos) << t.output;
      for (const char* secret : {"privateExponent", "prime1", "priv:"})
        EXPECT_EQ(t.output.find(secret), std::string::npos) << t.output;
      // There is no private key to write: a named error, never silence.
      auto pem = ours({"pkey", "-in", uri(label)}, ours_first);
      EXPECT_NE(pem.exit_code, 0);
      EXPECT_NE(pem.output.find("error provider.private_key_not_exportable"), std::string::npos) << pem.output;
      EXPECT_EQ(pem.output.find("BEGIN"), std::string::npos) << pem.output;
    }
  }
}

}  // namespace
}  // namespace certcustody::testing
