// The issuance pipeline's commands: submit, serve, status, redeliver, revoke.
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <ctime>
#include <thread>

#include "cli/commands.h"
#include "cli/context.h"
#include "pipeline/daemon.h"
#include "pipeline/owner.h"
#include "pipeline/pipeline.h"
#include "pipeline/spool.h"

namespace certcustody::cli {
namespace {

struct PipelineOptions {
  std::string file, id, reason = "unspecified";
  unsigned workers = 0;
  bool until_idle = false, json = false, csr = false;
};

// Everything the pipeline runs on, torn down in reverse order: the pipeline
// and its CA clients before the custody they sign with.
struct PipelineSession {
  Config cfg;
  std::shared_ptr<KeyCustody> custody;
  std::unique_ptr<SharedCustody> shared;
  std::unique_ptr<audit::AuditLog> audit;  // signs through custody: closed before it
  std::unique_ptr<store::RequestStore> store;
  std::unique_ptr<pipeline::Pipeline> pipeline;
};

std::string store_path(const Config& cfg) { return cfg.state.dir + "/requests.db"; }

Result<std::shared_ptr<pipeline::Runtime>> build_runtime(const Globals& g, const std::string& ra_key) {
  CC_TRY_ASSIGN(Config cfg, load(g));
  return pipeline::make_runtime(cfg, [&]() -> Result<TlsIdentity> {
    if (ra_key.empty())
      return Error{"config.missing_key", cfg.path + ": key ra.key is required to reach a CA",
                   "add [ra] key = \"pkcs11:token=…;object=ra\" (or \"tpm2:object=ra\" with the TPM)"};
    return load_token_identity(ra_key);
  });
}

// `daemon`: the audit log checkpoints with the audit key (serve); the other
// commands only append.
Status open_pipeline(const Globals& g, PipelineSession& s, const std::string& command, bool daemon) {
  CC_TRY_ASSIGN(s.cfg, load(g));
  auto opened = open_custody(s.cfg);
  const Status login = opened ? (*opened)->connect() : opened.status();
  if (!login) {  // recorded in an append-only log (the audit key is in the token), not tried again
    CC_TRY_ASSIGN(auto log, open_audit_log(s.cfg, command));
    CC_TRY(log->append(outcome_event("token.login", login, {{"token", custody_location(s.cfg)}, {"config_sha256", s.cfg.sha256}})));
    return login.error();
  }
  s.custody = std::move(opened).value();
  s.shared = std::make_unique<SharedCustody>(s.custody, s.cfg.custody.token);
  CC_TRY_ASSIGN(s.audit, open_audit_log(s.cfg, command, daemon ? s.custody.get() : nullptr));
  CC_TRY(s.audit->append(outcome_event("token.login", {}, {{"token", custody_location(s.cfg)}, {"config_sha256", s.cfg.sha256}})));
  CC_TRY_ASSIGN(auto rt, build_runtime(g, s.cfg.ra.key));
  const auto spool = pipeline::spool_paths(s.cfg.state.dir);
  CC_TRY(pipeline::ensure_spool(spool));
  CC_TRY_ASSIGN(s.store, store::RequestStore::open(store_path(s.cfg), {.owner = pipeline::this_process_owner()}));
  s.pipeline = std::make_unique<pipeline::Pipeline>(*s.store, *s.custody, spool, std::move(rt));
  s.pipeline->set_audit(s.audit.get());
  return {};
}

std::string new_request_id() {
  unsigned char b[12];
  if (RAND_bytes(b, sizeof b) != 1) return "request-" + std::to_string(std::time(nullptr));
  return "r-" + to_hex_lower(b);
}

Status submit(const Globals& g, const PipelineOptions& o) {
  CC_TRY_ASSIGN(Config cfg, load(g));
  CC_TRY_ASSIGN(std::string text, read_text(o.file, "request"));
  // Checked here too, so that a bad file is refused at once rather than failed later.
  CC_TRY_ASSIGN(policy::RequestDocument doc, policy::parse_request_document(text));
  if (doc.id && !o.id.empty() && *doc.id != o.id)
    return Error{"cli.invalid_argument", "--id " + o.id + " differs from the request's own id " + *doc.id,
                 "drop --id, or make them the same"};
  const std::string id = doc.id ? *doc.id : (o.id.empty() ? new_request_id() : o.id);
  const auto spool = pipeline::spool_paths(cfg.state.dir);
  CC_TRY(pipeline::ensure_spool(spool));
  CC_TRY(pipeline::spool_submit(spool, id, text));
  std::printf("%s\n", id.c_str());
  std::fprintf(stderr, "queued request %s in %s (certcustody status %s)\n", id.c_str(), spool.incoming.c_str(),
               id.c_str());
  return {};
}

Status serve(const Globals& g, const PipelineOptions& o) {
  // Private keys of users live in OpenSSL's locked, zeroed heap while in use.
  (void)CRYPTO_secure_malloc_init(4u << 20, 16);
  pipeline::block_daemon_signals();
  PipelineSession s;
  CC_TRY(open_pipeline(g, s, "serve", true));
  CC_TRY_ASSIGN(auto lock, pipeline::DaemonLock::acquire(s.cfg.state.dir));
  pipeline::DaemonOptions d;
  const unsigned configured = o.workers != 0 ? o.workers : s.cfg.pipeline->workers;
  d.workers = configured != 0 ? configured : std::max(1u, std::thread::hardware_concurrency());
  d.workers = std::min(d.workers, s.cfg.custody.sessions);
  d.until_idle = o.until_idle;
  const std::string ra_key = s.cfg.ra.key;
  d.reload = [&g, ra_key] { return build_runtime(g, ra_key); };
  d.audit = s.audit.get();
  d.checkpoint_interval_ms = s.cfg.audit.checkpoint_interval_ms;
  d.rotate_bytes = s.cfg.audit.rotate_bytes;
  d.custody = s.custody.get();
  d.state_dir = s.cfg.state.dir;
  return pipeline::run_daemon(*s.pipeline, *s.store, d);
}

std::string utc(std::int64_t ms) {
  const std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// The PKCS#10 as sent to the CA (public): what to search for at a CA that
// keeps no transaction id, or to hand to a CA operator.
Status print_csr(const std::string& id, const store::Artifacts& a) {
  auto it = a.find("csr");
  if (it == a.end())
    return Error{"request.no_csr", "request " + id + " has no CSR yet", "wait until the daemon has worked on it"};
  const auto* p = reinterpret_cast<const unsigned char*>(it->second.data());
  X509ReqPtr req(d2i_X509_REQ(nullptr, &p, static_cast<long>(it->second.size())));
  if (!req || PEM_write_X509_REQ(stdout, req.get()) != 1)
    return Error{"store.corrupt", "the stored CSR of request " + id + " does not decode",
                 "keep the request store for analysis and submit the request under a new id"};
  return {};
}

// A line on the running daemon, when there is one: is it up, and can it
// reach its keys (serve.status.json, written by the daemon on each change).
void print_daemon_status(const std::string& state_dir) {
  if (!pipeline::DaemonLock::held(state_dir)) {
    std::printf("daemon    not running\n");
    return;
  }
  auto text = read_text(pipeline::daemon_status_path(state_dir), "daemon status");
  auto j = text ? nlohmann::json::parse(*text, nullptr, false) : nlohmann::json();
  if (j.is_discarded() || !j.is_object() || !j.contains("custody")) {
    std::printf("daemon    running\n");
    return;
  }
  const auto& c = j["custody"];
  const std::string where = c.value("location", "");
  if (c.value("available", true)) {
    std::printf("daemon    running (pid %ld); keys at %s: reachable\n", j.value("pid", 0L), where.c_str());
    return;
  }
  const auto& e = c.contains("error") ? c["error"] : nlohmann::json::object();
  std::printf("daemon    running (pid %ld); keys at %s: OUT OF REACH since %s, requests wait\n"
              "          error %s: %s\n          remedy %s\n",
              j.value("pid", 0L), where.c_str(), utc(c.value("since_ms", std::int64_t{0})).c_str(),
              e.value("code", "").c_str(), e.value("what", "").c_str(), e.value("remedy", "").c_str());
}

Status status(const Globals& g, const PipelineOptions& o) {
  CC_TRY_ASSIGN(Config cfg, load(g));
  CC_TRY_ASSIGN(auto st, store::RequestStore::open(store_path(cfg)));
  if (o.id.empty() && (o.csr || o.json))
    return Error{"cli.invalid_argument", "--csr and --json describe one request", "name the request: status ID --json"};
  if (o.id.empty()) {
    print_daemon_status(cfg.state.dir);
    CC_TRY_ASSIGN(auto all, st->list());
    for (const auto& r : all)
      std::printf("%-40s %-10s %-12s %s%s\n", r.id.c_str(), std::string(store::state_name(r.state)).c_str(),
                  r.profile.c_str(), utc(r.updated_at_ms).c_str(),
                  r.error_code.empty() ? "" : ("  " + r.error_code).c_str());
    return {};
  }
  CC_TRY_ASSIGN(store::RequestRecord r, st->get(o.id));
  CC_TRY_ASSIGN(store::Artifacts a, st->artifacts(o.id));
  if (o.csr) return print_csr(r.id, a);
  if (o.json) {
    std::fputs(pipeline::status_json(r, a).c_str(), stdout);
    return {};
  }
  std::printf("request   %s\nprofile   %s\nstate     %s\nreceived  %s\nupdated   %s\nattempts  %d\n", r.id.c_str(),
              r.profile.c_str(), std::string(store::state_name(r.state)).c_str(), utc(r.received_at_ms).c_str(),
              utc(r.updated_at_ms).c_str(), r.attempts);
  if (!r.ca_request_id.empty()) std::printf("CA id     %s\n", r.ca_request_id.c_str());
  if (!r.error_code.empty())
    std::printf("error     %s: %s\nremedy    %s\n", r.error_code.c_str(), r.error_what.c_str(), r.error_remedy.c_str());
  return {};
}

Status redeliver(const Globals& g, const PipelineOptions& o) {
  PipelineSession s;
  CC_TRY(open_pipeline(g, s, "redeliver", false));
  CC_TRY(s.pipeline->redeliver(o.id));
  std::printf("redelivered %s to %s/%s.pfx.p7m (same certificate, newly enveloped)\n", o.id.c_str(),
              pipeline::spool_paths(s.cfg.state.dir).outgoing.c_str(), o.id.c_str());
  return {};
}

Status revoke(const Globals& g, const PipelineOptions& o) {
  CC_TRY_ASSIGN(ca::RevocationReason reason, ca::parse_revocation_reason(o.reason));
  PipelineSession s;
  CC_TRY(open_pipeline(g, s, "revoke", false));
  CC_TRY(s.pipeline->revoke(o.id, reason));
  std::printf("revoked the certificate of request %s (reason %s)\n", o.id.c_str(),
              std::string(ca::reason_name(reason)).c_str());
  return {};
}

}  // namespace

void add_pipeline_commands(CLI::App& app, const Globals& g, Action& action) {
  static PipelineOptions o;
  CLI::App* sub = app.add_subcommand("submit", "queue a PFX request (JSON, docs/request-schema.md) for the daemon");
  sub->add_option("request", o.file, "the request file")->required();
  sub->add_option("--id", o.id, "request id, when the file has none (default: a random one)");
  sub->callback([&g, &action] { action = [&g] { return submit(g, o); }; });

  CLI::App* srv = app.add_subcommand("serve", "the daemon: take requests from the spool and issue them");
  srv->add_option("--workers", o.workers, "worker threads (default: [pipeline] workers, else one per core)");
  srv->add_flag("--until-idle", o.until_idle, "exit once nothing is left to do now");
  srv->callback([&g, &action] { action = [&g] { return serve(g, o); }; });

  CLI::App* st = app.add_subcommand("status", "the state of one request (or a list of all)");
  st->add_option("id", o.id, "request id");
  st->add_flag("--json", o.json, "the status record as the device-management service reads it");
  st->add_flag("--csr", o.csr, "print the request's PKCS#10 (PEM) as sent to the CA");
  st->callback([&g, &action] { action = [&g] { return status(g, o); }; });

  CLI::App* re = app.add_subcommand("redeliver", "write an issued request's PFX out again: same certificate, no CA call");
  re->add_option("id", o.id, "request id")->required();
  re->callback([&g, &action] { action = [&g] { return redeliver(g, o); }; });

  CLI::App* rv = app.add_subcommand("revoke", "revoke an issued request's certificate at its CA");
  rv->add_option("id", o.id, "request id")->required();
  rv->add_option("--reason", o.reason, "RFC 5280 reason: unspecified, keyCompromise, superseded, ...");
  rv->callback([&g, &action] { action = [&g] { return revoke(g, o); }; });
}

}  // namespace certcustody::cli
