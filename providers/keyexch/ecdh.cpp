// KEYEXCH "ECDH" for the ephemeral TLS keys our EC key management makes when
// OpenSSL fetched it (certcustody listed before the default provider). The
// exchange runs in software in the provider's private library context, so
// those keys never need their private half exported (key_export refuses it:
// a key generated through us must not become a software key elsewhere).
// Token keys do not take part in key agreement.
#include <openssl/core_names.h>

#include <cstring>

#include "keymgmt/token_key.h"
#include "provider_context.h"

namespace certcustody::provider {
namespace {

struct EcdhCtx {
  ProviderContext* prov = nullptr;
  KeyRef key;
  KeyRef peer;
};

EcdhCtx* as_ctx(void* c) { return static_cast<EcdhCtx*>(c); }

void* ecdh_newctx(void* provctx) {
  auto* prov = static_cast<ProviderContext*>(provctx);
  return guarded(prov, static_cast<void*>(nullptr), [&]() -> void* { return new EcdhCtx{prov, {}, {}}; });
}
void ecdh_freectx(void* c) { delete as_ctx(c); }
void* ecdh_dupctx(void* c) {
  return guarded(as_ctx(c)->prov, static_cast<void*>(nullptr), [&]() -> void* { return new EcdhCtx(*as_ctx(c)); });
}

int ecdh_init(void* c, void* keydata, const OSSL_PARAM* /*params*/) {
  EcdhCtx* ctx = as_ctx(c);
  return guarded(ctx->prov, 0, [&] {
    const KeyRef& key = *static_cast<KeyRef*>(keydata);
    if (!key || !key->ephemeral || !key->has_private()) {
      CC_PROV_RAISE(ctx->prov, (Error{"provider.key_agreement_refused",
                                      "token keys do not do key agreement (ECDH)",
                                      "use the token key to sign; TLS makes its own ephemeral ECDH keys"}));
      return 0;
    }
    ctx->key = key;
    return 1;
  });
}

int ecdh_set_peer(void* c, void* peerdata) {
  EcdhCtx* ctx = as_ctx(c);
  const KeyRef& peer = *static_cast<KeyRef*>(peerdata);
  if (!peer || !peer->pub) return 0;
  ctx->peer = peer;
  return 1;
}

int ecdh_derive(void* c, unsigned char* secret, size_t* secretlen, size_t outlen) {
  EcdhCtx* ctx = as_ctx(c);
  return guarded(ctx->prov, 0, [&] {
    if (!ctx->key || !ctx->peer) return 0;
    EvpPkeyCtxPtr d(EVP_PKEY_CTX_new_from_pkey(ctx->prov->software(), ctx->key->pub.get(), "provider=default"));
    if (!d || EVP_PKEY_derive_init(d.get()) != 1 || EVP_PKEY_derive_set_peer(d.get(), ctx->peer->pub.get()) != 1)
      return 0;
    if (secret != nullptr) *secretlen = outlen;
    return EVP_PKEY_derive(d.get(), secret, secretlen) == 1 ? 1 : 0;
  });
}

int ecdh_set_ctx_params(void*, const OSSL_PARAM[]) { return 1; }
const OSSL_PARAM kNone[] = {OSSL_PARAM_END};
const OSSL_PARAM* ecdh_settable(void*, void*) { return kNone; }

#define FN(id, f) {id, reinterpret_cast<void (*)()>(f)}

}  // namespace

extern const OSSL_DISPATCH kEcdhKeyExch[];
const OSSL_DISPATCH kEcdhKeyExch[] = {FN(OSSL_FUNC_KEYEXCH_NEWCTX, ecdh_newctx),
                                      FN(OSSL_FUNC_KEYEXCH_FREECTX, ecdh_freectx),
                                      FN(OSSL_FUNC_KEYEXCH_DUPCTX, ecdh_dupctx),
                                      FN(OSSL_FUNC_KEYEXCH_INIT, ecdh_init),
                                      FN(OSSL_FUNC_KEYEXCH_SET_PEER, ecdh_set_peer),
                                      FN(OSSL_FUNC_KEYEXCH_DERIVE, ecdh_derive),
                                      FN(OSSL_FUNC_KEYEXCH_SET_CTX_PARAMS, ecdh_set_ctx_params),
                                      FN(OSSL_FUNC_KEYEXCH_SETTABLE_CTX_PARAMS, ecdh_settable),
                                      {0, nullptr}};

}  // namespace certcustody::provider
