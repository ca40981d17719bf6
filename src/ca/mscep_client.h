// Microsoft CA over its web services: policy from the CEP server (MS-XCEP),
// enrolment and pending retrieval at the CES server (MS-WSTEP).
#pragma once

#include <memory>
#include <string>

#include "ca/ca_client.h"
#include "net/https_client.h"

namespace certcustody::ca {

struct MscepOptions {
  std::string ces_url;  // enrolment: https://…/<CA>_CES_Certificate/service.svc/CES
  std::string cep_url;  // policy: https://…/ADPolicyProvider_CEP_Certificate/service.svc/CEP (may be empty)
};

Result<std::unique_ptr<CaClient>> make_mscep_client(MscepOptions options, std::shared_ptr<HttpsClient> http);

}  // namespace certcustody::ca
