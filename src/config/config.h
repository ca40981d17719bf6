// The connector's configuration: one TOML file, named by --config or by the
// CERTCUSTODY_CONFIG environment variable. Key names under [custody] and
// [state] are a contract with scripts and checks: add keys, never rename.
#pragma once

#include <optional>
#include <string>

#include "common/error.h"

namespace certcustody {

struct CustodyConfig {
  std::string backend;   // "pkcs11"
  std::string module;    // path of the PKCS#11 module (.so)
  std::string token;     // RFC 7512 URI selecting the token
  std::string pin_file;  // absolute/relative path, or a systemd credential name
  unsigned sessions = 8; // upper bound of pooled sessions
  unsigned reconnect_interval_ms = 1000;  // fail fast this long after a failed reconnect
};

struct StateConfig {
  std::string dir;
};

struct Config {
  std::string path;  // the file it came from
  CustodyConfig custody;
  StateConfig state;
};

// --config wins; otherwise $CERTCUSTODY_CONFIG; otherwise a named error.
Result<std::string> resolve_config_path(const std::optional<std::string>& flag);

// Parses and validates; errors name the file, line and key.
Result<Config> load_config(const std::string& path);
Result<Config> parse_config(const std::string& text, const std::string& source_name);

}  // namespace certcustody
