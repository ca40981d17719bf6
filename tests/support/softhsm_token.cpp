#include "support/softhsm_token.h"

#include <sys/stat.h>

#include <cstdlib>
#include <stdexcept>

#include "custody/pin_source.h"
#include "custody/pkcs11_custody.h"

namespace certcustody::testing {

SoftHsmToken::SoftHsmToken(const std::string& label) : label_(label) {
  ::mkdir((dir_ / "tokens").c_str(), 0700);
  write_file(conf_path(), "directories.tokendir = " + token_dir() +
                              "\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n");
  ::setenv("SOFTHSM2_CONF", conf_path().c_str(), 1);
  write_file(dir_ / "so.pin", so_pin_ + "\n");
  write_file(user_pin_file(), user_pin_ + "\n");
  auto module = Pkcs11Module::load(kSoftHsmModule);
  if (!module) throw std::runtime_error(module.error().to_string());
  SecureBytes so(so_pin_.begin(), so_pin_.end()), user(user_pin_.begin(), user_pin_.end());
  Status s = init_token(**module, label_, so, user);
  module.value()->finalize();
  if (!s) throw std::runtime_error(s.error().to_string());
}

SoftHsmToken::~SoftHsmToken() = default;

CustodyConfig SoftHsmToken::custody_config() const {
  CustodyConfig c;
  c.backend = "pkcs11";
  c.module = kSoftHsmModule;
  c.token = "pkcs11:token=" + label_;
  c.pin_file = user_pin_file();
  c.sessions = 8;
  c.reconnect_interval_ms = 0;  // tests take tokens away and back at once
  return c;
}

std::string SoftHsmToken::write_config_file() const {
  std::string path = dir_ / "certcustody.toml";
  write_file(path, "[custody]\nbackend = \"pkcs11\"\nmodule = \"" + std::string(kSoftHsmModule) +
                       "\"\ntoken = \"pkcs11:token=" + label_ + "\"\npin_file = \"" + user_pin_file() +
                       "\"\n\n[state]\ndir = \"" + (dir_ / "state") + "\"\n");
  return path;
}

}  // namespace certcustody::testing
