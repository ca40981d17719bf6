// The user's key pair and PKCS#10 for one request. The key is made in
// software because it must go into the PKCS#12: it lives in OpenSSL's secure
// heap while in use and is kept at rest only sealed under the token's PFX
// encryption key (sealed.h).
#pragma once

#include <string>

#include "common/error.h"
#include "common/ossl.h"
#include "common/secure_buffer.h"
#include "custody/key_custody.h"
#include "policy.h"

namespace certcustody::pipeline {

Result<EvpPkeyPtr> generate_user_key(KeyType type);
// PKCS#10 for `spec` (Subject, SAN, EKU and the CA template's extensions),
// signed with `key` (SHA-256, or the stronger digest the template names).
Result<Bytes> build_csr(const policy::RequestSpec& spec, EVP_PKEY* key);
// PKCS#8 (unencrypted, DER) in zeroed memory, and back.
Result<SecureBytes> private_key_pkcs8(EVP_PKEY* key);
Result<EvpPkeyPtr> private_key_from_pkcs8(const SecureBytes& der);

}  // namespace certcustody::pipeline
