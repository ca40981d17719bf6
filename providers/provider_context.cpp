#include "provider_context.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/provider.h>

#include <cstdarg>
#include <cstdlib>

#include "config/config.h"
#include "custody/custody_factory.h"

namespace certcustody::provider {
namespace {

struct Shared {
  std::mutex mu;
  std::shared_ptr<KeyCustody> custody;
  std::string token;
};

Shared& shared() {
  static Shared s;  // never destroyed before the provider: function-local static
  return s;
}

}  // namespace

void set_shared_custody(std::shared_ptr<KeyCustody> custody, std::string token_uri) {
  std::lock_guard l(shared().mu);
  shared().custody = std::move(custody);
  shared().token = std::move(token_uri);
}

ProviderContext::ProviderContext(const OSSL_CORE_HANDLE* handle, const OSSL_DISPATCH* in) : handle_(handle) {
  for (; in != nullptr && in->function_id != 0; ++in) {
    switch (in->function_id) {
      case OSSL_FUNC_CORE_GET_PARAMS: core_get_params_ = OSSL_FUNC_core_get_params(in); break;
      case OSSL_FUNC_CORE_NEW_ERROR: core_new_error_ = OSSL_FUNC_core_new_error(in); break;
      case OSSL_FUNC_CORE_SET_ERROR_DEBUG: core_set_error_debug_ = OSSL_FUNC_core_set_error_debug(in); break;
      case OSSL_FUNC_CORE_VSET_ERROR: core_vset_error_ = OSSL_FUNC_core_vset_error(in); break;
      case OSSL_FUNC_BIO_WRITE_EX: core_bio_write_ = OSSL_FUNC_BIO_write_ex(in); break;
      default: break;
    }
  }
  software_ = OSSL_LIB_CTX_new();
  if (software_ != nullptr) default_provider_ = OSSL_PROVIDER_load(software_, "default");
}

ProviderContext::~ProviderContext() {
  if (default_provider_ != nullptr) OSSL_PROVIDER_unload(default_provider_);
  OSSL_LIB_CTX_free(software_);
}

void ProviderContext::raise(const Error& e, const char* file, int line, const char* func) const {
  const std::string text = e.to_string();
  if (core_new_error_ == nullptr || core_vset_error_ == nullptr) return;
  core_new_error_(handle_);
  if (core_set_error_debug_ != nullptr) core_set_error_debug_(handle_, file, line, func);
  auto vset = [this](const char* fmt, ...) {
    va_list args;
    va_start(args, fmt);
    core_vset_error_(handle_, kReasonCustody, fmt, args);
    va_end(args);
  };
  vset("%s", text.c_str());
}

std::optional<HashAlg> ProviderContext::hash_of(const char* md) const {
  std::unique_ptr<EVP_MD, OsslDeleter<EVP_MD_free>> fetched(EVP_MD_fetch(software_, md, "provider=default"));
  if (!fetched) return std::nullopt;
  return hash_by_nid(EVP_MD_get_type(fetched.get()));
}

bool ProviderContext::write(OSSL_CORE_BIO* out, const std::string& text) const {
  std::size_t written = 0;
  return core_bio_write_ != nullptr && core_bio_write_(out, text.data(), text.size(), &written) == 1 &&
         written == text.size();
}

Result<std::string> ProviderContext::config_path() const {
  // 1. a "config" parameter in the provider's openssl.cnf section
  if (core_get_params_ != nullptr) {
    char* value = nullptr;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_ptr("config", &value, 0), OSSL_PARAM_construct_end()};
    if (core_get_params_(handle_, params) == 1 && value != nullptr && *value != '\0') return std::string(value);
  }
  // 2. CERTCUSTODY_CONFIG
  return resolve_config_path(std::nullopt);
}

Result<std::shared_ptr<KeyCustody>> ProviderContext::custody() {
  {
    std::lock_guard l(shared().mu);
    if (shared().custody) return shared().custody;
  }
  std::lock_guard l(mu_);
  if (custody_) return custody_;
  if (software_ == nullptr || default_provider_ == nullptr)
    return Error{"provider.no_default_provider", "the certcustody provider cannot load OpenSSL's default provider",
                 "check the OpenSSL installation (MODULESDIR)"};
  CC_TRY_ASSIGN(std::string path, config_path());
  CC_TRY_ASSIGN(Config cfg, load_config(path));
  CC_TRY_ASSIGN(auto opened, open_key_custody(cfg.custody, software_context()));
  custody_ = std::move(opened);
  token_ = cfg.custody.token;
  return custody_;
}

Result<bool> ProviderContext::uses_tpm() {
  CC_TRY_ASSIGN(auto c, custody());
  return c->location().rfind("tpm2 ", 0) == 0;
}

Result<std::string> ProviderContext::configured_token() {
  {
    std::lock_guard l(shared().mu);
    if (shared().custody) return shared().token;
  }
  CC_TRY(custody());
  std::lock_guard l(mu_);
  return token_;
}

void ProviderContext::teardown() {
  std::lock_guard l(mu_);
  // OpenSSL is shutting down (atexit): SoftHSM 2.6.1 crashes in
  // C_CloseSession/C_Finalize now, so our own sessions die with the process.
  // A TPM custody flushes what it loaded (a bare TPM keeps it otherwise).
  if (custody_) custody_->abandon();
  custody_.reset();
}

}  // namespace certcustody::provider
