// ASYM_CIPHER for RSA token keys, with OpenSSL's semantics: parameters go to
// a mirror (the default provider's encrypt context on the public half), which
// also does encryption, a public-key operation. Decryption runs in the token
// for RSA-OAEP only. PKCS#1 v1.5 decryption (OpenSSL's default padding) is
// refused by name: an HSM that answers "padding good/bad" is a Bleichenbacher
// oracle, and certcustody's decryption keys are RSA-OAEP recipients
// (docs/provider.md). Raw RSA is refused for the same reason.
#include <openssl/core_names.h>
#include <openssl/rsa.h>

#include <cstring>

#include "keymgmt/token_key.h"
#include "provider_context.h"

namespace certcustody::provider {
namespace {

struct CipherCtx {
  ProviderContext* prov = nullptr;
  KeyRef key;
  EvpPkeyCtxPtr mirror;  // the default provider's encrypt context on key->pub
};

CipherCtx* as_ctx(void* c) { return static_cast<CipherCtx*>(c); }

Error cipher_error(const std::string& what, const std::string& remedy) {
  return Error{"provider.cipher_parameters", what, remedy};
}

void* rsa_newctx(void* provctx) {
  auto* prov = static_cast<ProviderContext*>(provctx);
  return guarded(prov, static_cast<void*>(nullptr), [&]() -> void* {
    auto* c = new CipherCtx;
    c->prov = prov;
    return c;
  });
}
void rsa_freectx(void* c) { delete as_ctx(c); }
void* rsa_dupctx(void* c) {
  CipherCtx* src = as_ctx(c);
  return guarded(src->prov, static_cast<void*>(nullptr), [&]() -> void* {
    auto d = std::make_unique<CipherCtx>();
    d->prov = src->prov;
    d->key = src->key;
    if (src->mirror && !(d->mirror = EvpPkeyCtxPtr(EVP_PKEY_CTX_dup(src->mirror.get())))) return nullptr;
    return d.release();
  });
}

int set_params(CipherCtx* ctx, const OSSL_PARAM params[]) {
  if (params == nullptr) return 1;
  return ctx->mirror && EVP_PKEY_CTX_set_params(ctx->mirror.get(), params) == 1 ? 1 : 0;
}

int rsa_init(void* c, void* keydata, const OSSL_PARAM params[]) {
  CipherCtx* ctx = as_ctx(c);
  return guarded(ctx->prov, 0, [&] {
    ctx->key = *static_cast<KeyRef*>(keydata);
    if (!ctx->key || !ctx->key->pub || ctx->key->is_ec) return 0;
    ctx->mirror.reset(EVP_PKEY_CTX_new_from_pkey(ctx->prov->software(), ctx->key->pub.get(), "provider=default"));
    if (!ctx->mirror || EVP_PKEY_encrypt_init(ctx->mirror.get()) != 1) return 0;
    return set_params(ctx, params);
  });
}

// What the token is asked to do, from the mirror's settled parameters.
Result<HashAlg> oaep_hash(const CipherCtx* ctx) {
  int pad = RSA_PKCS1_PADDING;
  char md[80] = "", mgf1[80] = "";
  void* label = nullptr;
  OSSL_PARAM q[] = {OSSL_PARAM_construct_int(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, &pad),
                    OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, md, sizeof md),
                    OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, mgf1, sizeof mgf1),
                    OSSL_PARAM_construct_octet_ptr(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL, &label, 0),
                    OSSL_PARAM_construct_end()};
  if (EVP_PKEY_CTX_get_params(ctx->mirror.get(), q) != 1)
    return openssl_error("provider.cipher_parameters", "the RSA parameters cannot be read back",
                         "check the parameters given");
  if (pad == RSA_PKCS1_PADDING)
    return Error{"provider.rsa_pkcs1_decrypt_refused",
                 "token keys do not decrypt PKCS#1 v1.5 (OpenSSL's default RSA padding): a token that tells good "
                 "padding from bad is a Bleichenbacher oracle, and certcustody's decryption keys are RSA-OAEP "
                 "recipients",
                 "encrypt to the key with RSA-OAEP and decrypt with -pkeyopt rsa_padding_mode:oaep"};
  if (pad != RSA_PKCS1_OAEP_PADDING)
    return cipher_error("RSA padding mode " + std::to_string(pad) + " cannot decrypt with a token key (raw RSA "
                        "would be a decryption oracle)",
                        "use -pkeyopt rsa_padding_mode:oaep");
  if (q[3].return_size > 0)
    return cipher_error("token keys decrypt RSA-OAEP without a label", "leave rsa_oaep_label unset");
  auto hash = ctx->prov->hash_of(*md != '\0' ? md : "SHA1");
  auto mgf1_hash = ctx->prov->hash_of(*mgf1 != '\0' ? mgf1 : (*md != '\0' ? md : "SHA1"));
  if (!hash || mgf1_hash != hash)
    return cipher_error("token keys decrypt RSA-OAEP with one SHA digest for OAEP and MGF1",
                        "set rsa_oaep_md and rsa_mgf1_md alike (SHA-1 is all SoftHSM 2.6 offers)");
  return *hash;
}

Result<SecureBytes> token_decrypt(CipherCtx* ctx, std::span<const std::uint8_t> in) {
  CC_TRY_ASSIGN(HashAlg hash, oaep_hash(ctx));
  if (!ctx->key->token_private())
    return Error{"provider.no_private_key", "this key has no private half in the token",
                 "load the key by its pkcs11: URI with type=private"};
  CC_TRY_ASSIGN(auto custody, ctx->prov->custody());
  return custody->rsa_oaep_decrypt(ctx->key->label, hash, in);
}

int rsa_decrypt(void* c, unsigned char* out, size_t* outlen, size_t outsize, const unsigned char* in, size_t inlen) {
  CipherCtx* ctx = as_ctx(c);
  return guarded(ctx->prov, 0, [&] {
    if (out == nullptr) {
      *outlen = static_cast<size_t>(EVP_PKEY_get_size(ctx->key->pub.get()));
      return 1;
    }
    auto r = token_decrypt(ctx, {in, inlen});
    if (!r) {
      CC_PROV_RAISE(ctx->prov, r.error());
      return 0;
    }
    if (r->size() > outsize) return 0;
    std::memcpy(out, r->data(), r->size());
    *outlen = r->size();
    return 1;
  });
}

int rsa_encrypt(void* c, unsigned char* out, size_t* outlen, size_t outsize, const unsigned char* in, size_t inlen) {
  CipherCtx* ctx = as_ctx(c);
  return guarded(ctx->prov, 0, [&] {
    if (out != nullptr) *outlen = outsize;
    return ctx->mirror && EVP_PKEY_encrypt(ctx->mirror.get(), out, outlen, in, inlen) == 1 ? 1 : 0;
  });
}

int rsa_set_ctx_params(void* c, const OSSL_PARAM params[]) {
  CipherCtx* ctx = as_ctx(c);
  return guarded(ctx->prov, 0, [&] { return set_params(ctx, params); });
}

int rsa_get_ctx_params(void* c, OSSL_PARAM params[]) {
  CipherCtx* ctx = as_ctx(c);
  return guarded(ctx->prov, 0, [&] {
    return ctx->mirror && EVP_PKEY_CTX_get_params(ctx->mirror.get(), params) == 1 ? 1 : 0;
  });
}

const OSSL_PARAM kSettable[] = {OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, nullptr, 0),
                                OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, nullptr, 0),
                                OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST_PROPS, nullptr, 0),
                                OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, nullptr, 0),
                                OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST_PROPS, nullptr, 0),
                                OSSL_PARAM_octet_string(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL, nullptr, 0),
                                OSSL_PARAM_END};
const OSSL_PARAM kGettable[] = {OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, nullptr, 0),
                                OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, nullptr, 0),
                                OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, nullptr, 0),
                                OSSL_PARAM_octet_ptr(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL, nullptr, 0),
                                OSSL_PARAM_END};
const OSSL_PARAM* rsa_settable(void*, void*) { return kSettable; }
const OSSL_PARAM* rsa_gettable(void*, void*) { return kGettable; }

#define FN(id, f) {id, reinterpret_cast<void (*)()>(f)}

}  // namespace

extern const OSSL_DISPATCH kRsaAsymCipher[];
const OSSL_DISPATCH kRsaAsymCipher[] = {
    FN(OSSL_FUNC_ASYM_CIPHER_NEWCTX, rsa_newctx),
    FN(OSSL_FUNC_ASYM_CIPHER_FREECTX, rsa_freectx),
    FN(OSSL_FUNC_ASYM_CIPHER_DUPCTX, rsa_dupctx),
    FN(OSSL_FUNC_ASYM_CIPHER_DECRYPT_INIT, rsa_init),
    FN(OSSL_FUNC_ASYM_CIPHER_DECRYPT, rsa_decrypt),
    FN(OSSL_FUNC_ASYM_CIPHER_ENCRYPT_INIT, rsa_init),
    FN(OSSL_FUNC_ASYM_CIPHER_ENCRYPT, rsa_encrypt),
    FN(OSSL_FUNC_ASYM_CIPHER_GET_CTX_PARAMS, rsa_get_ctx_params),
    FN(OSSL_FUNC_ASYM_CIPHER_GETTABLE_CTX_PARAMS, rsa_gettable),
    FN(OSSL_FUNC_ASYM_CIPHER_SET_CTX_PARAMS, rsa_set_ctx_params),
    FN(OSSL_FUNC_ASYM_CIPHER_SETTABLE_CTX_PARAMS, rsa_settable),
    {0, nullptr}};

}  // namespace certcustody::provider
