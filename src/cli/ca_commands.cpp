#include <cstdio>

#include "cli/commands.h"
#include "cli/context.h"
#include "net/https_client.h"
#include "provider.h"
#include "provider_context.h"
#include "ra/distinguished_name.h"

namespace certcustody::cli {
namespace {

struct PingOptions {
  std::string ca;
  std::string path;
};

// The connector's TLS uses the same session pool as everything else in this
// process: the built-in provider borrows it for the duration of the command.
class SharedCustody {
 public:
  explicit SharedCustody(std::shared_ptr<Pkcs11Custody> c, const std::string& token) {
    provider::set_shared_custody(std::move(c), token);
  }
  ~SharedCustody() { provider::set_shared_custody(nullptr, {}); }
};

Status ca_ping(const Globals& g, const PingOptions& o) {
  CC_TRY_ASSIGN(Config cfg, load(g));
  CC_TRY_ASSIGN(const CaEndpointConfig* ca, cfg.ca(o.ca));
  if (cfg.ra.key.empty())
    return Error{"config.missing_key", cfg.path + ": key ra.key is required to reach a CA",
                 "add [ra] key = \"pkcs11:token=…;object=ra\""};
  CC_TRY_ASSIGN(auto opened, open_custody(cfg));
  std::shared_ptr<Pkcs11Custody> custody(std::move(opened));
  SharedCustody shared(custody, cfg.custody.token);
  CC_TRY_ASSIGN(TlsIdentity id, load_token_identity(cfg.ra.key));
  const std::string subject = name_to_string(X509_get_subject_name(id.certificate.get()));
  HttpsOptions options{ca->trust_anchor, std::chrono::milliseconds(ca->connect_timeout_ms),
                       std::chrono::milliseconds(ca->timeout_ms), true};
  CC_TRY_ASSIGN(auto client, HttpsClient::create(options, std::move(id)));
  std::string url = ca->url;
  if (!o.path.empty()) url += (url.back() == '/' && o.path.front() == '/') ? o.path.substr(1) : o.path;
  CC_TRY_ASSIGN(HttpsResponse r, client->get(url));
  std::printf("%s: HTTP %ld over mutual TLS as \"%s\" (RA key in the token)\n", url.c_str(), r.status,
              subject.c_str());
  return {};
}

}  // namespace

void add_ca_commands(CLI::App& app, const Globals& g, Action& action) {
  static PingOptions o;
  CLI::App* ca = app.add_subcommand("ca", "the CA endpoints of the configuration");
  ca->require_subcommand(1);
  CLI::App* ping = ca->add_subcommand("ping", "an HTTPS GET to a CA over mutual TLS with the RA key in the token");
  ping->add_option("--ca", o.ca, "name of a [ca.<name>] section")->required();
  ping->add_option("--path", o.path, "path below the CA's url (default: the url itself)");
  ping->callback([&g, &action] { action = [&g] { return ca_ping(g, o); }; });
}

}  // namespace certcustody::cli
