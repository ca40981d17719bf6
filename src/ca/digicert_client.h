// The DigiCert PKI Platform (the reference's CA) over its pki-ws web services,
// authenticated by the RA certificate in mutual TLS.
#pragma once

#include <memory>
#include <string>

#include "ca/ca_client.h"
#include "net/https_client.h"

namespace certcustody::ca {

struct DigicertOptions {
  std::string fqdn;     // "certification authority": pki-ws.symauth.com (optionally :port); no scheme/path/slash
  std::string ca_name;  // must be "Symantec"
};

Result<std::unique_ptr<CaClient>> make_digicert_client(DigicertOptions options, std::shared_ptr<HttpsClient> http);

}  // namespace certcustody::ca
