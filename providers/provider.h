// The certcustody OpenSSL 3 provider: entry points.
#pragma once

#include <openssl/core.h>

namespace certcustody::provider {

// The provider's init function (OSSL_provider_init_fn), shared by the
// loadable module and the copy built into the executable.
int init(const OSSL_CORE_HANDLE* handle, const OSSL_DISPATCH* in, const OSSL_DISPATCH** out, void** provctx);

// Registers the built-in copy under the name "certcustody" in the default
// library context and loads it together with OpenSSL's default provider.
// Returns false (with OpenSSL's error queue set) on failure.
bool load_builtin();

}  // namespace certcustody::provider
