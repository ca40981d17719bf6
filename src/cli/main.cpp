// certcustody: the executable. Thin: parse argv, run one command, print the
// result or the named error, exit non-zero on error.
#include <CLI/CLI.hpp>

#include <csignal>
#include <cstdio>

#include "cli/commands.h"
#include "common/ossl.h"
#include "common/secure_buffer.h"
#include "provider.h"

int main(int argc, char** argv) {
  certcustody::harden_process();
  // A peer that closes a TLS connection must yield an error, not kill the
  // process (curl runs with CURLOPT_NOSIGNAL, so SIGPIPE is ours to ignore).
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"certcustody — certificate connector with keys held in an HSM or TPM"};
  app.require_subcommand(1);
  certcustody::cli::Globals g;
  app.add_option("--config", g.config, "configuration file (default: $CERTCUSTODY_CONFIG)");
  certcustody::cli::Action action;
  certcustody::cli::add_token_commands(app, g, action);
  certcustody::cli::add_ra_commands(app, g, action);
  certcustody::cli::add_kek_commands(app, g, action);
  certcustody::cli::add_ca_commands(app, g, action);
  certcustody::cli::add_policy_commands(app, g, action);
  certcustody::cli::add_pipeline_commands(app, g, action);
  certcustody::cli::add_audit_commands(app, g, action);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (!action) {
    std::fputs(app.help().c_str(), stderr);
    return 2;
  }
  // Every TLS connection the connector makes signs through the token, via
  // the provider built into this executable.
  certcustody::provider::BuiltinProviders providers;
  if (!providers.ok()) {
    std::fprintf(stderr, "%s\n",
                 certcustody::openssl_error("provider.load_failed", "cannot load the built-in certcustody provider",
                                            "check the OpenSSL 3 installation (default provider)")
                     .to_string()
                     .c_str());
    return 1;
  }
  certcustody::Status s = action();
  if (!s) {
    std::fprintf(stderr, "%s\n", s.error().to_string().c_str());
    return 1;
  }
  return 0;
}
