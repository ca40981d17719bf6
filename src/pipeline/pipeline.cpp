#include "pipeline/pipeline.h"

#include <openssl/rand.h>
#include <openssl/x509.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "ca/ca_factory.h"
#include "ca/resilience.h"
#include "config/profiles.h"
#include "pfx/enveloped_data.h"
#include "pfx/pkcs12_builder.h"
#include "common/file_lock.h"
#include "pipeline/fault.h"
#include "pipeline/owner.h"
#include "pipeline/sealed.h"
#include "pipeline/user_key.h"

namespace certcustody::pipeline {
namespace {

using store::State;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void log_line(const std::string& id, const std::string& text) {
  std::fprintf(stderr, "certcustody: request %s: %s\n", id.c_str(), text.c_str());
}

std::string bytes_text(std::span<const std::uint8_t> b) { return std::string(b.begin(), b.end()); }
Bytes text_bytes(const std::string& s) { return Bytes(s.begin(), s.end()); }
std::span<const std::uint8_t> as_span(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::string get(const store::Artifacts& a, const std::string& name) {
  auto it = a.find(name);
  return it == a.end() ? std::string{} : it->second;
}

std::string random_transaction_id() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) return {};
  return "cc-" + to_hex_lower(b);
}

Result<X509Ptr> certificate_of(const std::string& der, const std::string& what) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  X509Ptr c(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!c) return openssl_error("pipeline.certificate_invalid", "the stored " + what + " does not decode",
                               "the request store is damaged: restore it from backup");
  return c;
}

// The chain is kept as the CA's certificates, DER, one after another.
Result<std::vector<X509Ptr>> chain_of(const std::string& der) {
  std::vector<X509Ptr> out;
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  const unsigned char* end = p + der.size();
  while (p < end) {
    X509Ptr c(d2i_X509(nullptr, &p, static_cast<long>(end - p)));
    if (!c) return openssl_error("pipeline.certificate_invalid", "the stored chain does not decode",
                                 "the request store is damaged: restore it from backup");
    out.push_back(std::move(c));
  }
  return out;
}

// What the status record shows of a certificate, made once when it arrives.
std::string certificate_summary(X509* cert) {
  auto sha256 = RecipientSet::thumbprint(cert);
  return nlohmann::json{{"serial", ca::serial_hex(cert)},
                        {"subject", policy::subject_text(X509_get_subject_name(cert))},
                        {"sha256", sha256 ? *sha256 : ""}}
      .dump();
}

std::string joined(const std::vector<Bytes>& certs) {
  std::string out;
  for (const Bytes& c : certs) out.append(c.begin(), c.end());
  return out;
}

Error outcome_unknown(const std::string& id, const std::string& ca, const std::string& txid) {
  return Error{"ca.outcome_unknown",
               "request " + id + " was sent to CA " + ca + " (transaction " + txid +
                   ") and its answer was never recorded; this CA cannot tell a re-sent request from a new one",
               "look the request up at the CA (its CSR public key is in `certcustody status " + id +
                   " --json`), revoke a certificate issued for it, then submit the request again under a new id"};
}

}  // namespace

bool waits(const Error& e) {
  // The connector's own resources away: the token or TPM, the audit log, the
  // state directory. No CA was asked, so no attempt is spent; requests wait
  // for as long as it takes, and the daemon says why (status, audit log).
  static const char* const kWaits[] = {
      "custody.token_not_present", "custody.module_unavailable", "custody.key_vanished", "custody.counter_vanished",
      "custody.device_error",      "custody.session_lost",       "custody.module_not_initialized",
      "custody.too_many_sessions", "custody.host_memory",        "custody.token_error",
      "custody.tpm_unreachable",   "custody.tpm_busy",           "custody.tpm_slots_full",
      "custody.tpm_lockout",       "custody.tpm_auth_failed",    "audit.unwritable",
      "spool.unwritable",          "store.busy"};
  for (const char* c : kWaits)
    if (e.code == c) return true;
  return false;
}

bool retryable(const Error& e) {
  static const char* const kMore[] = {"ca.circuit_open"};
  if (ca::is_transient(e) || waits(e)) return true;
  for (const char* c : kMore)
    if (e.code == c) return true;
  return false;
}

// ---------------------------------------------------------------- Runtime

const policy::Profile* Runtime::profile(const std::string& name) const {
  for (const auto& p : profiles)
    if (p.name == name) return &p;
  return nullptr;
}

Result<ca::CaClient*> Runtime::ca(const std::string& name) const {
  auto it = cas.find(name);
  if (it == cas.end())
    return Error{"config.ca_unknown", cfg.path + " has no usable [ca." + name + "] (type and url)",
                 "configure the CA the profile names, then reload (SIGHUP)"};
  return it->second.get();
}

Result<policy::TemplatePolicy> Runtime::template_policy(const policy::Profile& p) const {
  const std::string key = p.ca + "\n" + p.template_id;
  {
    std::lock_guard l(tpl_mu_);
    if (auto it = tpl_cache_.find(key); it != tpl_cache_.end()) return it->second;
  }
  CC_TRY_ASSIGN(ca::CaClient * client, ca(p.ca));
  CC_TRY_ASSIGN(policy::TemplatePolicy t, client->fetch_policy(p.template_id));
  std::lock_guard l(tpl_mu_);
  tpl_cache_[key] = t;
  return t;
}

Result<std::shared_ptr<Runtime>> make_runtime(const Config& cfg, const std::function<Result<TlsIdentity>()>& ra) {
  if (!cfg.pipeline)
    return Error{"config.missing_key", cfg.path + " has no [pipeline] section",
                 "add [pipeline] with kek and recipients (see hsm-config/certcustody.toml.example)"};
  auto rt = std::make_shared<Runtime>();
  rt->cfg = cfg;
  rt->pcfg = *cfg.pipeline;
  CC_TRY_ASSIGN(rt->profiles, load_profiles(cfg.path));
  CC_TRY_ASSIGN(rt->recipients, RecipientSet::load(rt->pcfg.recipients));
  std::optional<TlsIdentity> identity;
  for (const auto& p : rt->profiles) {
    if (rt->cas.count(p.ca) != 0) continue;
    CC_TRY_ASSIGN(const CaEndpointConfig* ca_cfg, cfg.ca(p.ca));
    if (!identity) {
      CC_TRY_ASSIGN(TlsIdentity loaded, ra());
      identity = std::move(loaded);
    }
    TlsIdentity copy;
    EVP_PKEY_up_ref(identity->key.get());
    copy.key.reset(identity->key.get());
    if (identity->certificate) {
      X509_up_ref(identity->certificate.get());
      copy.certificate.reset(identity->certificate.get());
    }
    CC_TRY_ASSIGN(rt->cas[p.ca], ca::make_ca_client(*ca_cfg, std::move(copy)));
  }
  return rt;
}

std::string status_json(const store::RequestRecord& r, const store::Artifacts& a) {
  nlohmann::json j = {{"version", 1},
                      {"id", r.id},
                      {"profile", r.profile},
                      {"state", std::string(store::state_name(r.state))},
                      {"received_at_ms", r.received_at_ms},
                      {"updated_at_ms", r.updated_at_ms},
                      {"attempts", r.attempts}};
  if (!r.error_code.empty())
    j["error"] = {{"code", r.error_code}, {"what", r.error_what}, {"remedy", r.error_remedy}};
  if (!r.ca_request_id.empty()) j["ca_request_id"] = r.ca_request_id;
  if (auto tx = get(a, "transaction_id"); !tx.empty()) j["transaction_id"] = tx;
  // How to find the request at a CA that knows no transaction id (MS CA, CMP).
  if (auto spki = get(a, "csr_public_key_sha256"); !spki.empty()) j["csr_public_key_sha256"] = spki;
  if (auto cert = get(a, "certificate_summary"); !cert.empty()) {
    auto parsed = nlohmann::json::parse(cert, nullptr, false);
    if (!parsed.is_discarded()) j["certificate"] = parsed;
  }
  if (auto rev = get(a, "revocation"); !rev.empty()) {
    auto parsed = nlohmann::json::parse(rev, nullptr, false);
    if (!parsed.is_discarded()) j["revocation"] = parsed;
  }
  return j.dump(2) + "\n";
}

// ---------------------------------------------------------------- Pipeline

Pipeline::Pipeline(store::RequestStore& store, KeyCustody& custody, SpoolPaths spool, std::shared_ptr<const Runtime> rt)
    : store_(store), custody_(custody), spool_(std::move(spool)), rt_(std::move(rt)) {}

void Pipeline::set_runtime(std::shared_ptr<const Runtime> rt) {
  std::lock_guard l(rt_mu_);
  rt_ = std::move(rt);
}

std::shared_ptr<const Runtime> Pipeline::runtime() const {
  std::lock_guard l(rt_mu_);
  return rt_;
}

// The status record (and revocation record) written out from the store as it
// is now, under a lock that every process writing them takes: the last
// writer always read the newest version, so a slower writer never puts back
// an older one. Then that version is marked written; a version not marked
// (a process killed in between) is written by publish_due().
Status Pipeline::publish(const std::string& id) {
  const std::string lock_path = spool_.root + "/status.lock";
  const int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return Error{"spool.unwritable", "cannot open " + lock_path, "let the service user write the state directory"};
  const FileLock lock(fd);
  const auto written = [&]() -> Status {
    CC_TRY_ASSIGN(store::RequestRecord r, store_.get(id));
    CC_TRY_ASSIGN(store::Artifacts a, store_.artifacts(id));
    CC_TRY(write_atomic(spool_, spool_.outgoing, id + ".status.json", status_json(r, a)));
    if (auto rev = get(a, "revocation"); !rev.empty()) {
      auto parsed = nlohmann::json::parse(rev, nullptr, false);
      CC_TRY(write_atomic(spool_, spool_.outgoing, id + ".revocation.json",
                          (parsed.is_discarded() ? nlohmann::json(rev) : parsed).dump(2) + "\n"));
    }
    return store_.status_published(id, r.status_version);
  }();
  ::close(fd);
  return written;
}

// After a step's store change: the record goes out now, or (if writing it
// fails) at the daemon's next maintenance. The step itself has happened.
void Pipeline::publish_or_later(const std::string& id) {
  if (Status s = publish(id); !s) log_line(id, "status record not written now, later: " + s.error().to_string());
}

Status Pipeline::publish_due() {
  CC_TRY_ASSIGN(std::vector<store::RequestRecord> due, store_.status_due());
  for (const auto& r : due)
    if (r.state != State::processing) CC_TRY(publish(r.id));  // a worker's own record goes out when it is done
  return {};
}

Status Pipeline::record(const audit::Event& e) {
  if (audit_ == nullptr) return {};
  return audit_->append(e);
}

Status Pipeline::fail(const std::string& id, State from, const Error& e) {
  log_line(id, "failed: " + e.to_string());
  // Recorded first: a kill in between leaves the request to be failed again
  // (a second record), never failed without one.
  CC_TRY(record({.type = "request.failed", .request_id = id, .outcome = "failed", .error_code = e.code}));
  CC_TRY(store_.transition(id, from, State::failed, {.error = e, .status_changed = true}));
  publish_or_later(id);
  return {};
}

// ---------------------------------------------------------------- intake

Status Pipeline::record_bad_file(const std::string& path, const std::string& text, const Error& e) {
  std::string name = path.substr(path.rfind('/') + 1);
  const std::string id = name.substr(0, name.size() - 5);  // without ".json"
  if (valid_request_id(id)) {
    CC_TRY_ASSIGN(Bytes sha, digest("SHA256", as_span(text)));
    if (store_.refuse(id, to_hex_lower(sha), e)) {  // recorded now, or by a run that stopped before the unlink
      log_line(id, "failed: " + e.to_string());
      CC_TRY(record({.type = "request.refused", .request_id = id, .outcome = "failed", .error_code = e.code,
                     .detail = {{"body_sha256", to_hex_lower(sha)}}}));
      publish_or_later(id);
      ::unlink(path.c_str());
      return {};
    }
  }
  // No record can hold it (an id already taken, or not an id): kept aside with the reason.
  log_line(id, "rejected file " + name + ": " + e.to_string());
  CC_TRY(write_atomic(spool_, spool_.rejected, name + ".error.txt", e.to_string() + "\n"));
  if (std::rename(path.c_str(), (spool_.rejected + "/" + name).c_str()) != 0)
    return Error{"spool.unwritable", "cannot move " + path + " to " + spool_.rejected,
                 "let the service user write the state directory"};
  return {};
}

// One claimed file into the store. On an error it stays in claimed/ and is
// taken again at the next scan (the store and the audit log take the same
// request twice without harm).
Status Pipeline::intake_file(const std::string& path, const Runtime& rt) {
  auto text = read_spool_file(path, rt.pcfg.max_request_bytes);
  // Too large, or unreadable (e.g. dropped with mode 0): failed, never retried forever.
  if (!text) return record_bad_file(path, "", text.error());
  auto checked = [&]() -> Result<std::pair<std::string, std::string>> {
    CC_TRY_ASSIGN(policy::RequestDocument d, policy::parse_request_document(*text));
    const std::string name = path.substr(path.rfind('/') + 1);
    const std::string id = d.id.value_or(name.substr(0, name.size() - 5));
    if (!valid_request_id(id))
      return Error{"request.id_invalid", "request id \"" + id + "\" is not 1-128 characters of A-Z a-z 0-9 . _ @ -",
                   "give the request a valid id"};
    if (!d.profile)
      return Error{"request.profile_missing", "the request names no \"profile\"",
                   "add \"profile\": the [profile.<name>] to issue under"};
    if (rt.profile(*d.profile) == nullptr)
      return Error{"request.profile_unknown", "no [profile." + *d.profile + "] is configured",
                   "use one of the configured profiles (certcustody policy profiles)"};
    if (!d.recipient)
      return Error{"request.recipient_missing", "the request names no \"recipient\" (version 2 requests do)",
                   "add \"recipient\": \"sha256:<thumbprint of a [pipeline] recipients certificate>\""};
    CC_TRY_ASSIGN(X509 * recipient, rt.recipients.find(*d.recipient));
    CC_TRY(pfx::check_recipient(recipient));  // an expired recipient: failed now, not issued and stuck
    return std::pair{id, *d.profile};
  }();
  if (!checked) return record_bad_file(path, *text, checked.error());
  CC_TRY_ASSIGN(Bytes sha, digest("SHA256", as_span(*text)));
  auto rec = store_.receive(checked->first, checked->second, to_hex_lower(sha), *text);
  if (!rec) {
    if (rec.error().code != "store.request_conflict") return rec.error();
    return record_bad_file(path, *text, rec.error());
  }
  CC_TRY(record({.type = "request.received",
                 .request_id = checked->first,
                 .detail = {{"profile", checked->second}, {"body_sha256", to_hex_lower(sha)}}}));
  fault_point("after_intake");
  ::unlink(path.c_str());
  return {};
}

// Every claimed file, oldest first; one that cannot be taken in now (the
// audit log or the store failing) does not hold up the others.
Result<int> Pipeline::intake() {
  auto rt = runtime();
  CC_TRY_ASSIGN(std::vector<std::string> files, spool_claim(spool_));
  std::optional<Error> first;
  for (const std::string& path : files)
    if (Status s = intake_file(path, *rt); !s && !first) first = s.error();
  if (first) return *first;
  return static_cast<int>(files.size());
}

// ---------------------------------------------------------------- recovery

// A request in processing whose worker is gone (killed) or gave up on an
// error goes back to where it can resume safely: issued once its certificate
// is stored, received while nothing was sent, pending at the CA once it has a
// ticket, received again for a CA that deduplicates (the same transaction
// id), else failed as ca.outcome_unknown: a CA that cannot deduplicate is
// never sent a request twice. `why`: the error the worker met (retried after
// retry_interval_ms, without spending an attempt when it is a wait).
Status Pipeline::put_back(const store::RequestRecord& r, const Runtime& rt, const std::optional<Error>& why) {
  CC_TRY_ASSIGN(store::Artifacts a, store_.artifacts(r.id));
  store::Update u{.error = why, .not_before_ms = why ? now_ms() + rt.pcfg.retry_interval_ms : 0};
  State to = State::received;
  if (a.count("certificate") != 0) {
    to = State::issued;
    u.status_changed = true;
  } else if (get(a, "submitted") != "1") {
    u.refund_attempt = !why || waits(*why);
  } else if (!r.ca_request_id.empty()) {
    to = State::pending_ca;
  } else {
    const policy::Profile* p = rt.profile(r.profile);
    bool idempotent = false;
    if (p != nullptr)
      if (auto client = rt.ca(p->ca)) idempotent = (*client)->submit_is_idempotent();
    if (!idempotent)  // not sent again: same transaction id for those that deduplicate
      return fail(r.id, State::processing,
                  outcome_unknown(r.id, p != nullptr ? p->ca : r.profile, get(a, "transaction_id")));
  }
  CC_TRY(store_.transition(r.id, State::processing, to, u));
  if (u.status_changed) publish_or_later(r.id);
  return {};
}

Status Pipeline::reclaim_orphans() {
  auto rt = runtime();
  CC_TRY_ASSIGN(std::vector<store::RequestRecord> stuck, store_.list(State::processing));
  for (const auto& r : stuck) {
    if (owner_alive(r.owner)) continue;  // its worker (this daemon, or a CLI command) is on it
    Status s = put_back(r, *rt, std::nullopt);
    if (!s && s.error().code == "store.state_conflict") continue;  // taken back by another process first
    CC_TRY(s);
    log_line(r.id, "resumed: the process that had it (" + (r.owner.empty() ? std::string("unknown") : r.owner) +
                       ") is gone");
  }
  return {};
}

Status Pipeline::maintain() {
  CC_TRY(clean_temp_files(spool_));
  CC_TRY(reclaim_orphans());
  return publish_due();
}

Status Pipeline::recover() { return maintain(); }

// ---------------------------------------------------------------- work

Result<bool> Pipeline::work_once() {
  auto rt = runtime();
  for (State from : {State::issued, State::pending_ca, State::received}) {
    CC_TRY_ASSIGN(auto claimed, store_.claim_next(from, State::processing));
    if (!claimed) continue;
    fault_point("after_claim");
    if (Status s = process(*claimed, *rt); !s) release(claimed->id, *rt, s.error());
    return true;
  }
  return false;
}

Status Pipeline::process(const store::RequestRecord& r, const Runtime& rt) {
  CC_TRY_ASSIGN(store::Artifacts a, store_.artifacts(r.id));
  if (a.count("certificate") != 0) return deliver(r, rt, a);
  if (rt.profile(r.profile) == nullptr)
    return fail(r.id, State::processing,
                Error{"request.profile_unknown", "profile " + r.profile + " is no longer configured",
                      "configure it again and submit the request under a new id"});
  if (get(a, "submitted") == "1" && !r.ca_request_id.empty()) return poll(r, rt, a);
  return enroll(r, rt, a);
}

// A step that stopped on an error before settling the request (a store,
// audit or token failure on the way): the request is not left in
// processing, where only a dead owner's requests are taken back.
void Pipeline::release(const std::string& id, const Runtime& rt, const Error& e) {
  log_line(id, "left for a later attempt: " + e.to_string());
  auto r = store_.get(id);
  if (!r || r->state != State::processing) return;  // settled after all
  if (Status s = put_back(*r, rt, e); !s)
    log_line(id, "stays in processing until the daemon's next maintenance: " + s.error().to_string());
}

// A failure on the way: another attempt later when it may pass, else failed.
// A wait (the token away, ...) never fails a request and spends no attempt.
Status Pipeline::settle(const store::RequestRecord& r, const Runtime& rt, const Error& e) {
  const bool wait = waits(e);
  if (!retryable(e) || (!wait && r.attempts >= static_cast<int>(rt.pcfg.max_attempts)))
    return fail(r.id, State::processing, e);
  const State back = r.ca_request_id.empty() ? State::received : State::pending_ca;
  log_line(r.id, (wait ? "waiting: " : "attempt " + std::to_string(r.attempts) + " met ") + e.code + "; again in " +
                     std::to_string(rt.pcfg.retry_interval_ms) + " ms");
  return store_.transition(r.id, State::processing, back,
                           {.error = e, .not_before_ms = now_ms() + rt.pcfg.retry_interval_ms,
                            .refund_attempt = wait});
}

Status Pipeline::enroll(const store::RequestRecord& r, const Runtime& rt, store::Artifacts& a) {
  const policy::Profile& profile = *rt.profile(r.profile);
  CC_TRY_ASSIGN(ca::CaClient * client, rt.ca(profile.ca));
  CC_TRY_ASSIGN(policy::RequestDocument doc, policy::parse_request_document(get(a, "request")));
  EvpPkeyPtr key;  // made here: handed on to delivery, not unsealed again
  if (a.count("csr") == 0) {
    auto tpl = rt.template_policy(profile);
    if (!tpl) return settle(r, rt, tpl.error());
    auto spec = policy::evaluate(profile, doc.attributes, *tpl);
    if (!spec) {
      CC_TRY(record({.type = "policy.decision", .request_id = r.id, .outcome = "failed",
                     .error_code = spec.error().code, .detail = {{"profile", profile.name}}}));
      return fail(r.id, State::processing, spec.error());
    }
    if (Status s = record({.type = "policy.decision", .request_id = r.id,
                           .detail = {{"profile", profile.name}, {"template", profile.template_id}}});
        !s)
      return settle(r, rt, s.error());
    CC_TRY_ASSIGN(key, generate_user_key(spec->key_type));
    CC_TRY_ASSIGN(Bytes csr, build_csr(*spec, key.get()));
    CC_TRY_ASSIGN(SecureBytes pk8, private_key_pkcs8(key.get()));
    auto sealed = seal_at_rest(custody_, rt.pcfg.kek, r.id, "user-key", pk8);
    if (!sealed) return settle(r, rt, sealed.error());
    CC_TRY_ASSIGN(Bytes spki, digest("SHA256", public_key_der(key.get())));
    store::Artifacts made{{"csr", bytes_text(csr)},
                          {"key", *sealed},
                          {"transaction_id", random_transaction_id()},
                          {"csr_public_key_sha256", to_hex_lower(spki)}};
    // A CA that answers a repeated transaction id with the same result may
    // be sent the request again after a crash: mark it submitted in the same
    // commit. For the others the mark comes alone, right before the call.
    if (client->submit_is_idempotent()) made["submitted"] = "1";
    CC_TRY(store_.put(r.id, State::processing, made));
    a.insert(made.begin(), made.end());
    CC_TRY(record({.type = "request.csr_made", .request_id = r.id,
                   .detail = {{"key_type", key_type_name(spec->key_type)}, {"csr_public_key_sha256", to_hex_lower(spki)}}}));
    fault_point("after_csr");
  }
  if (get(a, "submitted") == "1" && !client->submit_is_idempotent())
    return fail(r.id, State::processing, outcome_unknown(r.id, profile.ca, get(a, "transaction_id")));
  if (get(a, "submitted") != "1") CC_TRY(store_.put(r.id, State::processing, {{"submitted", "1"}}));
  fault_point("before_submit");
  if (Status s = record({.type = "ca.submitted", .request_id = r.id,
                         .detail = {{"ca", profile.ca}, {"transaction_id", get(a, "transaction_id")}}});
      !s) {
    if (get(a, "submitted") == "1" && !client->submit_is_idempotent())
      CC_TRY(store_.put(r.id, State::processing, {{"submitted", "0"}}));  // not sent: may be sent later
    return settle(r, rt, s.error());
  }
  ca::SubmitRequest req{profile.template_id, text_bytes(get(a, "csr")), get(a, "transaction_id"), {}};
  if (doc.attributes.common_name) req.attributes.emplace_back("common_name", *doc.attributes.common_name);
  if (doc.attributes.email) req.attributes.emplace_back("mail", *doc.attributes.email);
  auto answer = client->submit(req);
  fault_point("after_submit");
  if (!answer && !ca::may_have_reached_ca(answer.error()))
    CC_TRY(store_.put(r.id, State::processing, {{"submitted", "0"}}));  // never arrived: may be sent again
  else if (!answer && ca::leaves_outcome_unknown(answer.error()) && !client->submit_is_idempotent())
    return fail(r.id, State::processing, outcome_unknown(r.id, profile.ca, get(a, "transaction_id")));
  return take_answer(r, rt, std::move(answer), key.get());
}

Status Pipeline::poll(const store::RequestRecord& r, const Runtime& rt, store::Artifacts& a) {
  const policy::Profile& profile = *rt.profile(r.profile);
  CC_TRY_ASSIGN(ca::CaClient * client, rt.ca(profile.ca));
  ca::PendingTicket t{r.ca_request_id, r.ca_poll_uri, get(a, "ticket_message"), get(a, "transaction_id"),
                      profile.template_id, text_bytes(get(a, "csr"))};
  return take_answer(r, rt, client->poll(t), nullptr);
}

Status Pipeline::take_answer(const store::RequestRecord& r, const Runtime& rt, Result<ca::Enrollment> answer,
                             EVP_PKEY* key) {
  if (!answer) {
    CC_TRY(record({.type = "ca.result", .request_id = r.id, .outcome = "failed", .error_code = answer.error().code}));
    return settle(r, rt, answer.error());
  }
  const ca::Enrollment& e = *answer;
  if (e.status == ca::Enrollment::Status::pending) {
    log_line(r.id, "pending at the CA as " + e.ticket.request_id);
    CC_TRY(record({.type = "ca.result", .request_id = r.id,
                   .detail = {{"status", "pending"}, {"ca_request_id", e.ticket.request_id}}}));
    CC_TRY(store_.transition(r.id, State::processing, State::pending_ca,
                             {.ca_request_id = e.ticket.request_id,
                              .ca_poll_uri = e.ticket.poll_uri,
                              .not_before_ms = now_ms() + rt.pcfg.poll_interval_ms,
                              .artifacts = {{"ticket_message", e.ticket.message}},
                              .status_changed = true}));
    publish_or_later(r.id);
    return {};
  }
  CC_TRY_ASSIGN(X509Ptr cert, certificate_of(bytes_text(e.certificate), "certificate"));
  // Stored first, so a certificate in hand is never lost; its ca.result is
  // marked as not yet recorded until delivery stores the PKCS#12, and a run
  // killed in between records it when it delivers (resumed as issued).
  const store::Artifacts issued{{"certificate", bytes_text(e.certificate)},
                                {"chain", joined(e.chain)},
                                {"certificate_summary", certificate_summary(cert.get())},
                                {"ca_result_recorded", "0"}};
  CC_TRY(store_.put(r.id, State::processing, issued));
  fault_point("after_issue");
  CC_TRY(record_issued(r.id, cert.get()));
  log_line(r.id, "issued, serial " + ca::serial_hex(cert.get()));
  CC_TRY_ASSIGN(store::Artifacts a, store_.artifacts(r.id));
  a["ca_result_recorded"] = "1";
  return deliver(r, rt, a, {key, cert.get()});
}

Status Pipeline::record_issued(const std::string& id, X509* cert) {
  auto cert_sha256 = RecipientSet::thumbprint(cert);
  return record({.type = "ca.result", .request_id = id,
                 .detail = {{"status", "issued"},
                            {"serial", ca::serial_hex(cert)},
                            {"certificate_sha256", cert_sha256 ? *cert_sha256 : ""}}});
}

// ---------------------------------------------------------------- delivery

Status Pipeline::deliver(const store::RequestRecord& r, const Runtime& rt, store::Artifacts& a, InHand in_hand) {
  auto made = [&]() -> Status {
    const policy::Profile* profile = rt.profile(r.profile);
    if (profile == nullptr)
      return Error{"request.profile_unknown", "profile " + r.profile + " is no longer configured",
                   "configure it again, then `certcustody redeliver " + r.id + "`"};
    CC_TRY_ASSIGN(policy::RequestDocument doc, policy::parse_request_document(get(a, "request")));
    CC_TRY_ASSIGN(X509 * recipient, rt.recipients.find(doc.recipient.value_or("")));
    X509Ptr cert_owned;
    if (in_hand.cert == nullptr) {
      CC_TRY_ASSIGN(cert_owned, certificate_of(get(a, "certificate"), "certificate"));
      in_hand.cert = cert_owned.get();
    }
    if (get(a, "ca_result_recorded") == "0") {  // a run killed between storing and recording it
      CC_TRY(record_issued(r.id, in_hand.cert));
      a["ca_result_recorded"] = "1";
    }
    SecureBytes p12, password;
    if (a.count("pfx") == 0) {
      EvpPkeyPtr key_owned;
      if (in_hand.key == nullptr) {
        CC_TRY_ASSIGN(SecureBytes pk8, unseal_at_rest(custody_, rt.pcfg.kek, r.id, "user-key", get(a, "key")));
        CC_TRY_ASSIGN(key_owned, private_key_from_pkcs8(pk8));
        in_hand.key = key_owned.get();
      }
      CC_TRY_ASSIGN(std::vector<X509Ptr> chain, chain_of(get(a, "chain")));
      CC_TRY_ASSIGN(pfx::PfxFormat format, pfx::parse_pfx_format(profile->pfx_format));
      password = pfx::random_password();
      CC_TRY_ASSIGN(p12, pfx::build_pkcs12(in_hand.key, in_hand.cert, chain, r.id, password, format));
      CC_TRY_ASSIGN(std::string sealed_pfx, seal_at_rest(custody_, rt.pcfg.kek, r.id, "pfx", p12));
      CC_TRY_ASSIGN(std::string sealed_pw, seal_at_rest(custody_, rt.pcfg.kek, r.id, "pfx-password", password));
      CC_TRY(store_.put(r.id, State::processing,
                        {{"pfx", sealed_pfx}, {"password", sealed_pw}, {"ca_result_recorded", "1"}}));
      fault_point("after_bundle");
    } else {
      CC_TRY_ASSIGN(p12, unseal_at_rest(custody_, rt.pcfg.kek, r.id, "pfx", get(a, "pfx")));
      CC_TRY_ASSIGN(password, unseal_at_rest(custody_, rt.pcfg.kek, r.id, "pfx-password", get(a, "password")));
    }
    CC_TRY_ASSIGN(Bytes env_pw, pfx::envelope_for(custody_, recipient, password));
    CC_TRY_ASSIGN(Bytes env_pfx, pfx::envelope_for(custody_, recipient, p12));
    CC_TRY(record({.type = "pfx.wrapped", .request_id = r.id,
                   .detail = {{"recipient", doc.recipient.value_or("")}, {"pfx_format", profile->pfx_format}}}));
    CC_TRY(write_atomic(spool_, spool_.outgoing, r.id + ".password.p7m", bytes_text(env_pw)));
    CC_TRY(write_atomic(spool_, spool_.outgoing, r.id + ".pfx.p7m", bytes_text(env_pfx)));
    fault_point("after_write");
    return {};
  }();
  // Recorded before the state moves: a kill in between delivers it again
  // (a second record), never leaves it delivered without one.
  if (made) made = record({.type = "request.delivered", .request_id = r.id});
  if (!made) {
    // The certificate exists: an issued request never fails for want of delivery.
    log_line(r.id, "issued, not yet delivered: " + made.error().to_string());
    CC_TRY(store_.transition(r.id, State::processing, State::issued,
                             {.error = made.error(),
                              .not_before_ms = now_ms() + rt.pcfg.retry_interval_ms,
                              .status_changed = true}));
    publish_or_later(r.id);
    return {};
  }
  CC_TRY(store_.transition(r.id, State::processing, State::delivered,
                           {.error = Error{"", "", ""},
                            .artifacts = {{"delivered_at_ms", std::to_string(now_ms())}},
                            .status_changed = true}));
  fault_point("after_delivered");
  log_line(r.id, "delivered to " + spool_.outgoing + "/" + r.id + ".pfx.p7m");
  publish_or_later(r.id);
  return {};
}

Status Pipeline::redeliver(const std::string& id) {
  CC_TRY_ASSIGN(store::RequestRecord r, store_.get(id));
  if (r.state == State::delivered) {
    CC_TRY(store_.transition(id, State::delivered, State::issued));
  } else if (r.state != State::issued) {
    return Error{"pipeline.not_deliverable",
                 "request " + id + " is " + std::string(store::state_name(r.state)) + "; only issued or delivered "
                 "requests have a certificate to deliver",
                 "see `certcustody status " + id + "`"};
  }
  if (Status s = store_.transition(id, State::issued, State::processing); !s) {
    if (s.error().code == "store.state_conflict")
      return Error{"pipeline.redelivery_taken", "the running daemon took request " + id + " first",
                   "none: it delivers it (certcustody status " + id + ")"};
    return s;
  }
  CC_TRY_ASSIGN(r, store_.get(id));
  CC_TRY_ASSIGN(store::Artifacts a, store_.artifacts(id));
  auto rt = runtime();
  CC_TRY(record({.type = "request.redelivery", .request_id = id}));
  CC_TRY(deliver(r, *rt, a));
  CC_TRY_ASSIGN(r, store_.get(id));
  if (r.state != State::delivered)
    return Error{r.error_code, r.error_what, r.error_remedy};
  return {};
}

Status Pipeline::revoke(const std::string& id, ca::RevocationReason reason) {
  CC_TRY_ASSIGN(store::RequestRecord r, store_.get(id));
  CC_TRY_ASSIGN(store::Artifacts a, store_.artifacts(id));
  if (a.count("certificate") == 0 || (r.state != State::issued && r.state != State::delivered))
    return Error{"pipeline.not_revocable",
                 "request " + id + " is " + std::string(store::state_name(r.state)) + " and has no certificate to revoke",
                 "see `certcustody status " + id + "`"};
  auto rt = runtime();
  const policy::Profile* profile = rt->profile(r.profile);
  if (profile == nullptr)
    return Error{"request.profile_unknown", "profile " + r.profile + " is no longer configured",
                 "configure it again (its CA is where the certificate is revoked)"};
  CC_TRY_ASSIGN(ca::CaClient * client, rt->ca(profile->ca));
  Status s = client->revoke({text_bytes(get(a, "certificate")), reason, get(a, "transaction_id") + "-revoke"});
  CC_TRY(record({.type = "certificate.revoked", .request_id = id, .outcome = s ? "ok" : "failed",
                 .error_code = s ? "" : s.error().code,
                 .detail = {{"reason", std::string(ca::reason_name(reason))}, {"ca", profile->ca}}}));
  nlohmann::json rec = {{"status", s ? "revoked" : "failed"},
                        {"reason", std::string(ca::reason_name(reason))},
                        {"at_ms", now_ms()}};
  if (!s) rec["error"] = {{"code", s.error().code}, {"what", s.error().what}, {"remedy", s.error().remedy}};
  CC_TRY(store_.put(id, r.state, {{"revocation", rec.dump()}}, true));
  CC_TRY(publish(id));
  return s;
}

}  // namespace certcustody::pipeline
