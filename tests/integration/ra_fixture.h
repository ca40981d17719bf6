// A SoftHSM token with RA keys and CA-issued RA certificates, made the way an
// HSM officer makes them (the certcustody executable + an openssl test CA),
// plus a server certificate: the set-up for provider and TLS tests. A derived
// fixture may set tpm_backend_ to have the keys in a swtpm instead.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "custody/pkcs11_custody.h"
#include "provider.h"
#include "provider_context.h"
#include "support/process.h"
#include "support/softhsm_token.h"
#include "support/swtpm.h"

namespace certcustody::testing {

class RaFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    if (tpm_backend_) {
      tpm_ = std::make_unique<Swtpm>();
      dir_ = tpm_->dir();
      config_ = tpm_->write_config_file(dir_ + "/state");
    } else {
      token_ = std::make_unique<SoftHsmToken>();
      dir_ = token_->dir();
      config_ = token_->write_config_file();
    }
    ASSERT_EQ(openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
                       path("ca.key"), "-out", path("ca.pem"), "-subj", "/CN=Test RA CA", "-days", "2"})
                  .exit_code,
              0);
  }
  void TearDown() override {
    token_.reset();
    tpm_.reset();
  }

  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  std::vector<std::string> env() const {
    std::vector<std::string> e = {"CERTCUSTODY_CONFIG=" + config_, "OPENSSL_MODULES=" CERTCUSTODY_PROVIDER_DIR};
    if (token_) e.push_back(token_->softhsm_env());
    if (tpm_) {
      const std::vector<std::string> t = tpm_->env();
      e.insert(e.end(), t.begin(), t.end());
    }
#ifdef CERTCUSTODY_ASAN_RUNTIME
    // The sanitizer build's provider module needs the ASan runtime loaded
    // first in the (uninstrumented) openssl command; leaks are checked
    // in-process by the Https suite instead.
    e.push_back("LD_PRELOAD=" CERTCUSTODY_ASAN_RUNTIME);
    e.push_back("ASAN_OPTIONS=detect_leaks=0");
#endif
    return e;
  }
  RunResult cc(std::vector<std::string> args) const {
    args.insert(args.begin(), {CERTCUSTODY_BINARY, "--config", config_});
    return run(args, env());
  }
  RunResult openssl(std::vector<std::string> args) const {
    args.insert(args.begin(), "openssl");
    return run(args, env());
  }
  static std::string key_uri(const std::string& label) {
    return "pkcs11:token=certcustody-test;object=" + label + ";type=private";
  }

  // RA key `label` in the token with its certificate (path returned).
  std::string make_ra(const std::string& label, const std::string& key_type) {
    auto k = cc({"ra", "keygen", "--label", label, "--key-type", key_type});
    EXPECT_EQ(k.exit_code, 0) << k.output;
    auto c = cc({"ra", "csr", "--label", label, "--subject", "CN=RA " + label, "--out", path(label + ".csr")});
    EXPECT_EQ(c.exit_code, 0) << c.output;
    auto i = openssl({"x509", "-req", "-in", path(label + ".csr"), "-CA", path("ca.pem"), "-CAkey", path("ca.key"),
                      "-CAcreateserial", "-copy_extensions", "copy", "-days", "2", "-out", path(label + ".pem")});
    EXPECT_EQ(i.exit_code, 0) << i.output;
    auto imp = cc({"ra", "import", "--label", label, "--cert", path(label + ".pem")});
    EXPECT_EQ(imp.exit_code, 0) << imp.output;
    return path(label + ".pem");
  }

  // A self-signed server certificate for `cn` with the given SANs.
  void make_server(const std::string& name, const std::string& key_alg, const std::string& cn,
                   const std::string& san) {
    std::vector<std::string> a = {"req", "-x509", "-newkey", key_alg};
    if (key_alg == "ec") a.insert(a.end(), {"-pkeyopt", "ec_paramgen_curve:P-256"});
    a.insert(a.end(), {"-nodes", "-keyout", path(name + ".key"), "-out", path(name + ".pem"), "-subj", "/CN=" + cn,
                       "-addext", "subjectAltName=" + san, "-days", "2"});
    ASSERT_EQ(openssl(a).exit_code, 0);
  }

  // openssl s_server requiring a client certificate from the test CA.
  std::unique_ptr<Process> start_server(const std::string& name, const std::string& version, int naccept,
                                        int& port, const std::vector<std::string>& extra = {}) {
    for (int attempt = 0; attempt < 5; ++attempt) {
      port = free_loopback_port();
      std::vector<std::string> a = {"openssl", "s_server", "-accept", "127.0.0.1:" + std::to_string(port), "-cert",
                                    path(name + ".pem"), "-key", path(name + ".key"), "-CAfile", path("ca.pem"),
                                    "-Verify", "1", "-verify_return_error", "-" + version, "-naccept",
                                    std::to_string(naccept), "-www"};
      a.insert(a.end(), extra.begin(), extra.end());
      auto p = std::make_unique<Process>(a, std::vector<std::string>{}, path("s_server." + std::to_string(port)));
      if (p->wait_for_output("ACCEPT", 5000)) return p;
    }
    ADD_FAILURE() << "s_server did not start";
    return nullptr;
  }

  // Opens the token's custody in this process and lends it to the built-in
  // provider, so that pkcs11: URIs (load_token_identity) sign in the token.
  void share_custody_with_provider() {
    static provider::BuiltinProviders providers;  // unloaded after the tests, before OpenSSL's cleanup
    ASSERT_TRUE(providers.ok());
    auto c = Pkcs11Custody::open(token_->custody_config());
    ASSERT_TRUE(c) << c.error().to_string();
    custody_ = std::move(c.value());
    provider::set_shared_custody(custody_, token_->custody_config().token);
  }
  // Before the token goes: the provider must not keep a pool to a dead token.
  void unshare_custody() {
    provider::set_shared_custody(nullptr, {});
    custody_.reset();
  }

  // Set in a derived fixture's constructor: the keys in a swtpm (backend
  // "tpm2", tpm_) instead of a SoftHSM token (token_).
  bool tpm_backend_ = false;
  std::unique_ptr<SoftHsmToken> token_;
  std::unique_ptr<Swtpm> tpm_;
  std::string dir_;
  std::string config_;
  std::shared_ptr<Pkcs11Custody> custody_;  // set by share_custody_with_provider()
};

}  // namespace certcustody::testing
