// ASYM_CIPHER for RSA token keys: RSA-OAEP decryption inside the token
// (encryption, which needs no secret, runs in software on the public half).
#include <openssl/core_names.h>
#include <openssl/rsa.h>

#include <cstring>
#include <optional>

#include "keymgmt/token_key.h"
#include "provider_context.h"

namespace certcustody::provider {
namespace {

struct CipherCtx {
  ProviderContext* prov = nullptr;
  KeyRef key;
  int pad = RSA_PKCS1_OAEP_PADDING;
  std::string oaep_md = "SHA1";  // OpenSSL's default for OAEP
  std::string mgf1_md;           // empty: same as oaep_md
  bool has_label = false;
  Bytes label;  // used by encryption (software); decryption in the token takes none
};

CipherCtx* as_ctx(void* c) { return static_cast<CipherCtx*>(c); }

void* oaep_newctx(void* provctx) {
  auto* prov = static_cast<ProviderContext*>(provctx);
  return guarded(prov, static_cast<void*>(nullptr), [&]() -> void* {
    auto* c = new CipherCtx;
    c->prov = prov;
    return c;
  });
}
void oaep_freectx(void* c) { delete as_ctx(c); }
void* oaep_dupctx(void* c) {
  return guarded(as_ctx(c)->prov, static_cast<void*>(nullptr), [&]() -> void* { return new CipherCtx(*as_ctx(c)); });
}

int oaep_set_ctx_params(void* c, const OSSL_PARAM params[]);

int oaep_init(void* c, void* keydata, const OSSL_PARAM params[]) {
  CipherCtx* ctx = as_ctx(c);
  ctx->key = *static_cast<KeyRef*>(keydata);
  if (!ctx->key || !ctx->key->pub || ctx->key->is_ec) return 0;
  return oaep_set_ctx_params(c, params);
}

Result<SecureBytes> token_decrypt(CipherCtx* ctx, std::span<const std::uint8_t> in) {
  auto hash = hash_by_name(ctx->oaep_md);
  if (ctx->pad != RSA_PKCS1_OAEP_PADDING || !hash || ctx->has_label ||
      (!ctx->mgf1_md.empty() && hash_by_name(ctx->mgf1_md) != hash))
    return Error{"provider.cipher_parameters",
                 "token keys decrypt RSA-OAEP only, with one SHA digest for OAEP and MGF1 and no label",
                 "use -pkeyopt rsa_padding_mode:oaep (SHA-1 is all SoftHSM 2.6 offers)"};
  if (!ctx->key->has_private())
    return Error{"provider.no_private_key", "this key has no private half in the token",
                 "load the key by its pkcs11: URI with type=private"};
  CC_TRY_ASSIGN(auto custody, ctx->prov->custody());
  return custody->rsa_oaep_decrypt(ctx->key->label, *hash, in);
}

int oaep_decrypt(void* c, unsigned char* out, size_t* outlen, size_t outsize, const unsigned char* in, size_t inlen) {
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

int oaep_encrypt(void* c, unsigned char* out, size_t* outlen, size_t outsize, const unsigned char* in, size_t inlen) {
  CipherCtx* ctx = as_ctx(c);
  return guarded(ctx->prov, 0, [&] {
    EvpPkeyCtxPtr e(EVP_PKEY_CTX_new_from_pkey(ctx->prov->software(), ctx->key->pub.get(), "provider=default"));
    if (!e || EVP_PKEY_encrypt_init(e.get()) != 1 || EVP_PKEY_CTX_set_rsa_padding(e.get(), ctx->pad) != 1) return 0;
    if (ctx->pad == RSA_PKCS1_OAEP_PADDING &&
        (EVP_PKEY_CTX_set_rsa_oaep_md_name(e.get(), ctx->oaep_md.c_str(), nullptr) != 1 ||
         EVP_PKEY_CTX_set_rsa_mgf1_md_name(e.get(), (ctx->mgf1_md.empty() ? ctx->oaep_md : ctx->mgf1_md).c_str(),
                                           nullptr) != 1))
      return 0;
    // A label is part of the ciphertext: dropping it would encrypt to
    // something the holder cannot decrypt (tpm2-tss salts sessions with "SECRET").
    if (ctx->pad == RSA_PKCS1_OAEP_PADDING && ctx->has_label) {
      auto* copy = static_cast<unsigned char*>(OPENSSL_memdup(ctx->label.data(), ctx->label.size()));
      if (copy == nullptr || EVP_PKEY_CTX_set0_rsa_oaep_label(e.get(), copy, static_cast<int>(ctx->label.size())) != 1) {
        OPENSSL_free(copy);
        return 0;
      }
    }
    *outlen = outsize;
    return EVP_PKEY_encrypt(e.get(), out, outlen, in, inlen) == 1 ? 1 : 0;
  });
}

int oaep_set_ctx_params_unguarded(CipherCtx* ctx, const OSSL_PARAM params[]) {
  if (params == nullptr) return 1;
  if (const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_PAD_MODE)) {
    if (p->data_type == OSSL_PARAM_UTF8_STRING) {
      const char* s = static_cast<const char*>(p->data);
      ctx->pad = OPENSSL_strcasecmp(s, OSSL_PKEY_RSA_PAD_MODE_OAEP) == 0 ? RSA_PKCS1_OAEP_PADDING : -1;
    } else if (OSSL_PARAM_get_int(p, &ctx->pad) != 1) {
      return 0;
    }
  }
  const char* s = nullptr;
  if (const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST)) {
    if (OSSL_PARAM_get_utf8_string_ptr(p, &s) != 1) return 0;
    ctx->oaep_md = s;
  }
  if (const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST)) {
    if (OSSL_PARAM_get_utf8_string_ptr(p, &s) != 1) return 0;
    ctx->mgf1_md = s;
  }
  if (const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL)) {
    const void* data = nullptr;
    std::size_t len = 0;
    if (OSSL_PARAM_get_octet_string_ptr(p, &data, &len) != 1) return 0;
    ctx->has_label = len > 0;
    const auto* bytes = static_cast<const unsigned char*>(data);
    ctx->label.assign(bytes, bytes + len);
  }
  return 1;
}

int oaep_set_ctx_params(void* c, const OSSL_PARAM params[]) {
  CipherCtx* ctx = as_ctx(c);
  return guarded(ctx->prov, 0, [&] { return oaep_set_ctx_params_unguarded(ctx, params); });
}

int oaep_get_ctx_params(void* c, OSSL_PARAM params[]) {
  CipherCtx* ctx = as_ctx(c);
  if (OSSL_PARAM* p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_PAD_MODE))
    if (OSSL_PARAM_set_int(p, ctx->pad) != 1) return 0;
  if (OSSL_PARAM* p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST))
    if (OSSL_PARAM_set_utf8_string(p, ctx->oaep_md.c_str()) != 1) return 0;
  return 1;
}

const OSSL_PARAM kSettable[] = {OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, nullptr, 0),
                                OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, nullptr, 0),
                                OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, nullptr, 0),
                                OSSL_PARAM_octet_string(OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL, nullptr, 0),
                                OSSL_PARAM_END};
const OSSL_PARAM kGettable[] = {OSSL_PARAM_int(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, nullptr),
                                OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, nullptr, 0),
                                OSSL_PARAM_END};
const OSSL_PARAM* oaep_settable(void*, void*) { return kSettable; }
const OSSL_PARAM* oaep_gettable(void*, void*) { return kGettable; }

#define FN(id, f) {id, reinterpret_cast<void (*)()>(f)}

}  // namespace

extern const OSSL_DISPATCH kRsaAsymCipher[];
const OSSL_DISPATCH kRsaAsymCipher[] = {
    FN(OSSL_FUNC_ASYM_CIPHER_NEWCTX, oaep_newctx),
    FN(OSSL_FUNC_ASYM_CIPHER_FREECTX, oaep_freectx),
    FN(OSSL_FUNC_ASYM_CIPHER_DUPCTX, oaep_dupctx),
    FN(OSSL_FUNC_ASYM_CIPHER_DECRYPT_INIT, oaep_init),
    FN(OSSL_FUNC_ASYM_CIPHER_DECRYPT, oaep_decrypt),
    FN(OSSL_FUNC_ASYM_CIPHER_ENCRYPT_INIT, oaep_init),
    FN(OSSL_FUNC_ASYM_CIPHER_ENCRYPT, oaep_encrypt),
    FN(OSSL_FUNC_ASYM_CIPHER_GET_CTX_PARAMS, oaep_get_ctx_params),
    FN(OSSL_FUNC_ASYM_CIPHER_GETTABLE_CTX_PARAMS, oaep_gettable),
    FN(OSSL_FUNC_ASYM_CIPHER_SET_CTX_PARAMS, oaep_set_ctx_params),
    FN(OSSL_FUNC_ASYM_CIPHER_SETTABLE_CTX_PARAMS, oaep_settable),
    {0, nullptr}};

}  // namespace certcustody::provider
