// The CaClient a [ca.<name>] section describes, with its retries and breaker.
#pragma once

#include <memory>

#include "ca/ca_client.h"
#include "config/config.h"
#include "net/token_identity.h"

namespace certcustody::ca {

Result<std::unique_ptr<CaClient>> make_ca_client(const CaEndpointConfig& cfg, TlsIdentity ra);

}  // namespace certcustody::ca
