#include <cstdio>

#include "cli/commands.h"
#include "cli/context.h"

namespace certcustody::cli {
namespace {

Status kek_create(const Globals& g, const std::string& label) {
  CC_TRY_ASSIGN(Config cfg, load(g));
  CC_TRY_ASSIGN(auto log, open_audit_log(cfg, "kek create"));
  CC_TRY_ASSIGN(auto custody, open_custody_audited(cfg, *log));
  auto made = custody->generate_secret_key(label, 256);
  CC_TRY(log->append(
      outcome_event("key.generated", made.status(), {{"label", label}, {"key_type", "aes256"}, {"purpose", "kek"}})));
  CC_TRY_ASSIGN(ObjectInfo key, std::move(made));
  std::printf("generated AES-256 PFX encryption key '%s' (id %s) inside token %s: sensitive, never extractable\n",
              key.label.c_str(), to_hex_lower(key.id).c_str(), custody_location(cfg).c_str());
  return {};
}

}  // namespace

void add_kek_commands(CLI::App& app, const Globals& g, Action& action) {
  static std::string label;
  CLI::App* kek = app.add_subcommand("kek", "the PFX encryption key (key-encryption key)");
  kek->require_subcommand(1);
  CLI::App* create = kek->add_subcommand("create", "generate the AES-256 PFX encryption key inside the token");
  create->add_option("--label", label, "key label")->required();
  create->callback([&g, &action] { action = [&g] { return kek_create(g, label); }; });
}

}  // namespace certcustody::cli
