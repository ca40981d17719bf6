// The one symbol certcustody-provider.so exports (see provider.map).
#include <openssl/core.h>

#include "provider.h"

extern "C" __attribute__((visibility("default"))) int OSSL_provider_init(const OSSL_CORE_HANDLE* handle,
                                                                          const OSSL_DISPATCH* in,
                                                                          const OSSL_DISPATCH** out, void** provctx) {
  return certcustody::provider::init(handle, in, out, provctx);
}
