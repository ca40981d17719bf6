// What our provider does with keys (issue 16, item 12): no key generation
// to keep.
#include <gtest/gtest.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <filesystem>

#include "software_keys_fixture.h"

namespace certcustody::testing {
namespace {

class ProviderKeys : public SoftwareKeysFixture {};

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

}  // namespace
}  // namespace certcustody::testing
