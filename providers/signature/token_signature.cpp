// SIGNATURE for token keys: RSA (PKCS#1 v1.5, PSS) and ECDSA, with OpenSSL's
// own semantics. Every parameter goes to a mirror: the default provider's
// verify context on the key's public half (in the provider's private library
// context). Parsing, defaults (PSS without a digest is SHA-1; salt "auto" is
// the maximum when signing), the AlgorithmIdentifier and verification are
// therefore exactly OpenSSL's. Signing reads the settled parameters back and
// signs in the token: digest-sign hashes in software and signs the digest
// with one C_Sign; EVP_PKEY_sign without a digest signs its input as given.
#include <openssl/core_names.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <cstring>

#include "keymgmt/token_key.h"
#include "provider_context.h"

namespace certcustody::provider {
namespace {

struct SignatureCtx {
  ProviderContext* prov = nullptr;
  bool ecdsa = false;
  KeyRef key;
  EvpPkeyCtxPtr mirror;  // the default provider's verify context on key->pub
  EvpMdCtxPtr mdctx;     // digest-sign / digest-verify state
};

SignatureCtx* as_ctx(void* c) { return static_cast<SignatureCtx*>(c); }

Error usage_error(const std::string& what, const std::string& remedy) {
  return Error{"provider.signature_parameters", what, remedy};
}

template <bool Ecdsa>
void* sig_newctx(void* provctx, const char* /*propq*/) {
  auto* prov = static_cast<ProviderContext*>(provctx);
  return guarded(prov, static_cast<void*>(nullptr), [&]() -> void* {
    auto* c = new SignatureCtx;
    c->prov = prov;
    c->ecdsa = Ecdsa;
    return c;
  });
}

void sig_freectx(void* c) { delete as_ctx(c); }

void* sig_dupctx(void* c) {
  SignatureCtx* src = as_ctx(c);
  return guarded(src->prov, static_cast<void*>(nullptr), [&]() -> void* {
    auto d = std::make_unique<SignatureCtx>();
    d->prov = src->prov;
    d->ecdsa = src->ecdsa;
    d->key = src->key;
    if (src->mirror && !(d->mirror = EvpPkeyCtxPtr(EVP_PKEY_CTX_dup(src->mirror.get())))) return nullptr;
    if (src->mdctx) {
      d->mdctx.reset(EVP_MD_CTX_new());
      if (!d->mdctx || EVP_MD_CTX_copy_ex(d->mdctx.get(), src->mdctx.get()) != 1) return nullptr;
    }
    return d.release();
  });
}

// While a digest-sign/verify runs its digest is fixed, as in OpenSSL.
bool changes_running_digest(const SignatureCtx* ctx, const OSSL_PARAM params[]) {
  const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_DIGEST);
  const char* name = nullptr;
  return ctx->mdctx && p != nullptr &&
         (OSSL_PARAM_get_utf8_string_ptr(p, &name) != 1 ||
          EVP_MD_is_a(EVP_MD_CTX_get0_md(ctx->mdctx.get()), name) != 1);
}

int set_params(SignatureCtx* ctx, const OSSL_PARAM params[]) {
  if (params == nullptr) return 1;
  if (!ctx->mirror || changes_running_digest(ctx, params)) return 0;
  return EVP_PKEY_CTX_set_params(ctx->mirror.get(), params) == 1 ? 1 : 0;
}

int sig_set_ctx_params(void* c, const OSSL_PARAM params[]) {
  SignatureCtx* ctx = as_ctx(c);
  return guarded(ctx->prov, 0, [&] { return set_params(ctx, params); });
}

int init(SignatureCtx* ctx, void* keydata, const OSSL_PARAM params[], bool sign) {
  if (keydata != nullptr) ctx->key = *static_cast<KeyRef*>(keydata);
  if (!ctx->key || !ctx->key->pub || ctx->key->is_ec != ctx->ecdsa) return 0;
  if (sign && ctx->key->ephemeral) {
    CC_PROV_RAISE(ctx->prov, generated_key_refused("a key generated through the provider cannot sign"));
    return 0;
  }
  if (sign && !ctx->key->token_private()) {
    CC_PROV_RAISE(ctx->prov, (Error{"provider.no_private_key", "this key has no private half in the token",
                                    "load the key by its pkcs11: URI with type=private"}));
    return 0;
  }
  ctx->mdctx.reset();
  ctx->mirror.reset(EVP_PKEY_CTX_new_from_pkey(ctx->prov->software(), ctx->key->pub.get(), "provider=default"));
  if (!ctx->mirror || EVP_PKEY_verify_init(ctx->mirror.get()) != 1) return 0;
  return set_params(ctx, params);
}

int sig_sign_init(void* c, void* keydata, const OSSL_PARAM params[]) {
  SignatureCtx* ctx = as_ctx(c);
  return guarded(ctx->prov, 0, [&] { return init(ctx, keydata, params, true); });
}

int sig_verify_init(void* c, void* keydata, const OSSL_PARAM params[]) {
  SignatureCtx* ctx = as_ctx(c);
  return guarded(ctx->prov, 0, [&] { return init(ctx, keydata, params, false); });
}

// The hash a digest name (as the mirror reports it) stands for.
Result<std::optional<HashAlg>> hash_named(const SignatureCtx* ctx, const char* name) {
  if (name == nullptr || *name == '\0') return std::optional<HashAlg>{};
  auto h = ctx->prov->hash_of(name);
  if (!h)
    return usage_error(std::string("digest ") + name + " is not used with token keys",
                       "use SHA-256, SHA-384, SHA-512, SHA-224, SHA3-256/384/512 or SHA-1");
  return std::optional<HashAlg>{*h};
}

// The PSS salt in bytes for OpenSSL's saltlen value, as OpenSSL's signer
// computes it (rsa_pss_compute_saltlen): "auto" and "max" are the largest
// salt the key takes.
Result<std::size_t> pss_salt(const SignatureCtx* ctx, int saltlen, HashAlg hash) {
  const int h_len = static_cast<int>(hash_size(hash));
  if (saltlen == RSA_PSS_SALTLEN_DIGEST) return static_cast<std::size_t>(h_len);
  if (saltlen >= 0) return static_cast<std::size_t>(saltlen);
  // OpenSSL 3.1+ signs with "auto, at most the digest length" by default.
  constexpr int kAutoDigestMax = -4;  // RSA_PSS_SALTLEN_AUTO_DIGEST_MAX
  if (saltlen != RSA_PSS_SALTLEN_AUTO && saltlen != RSA_PSS_SALTLEN_MAX && saltlen != kAutoDigestMax)
    return usage_error("RSA-PSS salt length " + std::to_string(saltlen) + " is not understood",
                       "use rsa_pss_saltlen:digest, max, auto or a number of bytes");
  int max = EVP_PKEY_get_size(ctx->key->pub.get()) - h_len - 2;
  if ((EVP_PKEY_get_bits(ctx->key->pub.get()) & 0x7) == 1) --max;
  if (max < 0) return usage_error("the key is too small for RSA-PSS with this digest", "use a shorter digest");
  return static_cast<std::size_t>(saltlen == kAutoDigestMax ? std::min(max, h_len) : max);
}

// The signature the mirror's settled parameters describe.
Result<SignParams> settled(const SignatureCtx* ctx) {
  char md[80] = "", mgf1[80] = "";
  int pad = RSA_PKCS1_PADDING, saltlen = RSA_PSS_SALTLEN_AUTO;
  OSSL_PARAM q[] = {OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, md, sizeof md),
                    OSSL_PARAM_construct_int(OSSL_SIGNATURE_PARAM_PAD_MODE, &pad),
                    OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, mgf1, sizeof mgf1),
                    OSSL_PARAM_construct_int(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, &saltlen),
                    OSSL_PARAM_construct_end()};
  if (ctx->ecdsa) q[1] = OSSL_PARAM_construct_end();
  if (EVP_PKEY_CTX_get_params(ctx->mirror.get(), q) != 1)
    return openssl_error("provider.signature_parameters", "the signature parameters cannot be read back",
                         "check the parameters given");
  SignParams p;
  CC_TRY_ASSIGN(p.hash, hash_named(ctx, md));
  if (ctx->ecdsa) {
    p.scheme = SignScheme::ecdsa;
    return p;
  }
  if (pad == RSA_PKCS1_PADDING) {
    p.scheme = SignScheme::rsa_pkcs1;
    return p;
  }
  if (pad != RSA_PKCS1_PSS_PADDING)
    return usage_error("RSA padding mode " + std::to_string(pad) +
                           " (no padding or X9.31) is not offered: raw RSA with a token key would work as a "
                           "decryption oracle",
                       "use rsa_padding_mode:pkcs1 (the default) or pss");
  p.scheme = SignScheme::rsa_pss;
  if (!p.hash) return usage_error("RSA-PSS without a digest", "set the digest (digest:<name>)");
  CC_TRY_ASSIGN(p.mgf1, hash_named(ctx, mgf1));
  CC_TRY_ASSIGN(p.salt_len, pss_salt(ctx, saltlen, *p.hash));
  return p;
}

Result<Bytes> token_sign(SignatureCtx* ctx, std::span<const std::uint8_t> input) {
  CC_TRY_ASSIGN(SignParams params, settled(ctx));
  CC_TRY_ASSIGN(auto custody, ctx->prov->custody());
  return custody->sign_input(ctx->key->label, params, input);
}

int sig_sign(void* c, unsigned char* sig, size_t* siglen, size_t sigsize, const unsigned char* tbs, size_t tbslen) {
  SignatureCtx* ctx = as_ctx(c);
  return guarded(ctx->prov, 0, [&] {
    if (sig == nullptr) {
      *siglen = static_cast<size_t>(EVP_PKEY_get_size(ctx->key->pub.get()));
      return 1;
    }
    auto r = token_sign(ctx, {tbs, tbslen});
    if (!r) {
      CC_PROV_RAISE(ctx->prov, r.error());
      return 0;
    }
    if (r->size() > sigsize) return 0;
    std::memcpy(sig, r->data(), r->size());
    *siglen = r->size();
    return 1;
  });
}

// Verification needs no secret: the mirror does it, as OpenSSL would.
int mirror_verify(SignatureCtx* ctx, const unsigned char* sig, size_t siglen, const unsigned char* tbs,
                  size_t tbslen) {
  return ctx->mirror && EVP_PKEY_verify(ctx->mirror.get(), sig, siglen, tbs, tbslen) == 1 ? 1 : 0;
}

int sig_verify(void* c, const unsigned char* sig, size_t siglen, const unsigned char* tbs, size_t tbslen) {
  SignatureCtx* ctx = as_ctx(c);
  return guarded(ctx->prov, 0, [&] { return mirror_verify(ctx, sig, siglen, tbs, tbslen); });
}

int digest_init(SignatureCtx* ctx, const char* mdname) {
  const std::string name = mdname != nullptr && *mdname != '\0' ? mdname : "SHA256";
  OSSL_PARAM p[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, const_cast<char*>(name.c_str()), 0),
      OSSL_PARAM_construct_end()};
  if (EVP_PKEY_CTX_set_params(ctx->mirror.get(), p) != 1) return 0;
  std::unique_ptr<EVP_MD, OsslDeleter<EVP_MD_free>> md(
      EVP_MD_fetch(ctx->prov->software(), name.c_str(), "provider=default"));
  ctx->mdctx.reset(EVP_MD_CTX_new());
  return md && ctx->mdctx && EVP_DigestInit_ex2(ctx->mdctx.get(), md.get(), nullptr) == 1 ? 1 : 0;
}

int sig_digest_sign_init(void* c, const char* mdname, void* keydata, const OSSL_PARAM params[]) {
  SignatureCtx* ctx = as_ctx(c);
  return guarded(ctx->prov, 0, [&] { return init(ctx, keydata, params, true) && digest_init(ctx, mdname); });
}

int sig_digest_verify_init(void* c, const char* mdname, void* keydata, const OSSL_PARAM params[]) {
  SignatureCtx* ctx = as_ctx(c);
  return guarded(ctx->prov, 0, [&] { return init(ctx, keydata, params, false) && digest_init(ctx, mdname); });
}

int sig_digest_update(void* c, const unsigned char* data, size_t len) {
  SignatureCtx* ctx = as_ctx(c);
  return ctx->mdctx && EVP_DigestUpdate(ctx->mdctx.get(), data, len) == 1 ? 1 : 0;
}

Result<Bytes> finish_digest(SignatureCtx* ctx) {
  Bytes d(EVP_MAX_MD_SIZE);
  unsigned int n = 0;
  if (!ctx->mdctx || EVP_DigestFinal_ex(ctx->mdctx.get(), d.data(), &n) != 1)
    return openssl_error("provider.digest_failed", "the message digest failed", "retry");
  d.resize(n);
  return d;
}

int sig_digest_sign_final(void* c, unsigned char* sig, size_t* siglen, size_t sigsize) {
  SignatureCtx* ctx = as_ctx(c);
  if (sig == nullptr) return sig_sign(c, nullptr, siglen, sigsize, nullptr, 0);  // size query: keep the state
  return guarded(ctx->prov, 0, [&] {
    auto d = finish_digest(ctx);
    if (!d) {
      CC_PROV_RAISE(ctx->prov, d.error());
      return 0;
    }
    return sig_sign(c, sig, siglen, sigsize, d->data(), d->size());
  });
}

int sig_digest_sign(void* c, unsigned char* sig, size_t* siglen, size_t sigsize, const unsigned char* tbs,
                    size_t tbslen) {
  if (sig == nullptr) return sig_sign(c, nullptr, siglen, sigsize, nullptr, 0);
  return sig_digest_update(c, tbs, tbslen) && sig_digest_sign_final(c, sig, siglen, sigsize);
}

int sig_digest_verify_final(void* c, const unsigned char* sig, size_t siglen) {
  SignatureCtx* ctx = as_ctx(c);
  return guarded(ctx->prov, 0, [&] {
    auto d = finish_digest(ctx);
    return d ? mirror_verify(ctx, sig, siglen, d->data(), d->size()) : 0;
  });
}

int sig_digest_verify(void* c, const unsigned char* sig, size_t siglen, const unsigned char* tbs, size_t tbslen) {
  return sig_digest_update(c, tbs, tbslen) && sig_digest_verify_final(c, sig, siglen);
}

// Digest, padding, MGF1, salt and the X.509 AlgorithmIdentifier (RSA-PSS
// parameters included) are the mirror's.
int sig_get_ctx_params(void* c, OSSL_PARAM params[]) {
  SignatureCtx* ctx = as_ctx(c);
  return guarded(ctx->prov, 0, [&] {
    return ctx->mirror && EVP_PKEY_CTX_get_params(ctx->mirror.get(), params) == 1 ? 1 : 0;
  });
}

const OSSL_PARAM kGettableRsa[] = {OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, nullptr, 0),
                                   OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, nullptr, 0),
                                   OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, nullptr, 0),
                                   OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, nullptr, 0),
                                   OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, nullptr, 0),
                                   OSSL_PARAM_END};
const OSSL_PARAM kGettableEc[] = {OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, nullptr, 0),
                                  OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, nullptr, 0),
                                  OSSL_PARAM_size_t(OSSL_SIGNATURE_PARAM_DIGEST_SIZE, nullptr), OSSL_PARAM_END};
const OSSL_PARAM kSettableRsa[] = {OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, nullptr, 0),
                                   OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PROPERTIES, nullptr, 0),
                                   OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, nullptr, 0),
                                   OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, nullptr, 0),
                                   OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_PROPERTIES, nullptr, 0),
                                   OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, nullptr, 0),
                                   OSSL_PARAM_END};
const OSSL_PARAM kSettableEc[] = {OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, nullptr, 0),
                                  OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PROPERTIES, nullptr, 0),
                                  OSSL_PARAM_END};

template <bool Ecdsa>
const OSSL_PARAM* sig_gettable_ctx_params(void*, void*) {
  return Ecdsa ? kGettableEc : kGettableRsa;
}
template <bool Ecdsa>
const OSSL_PARAM* sig_settable_ctx_params(void*, void*) {
  return Ecdsa ? kSettableEc : kSettableRsa;
}

#define FN(id, f) {id, reinterpret_cast<void (*)()>(f)}
#define SIGNATURE_TABLE(Ecdsa)                                                                                  \
  {                                                                                                             \
    FN(OSSL_FUNC_SIGNATURE_NEWCTX, sig_newctx<Ecdsa>), FN(OSSL_FUNC_SIGNATURE_FREECTX, sig_freectx),           \
        FN(OSSL_FUNC_SIGNATURE_DUPCTX, sig_dupctx), FN(OSSL_FUNC_SIGNATURE_SIGN_INIT, sig_sign_init),           \
        FN(OSSL_FUNC_SIGNATURE_SIGN, sig_sign), FN(OSSL_FUNC_SIGNATURE_VERIFY_INIT, sig_verify_init),           \
        FN(OSSL_FUNC_SIGNATURE_VERIFY, sig_verify),                                                             \
        FN(OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, sig_digest_sign_init),                                         \
        FN(OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE, sig_digest_update),                                          \
        FN(OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL, sig_digest_sign_final),                                       \
        FN(OSSL_FUNC_SIGNATURE_DIGEST_SIGN, sig_digest_sign),                                                   \
        FN(OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_INIT, sig_digest_verify_init),                                     \
        FN(OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_UPDATE, sig_digest_update),                                        \
        FN(OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_FINAL, sig_digest_verify_final),                                   \
        FN(OSSL_FUNC_SIGNATURE_DIGEST_VERIFY, sig_digest_verify),                                               \
        FN(OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, sig_get_ctx_params),                                             \
        FN(OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS, sig_gettable_ctx_params<Ecdsa>),                            \
        FN(OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, sig_set_ctx_params),                                             \
        FN(OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, sig_settable_ctx_params<Ecdsa>), {0, nullptr}              \
  }

}  // namespace

extern const OSSL_DISPATCH kRsaSignature[];
extern const OSSL_DISPATCH kEcdsaSignature[];
const OSSL_DISPATCH kRsaSignature[] = SIGNATURE_TABLE(false);
const OSSL_DISPATCH kEcdsaSignature[] = SIGNATURE_TABLE(true);

}  // namespace certcustody::provider
