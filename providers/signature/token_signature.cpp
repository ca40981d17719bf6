// SIGNATURE for token keys: RSA PKCS#1 v1.5, RSA-PSS (salt = digest length,
// MGF1 with the same digest, as TLS 1.3 uses) and ECDSA. Digest-sign hashes in
// software and signs the digest in the token with one C_Sign. Verification,
// which needs no secret, runs in software on the public half.
#include <openssl/core_names.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <cstring>
#include <optional>

#include "keymgmt/token_key.h"
#include "provider_context.h"

namespace certcustody::provider {
namespace {

struct SignatureCtx {
  ProviderContext* prov = nullptr;
  bool ecdsa = false;
  KeyRef key;
  int pad = RSA_PKCS1_PADDING;
  std::optional<int> saltlen;    // RSA_PSS_SALTLEN_* or bytes
  std::string md;                // digest name, empty until set
  std::string mgf1_md;           // empty: same as md
  EvpMdCtxPtr mdctx;             // digest-sign / digest-verify state
};

SignatureCtx* as_ctx(void* c) { return static_cast<SignatureCtx*>(c); }

Error usage_error(const std::string& what, const std::string& remedy) {
  return Error{"provider.signature_parameters", what, remedy};
}

std::optional<HashAlg> hash_of(const std::string& md, std::size_t digest_len) {
  if (!md.empty()) return hash_by_name(md);
  switch (digest_len) {  // EVP_PKEY_sign without a digest: go by the length
    case 20: return HashAlg::sha1;
    case 32: return HashAlg::sha256;
    case 48: return HashAlg::sha384;
    case 64: return HashAlg::sha512;
    default: return std::nullopt;
  }
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
    auto* d = new SignatureCtx;
    d->prov = src->prov;
    d->ecdsa = src->ecdsa;
    d->key = src->key;
    d->pad = src->pad;
    d->saltlen = src->saltlen;
    d->md = src->md;
    d->mgf1_md = src->mgf1_md;
    if (src->mdctx) {
      d->mdctx.reset(EVP_MD_CTX_new());
      if (!d->mdctx || EVP_MD_CTX_copy_ex(d->mdctx.get(), src->mdctx.get()) != 1) {
        delete d;
        return nullptr;
      }
    }
    return d;
  });
}

int sig_set_ctx_params(void* c, const OSSL_PARAM params[]);

int sig_init(void* c, void* keydata, const OSSL_PARAM params[]) {
  SignatureCtx* ctx = as_ctx(c);
  return guarded(ctx->prov, 0, [&] {
    if (keydata != nullptr) ctx->key = *static_cast<KeyRef*>(keydata);
    if (!ctx->key || !ctx->key->pub || ctx->key->is_ec != ctx->ecdsa) return 0;
    ctx->pad = RSA_PKCS1_PADDING;
    ctx->saltlen.reset();
    ctx->md.clear();
    ctx->mgf1_md.clear();
    ctx->mdctx.reset();
    return sig_set_ctx_params(c, params);
  });
}

int sig_sign_init(void* c, void* keydata, const OSSL_PARAM params[]) {
  SignatureCtx* ctx = as_ctx(c);
  if (!sig_init(c, keydata, params)) return 0;
  if (!ctx->key->has_private()) {
    CC_PROV_RAISE(ctx->prov, (Error{"provider.no_private_key", "this key has no private half in the token",
                                    "load the key by its pkcs11: URI with type=private"}));
    return 0;
  }
  return 1;
}

// Signs `digest` in the token; the scheme follows the context's parameters.
Result<Bytes> token_sign(SignatureCtx* ctx, std::span<const std::uint8_t> digest) {
  auto hash = hash_of(ctx->md, digest.size());
  if (!hash)
    return usage_error("digest " + (ctx->md.empty() ? std::to_string(digest.size()) + " bytes long" : ctx->md) +
                           " is not supported with token keys",
                       "use SHA-256, SHA-384, SHA-512 or SHA-1");
  SignScheme scheme = SignScheme::ecdsa;
  if (!ctx->ecdsa) {
    if (ctx->pad == RSA_PKCS1_PADDING) {
      scheme = SignScheme::rsa_pkcs1;
    } else if (ctx->pad == RSA_PKCS1_PSS_PADDING) {
      scheme = SignScheme::rsa_pss;
      const int want = static_cast<int>(hash_size(*hash));
      const int salt = ctx->saltlen.value_or(RSA_PSS_SALTLEN_DIGEST);
      if (salt != RSA_PSS_SALTLEN_DIGEST && salt != RSA_PSS_SALTLEN_AUTO && salt != want)
        return usage_error("RSA-PSS with a salt other than the digest length",
                           "use rsa_pss_saltlen:digest (what TLS 1.3 and X.509 profiles use)");
      if (!ctx->mgf1_md.empty() && hash_of(ctx->mgf1_md, 0) != hash)
        return usage_error("RSA-PSS with an MGF1 digest other than the message digest",
                           "use the same digest for MGF1");
    } else {
      return usage_error("RSA padding mode " + std::to_string(ctx->pad) + " cannot sign with a token key",
                         "use pkcs1 or pss padding");
    }
  }
  CC_TRY_ASSIGN(auto custody, ctx->prov->custody());
  return custody->sign_digest(ctx->key->label, scheme, *hash, digest);
}

int max_size(const SignatureCtx* ctx) { return EVP_PKEY_get_size(ctx->key->pub.get()); }

int sig_sign(void* c, unsigned char* sig, size_t* siglen, size_t sigsize, const unsigned char* tbs, size_t tbslen) {
  SignatureCtx* ctx = as_ctx(c);
  return guarded(ctx->prov, 0, [&] {
    if (sig == nullptr) {
      *siglen = static_cast<size_t>(max_size(ctx));
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

// Software verification with the public half (no secret involved).
int software_verify(SignatureCtx* ctx, const unsigned char* sig, size_t siglen, const unsigned char* tbs,
                    size_t tbslen) {
  EvpPkeyCtxPtr v(EVP_PKEY_CTX_new_from_pkey(ctx->prov->software(), ctx->key->pub.get(), "provider=default"));
  if (!v || EVP_PKEY_verify_init(v.get()) != 1) return 0;
  if (!ctx->md.empty()) {
    std::unique_ptr<EVP_MD, OsslDeleter<EVP_MD_free>> md(
        EVP_MD_fetch(ctx->prov->software(), ctx->md.c_str(), "provider=default"));
    if (!md || EVP_PKEY_CTX_set_signature_md(v.get(), md.get()) != 1) return 0;
  }
  if (!ctx->ecdsa) {
    if (EVP_PKEY_CTX_set_rsa_padding(v.get(), ctx->pad) != 1) return 0;
    if (ctx->pad == RSA_PKCS1_PSS_PADDING &&
        EVP_PKEY_CTX_set_rsa_pss_saltlen(v.get(), ctx->saltlen.value_or(RSA_PSS_SALTLEN_AUTO)) != 1)
      return 0;
  }
  return EVP_PKEY_verify(v.get(), sig, siglen, tbs, tbslen) == 1 ? 1 : 0;
}

int sig_verify(void* c, const unsigned char* sig, size_t siglen, const unsigned char* tbs, size_t tbslen) {
  SignatureCtx* ctx = as_ctx(c);
  return guarded(ctx->prov, 0, [&] { return software_verify(ctx, sig, siglen, tbs, tbslen); });
}

int digest_init(SignatureCtx* ctx, const char* mdname) {
  ctx->md = mdname != nullptr && *mdname != '\0' ? mdname : (ctx->md.empty() ? "SHA256" : ctx->md);
  EVP_MD* md = EVP_MD_fetch(ctx->prov->software(), ctx->md.c_str(), "provider=default");
  ctx->mdctx.reset(EVP_MD_CTX_new());
  bool ok = md != nullptr && ctx->mdctx && EVP_DigestInit_ex2(ctx->mdctx.get(), md, nullptr) == 1;
  EVP_MD_free(md);
  return ok ? 1 : 0;
}

int sig_digest_sign_init(void* c, const char* mdname, void* keydata, const OSSL_PARAM params[]) {
  SignatureCtx* ctx = as_ctx(c);
  return guarded(ctx->prov, 0, [&] { return sig_sign_init(c, keydata, params) && digest_init(ctx, mdname); });
}

int sig_digest_verify_init(void* c, const char* mdname, void* keydata, const OSSL_PARAM params[]) {
  SignatureCtx* ctx = as_ctx(c);
  return guarded(ctx->prov, 0, [&] { return sig_init(c, keydata, params) && digest_init(ctx, mdname); });
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
    return d ? software_verify(ctx, sig, siglen, d->data(), d->size()) : 0;
  });
}

int sig_digest_verify(void* c, const unsigned char* sig, size_t siglen, const unsigned char* tbs, size_t tbslen) {
  return sig_digest_update(c, tbs, tbslen) && sig_digest_verify_final(c, sig, siglen);
}

// DER AlgorithmIdentifier of the signature, for certificates and requests.
Result<Bytes> algorithm_id(const SignatureCtx* ctx) {
  const std::string md = ctx->md.empty() ? "SHA256" : ctx->md;
  int md_nid = OBJ_txt2nid(md.c_str());
  if (md_nid == NID_undef) md_nid = OBJ_sn2nid(md.c_str());
  int sig_nid = NID_undef;
  if (!ctx->ecdsa && ctx->pad != RSA_PKCS1_PADDING)
    return usage_error("an X.509 AlgorithmIdentifier for RSA-PSS signatures is not produced by token keys",
                       "sign certificates and requests with PKCS#1 v1.5 (the default)");
  if (OBJ_find_sigid_by_algs(&sig_nid, md_nid, ctx->ecdsa ? NID_X9_62_id_ecPublicKey : NID_rsaEncryption) != 1)
    return usage_error("no signature algorithm for digest " + md, "use SHA-256, SHA-384 or SHA-512");
  std::unique_ptr<X509_ALGOR, OsslDeleter<X509_ALGOR_free>> alg(X509_ALGOR_new());
  // RFC 4055 §5: NULL parameters for RSA; RFC 5758 §3.2: absent for ECDSA.
  X509_ALGOR_set0(alg.get(), OBJ_nid2obj(sig_nid), ctx->ecdsa ? V_ASN1_UNDEF : V_ASN1_NULL, nullptr);
  unsigned char* der = nullptr;
  int n = i2d_X509_ALGOR(alg.get(), &der);
  if (n <= 0) return openssl_error("provider.encode_failed", "cannot encode the AlgorithmIdentifier", "retry");
  Bytes out(der, der + n);
  OPENSSL_free(der);
  return out;
}

int sig_get_ctx_params(void* c, OSSL_PARAM params[]) {
  SignatureCtx* ctx = as_ctx(c);
  return guarded(ctx->prov, 0, [&] {
    if (OSSL_PARAM* p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_ALGORITHM_ID)) {
      auto id = algorithm_id(ctx);
      if (!id) {
        CC_PROV_RAISE(ctx->prov, id.error());
        return 0;
      }
      if (OSSL_PARAM_set_octet_string(p, id->data(), id->size()) != 1) return 0;
    }
    if (OSSL_PARAM* p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_DIGEST))
      if (OSSL_PARAM_set_utf8_string(p, ctx->md.c_str()) != 1) return 0;
    if (OSSL_PARAM* p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_PAD_MODE))
      if (OSSL_PARAM_set_int(p, ctx->pad) != 1) return 0;
    return 1;
  });
}

// TLS and the openssl tools send these either as integers or as strings.
bool read_pad_mode(const OSSL_PARAM* p, int& out) {
  if (p->data_type == OSSL_PARAM_UTF8_STRING) {
    const char* s = static_cast<const char*>(p->data);
    if (OPENSSL_strcasecmp(s, OSSL_PKEY_RSA_PAD_MODE_PKCSV15) == 0) out = RSA_PKCS1_PADDING;
    else if (OPENSSL_strcasecmp(s, OSSL_PKEY_RSA_PAD_MODE_PSS) == 0) out = RSA_PKCS1_PSS_PADDING;
    else return false;
    return true;
  }
  return OSSL_PARAM_get_int(p, &out) == 1;
}

bool read_saltlen(const OSSL_PARAM* p, int& out) {
  if (p->data_type == OSSL_PARAM_UTF8_STRING) {
    const char* s = static_cast<const char*>(p->data);
    if (std::strcmp(s, OSSL_PKEY_RSA_PSS_SALT_LEN_DIGEST) == 0) out = RSA_PSS_SALTLEN_DIGEST;
    else if (std::strcmp(s, OSSL_PKEY_RSA_PSS_SALT_LEN_MAX) == 0) out = RSA_PSS_SALTLEN_MAX;
    else if (std::strcmp(s, OSSL_PKEY_RSA_PSS_SALT_LEN_AUTO) == 0) out = RSA_PSS_SALTLEN_AUTO;
    else out = std::atoi(s);
    return true;
  }
  return OSSL_PARAM_get_int(p, &out) == 1;
}

int sig_set_ctx_params_unguarded(SignatureCtx* ctx, const OSSL_PARAM params[]) {
  if (params == nullptr) return 1;
  if (const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_DIGEST)) {
    const char* md = nullptr;
    if (OSSL_PARAM_get_utf8_string_ptr(p, &md) != 1) return 0;
    ctx->md = md;
  }
  if (ctx->ecdsa) return 1;
  if (const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PAD_MODE))
    if (!read_pad_mode(p, ctx->pad)) return 0;
  if (const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_PSS_SALTLEN)) {
    int v = 0;
    if (!read_saltlen(p, v)) return 0;
    ctx->saltlen = v;
  }
  if (const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_MGF1_DIGEST)) {
    const char* md = nullptr;
    if (OSSL_PARAM_get_utf8_string_ptr(p, &md) != 1) return 0;
    ctx->mgf1_md = md;
  }
  return 1;
}

int sig_set_ctx_params(void* c, const OSSL_PARAM params[]) {
  SignatureCtx* ctx = as_ctx(c);
  return guarded(ctx->prov, 0, [&] { return sig_set_ctx_params_unguarded(ctx, params); });
}

const OSSL_PARAM kGettableCtx[] = {OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, nullptr, 0),
                                   OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, nullptr, 0),
                                   OSSL_PARAM_int(OSSL_SIGNATURE_PARAM_PAD_MODE, nullptr), OSSL_PARAM_END};
const OSSL_PARAM kSettableRsa[] = {OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, nullptr, 0),
                                   OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PROPERTIES, nullptr, 0),
                                   OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, nullptr, 0),
                                   OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, nullptr, 0),
                                   OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, nullptr, 0),
                                   OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_PROPERTIES, nullptr, 0),
                                   OSSL_PARAM_END};
const OSSL_PARAM kSettableEc[] = {OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, nullptr, 0),
                                  OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_PROPERTIES, nullptr, 0),
                                  OSSL_PARAM_END};

const OSSL_PARAM* sig_gettable_ctx_params(void*, void*) { return kGettableCtx; }
template <bool Ecdsa>
const OSSL_PARAM* sig_settable_ctx_params(void*, void*) {
  return Ecdsa ? kSettableEc : kSettableRsa;
}

#define FN(id, f) {id, reinterpret_cast<void (*)()>(f)}
#define SIGNATURE_TABLE(Ecdsa)                                                                                  \
  {                                                                                                             \
    FN(OSSL_FUNC_SIGNATURE_NEWCTX, sig_newctx<Ecdsa>), FN(OSSL_FUNC_SIGNATURE_FREECTX, sig_freectx),           \
        FN(OSSL_FUNC_SIGNATURE_DUPCTX, sig_dupctx), FN(OSSL_FUNC_SIGNATURE_SIGN_INIT, sig_sign_init),           \
        FN(OSSL_FUNC_SIGNATURE_SIGN, sig_sign), FN(OSSL_FUNC_SIGNATURE_VERIFY_INIT, sig_init),                  \
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
        FN(OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS, sig_gettable_ctx_params),                                   \
        FN(OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, sig_set_ctx_params),                                             \
        FN(OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, sig_settable_ctx_params<Ecdsa>), {0, nullptr}              \
  }

}  // namespace

extern const OSSL_DISPATCH kRsaSignature[];
extern const OSSL_DISPATCH kEcdsaSignature[];
const OSSL_DISPATCH kRsaSignature[] = SIGNATURE_TABLE(false);
const OSSL_DISPATCH kEcdsaSignature[] = SIGNATURE_TABLE(true);

}  // namespace certcustody::provider
