// RaFixture plus software key pairs imported into the token with pkcs11-tool
// (an outside PKCS#11 user), so that OpenSSL's default provider holds the
// same private keys in files: what our provider signs can be compared with
// what OpenSSL signs, byte for byte where the scheme is deterministic.
#pragma once

#include <openssl/err.h>

#include <string>
#include <vector>

#include "ra_fixture.h"

namespace certcustody::testing {

// Drains the error queue, keeping each error's data (our named errors).
inline std::string error_queue() {
  std::string out;
  const char* data = nullptr;
  int flags = 0;
  while (ERR_get_error_all(nullptr, nullptr, nullptr, &data, &flags) != 0)
    if ((flags & ERR_TXT_STRING) != 0 && data != nullptr) out += std::string(data) + "\n";
  return out;
}

class SoftwareKeysFixture : public RaFixture {
 protected:
  // swrsa: RSA-2048, id 0a01; swec: P-256, id 0a02. Files <label>.key
  // (private, PEM) and <label>.pub (SubjectPublicKeyInfo PEM).
  void SetUp() override {
    RaFixture::SetUp();
    import_key("swrsa", "0a01", {"-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"}, true);
    import_key("swec", "0a02", {"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"}, true);
  }

  // A software key pair `label` in the token (its private key, and its public
  // key when `with_public`), the key files beside it.
  void import_key(const std::string& label, const std::string& id, std::vector<std::string> genpkey,
                  bool with_public) {
    genpkey.insert(genpkey.begin(), "genpkey");
    genpkey.insert(genpkey.end(), {"-out", path(label + ".key")});
    ASSERT_EQ(openssl(genpkey).exit_code, 0);
    ASSERT_EQ(openssl({"pkey", "-in", path(label + ".key"), "-pubout", "-out", path(label + ".pub")}).exit_code, 0);
    write_object(label, id, path(label + ".key"), "privkey");
    if (with_public) write_object(label, id, path(label + ".pub"), "pubkey");
  }

  // pkcs11-tool --write-object (privkey, pubkey or cert) with label and id.
  void write_object(const std::string& label, const std::string& id, const std::string& file,
                    const std::string& type) {
    auto w = run({"pkcs11-tool", "--module", kSoftHsmModule, "--token-label", token_->label(), "--login", "--pin",
                  token_->user_pin(), "--write-object", file, "--type", type, "--id", id, "--label", label},
                 env());
    ASSERT_EQ(w.exit_code, 0) << w.output;
  }

  // A self-signed certificate for the software key `label` (PEM path).
  std::string self_signed(const std::string& label) {
    const std::string cert = path(label + ".crt");
    EXPECT_EQ(openssl({"req", "-new", "-x509", "-key", path(label + ".key"), "-subj", "/CN=" + label, "-days", "2",
                       "-out", cert})
                  .exit_code,
              0);
    return cert;
  }

  static std::string uri(const std::string& label, const std::string& type = "private") {
    return "pkcs11:token=certcustody-test;object=" + label + (type.empty() ? "" : ";type=" + type);
  }
  static std::vector<std::string> providers(bool ours_first) {
    return ours_first ? std::vector<std::string>{"-provider", "certcustody", "-provider", "default"}
                      : std::vector<std::string>{"-provider", "default", "-provider", "certcustody"};
  }
  // `args` (args[0] the openssl command) with the providers inserted after the command name.
  RunResult ours(std::vector<std::string> args, bool ours_first = true) const {
    const auto p = providers(ours_first);
    args.insert(args.begin() + 1, p.begin(), p.end());
    return openssl(args);
  }
};

}  // namespace certcustody::testing
