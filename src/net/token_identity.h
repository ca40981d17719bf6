// The RA identity for mutual TLS: the private key in the token (through the
// certcustody provider, as an EVP_PKEY handle that never holds the key) and
// the certificate stored beside it.
#pragma once

#include <string>

#include "common/error.h"
#include "common/ossl.h"

namespace certcustody {

struct TlsIdentity {
  EvpPkeyPtr key;  // a handle: signing goes through the provider to the token
  X509Ptr certificate;
};

// Loads both from one pkcs11: URI ("pkcs11:token=…;object=ra") through
// OSSL_STORE and the certcustody provider, which must be loaded (see
// provider::BuiltinProviders). Refuses a certificate that does not match the key.
Result<TlsIdentity> load_token_identity(const std::string& uri);

// The named error the provider put on OpenSSL's error queue (its text is
// "error <code>: <what> — <remedy>"), or `fallback` with the queue appended.
Error error_from_openssl_queue(const Error& fallback);

}  // namespace certcustody
