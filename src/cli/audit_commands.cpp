// The audit log's commands: the HSM officer's `audit keygen`, and `audit
// verify`, which an auditor runs with the public key alone (no token, no
// configuration).
#include <openssl/pem.h>

#include <cstdio>
#include <vector>

#include "audit/audit_log.h"
#include "cli/commands.h"
#include "cli/context.h"

namespace certcustody::cli {
namespace {

struct AuditOptions {
  std::string label = "audit", key_type = "ec-p256", pubkey_out, counter_label = "audit-counter";
  std::vector<std::string> logs;
  std::vector<std::string> pubkeys;
  std::string previous_head = audit::kGenesis;
  std::uint64_t counter = 0;
  bool require_signed_tail = false;
};

Result<std::string> public_key_pem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), key) != 1)
    return openssl_error("crypto.encode_failed", "cannot write the public key as PEM", "retry");
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

Status keygen(const Globals& g, const AuditOptions& o) {
  CC_TRY_ASSIGN(KeyType type, parse_key_type(o.key_type));
  CC_TRY_ASSIGN(Config cfg, load(g));
  CC_TRY_ASSIGN(auto log, open_audit_log(cfg, "audit keygen"));
  CC_TRY_ASSIGN(auto custody, open_custody_audited(cfg, *log));
  auto made = custody->generate_key_pair(o.label, type, KeyPurpose::sign);
  if (!made) {
    CC_TRY(log->append(outcome_event("key.generated", made.status(), {{"label", o.label}, {"purpose", "audit"}})));
    return made.error();
  }
  const ObjectInfo& key = *made;
  CC_TRY_ASSIGN(EvpPkeyPtr pub, custody->public_key(o.label));
  CC_TRY_ASSIGN(Bytes id, digest("SHA256", public_key_der(pub.get())));
  // A new audit key is the key rotation event: checkpoints from here on name it.
  CC_TRY(log->append(outcome_event(
      "key.generated", {}, {{"label", o.label}, {"key_type", o.key_type}, {"purpose", "audit"}, {"key_id", to_hex_lower(id)}})));
  CC_TRY_ASSIGN(std::string pem, public_key_pem(pub.get()));
  CC_TRY(write_file_atomic(o.pubkey_out, pem, 0644));
  std::printf("generated audit key '%s' (%s) inside token %s: signs only, never extractable\n"
              "public key for auditors: %s (key id %s)\n",
              key.label.c_str(), o.key_type.c_str(), custody_location(cfg).c_str(), o.pubkey_out.c_str(),
              to_hex_lower(id).c_str());
  return {};
}

Status counter(const Globals& g, const AuditOptions& o) {
  CC_TRY_ASSIGN(Config cfg, load(g));
  CC_TRY_ASSIGN(auto custody, open_custody(cfg));
  CC_TRY_ASSIGN(std::uint64_t v, custody->read_counter(o.counter_label));
  std::printf("%llu\n", static_cast<unsigned long long>(v));
  return {};
}

Result<EvpPkeyPtr> read_public_key(const std::string& path) {
  CC_TRY_ASSIGN(std::string pem, read_text(path, "audit public key"));
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  EvpPkeyPtr key(bio ? PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!key)
    return openssl_error("audit.pubkey_invalid", path + " holds no PEM public key",
                         "give the audit public key `certcustody audit keygen` wrote");
  return key;
}

using ull = unsigned long long;

// What was proven and what was not: the signed part, the unsigned tail, and
// whether a rollback (a cut or older copy) could have been seen.
void print_report(const audit::VerifyReport& r, const AuditOptions& o) {
  std::printf("OK: %llu records (seq %llu-%llu), %llu checkpoints, last counter %llu; %llu records after the last "
              "checkpoint\n",
              static_cast<ull>(r.records), static_cast<ull>(r.first_seq), static_cast<ull>(r.last_seq),
              static_cast<ull>(r.checkpoints), static_cast<ull>(r.last_counter), static_cast<ull>(r.unsigned_tail));
  std::printf("signed: seq %llu-%llu, by the checkpoint at seq %llu (counter %llu)\n", static_cast<ull>(r.first_seq),
              static_cast<ull>(r.last_checkpoint_seq - 1), static_cast<ull>(r.last_checkpoint_seq),
              static_cast<ull>(r.last_counter));
  if (r.unsigned_tail != 0)
    std::printf("NOT SIGNED: %llu records (seq %llu-%llu) follow the last checkpoint: whoever can write the file "
                "could have appended or changed them (--require-signed-tail refuses this)\n",
                static_cast<ull>(r.unsigned_tail), static_cast<ull>(r.last_seq - r.unsigned_tail + 1),
                static_cast<ull>(r.last_seq));
  if (o.counter == 0)
    std::printf("rollback NOT checked: without --counter a copy cut before its last checkpoints, or an older copy, "
                "passes too; keep the last counter printed here (or `certcustody audit counter`) and give it as "
                "--counter next time\n");
  else
    std::printf("rollback checked: the last checkpoint's counter %llu is at least --counter %llu\n",
                static_cast<ull>(r.last_counter), static_cast<ull>(o.counter));
  std::printf("head %s\n", r.head.c_str());
}

// The files in order, oldest first: each continues the one before (rotation).
Status verify(const AuditOptions& o) {
  std::vector<EvpPkeyPtr> keys;
  for (const std::string& path : o.pubkeys) {
    CC_TRY_ASSIGN(EvpPkeyPtr key, read_public_key(path));
    keys.push_back(std::move(key));
  }
  std::vector<EVP_PKEY*> successors;
  for (std::size_t i = 1; i < keys.size(); ++i) successors.push_back(keys[i].get());
  audit::VerifyReport r;
  r.head = o.previous_head;
  std::uint64_t records = 0, checkpoints = 0, first_seq = 0, last_checkpoint_seq = 0;
  for (std::size_t i = 0; i < o.logs.size(); ++i) {
    CC_TRY_ASSIGN(std::string text, read_text(o.logs[i], "audit log"));
    const bool last = i + 1 == o.logs.size();
    CC_TRY_ASSIGN(r, audit::verify_log(text, o.logs[i],
                                       {.public_key = keys.front().get(),
                                        .successor_keys = successors,
                                        .min_counter = last ? o.counter : 0,
                                        .previous_head = r.head,
                                        .previous_seq = i == 0 ? 0 : r.last_seq,
                                        .previous_counter = i == 0 ? 0 : r.last_counter,
                                        .previous_key_index = i == 0 ? 0 : r.key_index}));
    if (i == 0) first_seq = r.first_seq;
    records += r.records;
    checkpoints += r.checkpoints;
    if (r.checkpoints != 0) last_checkpoint_seq = r.last_checkpoint_seq;
  }
  r.last_checkpoint_seq = last_checkpoint_seq;
  r.unsigned_tail = r.last_seq - last_checkpoint_seq;
  r.records = records;
  r.checkpoints = checkpoints;
  r.first_seq = first_seq;
  print_report(r, o);
  if (o.require_signed_tail && r.unsigned_tail != 0)
    return Error{"audit.unsigned_tail",
                 std::to_string(r.unsigned_tail) + " records after the last checkpoint are not covered by a signature",
                 "verify again after the daemon's next checkpoint (checkpoint_interval_ms; the daemon signs at start "
                 "and stop too), or start the daemon once if it is stopped"};
  return {};
}

}  // namespace

void add_audit_commands(CLI::App& app, const Globals& g, Action& action) {
  static AuditOptions o;
  CLI::App* audit = app.add_subcommand("audit", "the signed, tamper-evident audit log");
  audit->require_subcommand(1);

  CLI::App* kg = audit->add_subcommand("keygen", "HSM officer: generate the audit signing key inside the token");
  kg->add_option("--label", o.label, "key label (default audit)");
  kg->add_option("--key-type", o.key_type, "ec-p256 (default), ec-p384, rsa2048, rsa3072, rsa4096");
  kg->add_option("--pubkey-out", o.pubkey_out, "where to write the public key (PEM) for auditors")->required();
  kg->callback([&g, &action] { action = [&g] { return keygen(g, o); }; });

  CLI::App* ct = audit->add_subcommand("counter", "the token's audit counter now (give it to verify --counter)");
  ct->add_option("--label", o.counter_label, "counter label (default audit-counter)");
  ct->callback([&g, &action] { action = [&g] { return counter(g, o); }; });

  CLI::App* vf = audit->add_subcommand("verify", "verify a log with the audit public key alone (no token)");
  vf->add_option("--log", o.logs, "the audit log file; repeat for rotated files, oldest first")->required();
  vf->add_option("--pubkey", o.pubkeys, "the audit public key (PEM); repeat after key rotations, oldest first")
      ->required();
  vf->add_option("--counter", o.counter, "the audit counter as last seen (audit counter): older copies fail");
  vf->add_option("--previous-head", o.previous_head, "the head of the file before the first given (when not given)");
  vf->add_flag("--require-signed-tail", o.require_signed_tail,
               "fail (audit.unsigned_tail) when records follow the last checkpoint");
  vf->callback([&action] { action = [] { return verify(o); }; });
}

}  // namespace certcustody::cli
