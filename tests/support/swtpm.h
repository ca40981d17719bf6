// A private software TPM 2.0 (swtpm) in a temporary directory, reached over
// TCP on a free loopback port pair, stopped on destruction. With it: a random
// key auth value in a 0600 file, a key directory, the TCTI strings for
// certcustody, tpm2-tools and tpm2-openssl, and a runner for tpm2-tools.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "support/process.h"
#include "support/temp_dir.h"

namespace certcustody::testing {

// The persistent handle certcustody keeps its storage root key (SRK) at.
inline constexpr const char* kSrkHandle = "0x81000001";

class Swtpm {
 public:
  Swtpm();
  ~Swtpm();
  Swtpm(const Swtpm&) = delete;
  Swtpm& operator=(const Swtpm&) = delete;

  int port() const { return port_; }
  // "swtpm:host=127.0.0.1,port=P", as certcustody's [custody] tcti takes it.
  std::string tcti() const;
  // TPM2TOOLS_TCTI and TPM2OPENSSL_TCTI for tpm2-tools and tpm2-openssl.
  std::vector<std::string> env() const;
  const std::string& dir() const { return dir_.path(); }
  std::string path(const std::string& name) const { return dir_ / name; }

  // The key auth value (printable, no newline) and the 0600 file holding it
  // followed by a newline (certcustody strips it; openssl -passin file: too).
  const std::string& auth_value() const { return auth_value_; }
  std::string auth_file() const { return dir_ / "tpm.auth"; }
  // Another random auth value in a new 0600 file `name` (path returned).
  std::string make_auth_file(const std::string& name, std::string* value = nullptr) const;
  std::string key_dir() const { return dir_ / "tpm-keys"; }
  std::string blob(const std::string& label) const { return key_dir() + "/" + label + ".tss2"; }

  // Writes a certcustody.toml ([custody] backend = "tpm2", [state] dir =
  // state_dir) and returns its path. `extra` is appended as is;
  // `custody_extra` (lines such as srk_type = "ec-p256") goes into [custody].
  std::string write_config_file(const std::string& state_dir, const std::string& auth_file = "",
                                const std::string& name = "certcustody.toml", const std::string& extra = "",
                                const std::string& custody_extra = "") const;
  // The [custody] section of write_config_file() (backend = "tpm2").
  CustodyConfig custody_config() const;

  // A tpm2-tools command (argv[0] e.g. "tpm2_getcap") against this TPM.
  RunResult tool(std::vector<std::string> argv) const;
  // TPM2_PT_LOCKOUT_COUNTER (tpm2_getcap properties-variable); -1 if unreadable.
  long lockout_counter() const;
  // `tpm2_getcap handles-transient` output (empty when nothing is loaded).
  std::string transient_handles() const;
  std::string persistent_handles() const;
  // Creates a storage key (restricted decrypt, AES-CFB, noDA, empty auth)
  // at `handle` through tpm2-tools, for tests that must not depend on
  // certcustody: by default the TCG RSA-2048 SRK at kSrkHandle; `key` is
  // tpm2_createprimary's -g/-G, e.g. {"-g", "sha384", "-G", "ecc384:null:aes256cfb"}.
  bool create_srk_with_tools(const std::vector<std::string>& key = {"-g", "sha256", "-G", "rsa2048:null:aes128cfb"},
                             const std::string& handle = kSrkHandle) const;
  // The TPM name of the object at `handle` as `tpm2_readpublic` prints it (hex); empty if none.
  std::string name_with_tools(const std::string& handle = kSrkHandle) const;

  // Stops the TPM (state kept in dir()/tpm) and starts it again (same port).
  void stop();
  void start();
  bool running() const { return process_ && process_->running(); }

 private:

  TempDir dir_;
  int port_ = 0;
  std::string auth_value_;
  std::unique_ptr<Process> process_;
};

// A random printable auth value (hex of 16 random bytes).
std::string random_auth_value();

}  // namespace certcustody::testing
