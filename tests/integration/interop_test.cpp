// Interoperability with the other PKCS#11 users of the same token: a key made
// by `certcustody ra keygen` works through libp11's engine, and a key made by
// pkcs11-tool works through certcustody.
#include <gtest/gtest.h>

#include "ra_fixture.h"

namespace certcustody::testing {
namespace {

class Interop : public RaFixture {};

TEST_F(Interop, OurKeySignsThroughLibp11Engine) {
  const std::string cert = make_ra("ra", "rsa2048");
  ASSERT_EQ(openssl({"x509", "-in", cert, "-noout", "-pubkey", "-out", path("ra.pub")}).exit_code, 0);
  write_file(path("msg"), "signed by the engine\n");
  ASSERT_EQ(openssl({"dgst", "-sha256", "-binary", "-out", path("dg"), path("msg")}).exit_code, 0);
  // libp11 finds SoftHSM through p11-kit's module registry. The PIN in the URI
  // is acceptable for this throwaway token only; certcustody itself refuses it.
  auto s = openssl({"pkeyutl", "-engine", "pkcs11", "-keyform", "engine", "-sign", "-inkey",
                    key_uri("ra") + ";pin-value=" + token_->user_pin(), "-in", path("dg"), "-pkeyopt",
                    "digest:sha256", "-out", path("sig")});
  ASSERT_EQ(s.exit_code, 0) << s.output;
  auto v = openssl({"pkeyutl", "-verify", "-pubin", "-inkey", path("ra.pub"), "-in", path("dg"), "-sigfile",
                    path("sig"), "-pkeyopt", "digest:sha256"});
  EXPECT_EQ(v.exit_code, 0) << v.output;
}

TEST_F(Interop, Pkcs11ToolKeyWorksWithCertcustody) {
  auto gen = run({"pkcs11-tool", "--module", kSoftHsmModule, "--token-label", token_->label(), "--login", "--pin",
                  token_->user_pin(), "--keypairgen", "--key-type", "EC:prime256v1", "--label", "toolkey", "--id",
                  "4242"},
                 env());
  ASSERT_EQ(gen.exit_code, 0) << gen.output;
  // certcustody's CSR (signed through the custody layer) ...
  auto csr = cc({"ra", "csr", "--label", "toolkey", "--subject", "CN=made by pkcs11-tool", "--out", path("t.csr")});
  ASSERT_EQ(csr.exit_code, 0) << csr.output;
  EXPECT_EQ(openssl({"req", "-in", path("t.csr"), "-verify", "-noout"}).exit_code, 0);
  // ... and the provider.
  write_file(path("msg"), "x");
  auto sig = openssl({"pkeyutl", "-provider", "certcustody", "-provider", "default", "-sign", "-inkey",
                      key_uri("toolkey"), "-rawin", "-digest", "sha256", "-in", path("msg"), "-out", path("sig")});
  ASSERT_EQ(sig.exit_code, 0) << sig.output;
  auto pub = openssl({"pkey", "-provider", "certcustody", "-provider", "default", "-in", key_uri("toolkey"),
                      "-pubout", "-out", path("t.pub")});
  ASSERT_EQ(pub.exit_code, 0) << pub.output;
  auto v = openssl({"pkeyutl", "-verify", "-pubin", "-inkey", path("t.pub"), "-rawin", "-digest", "sha256", "-in",
                    path("msg"), "-sigfile", path("sig")});
  EXPECT_EQ(v.exit_code, 0) << v.output;
}

}  // namespace
}  // namespace certcustody::testing
