// The certcustody OpenSSL 3 provider: entry points.
#pragma once

#include <openssl/core.h>
#include <openssl/types.h>

namespace certcustody::provider {

// The provider's init function (OSSL_provider_init_fn), shared by the
// loadable module and the copy built into the executable.
int init(const OSSL_CORE_HANDLE* handle, const OSSL_DISPATCH* in, const OSSL_DISPATCH** out, void** provctx);

// The built-in copy, registered as "certcustody" in the default library
// context and loaded together with OpenSSL's default provider; both are
// unloaded when this object goes (before OpenSSL's own cleanup at exit).
class BuiltinProviders {
 public:
  BuiltinProviders();
  ~BuiltinProviders();
  BuiltinProviders(const BuiltinProviders&) = delete;
  BuiltinProviders& operator=(const BuiltinProviders&) = delete;
  // False (with OpenSSL's error queue set) when loading failed.
  bool ok() const { return ours_ != nullptr && default_ != nullptr; }

 private:
  OSSL_PROVIDER* default_ = nullptr;
  OSSL_PROVIDER* ours_ = nullptr;
};

}  // namespace certcustody::provider
