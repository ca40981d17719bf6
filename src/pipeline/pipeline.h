// One request's journey, and what the daemon and the CLI do with requests:
//
//   spool file -> intake (validated, recorded: received)
//   received -> processing: policy -> user key -> PKCS#10 (sealed key + CSR persisted)
//                           -> submission marked -> CA -> certificate persisted (issued)
//                              or ticket persisted (pending_ca) or named error (failed)
//   issued -> processing -> PKCS#12 (sealed at rest) -> CMS EnvelopedData for the
//                           recipient -> outgoing files -> delivered
//
// Everything a later step needs is persisted before the next external side
// effect (the CA, the outgoing directory), so a process killed at any point
// resumes from the store: recover() decides, per request left in processing,
// whether it may be sent again (never twice to a CA that cannot deduplicate).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "audit/audit_log.h"
#include "ca/ca_client.h"
#include "config/config.h"
#include "custody/key_custody.h"
#include "net/token_identity.h"
#include "pipeline/recipients.h"
#include "pipeline/spool.h"
#include "policy.h"
#include "store/request_store.h"

namespace certcustody::pipeline {

// One configuration generation; SIGHUP swaps it as a whole.
struct Runtime {
  Config cfg;
  PipelineConfig pcfg;
  std::vector<policy::Profile> profiles;
  RecipientSet recipients;
  std::map<std::string, std::unique_ptr<ca::CaClient>> cas;  // by [ca.<name>], those the profiles use

  const policy::Profile* profile(const std::string& name) const;
  Result<ca::CaClient*> ca(const std::string& name) const;
  // The template's policy from its CA, fetched once per generation.
  Result<policy::TemplatePolicy> template_policy(const policy::Profile& p) const;

 private:
  mutable std::mutex tpl_mu_;
  mutable std::map<std::string, policy::TemplatePolicy> tpl_cache_;
};

// Builds a runtime from `cfg` (which must have [pipeline]): profiles from the
// same file, recipients, one CA client per CA a profile names. `ra` loads the
// RA identity (mutual TLS, CMP protection) through the provider.
Result<std::shared_ptr<Runtime>> make_runtime(const Config& cfg, const std::function<Result<TlsIdentity>()>& ra);

// The record the device-management service reads from outgoing/<id>.status.json.
std::string status_json(const store::RequestRecord& r, const store::Artifacts& a);

// The user key made in enroll() and the certificate decoded from the CA's
// answer, when the same worker goes straight on to deliver: not unsealed or
// decoded again.
struct InHand {
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
};

class Pipeline {
 public:
  Pipeline(store::RequestStore& store, KeyCustody& custody, SpoolPaths spool, std::shared_ptr<const Runtime> rt);

  void set_runtime(std::shared_ptr<const Runtime> rt);
  // Every step's event goes to `log` (docs/audit.md); null: none. An event
  // that cannot be recorded stops the step before its side effect.
  void set_audit(audit::AuditLog* log) { audit_ = log; }
  std::shared_ptr<const Runtime> runtime() const;

  // Spool files -> store (bad ones recorded as failed with the named error).
  Result<int> intake();
  // At the daemon's start and on its timer: requests in processing whose
  // owner died (a killed run, a killed CLI command) go back to where they can
  // resume safely; status records not yet written out are written; temporary
  // files of dead writers are removed. Safe beside live workers and commands.
  Status maintain();
  Status recover();  // maintain(), at start
  // Takes one due request (issued first, then pending polls, then new ones)
  // through to its next resting state. False when nothing was due.
  Result<bool> work_once();

  // The same certificate again, newly enveloped, without a CA request.
  Status redeliver(const std::string& id);
  Status revoke(const std::string& id, ca::RevocationReason reason);

 private:
  Status intake_file(const std::string& path, const Runtime& rt);
  Status process(const store::RequestRecord& r, const Runtime& rt);
  Status enroll(const store::RequestRecord& r, const Runtime& rt, store::Artifacts& a);
  Status poll(const store::RequestRecord& r, const Runtime& rt, store::Artifacts& a);
  Status take_answer(const store::RequestRecord& r, const Runtime& rt, Result<ca::Enrollment> answer,
                     EVP_PKEY* key);
  Status deliver(const store::RequestRecord& r, const Runtime& rt, store::Artifacts& a, InHand in_hand = {});
  Status settle(const store::RequestRecord& r, const Runtime& rt, const Error& e);
  void release(const std::string& id, const Runtime& rt, const Error& e);
  Status put_back(const store::RequestRecord& r, const Runtime& rt, const std::optional<Error>& why);
  Status reclaim_orphans();
  Status fail(const std::string& id, store::State from, const Error& e);
  Status record_bad_file(const std::string& path, const std::string& text, const Error& e);
  Status record_issued(const std::string& id, X509* cert);
  Status publish(const std::string& id);
  void publish_or_later(const std::string& id);
  Status publish_due();
  Status record(const audit::Event& e);

  store::RequestStore& store_;
  KeyCustody& custody_;
  SpoolPaths spool_;
  mutable std::mutex rt_mu_;
  std::shared_ptr<const Runtime> rt_;
  audit::AuditLog* audit_ = nullptr;
};

// Errors worth another attempt later (the CA, the network or the token away).
bool retryable(const Error& e);
// The retryable errors of the connector's own resources (the token or TPM,
// the audit log, the state directory): a request waits for them without
// spending an attempt, however long it takes.
bool waits(const Error& e);

}  // namespace certcustody::pipeline
