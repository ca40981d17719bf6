#include "provider.h"

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/provider.h>
#include <openssl/prov_ssl.h>

#include "keymgmt/token_key.h"
#include "provider_context.h"

namespace certcustody::provider {

extern const OSSL_DISPATCH kRsaSignature[];
extern const OSSL_DISPATCH kEcdsaSignature[];
extern const OSSL_DISPATCH kRsaAsymCipher[];
extern const OSSL_DISPATCH kPkcs11Store[];
extern const OSSL_DISPATCH kEcdhKeyExch[];
extern const OSSL_DISPATCH kTextEncoder[];
extern const OSSL_DISPATCH kPrivateKeyEncoder[];

namespace {

constexpr const char* kRsaNames = "RSA:rsaEncryption:1.2.840.113549.1.1.1";
constexpr const char* kEcNames = "EC:id-ecPublicKey:1.2.840.10045.2.1";

// No digests, ciphers or RNG: only what needs the token (real-peers.md: a
// provider that offers digests gets called back by SoftHSM's own hashing).
const OSSL_ALGORITHM kKeymgmtAlgs[] = {{kRsaNames, kProperties, kRsaKeymgmt, "RSA key in a PKCS#11 token"},
                                       {kEcNames, kProperties, kEcKeymgmt, "EC key in a PKCS#11 token"},
                                       {nullptr, nullptr, nullptr, nullptr}};
const OSSL_ALGORITHM kSignatureAlgs[] = {{kRsaNames, kProperties, kRsaSignature, "RSA PKCS#1 v1.5 / PSS in the token"},
                                         {"ECDSA", kProperties, kEcdsaSignature, "ECDSA in the token"},
                                         {nullptr, nullptr, nullptr, nullptr}};
const OSSL_ALGORITHM kAsymCipherAlgs[] = {{kRsaNames, kProperties, kRsaAsymCipher, "RSA-OAEP in the token"},
                                          {nullptr, nullptr, nullptr, nullptr}};
const OSSL_ALGORITHM kKeyExchAlgs[] = {{"ECDH", kProperties, kEcdhKeyExch, "ECDH for ephemeral TLS keys, in software"},
                                       {nullptr, nullptr, nullptr, nullptr}};
constexpr const char* kTextProperties = "provider=certcustody,output=text";
constexpr const char* kPemProperties = "provider=certcustody,output=pem,structure=PrivateKeyInfo";
constexpr const char* kDerProperties = "provider=certcustody,output=der,structure=PrivateKeyInfo";
const OSSL_ALGORITHM kEncoderAlgs[] = {{kRsaNames, kTextProperties, kTextEncoder, "RSA token key as text"},
                                       {kEcNames, kTextProperties, kTextEncoder, "EC token key as text"},
                                       {kRsaNames, kPemProperties, kPrivateKeyEncoder, "no RSA private key to write"},
                                       {kEcNames, kPemProperties, kPrivateKeyEncoder, "no EC private key to write"},
                                       {kRsaNames, kDerProperties, kPrivateKeyEncoder, "no RSA private key to write"},
                                       {kEcNames, kDerProperties, kPrivateKeyEncoder, "no EC private key to write"},
                                       {nullptr, nullptr, nullptr, nullptr}};
const OSSL_ALGORITHM kStoreAlgs[] = {{"pkcs11", kProperties, kPkcs11Store, "RFC 7512 pkcs11: URIs"},
                                     {"tpm2", kProperties, kPkcs11Store, "certcustody tpm2: key URIs (docs/tpm.md)"},
                                     {nullptr, nullptr, nullptr, nullptr}};

const OSSL_ALGORITHM* query_operation(void* /*provctx*/, int operation_id, int* no_cache) {
  *no_cache = 0;
  switch (operation_id) {
    case OSSL_OP_KEYMGMT: return kKeymgmtAlgs;
    case OSSL_OP_SIGNATURE: return kSignatureAlgs;
    case OSSL_OP_ASYM_CIPHER: return kAsymCipherAlgs;
    case OSSL_OP_STORE: return kStoreAlgs;
    case OSSL_OP_KEYEXCH: return kKeyExchAlgs;
    case OSSL_OP_ENCODER: return kEncoderAlgs;
    default: return nullptr;
  }
}

const OSSL_PARAM kGettable[] = {OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_NAME, nullptr, 0),
                                OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_VERSION, nullptr, 0),
                                OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_BUILDINFO, nullptr, 0),
                                OSSL_PARAM_int(OSSL_PROV_PARAM_STATUS, nullptr), OSSL_PARAM_END};

const OSSL_PARAM* gettable_params(void*) { return kGettable; }

int get_params(void*, OSSL_PARAM params[]) {
  OSSL_PARAM* p;
  if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME)) && !OSSL_PARAM_set_utf8_ptr(p, "certcustody provider"))
    return 0;
  if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_VERSION)) && !OSSL_PARAM_set_utf8_ptr(p, "0.1.0")) return 0;
  if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_BUILDINFO)) &&
      !OSSL_PARAM_set_utf8_ptr(p, "keys in PKCS#11 tokens through certcustody's custody layer"))
    return 0;
  if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS)) && !OSSL_PARAM_set_int(p, 1)) return 0;
  return 1;
}

// TLS groups whose keys use this provider's "EC" key management. OpenSSL
// enables a group only for the provider whose key management a plain fetch of
// the group's algorithm returns; when that is ours (we were loaded before the
// default provider), we must declare the EC groups or TLS 1.2 loses them.
// Values: RFC 8422 §5.1.1 group ids and their security bits.
struct TlsGroup {
  const char* name;
  const char* internal;
  unsigned int id;
  unsigned int secbits;
};
const TlsGroup kGroups[] = {{"secp256r1", "prime256v1", 23, 128},
                            {"secp384r1", "secp384r1", 24, 192},
                            {"secp521r1", "secp521r1", 25, 256},
                            {"P-256", "prime256v1", 23, 128},
                            {"P-384", "secp384r1", 24, 192},
                            {"P-521", "secp521r1", 25, 256}};

int get_capabilities(void*, const char* capability, OSSL_CALLBACK* cb, void* arg) {
  if (OPENSSL_strcasecmp(capability, "TLS-GROUP") != 0) return 0;
  for (const TlsGroup& g : kGroups) {
    unsigned int id = g.id, secbits = g.secbits;
    int min_tls = TLS1_VERSION, max_tls = 0, min_dtls = DTLS1_VERSION, max_dtls = 0;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_CAPABILITY_TLS_GROUP_NAME, const_cast<char*>(g.name), 0),
        OSSL_PARAM_construct_utf8_string(OSSL_CAPABILITY_TLS_GROUP_NAME_INTERNAL, const_cast<char*>(g.internal), 0),
        OSSL_PARAM_construct_utf8_string(OSSL_CAPABILITY_TLS_GROUP_ALG, const_cast<char*>("EC"), 0),
        OSSL_PARAM_construct_uint(OSSL_CAPABILITY_TLS_GROUP_ID, &id),
        OSSL_PARAM_construct_uint(OSSL_CAPABILITY_TLS_GROUP_SECURITY_BITS, &secbits),
        OSSL_PARAM_construct_int(OSSL_CAPABILITY_TLS_GROUP_MIN_TLS, &min_tls),
        OSSL_PARAM_construct_int(OSSL_CAPABILITY_TLS_GROUP_MAX_TLS, &max_tls),
        OSSL_PARAM_construct_int(OSSL_CAPABILITY_TLS_GROUP_MIN_DTLS, &min_dtls),
        OSSL_PARAM_construct_int(OSSL_CAPABILITY_TLS_GROUP_MAX_DTLS, &max_dtls),
        OSSL_PARAM_construct_end()};
    if (!cb(params, arg)) return 0;
  }
  return 1;
}

const OSSL_ITEM kReasons[] = {{static_cast<unsigned int>(kReasonCustody), const_cast<char*>("certcustody")},
                              {0, nullptr}};
const OSSL_ITEM* reason_strings(void*) { return kReasons; }

void teardown(void* provctx) {
  auto* ctx = static_cast<ProviderContext*>(provctx);
  ctx->teardown();
  delete ctx;
}

#define FN(id, f) {id, reinterpret_cast<void (*)()>(f)}
const OSSL_DISPATCH kProviderFunctions[] = {FN(OSSL_FUNC_PROVIDER_TEARDOWN, teardown),
                                           FN(OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, gettable_params),
                                           FN(OSSL_FUNC_PROVIDER_GET_PARAMS, get_params),
                                           FN(OSSL_FUNC_PROVIDER_QUERY_OPERATION, query_operation),
                                           FN(OSSL_FUNC_PROVIDER_GET_REASON_STRINGS, reason_strings),
                                           FN(OSSL_FUNC_PROVIDER_GET_CAPABILITIES, get_capabilities),
                                           {0, nullptr}};

}  // namespace

int init(const OSSL_CORE_HANDLE* handle, const OSSL_DISPATCH* in, const OSSL_DISPATCH** out, void** provctx) {
  try {
    *provctx = new ProviderContext(handle, in);
    *out = kProviderFunctions;
    return 1;
  } catch (...) {
    return 0;
  }
}

BuiltinProviders::BuiltinProviders() {
  static const bool registered = OSSL_PROVIDER_add_builtin(nullptr, kProviderName, &init) == 1;
  if (!registered) return;
  // Loading any provider explicitly stops OpenSSL from loading "default" on
  // its own, and the connector needs both; default first, so that plain
  // fetches (digests, TLS groups) find OpenSSL's implementations.
  default_ = OSSL_PROVIDER_load(nullptr, "default");
  ours_ = OSSL_PROVIDER_load(nullptr, kProviderName);
}

BuiltinProviders::~BuiltinProviders() {
  if (ours_ != nullptr) OSSL_PROVIDER_unload(ours_);
  if (default_ != nullptr) OSSL_PROVIDER_unload(default_);
}

}  // namespace certcustody::provider
