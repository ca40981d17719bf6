// KEYMGMT for RSA and EC token keys. Only public parameters are ever
// exported; an export that asks for the private key is refused, which makes
// OpenSSL fetch the signature from this provider (see docs/provider.md).
// Keys are never generated here for keeping (`openssl genpkey` through this
// provider fails by name): RSA generation is refused outright, and an EC key
// pair is made only as an ephemeral TLS key for our own ECDH.
#include "keymgmt/token_key.h"

#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/bn.h>

#include <cstring>

namespace certcustody::provider {

Error generated_key_refused(const std::string& what) {
  return Error{"provider.key_generation_refused",
               what + ": keys are made inside the token by certcustody, never as software keys by OpenSSL through "
                      "the certcustody provider (its EC key generation serves TLS key exchange only)",
               "create keys inside the token with `certcustody ra keygen --label <label> --key-type <type>` and "
               "use them as pkcs11:object=<label>; for a software key, use OpenSSL's default provider "
               "(-propquery provider=default)"};
}

namespace {

constexpr int kPublicSelection = OSSL_KEYMGMT_SELECT_PUBLIC_KEY | OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS;

KeyRef* as_ref(void* keydata) { return static_cast<KeyRef*>(keydata); }

template <bool Ec>
void* key_new(void* provctx) {
  auto* prov = static_cast<ProviderContext*>(provctx);
  return guarded(prov, static_cast<void*>(nullptr), [&]() -> void* {
    auto k = std::make_shared<TokenKey>();
    k->prov = prov;
    k->is_ec = Ec;
    return new KeyRef(std::move(k));
  });
}

void key_free(void* keydata) { delete as_ref(keydata); }

int key_has(const void* keydata, int selection) {
  const auto* ref = static_cast<const KeyRef*>(keydata);
  if (ref == nullptr || !*ref) return 0;
  const TokenKey& k = **ref;
  if ((selection & kPublicSelection) != 0 && !k.pub) return 0;
  if (k.ephemeral) {  // may hold domain parameters only (the peer's, before its point is set)
    std::size_t n = 0;
    if ((selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0 &&
        EVP_PKEY_get_octet_string_param(k.pub.get(), OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, nullptr, 0, &n) != 1)
      return 0;
    BIGNUM* priv = nullptr;
    const bool has_priv = EVP_PKEY_get_bn_param(k.pub.get(), OSSL_PKEY_PARAM_PRIV_KEY, &priv) == 1;
    BN_clear_free(priv);
    return (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) == 0 || has_priv ? 1 : 0;
  }
  if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0 && !k.token_private()) return 0;
  return 1;
}

int key_match(const void* a, const void* b, int selection) {
  const TokenKey& x = **static_cast<const KeyRef*>(a);
  const TokenKey& y = **static_cast<const KeyRef*>(b);
  if (!x.pub || !y.pub) return 0;
  if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) && x.has_private() && y.has_private() && x.label != y.label)
    return 0;
  return EVP_PKEY_eq(x.pub.get(), y.pub.get()) == 1 ? 1 : 0;
}


template <bool Ec>
int key_import(void* keydata, int selection, const OSSL_PARAM params[]) {
  TokenKey& k = **as_ref(keydata);
  return guarded(k.prov, 0, [&] {
    // Private keys are made in the token, never brought into it this way.
    if (OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_RSA_D) != nullptr ||
        OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PRIV_KEY) != nullptr) {
      CC_PROV_RAISE(k.prov, (Error{"provider.private_import_refused",
                                   "a private key cannot be imported into the certcustody provider",
                                   "generate keys inside the token with `certcustody ra keygen`"}));
      return 0;
    }
    if ((selection & kPublicSelection) == 0) return 0;
    EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(k.prov->software(), Ec ? "EC" : "RSA", "provider=default"));
    EVP_PKEY* pub = nullptr;
    if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
        EVP_PKEY_fromdata(ctx.get(), &pub, EVP_PKEY_PUBLIC_KEY, const_cast<OSSL_PARAM*>(params)) != 1)
      return 0;
    k.pub.reset(pub);
    k.label.clear();
    return 1;
  });
}

const OSSL_PARAM kRsaTypes[] = {OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, nullptr, 0),
                                OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, nullptr, 0), OSSL_PARAM_END};
const OSSL_PARAM kEcTypes[] = {OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, nullptr, 0),
                               OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, nullptr, 0), OSSL_PARAM_END};

template <bool Ec>
const OSSL_PARAM* key_types(int /*selection*/) {
  return Ec ? kEcTypes : kRsaTypes;
}

int key_export(void* keydata, int selection, OSSL_CALLBACK* cb, void* cbarg) {
  TokenKey& k = **as_ref(keydata);
  return guarded(k.prov, 0, [&] {
    // Refusing a private export is what keeps operations on this provider:
    // OpenSSL then fetches the signature/cipher from here, not from the
    // default provider (which would get a public key and fail).
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0 && k.token_private()) return 0;
    // A generated key's private half would be a software key from us.
    if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0 && k.ephemeral &&
        key_has(keydata, OSSL_KEYMGMT_SELECT_PRIVATE_KEY)) {
      CC_PROV_RAISE(k.prov, generated_key_refused("a key generated through the provider cannot be exported"));
      return 0;
    }
    if (!k.pub || (selection & kPublicSelection) == 0) return 0;
    const int what = (selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY) ? EVP_PKEY_PUBLIC_KEY : EVP_PKEY_KEY_PARAMETERS;
    OSSL_PARAM* params = nullptr;
    if (EVP_PKEY_todata(k.pub.get(), what, &params) != 1) return 0;
    int ok = cb(params, cbarg);
    OSSL_PARAM_free(params);
    return ok;
  });
}

int key_get_params(void* keydata, OSSL_PARAM params[]) {
  TokenKey& k = **as_ref(keydata);
  // Sizes, security bits, group name, encoded point: all from the public half
  // (an ephemeral key's private scalar stays inside).
  if (!k.pub || OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_PRIV_KEY) != nullptr) return 0;
  return EVP_PKEY_get_params(k.pub.get(), params);
}

const OSSL_PARAM kGettable[] = {
    OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, nullptr),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, nullptr),
    OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, nullptr),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, nullptr, 0),
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, nullptr, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, nullptr, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, nullptr, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, nullptr, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, nullptr, 0),
    OSSL_PARAM_END};

const OSSL_PARAM* key_gettable_params(void* /*provctx*/) { return kGettable; }

template <bool Ec>
const char* key_operation_name(int operation_id) {
  if (!Ec) return "RSA";
  switch (operation_id) {
    case OSSL_OP_SIGNATURE: return "ECDSA";
    case OSSL_OP_KEYEXCH: return "ECDH";  // ephemeral keys, done by the default provider
    default: return "EC";
  }
}

// --- ephemeral EC keys for TLS (ECDHE) -------------------------------------
// When this provider's "EC" key management is the one OpenSSL fetched, TLS
// generates its ECDHE keys (and the peer's parameter object) through it. They
// are made and used in software, in the provider's private library context.

int key_set_params(void* keydata, const OSSL_PARAM params[]) {
  TokenKey& k = **as_ref(keydata);
  if (!k.ephemeral || !k.pub) return 0;  // token keys are immutable
  return EVP_PKEY_set_params(k.pub.get(), const_cast<OSSL_PARAM*>(params));
}

const OSSL_PARAM kSettable[] = {OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, nullptr, 0),
                                OSSL_PARAM_END};
const OSSL_PARAM* key_settable_params(void*) { return kSettable; }

struct GenCtx {
  ProviderContext* prov = nullptr;
  int selection = 0;
  std::string group;
};

int gen_set_params(void* genctx, const OSSL_PARAM params[]) {
  auto* g = static_cast<GenCtx*>(genctx);
  if (const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_GROUP_NAME)) {
    const char* name = nullptr;
    if (OSSL_PARAM_get_utf8_string_ptr(p, &name) != 1) return 0;
    g->group = name;
  }
  return 1;
}

void* gen_init(void* provctx, int selection, const OSSL_PARAM params[]) {
  auto* prov = static_cast<ProviderContext*>(provctx);
  return guarded(prov, static_cast<void*>(nullptr), [&]() -> void* {
    auto* g = new GenCtx{prov, selection, {}};
    if (params != nullptr && !gen_set_params(g, params)) {
      delete g;
      return nullptr;
    }
    return g;
  });
}

int gen_set_template(void* genctx, void* templ) {
  auto* g = static_cast<GenCtx*>(genctx);
  const TokenKey& t = **as_ref(templ);
  char name[64];
  if (!t.pub ||
      EVP_PKEY_get_utf8_string_param(t.pub.get(), OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof name, nullptr) != 1)
    return 0;
  g->group = name;
  return 1;
}

const OSSL_PARAM kGenSettable[] = {OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, nullptr, 0), OSSL_PARAM_END};
const OSSL_PARAM* gen_settable_params(void*, void*) { return kGenSettable; }

void* gen(void* genctx, OSSL_CALLBACK*, void*) {
  auto* g = static_cast<GenCtx*>(genctx);
  return guarded(g->prov, static_cast<void*>(nullptr), [&]() -> void* {
    if (g->group.empty()) return nullptr;
    const bool keypair = (g->selection & OSSL_KEYMGMT_SELECT_KEYPAIR) != 0;
    EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(g->prov->software(), "EC", "provider=default"));
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, const_cast<char*>(g->group.c_str()), 0),
        OSSL_PARAM_construct_end()};
    EVP_PKEY* out = nullptr;
    if (!ctx || (keypair ? EVP_PKEY_keygen_init(ctx.get()) : EVP_PKEY_paramgen_init(ctx.get())) != 1 ||
        EVP_PKEY_CTX_set_params(ctx.get(), params) != 1 ||
        (keypair ? EVP_PKEY_keygen(ctx.get(), &out) : EVP_PKEY_paramgen(ctx.get(), &out)) != 1)
      return nullptr;
    auto k = std::make_shared<TokenKey>();
    k->prov = g->prov;
    k->pub.reset(out);
    k->is_ec = true;
    k->ephemeral = true;
    return new KeyRef(std::move(k));
  });
}

void gen_cleanup(void* genctx) { delete static_cast<GenCtx*>(genctx); }

// RSA keys are not even needed for TLS here: refuse before anything is made.
void* rsa_gen_init(void* provctx, int /*selection*/, const OSSL_PARAM* /*params*/) {
  auto* prov = static_cast<ProviderContext*>(provctx);
  guarded(prov, 0, [&] {
    CC_PROV_RAISE(prov, generated_key_refused("RSA key generation through the provider is refused"));
    return 0;
  });
  return nullptr;
}
void* rsa_gen(void*, OSSL_CALLBACK*, void*) { return nullptr; }

// From the store: `reference` holds a KeyRef* that stays owned by the store.
void* key_load(const void* reference, size_t reference_sz) {
  if (reference == nullptr || reference_sz != sizeof(KeyRef*)) return nullptr;
  KeyRef* src = nullptr;
  std::memcpy(&src, reference, sizeof src);
  return new (std::nothrow) KeyRef(*src);
}

void* key_dup(const void* keydata, int /*selection*/) {
  return new (std::nothrow) KeyRef(*static_cast<const KeyRef*>(keydata));
}

#define FN(id, f) {id, reinterpret_cast<void (*)()>(f)}

}  // namespace

// What RSA and EC key management share; each adds its own key generation.
#define KEYMGMT_COMMON(Ec)                                                                        \
  FN(OSSL_FUNC_KEYMGMT_NEW, key_new<Ec>), FN(OSSL_FUNC_KEYMGMT_FREE, key_free),                    \
      FN(OSSL_FUNC_KEYMGMT_HAS, key_has), FN(OSSL_FUNC_KEYMGMT_MATCH, key_match),                  \
      FN(OSSL_FUNC_KEYMGMT_IMPORT, key_import<Ec>), FN(OSSL_FUNC_KEYMGMT_IMPORT_TYPES, key_types<Ec>), \
      FN(OSSL_FUNC_KEYMGMT_EXPORT, key_export), FN(OSSL_FUNC_KEYMGMT_EXPORT_TYPES, key_types<Ec>), \
      FN(OSSL_FUNC_KEYMGMT_GET_PARAMS, key_get_params),                                            \
      FN(OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, key_gettable_params),                                  \
      FN(OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, key_operation_name<Ec>),                          \
      FN(OSSL_FUNC_KEYMGMT_LOAD, key_load), FN(OSSL_FUNC_KEYMGMT_DUP, key_dup)

const OSSL_DISPATCH kRsaKeymgmt[] = {KEYMGMT_COMMON(false),
                                     FN(OSSL_FUNC_KEYMGMT_GEN_INIT, rsa_gen_init),
                                     FN(OSSL_FUNC_KEYMGMT_GEN, rsa_gen),
                                     FN(OSSL_FUNC_KEYMGMT_GEN_CLEANUP, gen_cleanup),
                                     {0, nullptr}};
const OSSL_DISPATCH kEcKeymgmt[] = {KEYMGMT_COMMON(true),
                                    FN(OSSL_FUNC_KEYMGMT_SET_PARAMS, key_set_params),
                                    FN(OSSL_FUNC_KEYMGMT_SETTABLE_PARAMS, key_settable_params),
                                    FN(OSSL_FUNC_KEYMGMT_GEN_INIT, gen_init),
                                    FN(OSSL_FUNC_KEYMGMT_GEN_SET_TEMPLATE, gen_set_template),
                                    FN(OSSL_FUNC_KEYMGMT_GEN_SET_PARAMS, gen_set_params),
                                    FN(OSSL_FUNC_KEYMGMT_GEN_SETTABLE_PARAMS, gen_settable_params),
                                    FN(OSSL_FUNC_KEYMGMT_GEN, gen),
                                    FN(OSSL_FUNC_KEYMGMT_GEN_CLEANUP, gen_cleanup),
                                    {0, nullptr}};

}  // namespace certcustody::provider
