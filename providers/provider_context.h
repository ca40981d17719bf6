// The state of one loaded instance of the certcustody OpenSSL provider.
//
// The provider is a thin adapter from OpenSSL's dispatch tables onto
// src/custody: every private-key operation goes through KeyCustody. Software
// work (hashing, public-key operations, key objects made from token
// attributes) runs in a private library context holding only OpenSSL's
// default provider, so the provider never fetches itself.
#pragma once

#include <openssl/core.h>
#include <openssl/core_dispatch.h>

#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "common/error.h"
#include "custody/key_custody.h"

namespace certcustody::provider {

inline constexpr const char* kProviderName = "certcustody";
inline constexpr const char* kProperties = "provider=certcustody";
inline constexpr int kReasonCustody = 1;  // our one reason code; the text carries the named error

class ProviderContext {
 public:
  ProviderContext(const OSSL_CORE_HANDLE* handle, const OSSL_DISPATCH* in);
  ~ProviderContext();
  ProviderContext(const ProviderContext&) = delete;
  ProviderContext& operator=(const ProviderContext&) = delete;

  // Software crypto for the provider's own needs (default provider only).
  OSSL_LIB_CTX* software() const { return software_; }
  SoftwareContext software_context() const { return SoftwareContext{software_, "provider=default"}; }

  // The custody in use: the one the executable shares (set_shared_custody),
  // or one opened from the configuration file on first use. A failure is
  // not remembered: a token that appears later is used then.
  Result<std::shared_ptr<KeyCustody>> custody();
  // Whether that custody is a TPM (tpm2: URIs) rather than a PKCS#11 token.
  Result<bool> uses_tpm();
  // The configured token URI (to check a pkcs11: URI against it).
  Result<std::string> configured_token();

  // Raises `e` on OpenSSL's error queue as "error <code>: <what> — <remedy>".
  void raise(const Error& e, const char* file, int line, const char* func) const;

  // The custody hash for an OpenSSL digest name or alias ("SHA256",
  // "SHA2-256", "sha3-384"); nullopt for digests token keys are not used with.
  std::optional<HashAlg> hash_of(const char* md) const;

  // Writes to a BIO the core handed to an encoder.
  bool write(OSSL_CORE_BIO* out, const std::string& text) const;

  // Called at provider teardown (process exit).
  void teardown();

 private:
  Result<std::string> config_path() const;

  const OSSL_CORE_HANDLE* handle_;
  OSSL_FUNC_core_get_params_fn* core_get_params_ = nullptr;
  OSSL_FUNC_core_new_error_fn* core_new_error_ = nullptr;
  OSSL_FUNC_core_set_error_debug_fn* core_set_error_debug_ = nullptr;
  OSSL_FUNC_core_vset_error_fn* core_vset_error_ = nullptr;
  OSSL_FUNC_BIO_write_ex_fn* core_bio_write_ = nullptr;
  OSSL_LIB_CTX* software_ = nullptr;
  OSSL_PROVIDER* default_provider_ = nullptr;

  std::mutex mu_;
  std::shared_ptr<KeyCustody> custody_;
  std::string token_;
};

// Inside the certcustody executable the provider uses the connector's own
// custody (one session pool per module per process). Call before the first
// use of the provider; pass nullptr to stop sharing.
void set_shared_custody(std::shared_ptr<KeyCustody> custody, std::string token_uri);

#define CC_PROV_RAISE(ctx, err) (ctx)->raise((err), OPENSSL_FILE, OPENSSL_LINE, OPENSSL_FUNC)

// Runs `body` at a C boundary: nothing may escape into OpenSSL.
template <class F, class R>
R guarded(const ProviderContext* ctx, R on_failure, F&& body) noexcept {
  try {
    return body();
  } catch (const std::exception& e) {
    if (ctx) CC_PROV_RAISE(ctx, (Error{"provider.internal", e.what(), "report this as a certcustody bug"}));
  } catch (...) {
    if (ctx) CC_PROV_RAISE(ctx, (Error{"provider.internal", "unexpected exception", "report this as a certcustody bug"}));
  }
  return on_failure;
}

}  // namespace certcustody::provider
