#include <cstdio>

#include "cli/commands.h"
#include "cli/context.h"
#include "ra/ra_credential.h"

namespace certcustody::cli {
namespace {

struct RaOptions {
  std::string label = "ra";
  std::string key_type = "rsa2048";
  std::string subject;
  std::string out;
  std::string cert;
  bool replace = false;
};

Status ra_keygen(const Globals& g, const RaOptions& o) {
  CC_TRY_ASSIGN(KeyType type, parse_key_type(o.key_type));
  CC_TRY_ASSIGN(Config cfg, load(g));
  CC_TRY_ASSIGN(auto log, open_audit_log(cfg, "ra keygen"));
  CC_TRY_ASSIGN(auto custody, open_custody_audited(cfg, *log));
  auto made = custody->generate_key_pair(o.label, type, KeyPurpose::sign);
  CC_TRY(log->append(outcome_event("key.generated", made.status(),
                                   {{"label", o.label}, {"key_type", key_type_name(type)}, {"purpose", "ra"}})));
  CC_TRY_ASSIGN(ObjectInfo key, std::move(made));
  std::printf("generated %s key pair '%s' (id %s) inside token %s: sensitive, never extractable\n",
              key_type_name(type).c_str(), key.label.c_str(), to_hex_lower(key.id).c_str(),
              custody_location(cfg).c_str());
  return {};
}

Status ra_csr(const Globals& g, const RaOptions& o) {
  CC_TRY_ASSIGN(Config cfg, load(g));
  CC_TRY_ASSIGN(auto log, open_audit_log(cfg, "ra csr"));
  CC_TRY_ASSIGN(auto custody, open_custody_audited(cfg, *log));
  auto made = make_ra_csr(*custody, o.label, o.subject);
  CC_TRY(log->append(outcome_event("csr.signed", made.status(), {{"label", o.label}, {"subject", o.subject}})));
  CC_TRY_ASSIGN(X509ReqPtr req, std::move(made));
  std::string pem = csr_to_pem(req.get());
  if (o.out.empty()) {
    std::fputs(pem.c_str(), stdout);
    return {};
  }
  CC_TRY(write_file_atomic(o.out, pem, 0644));
  std::printf("wrote CSR for '%s' to %s\n", o.label.c_str(), o.out.c_str());
  return {};
}

Status ra_import(const Globals& g, const RaOptions& o) {
  CC_TRY_ASSIGN(X509Ptr cert, read_certificate(o.cert));
  CC_TRY_ASSIGN(Config cfg, load(g));
  CC_TRY_ASSIGN(auto log, open_audit_log(cfg, "ra import"));
  CC_TRY_ASSIGN(auto custody, open_custody_audited(cfg, *log));
  auto done = import_ra_certificate(*custody, o.label, cert.get(), o.replace);
  CC_TRY(log->append(outcome_event("certificate.imported", done.status(),
                                   {{"label", o.label}, {"sha256", done ? done->sha256_thumbprint : ""}})));
  CC_TRY_ASSIGN(ImportedCertificate imported, std::move(done));
  std::printf("stored RA certificate for '%s'\n", o.label.c_str());
  std::printf("subject: %s\nnot after: %s\n", imported.subject.c_str(), imported.not_after.c_str());
  std::printf("SHA-1 thumbprint: %s\nSHA-256 thumbprint: %s\n", imported.sha1_thumbprint.c_str(),
              imported.sha256_thumbprint.c_str());
  return {};
}

}  // namespace

void add_ra_commands(CLI::App& app, const Globals& g, Action& action) {
  static RaOptions o;
  CLI::App* ra = app.add_subcommand("ra", "the RA credential (mutual-TLS identity towards the CA)");
  ra->require_subcommand(1);

  CLI::App* keygen = ra->add_subcommand("keygen", "generate the RA key pair inside the token");
  keygen->add_option("--label", o.label, "key label")->required();
  keygen->add_option("--key-type", o.key_type, "rsa2048 | rsa3072 | rsa4096 | ec-p256 | ec-p384")
      ->capture_default_str();
  keygen->callback([&g, &action] { action = [&g] { return ra_keygen(g, o); }; });

  CLI::App* csr = ra->add_subcommand("csr", "a PKCS#10 request for the RA key, signed inside the token");
  csr->add_option("--label", o.label, "key label")->required();
  csr->add_option("--subject", o.subject, "subject, RFC 4514 (e.g. \"CN=certcustody RA\")")->required();
  csr->add_option("--out", o.out, "write the PEM here (default: standard output)");
  csr->callback([&g, &action] { action = [&g] { return ra_csr(g, o); }; });

  CLI::App* imp = ra->add_subcommand("import", "store the CA-issued RA certificate beside its token key");
  imp->add_option("--label", o.label, "key label")->required();
  imp->add_option("--cert", o.cert, "certificate file (PEM or DER)")->required();
  imp->add_flag("--replace", o.replace, "replace an existing certificate (renewal)");
  imp->callback([&g, &action] { action = [&g] { return ra_import(g, o); }; });
}

}  // namespace certcustody::cli
