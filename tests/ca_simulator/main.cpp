// certcustody-ca-simulator: the tests' CA simulator as a process, for the
// README demo and for trying a connector configuration by hand.
//   certcustody-ca-simulator --dir D --client-ca F [--port N] [--script S.json] [--standalone]
//                            [--ignore-additional-context]
// prints "listening on 127.0.0.1:PORT", the endpoint URLs and its pid, and
// serves until SIGTERM or SIGINT (docs/ca-simulator.md).
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>

#include "support/ca_simulator.h"
#include "support/temp_dir.h"

int main(int argc, char** argv) {
  CLI::App app{"certcustody CA simulator: MS-XCEP/MS-WSTEP and DigiCert pki-ws over mutual TLS"};
  std::string dir, client_ca, script;
  int port = 0;
  app.add_option("--dir", dir, "directory for tls-ca.pem (clients' trust anchor) and issuing-ca.pem")->required();
  app.add_option("--client-ca", client_ca, "PEM CA that issues the accepted RA client certificates")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--port", port, "port on 127.0.0.1 (0: a free one)")->check(CLI::Range(0, 65535));
  app.add_option("--script", script, "JSON templates and behaviours")->check(CLI::ExistingFile);
  bool standalone = false, ignore_context = false;
  app.add_flag("--standalone", standalone, "MS: issue requests that name no template (an enterprise CA refuses them)");
  app.add_flag("--ignore-additional-context", ignore_context,
               "MS: read the template from the CSR only, not from the SOAP AdditionalContext");
  CLI11_PARSE(app, argc, argv);

  // Blocked before the server's threads start, so that only sigwait below sees them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  try {
    std::filesystem::create_directories(dir);
    certcustody::testing::CaSimulator sim({dir, client_ca, standalone, ignore_context}, port);
    if (!script.empty()) {
      if (auto loaded = sim.load_script(certcustody::testing::read_file(script)); !loaded) {
        std::cerr << loaded.error().to_string() << std::endl;
        return 2;
      }
    }
    std::cout << "listening on 127.0.0.1:" << sim.port() << "\n"
              << "cep_url " << sim.cep_url() << "\n"
              << "ces_url " << sim.ces_url() << "\n"
              << "digicert_fqdn " << sim.digicert_fqdn() << "\n"
              << "trust_anchor " << sim.trust_anchor() << "\n"
              << "issuing_ca " << sim.issuing_ca() << "\n"
              << "pid " << ::getpid() << std::endl;
    int sig = 0;
    sigwait(&stop, &sig);
    std::cout << "stopping on signal " << sig << ": " << sim.requests() << " requests, " << sim.issued_total()
              << " certificates issued, " << sim.revoked().size() << " revoked" << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "certcustody-ca-simulator: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
