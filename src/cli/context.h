// Shared set-up of the CLI commands: configuration and custody.
#pragma once

#include <memory>

#include "audit/audit_log.h"
#include "ca/ca_client.h"
#include "cli/commands.h"
#include "config/config.h"
#include "custody/key_custody.h"
#include "net/token_identity.h"

namespace certcustody::cli {

Result<Config> load(const Globals& g);
// The custody of [custody] backend (a PKCS#11 token or the TPM).
Result<std::unique_ptr<KeyCustody>> open_custody(const Config& cfg);
// Where the keys of cfg are, for messages: the token URI or "tpm2 <tcti>".
std::string custody_location(const Config& cfg);

// The custody lent to the built-in provider for the life of a command, so
// that TLS and CMP sign with the RA key in this process's session pool.
class SharedCustody {
 public:
  SharedCustody(std::shared_ptr<KeyCustody> c, const std::string& token);
  ~SharedCustody();
  SharedCustody(const SharedCustody&) = delete;
  SharedCustody& operator=(const SharedCustody&) = delete;
};

// Config, custody, the provider's borrowed pool and a CA client, torn down in
// reverse order (the client before the pool it signs with).
struct CaSession {
  Config cfg;
  std::shared_ptr<KeyCustody> custody;
  std::unique_ptr<SharedCustody> shared;
  std::unique_ptr<ca::CaClient> client;
};
// Loads the config and the RA identity ([ra] key) into `s`.
Result<TlsIdentity> open_ra_identity(const Globals& g, CaSession& s);
// ... and a client for [ca.<ca_name>].
Status connect_ca(const Globals& g, const std::string& ca_name, CaSession& s);

// The audit log of [audit] for `command`. With `signer_custody` (the daemon)
// checkpoints are signed with the audit key there: required when [audit] is
// configured, else a missing key is warned about and the log stays unsigned.
// Other commands append only; the daemon's next checkpoint covers them.
Result<std::unique_ptr<audit::AuditLog>> open_audit_log(const Config& cfg, const std::string& command,
                                                        KeyCustody* signer_custody = nullptr);

// open_custody, with the login's outcome recorded (token.login ok / failed
// with the named error, e.g. custody.pin_incorrect).
Result<std::unique_ptr<KeyCustody>> open_custody_audited(const Config& cfg, audit::AuditLog& log);

// An event recording `outcome`: ok, or failed with its error's code.
audit::Event outcome_event(std::string type, const Status& outcome,
                           std::vector<std::pair<std::string, std::string>> detail = {});

Result<std::string> read_text(const std::string& path, const char* what);

// Writes `data` to `path` atomically (temp file + rename) with `mode`.
Status write_file_atomic(const std::string& path, const std::string& data, unsigned mode);

}  // namespace certcustody::cli
