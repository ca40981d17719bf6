#include "ca/ca_factory.h"

#include "ca/cmp_client.h"
#include "ca/digicert_client.h"
#include "ca/mscep_client.h"
#include "ca/resilience.h"

namespace certcustody::ca {
namespace {

Result<std::unique_ptr<CaClient>> make_dialect(const CaEndpointConfig& cfg, TlsIdentity ra) {
  using std::chrono::milliseconds;
  if (cfg.type == "cmp") {
    CmpOptions o;
    o.url = cfg.url;
    o.trust_anchor = cfg.trust_anchor;
    o.connect_timeout = milliseconds(cfg.connect_timeout_ms);
    o.timeout = milliseconds(cfg.timeout_ms);
    return make_cmp_client(std::move(o), std::move(ra));
  }
  HttpsOptions http{cfg.trust_anchor, milliseconds(cfg.connect_timeout_ms), milliseconds(cfg.timeout_ms), true};
  CC_TRY_ASSIGN(std::unique_ptr<HttpsClient> client, HttpsClient::create(http, std::move(ra)));
  std::shared_ptr<HttpsClient> shared(std::move(client));
  if (cfg.type == "digicert") return make_digicert_client(DigicertOptions{cfg.fqdn, cfg.ca_name}, shared);
  if (cfg.type == "mscep") return make_mscep_client(MscepOptions{cfg.url, cfg.policy_url}, shared);
  return Error{"config.missing_key", "[ca." + cfg.name + "] has no type, so no CA protocol is known for it",
               "set type = \"digicert\", \"mscep\" or \"cmp\" in [ca." + cfg.name + "]"};
}

}  // namespace

Result<std::unique_ptr<CaClient>> make_ca_client(const CaEndpointConfig& cfg, TlsIdentity ra) {
  CC_TRY_ASSIGN(std::unique_ptr<CaClient> inner, make_dialect(cfg, std::move(ra)));
  using std::chrono::milliseconds;
  return std::unique_ptr<CaClient>(new ResilientCaClient(
      cfg.name, std::move(inner),
      RetryPolicy{cfg.retries, milliseconds(cfg.retry_base_ms), milliseconds(cfg.retry_max_ms)},
      BreakerPolicy{cfg.breaker_failures, milliseconds(cfg.breaker_open_ms)}));
}

}  // namespace certcustody::ca
