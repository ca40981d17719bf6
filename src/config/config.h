// The connector's configuration: one TOML file, named by --config or by the
// CERTCUSTODY_CONFIG environment variable. Key names under [custody] and
// [state] are a contract with scripts and checks: add keys, never rename.
#pragma once

#include <optional>
#include <cstdint>
#include <string>
#include <vector>

#include "common/error.h"

namespace certcustody {

struct CustodyConfig {
  std::string backend;   // "pkcs11" or "tpm2"
  // backend = "pkcs11"
  std::string module;    // path of the PKCS#11 module (.so)
  std::string token;     // RFC 7512 URI selecting the token
  std::string pin_file;  // absolute/relative path, or a systemd credential name
  // backend = "tpm2" (docs/tpm.md)
  std::string tcti;                      // "device:/dev/tpmrm0", "tabrmd", "swtpm:host=…,port=…"
  std::string auth_file;                 // the keys' auth value: a file path or a systemd credential name
  std::string key_dir;                   // key blobs <label>.tss2; default <state.dir>/tpm
  std::uint32_t srk_handle = 0x81000001; // the storage primary key (TCG SRK template)
  std::string srk_type;                  // "rsa2048", "ec-p256", "ec-p384"; empty: any (made as rsa2048)
  std::string srk_name;                  // the SRK's TPM name in lower-case hex, pinned; empty: not pinned
  unsigned sessions = 8; // upper bound of pooled sessions
  unsigned reconnect_interval_ms = 1000;  // fail fast this long after a failed reconnect
};

struct StateConfig {
  std::string dir;
};

// The issuance pipeline ([pipeline]): what `serve` and `submit` use.
struct PipelineConfig {
  std::string kek;                      // label of the PFX encryption key in the token (`kek create`)
  std::vector<std::string> recipients;  // PEM certificates a PFX may be enveloped for
  unsigned workers = 0;                 // 0: one per core, at most custody.sessions
  unsigned scan_interval_ms = 500;      // how often the spool directory is looked at
  unsigned poll_interval_ms = 60000;    // how often a request pending at the CA is polled
  unsigned retry_interval_ms = 30000;   // a request that met a transient CA failure waits this long
  unsigned max_attempts = 20;           // ... and fails after this many attempts
  unsigned max_request_bytes = 65536;   // a bigger spool file is refused unread
};

// The audit log ([audit], docs/audit.md). Without the section: the log is
// <state.dir>/audit.log, signed when the token holds the key "audit".
struct AuditConfig {
  std::string log;                         // the log file
  std::string key = "audit";               // label of the audit signing key in the token
  std::string counter = "audit-counter";   // label of the token-held checkpoint counter
  unsigned checkpoint_every = 1000;        // records between checkpoints ...
  unsigned checkpoint_interval_ms = 1000;  // ... or this long, whichever comes first
  unsigned rotate_bytes = 256u << 20;      // serve starts a new file (chained) past this size; 0: never
  bool configured = false;                 // [audit] given: its key is required
};

struct RaConfig {
  std::string key;  // pkcs11: URI of the RA key; its certificate is stored beside it
};

// One CA endpoint reached over mutual TLS ([ca.<name>]).
struct CaEndpointConfig {
  std::string name;
  std::string type;          // "digicert", "mscep", "cmp"; empty: only `ca ping` can use it
  std::string url;           // https://… (digicert: https://<fqdn>/pki-ws/, derived); cmp may be http://
  std::string fqdn;          // digicert: the "certification authority", e.g. pki-ws.symauth.com
  std::string ca_name;       // digicert: "Symantec"
  std::string policy_url;    // mscep: the CEP (MS-XCEP) endpoint; url is the CES (MS-WSTEP) endpoint
  std::string trust_anchor;  // PEM file: the roots that issued the CA server's certificate
  unsigned connect_timeout_ms = 10000;  // the reference's CloudCAConnTimeoutInMilliseconds
  unsigned timeout_ms = 60000;
  unsigned retries = 3;                 // extra attempts after a transient failure
  unsigned retry_base_ms = 500;         // first backoff; doubles each attempt, with full jitter
  unsigned retry_max_ms = 30000;        // backoff ceiling
  unsigned breaker_failures = 5;        // consecutive transient failures that open the circuit
  unsigned breaker_open_ms = 30000;     // how long an open circuit refuses calls before one trial
};

// Why `fqdn` is not a bare host[:port] (a scheme, a path, a trailing slash...).
std::optional<std::string> ca_fqdn_problem(const std::string& fqdn);

struct Config {
  std::string path;  // the file it came from
  CustodyConfig custody;
  StateConfig state;
  RaConfig ra;                         // optional [ra]
  std::optional<PipelineConfig> pipeline;  // optional [pipeline]
  AuditConfig audit;                       // optional [audit]
  std::string sha256;                      // of the file's text: which configuration an event ran under
  std::vector<CaEndpointConfig> cas;   // optional [ca.<name>] tables

  Result<const CaEndpointConfig*> ca(const std::string& name) const;
};

// --config wins; otherwise $CERTCUSTODY_CONFIG; otherwise a named error.
Result<std::string> resolve_config_path(const std::optional<std::string>& flag);

// Parses and validates; errors name the file, line and key.
Result<Config> load_config(const std::string& path);
Result<Config> parse_config(const std::string& text, const std::string& source_name);

}  // namespace certcustody
