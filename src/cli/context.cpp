#include "cli/context.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "audit/token_signer.h"
#include "ca/ca_factory.h"
#include "common/durable_file.h"
#include "custody/custody_factory.h"
#include "provider_context.h"

namespace certcustody::cli {

Result<Config> load(const Globals& g) {
  CC_TRY_ASSIGN(std::string path, resolve_config_path(g.config));
  return load_config(path);
}

Result<std::unique_ptr<KeyCustody>> open_custody(const Config& cfg) { return open_key_custody(cfg.custody); }

std::string custody_location(const Config& cfg) {
  return cfg.custody.backend == "tpm2" ? "tpm2 " + cfg.custody.tcti : cfg.custody.token;
}

Result<std::unique_ptr<audit::AuditLog>> open_audit_log(const Config& cfg, const std::string& command,
                                                        KeyCustody* signer_custody) {
  audit::AuditLog::Options o{.path = cfg.audit.log,
                             .actor = audit::current_actor(command),
                             .checkpoint_every = cfg.audit.checkpoint_every};
  // The default log lives in the state directory, which may not exist yet.
  const std::string dir = o.path.substr(0, o.path.rfind('/'));
  if (!dir.empty() && dir == cfg.state.dir) ::mkdir(dir.c_str(), 0700);
  if (signer_custody != nullptr) {
    auto signer = audit::token_signer(*signer_custody, cfg.audit.key, cfg.audit.counter);
    if (signer) {
      o.signer = std::move(signer).value();
    } else if (cfg.audit.configured) {
      return signer.error();
    } else {
      std::fprintf(stderr, "certcustody: warning: the audit log %s is not signed: %s — %s\n", o.path.c_str(),
                   signer.error().what.c_str(), signer.error().remedy.c_str());
    }
  }
  return audit::AuditLog::open(std::move(o));
}

audit::Event outcome_event(std::string type, const Status& outcome,
                           std::vector<std::pair<std::string, std::string>> detail) {
  return {.type = std::move(type),
          .outcome = outcome ? "ok" : "failed",
          .error_code = outcome ? "" : outcome.error().code,
          .detail = std::move(detail)};
}

Result<std::unique_ptr<KeyCustody>> open_custody_audited(const Config& cfg, audit::AuditLog& log) {
  auto custody = open_custody(cfg);
  // The pool logs in on first use: here, so that the event says how it went.
  const Status outcome = custody ? (*custody)->connect() : custody.status();
  CC_TRY(log.append(outcome_event("token.login", outcome, {{"token", custody_location(cfg)}, {"config_sha256", cfg.sha256}})));
  CC_TRY(outcome);
  return custody;
}

SharedCustody::SharedCustody(std::shared_ptr<KeyCustody> c, const std::string& token) {
  provider::set_shared_custody(std::move(c), token);
}
SharedCustody::~SharedCustody() { provider::set_shared_custody(nullptr, {}); }

Result<TlsIdentity> open_ra_identity(const Globals& g, CaSession& s) {
  CC_TRY_ASSIGN(s.cfg, load(g));
  if (s.cfg.ra.key.empty())
    return Error{"config.missing_key", s.cfg.path + ": key ra.key is required to reach a CA",
                 "add [ra] key = \"pkcs11:token=…;object=ra\" (or \"tpm2:object=ra\" with the TPM)"};
  CC_TRY_ASSIGN(auto opened, open_custody(s.cfg));
  s.custody = std::move(opened);
  s.shared = std::make_unique<SharedCustody>(s.custody, s.cfg.custody.token);
  return load_token_identity(s.cfg.ra.key);
}

Status connect_ca(const Globals& g, const std::string& ca_name, CaSession& s) {
  CC_TRY_ASSIGN(TlsIdentity id, open_ra_identity(g, s));
  CC_TRY_ASSIGN(const CaEndpointConfig* ca, s.cfg.ca(ca_name));
  CC_TRY_ASSIGN(s.client, ca::make_ca_client(*ca, std::move(id)));
  return {};
}

Result<std::string> read_text(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return Error{"cli.input_unreadable", std::string("cannot read the ") + what + " file " + path,
                 "check the path and permissions"};
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Status write_file_atomic(const std::string& path, const std::string& data, unsigned mode) {
  if (const int err = write_file_durably(path, data, mode, Existing::replace); err != 0)
    return Error{"cli.output_unwritable", "cannot write " + path + ": " + std::strerror(err),
                 "check that the directory exists and is writable, and free space"};
  return {};
}

}  // namespace certcustody::cli
