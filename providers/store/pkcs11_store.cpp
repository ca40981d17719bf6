// STORE for RFC 7512 "pkcs11:" URIs naming objects on the configured token:
// OSSL_STORE_open("pkcs11:token=cc;object=ra") yields the private key (a
// reference to a token key, never its value), the public key and the
// certificate stored beside it. type= and OSSL_STORE_expect() narrow that.
// With the TPM backend the same store serves "tpm2:" URIs (docs/tpm.md).
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
  std::string label;
  std::optional<CK_OBJECT_CLASS> uri_class;
  int expect = 0;  // OSSL_STORE_INFO_*; 0 = anything
  bool loaded = false;
  bool failed = false;
  std::size_t next = 0;
  std::vector<KeyRef> keys;  // private (token) key first, then the public key
  std::optional<Bytes> certificate;
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
void* open_tpm_uri(ProviderContext* prov, const std::string& uri) {
  auto tpm = prov->uses_tpm();
  if (!tpm) {
    CC_PROV_RAISE(prov, tpm.error());
    return nullptr;
  }
  if (!*tpm) {
    CC_PROV_RAISE(prov, backend_mismatch(uri, false));
    return nullptr;
  }
  auto* ctx = new StoreCtx;
  ctx->prov = prov;
  ctx->label = uri;
  return ctx;
}

void* store_open(void* provctx, const char* uri_text) {
  auto* prov = static_cast<ProviderContext*>(provctx);
  return guarded(prov, static_cast<void*>(nullptr), [&]() -> void* {
    if (std::string(uri_text).rfind("tpm2:", 0) == 0) return open_tpm_uri(prov, uri_text);
    if (auto tpm = prov->uses_tpm(); tpm && *tpm) {
      CC_PROV_RAISE(prov, backend_mismatch(uri_text, true));
      return nullptr;
    }
    auto uri = TokenUri::parse(uri_text);
    if (!uri) {
      CC_PROV_RAISE(prov, uri.error());
      return nullptr;
    }
    auto label = uri->object_label();
    if (!label) {
      CC_PROV_RAISE(prov, uri_error(std::string("\"") + uri_text + "\" names no object",
                                    "add ;object=<label> (see `certcustody token info`)"));
      return nullptr;
    }
    if (Status s = check_token(prov, *uri); !s) {
      CC_PROV_RAISE(prov, s.error());
      return nullptr;
    }
    auto* ctx = new StoreCtx;
    ctx->prov = prov;
    ctx->label = *label;
    ctx->uri_class = uri->object_class();
    return ctx;
  });
}

bool wants(const StoreCtx* ctx, CK_OBJECT_CLASS cls) {
  if (ctx->uri_class && *ctx->uri_class != cls) return false;
  switch (ctx->expect) {
    case 0: return true;
    case OSSL_STORE_INFO_PKEY: return cls == CKO_PRIVATE_KEY;
    case OSSL_STORE_INFO_PUBKEY: return cls == CKO_PUBLIC_KEY;
    case OSSL_STORE_INFO_CERT: return cls == CKO_CERTIFICATE;
    default: return false;
  }
}

// Finds what the URI names on the token, once.
Status collect(StoreCtx* ctx) {
  CC_TRY_ASSIGN(auto custody, ctx->prov->custody());
  const bool want_key = wants(ctx, CKO_PRIVATE_KEY) || wants(ctx, CKO_PUBLIC_KEY);
  if (want_key) {
    auto pub = custody->public_key(ctx->label);
    if (!pub && pub.error().code != "custody.key_not_found") return pub.error();
    if (pub) {
      const bool is_ec = EVP_PKEY_is_a(pub->get(), "EC") == 1;
      if (wants(ctx, CKO_PRIVATE_KEY)) {
        // Public objects are read without a PIN: a wrong PIN shows up here.
        auto found = custody->find_key(ctx->label);
        if (!found && found.error().code != "custody.key_not_found") return found.error();
        if (found) {
          auto k = std::make_shared<TokenKey>(TokenKey{ctx->prov, ctx->label, nullptr, is_ec});
          k->pub.reset(EVP_PKEY_dup(pub->get()));
          ctx->keys.push_back(std::move(k));
        }
      }
      if (wants(ctx, CKO_PUBLIC_KEY))
        ctx->keys.push_back(std::make_shared<TokenKey>(TokenKey{ctx->prov, "", std::move(pub.value()), is_ec}));
    }
  }
  if (wants(ctx, CKO_CERTIFICATE)) {
    CC_TRY_ASSIGN(auto cert, custody->find_certificate(ctx->label));
    ctx->certificate = std::move(cert);
  }
  if (ctx->keys.empty() && !ctx->certificate)
    return Error{"custody.key_not_found", "nothing labelled '" + ctx->label + "' of the kind asked for is on the token",
                 "list the token with `certcustody token info` and fix object= / type= in the URI"};
  return {};
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
    if (ctx->next < ctx->keys.size()) {
      KeyRef* ref = &ctx->keys[ctx->next++];
      int type = OSSL_OBJECT_PKEY;
      const char* data_type = (*ref)->is_ec ? "EC" : "RSA";
      OSSL_PARAM params[] = {
          OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &type),
          OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE, const_cast<char*>(data_type), 0),
          OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_REFERENCE, &ref, sizeof ref),
          OSSL_PARAM_construct_end()};
      return object_cb(params, object_cbarg);
    }
    if (ctx->certificate) {
      Bytes der = std::move(*ctx->certificate);
      ctx->certificate.reset();
      int type = OSSL_OBJECT_CERT;
      OSSL_PARAM params[] = {OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &type),
                             OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_DATA, der.data(), der.size()),
                             OSSL_PARAM_construct_end()};
      return object_cb(params, object_cbarg);
    }
    return 0;
  });
}

int store_eof(void* c) {
  const StoreCtx* ctx = as_ctx(c);
  return ctx->failed || (ctx->loaded && ctx->next >= ctx->keys.size() && !ctx->certificate) ? 1 : 0;
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
