// STORE for RFC 7512 "pkcs11:" URIs on the configured token. A URI selects
// objects by object= (label) and/or id= (CKA_ID), narrowed by type=; with
// neither it lists the whole token (`openssl storeutl pkcs11:token=…`).
// Private keys come as references (never their value), then public keys,
// then certificates; OSSL_STORE_expect() (-keys, -pubkeys, -certs) narrows
// what is looked for, and the PIN is read only when a private key is. A key
// pair without a public-key object gets its public half from its
// certificate. With the TPM backend the same store serves "tpm2:" URIs
// (docs/tpm.md).
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/store.h>

#include <vector>

#include "custody/token_uri.h"
#include "keymgmt/token_key.h"
#include "provider_context.h"

namespace certcustody::provider {
namespace {

struct StoreCtx {
  ProviderContext* prov = nullptr;
  std::string uri;
  ObjectQuery query;  // what the URI names; type= already applied
  int expect = 0;     // OSSL_STORE_INFO_*; 0 = anything
  bool loaded = false;
  bool failed = false;
  std::size_t next_key = 0;
  std::size_t next_cert = 0;
  std::vector<KeyRef> keys;  // private keys first, then public keys
  std::vector<Bytes> certificates;
};

StoreCtx* as_ctx(void* c) { return static_cast<StoreCtx*>(c); }

Error uri_error(const std::string& what, const std::string& remedy) {
  return Error{"provider.uri_invalid", what, remedy};
}

Status check_token(ProviderContext* prov, const TokenUri& uri) {
  auto wanted = uri.token_label();
  if (!wanted) return {};
  CC_TRY_ASSIGN(std::string configured, prov->configured_token());
  CC_TRY_ASSIGN(TokenUri conf, TokenUri::parse(configured));
  auto have = conf.token_label();
  if (have && *have != *wanted)
    return uri_error("the URI names token '" + *wanted + "' but certcustody is configured for " + configured,
                     "use token=" + *have + " in the URI, or point CERTCUSTODY_CONFIG at that token's configuration");
  return {};
}

Error backend_mismatch(const std::string& uri, bool tpm_configured) {
  return uri_error("\"" + uri + "\" names a " + (tpm_configured ? "PKCS#11 token" : "TPM") +
                       " key, but certcustody is configured for " + (tpm_configured ? "a TPM" : "a PKCS#11 token"),
                   tpm_configured ? "use tpm2:object=<label>, tpm2:file=… or tpm2:handle=… (docs/tpm.md)"
                                  : "use pkcs11:token=…;object=<label>, or point CERTCUSTODY_CONFIG at the TPM configuration");
}

// "tpm2:object=ra", "tpm2:file=/…/ra.tss2", "tpm2:handle=0x81000002": the
// label is the URI itself, which the TPM custody resolves.
Result<ObjectQuery> tpm_query(ProviderContext* prov, const std::string& uri) {
  CC_TRY_ASSIGN(bool tpm, prov->uses_tpm());
  if (!tpm) return backend_mismatch(uri, false);
  ObjectQuery q;
  q.label = uri;
  return q;
}

// object=, id= and type= of a pkcs11: URI.
Result<ObjectQuery> pkcs11_query(ProviderContext* prov, const std::string& text) {
  if (auto tpm = prov->uses_tpm(); tpm && *tpm) return backend_mismatch(text, true);
  CC_TRY_ASSIGN(TokenUri uri, TokenUri::parse(text));
  CC_TRY(check_token(prov, uri));
  ObjectQuery q;
  q.label = uri.object_label();
  q.id = uri.object_id();
  if (auto cls = uri.object_class()) {
    q.private_keys = *cls == CKO_PRIVATE_KEY;
    q.public_keys = *cls == CKO_PUBLIC_KEY;
    q.certificates = *cls == CKO_CERTIFICATE;
    if (!q.private_keys && !q.public_keys && !q.certificates)
      return uri_error("\"" + text + "\" names secret keys or data objects, which OpenSSL cannot load",
                       "use type=private, type=public or type=cert");
  }
  return q;
}

void* store_open(void* provctx, const char* uri_text) {
  auto* prov = static_cast<ProviderContext*>(provctx);
  return guarded(prov, static_cast<void*>(nullptr), [&]() -> void* {
    const std::string uri(uri_text);
    auto q = uri.rfind("tpm2:", 0) == 0 ? tpm_query(prov, uri) : pkcs11_query(prov, uri);
    if (!q) {
      CC_PROV_RAISE(prov, q.error());
      return nullptr;
    }
    auto* ctx = new StoreCtx;
    ctx->prov = prov;
    ctx->uri = uri;
    ctx->query = std::move(q.value());
    return ctx;
  });
}

// The URI's selection narrowed by what the application expects.
ObjectQuery wanted(const StoreCtx* ctx) {
  ObjectQuery q = ctx->query;
  q.private_keys &= ctx->expect == 0 || ctx->expect == OSSL_STORE_INFO_PKEY;
  q.public_keys &= ctx->expect == 0 || ctx->expect == OSSL_STORE_INFO_PUBKEY;
  q.certificates &= ctx->expect == 0 || ctx->expect == OSSL_STORE_INFO_CERT;
  return q;
}

KeyRef key_ref(StoreCtx* ctx, const std::string& name, const EVP_PKEY* pub) {
  auto k = std::make_shared<TokenKey>();
  k->prov = ctx->prov;
  k->label = name;
  k->pub.reset(EVP_PKEY_dup(const_cast<EVP_PKEY*>(pub)));
  k->is_ec = EVP_PKEY_is_a(pub, "EC") == 1;
  return k;
}

bool have_public(const StoreCtx* ctx, const EVP_PKEY* pub) {
  for (const KeyRef& k : ctx->keys)
    if (k->label.empty() && EVP_PKEY_eq(k->pub.get(), pub) == 1) return true;
  return false;
}

// Finds what the URI names on the token, once.
Status collect(StoreCtx* ctx) {
  CC_TRY_ASSIGN(auto custody, ctx->prov->custody());
  const ObjectQuery want = wanted(ctx);
  ObjectQuery q = want;
  q.certificates = want.certificates || want.public_keys;  // a certificate can stand in for a public key
  CC_TRY_ASSIGN(std::vector<FoundObject> found, custody->find_objects(q));
  for (const FoundObject& o : found)
    if (o.info.kind == ObjectKind::private_key && o.public_key)
      ctx->keys.push_back(key_ref(ctx, o.key_name, o.public_key.get()));
  for (const FoundObject& o : found)
    if (o.info.kind == ObjectKind::public_key && o.public_key)
      ctx->keys.push_back(key_ref(ctx, "", o.public_key.get()));
  for (const FoundObject& o : found) {
    if (o.info.kind != ObjectKind::certificate) continue;
    if (want.certificates) {
      ctx->certificates.push_back(o.certificate);
    } else if (want.public_keys && o.public_key && !have_public(ctx, o.public_key.get())) {
      ctx->keys.push_back(key_ref(ctx, "", o.public_key.get()));
    }
  }
  if (ctx->keys.empty() && ctx->certificates.empty())
    return Error{"custody.key_not_found", "nothing of the kind asked for matches \"" + ctx->uri + "\"",
                 "list the token with `certcustody token info` (or `openssl storeutl` on pkcs11:token=…) and fix "
                 "object= / id= / type= in the URI"};
  return {};
}

int load_key(StoreCtx* ctx, OSSL_CALLBACK* object_cb, void* object_cbarg) {
  KeyRef* ref = &ctx->keys[ctx->next_key++];
  int type = OSSL_OBJECT_PKEY;
  const char* data_type = (*ref)->is_ec ? "EC" : "RSA";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &type),
      OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE, const_cast<char*>(data_type), 0),
      OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_REFERENCE, &ref, sizeof ref), OSSL_PARAM_construct_end()};
  return object_cb(params, object_cbarg);
}

int load_certificate(StoreCtx* ctx, OSSL_CALLBACK* object_cb, void* object_cbarg) {
  Bytes& der = ctx->certificates[ctx->next_cert++];
  int type = OSSL_OBJECT_CERT;
  OSSL_PARAM params[] = {OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &type),
                         OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_DATA, der.data(), der.size()),
                         OSSL_PARAM_construct_end()};
  return object_cb(params, object_cbarg);
}

int store_load(void* c, OSSL_CALLBACK* object_cb, void* object_cbarg, OSSL_PASSPHRASE_CALLBACK*, void*) {
  StoreCtx* ctx = as_ctx(c);
  return guarded(ctx->prov, 0, [&] {
    if (!ctx->loaded) {
      ctx->loaded = true;
      if (Status s = collect(ctx); !s) {
        ctx->failed = true;
        CC_PROV_RAISE(ctx->prov, s.error());
        return 0;
      }
    }
    if (ctx->next_key < ctx->keys.size()) return load_key(ctx, object_cb, object_cbarg);
    if (ctx->next_cert < ctx->certificates.size()) return load_certificate(ctx, object_cb, object_cbarg);
    return 0;
  });
}

int store_eof(void* c) {
  const StoreCtx* ctx = as_ctx(c);
  return ctx->failed || (ctx->loaded && ctx->next_key >= ctx->keys.size() &&
                         ctx->next_cert >= ctx->certificates.size())
             ? 1
             : 0;
}

int store_close(void* c) {
  delete as_ctx(c);
  return 1;
}

int store_set_ctx_params(void* c, const OSSL_PARAM params[]) {
  if (params == nullptr) return 1;
  if (const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_STORE_PARAM_EXPECT))
    if (OSSL_PARAM_get_int(p, &as_ctx(c)->expect) != 1) return 0;
  return 1;
}

const OSSL_PARAM kSettable[] = {OSSL_PARAM_int(OSSL_STORE_PARAM_EXPECT, nullptr), OSSL_PARAM_END};
const OSSL_PARAM* store_settable_ctx_params(void*) { return kSettable; }

#define FN(id, f) {id, reinterpret_cast<void (*)()>(f)}

}  // namespace

extern const OSSL_DISPATCH kPkcs11Store[];
const OSSL_DISPATCH kPkcs11Store[] = {FN(OSSL_FUNC_STORE_OPEN, store_open),
                                      FN(OSSL_FUNC_STORE_LOAD, store_load),
                                      FN(OSSL_FUNC_STORE_EOF, store_eof),
                                      FN(OSSL_FUNC_STORE_CLOSE, store_close),
                                      FN(OSSL_FUNC_STORE_SET_CTX_PARAMS, store_set_ctx_params),
                                      FN(OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS, store_settable_ctx_params),
                                      {0, nullptr}};

}  // namespace certcustody::provider
