// A private SoftHSM token in a temporary directory, initialised through our
// own init_token(), with its SO and user PINs in 0600 files. Sets
// SOFTHSM2_CONF for this process (SoftHSM reads it at C_Initialize).
#pragma once

#include <string>

#include "config/config.h"
#include "support/temp_dir.h"

namespace certcustody::testing {

inline constexpr const char* kSoftHsmModule = "/usr/lib/softhsm/libsofthsm2.so";

class SoftHsmToken {
 public:
  explicit SoftHsmToken(const std::string& label = "certcustody-test");
  ~SoftHsmToken();

  const std::string& dir() const { return dir_.path(); }
  std::string token_dir() const { return dir_ / "tokens"; }
  std::string conf_path() const { return dir_ / "softhsm2.conf"; }
  std::string user_pin_file() const { return dir_ / "user.pin"; }
  std::string user_pin() const { return user_pin_; }
  std::string so_pin() const { return so_pin_; }
  const std::string& label() const { return label_; }
  // A [custody] section for this token.
  CustodyConfig custody_config() const;
  // Writes certcustody.toml for the CLI and returns its path.
  std::string write_config_file() const;
  std::string softhsm_env() const { return "SOFTHSM2_CONF=" + conf_path(); }

 private:
  TempDir dir_;
  std::string label_;
  std::string so_pin_ = "so-8371265";
  std::string user_pin_ = "user-4470215";
};

}  // namespace certcustody::testing
