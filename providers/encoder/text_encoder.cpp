// ENCODER "text" for token keys (`openssl pkey -text`, `storeutl -text`).
// OpenSSL's own text encoder cannot print them: it needs the key exported
// with its private half, which is refused. This one prints where the private
// half is and the public part as OpenSSL prints it; no private value exists
// here to print. Having no import_object, it is used for our keys only.
#include <openssl/bio.h>
#include <openssl/core_names.h>

#include "keymgmt/token_key.h"
#include "provider_context.h"

namespace certcustody::provider {
namespace {

void* text_newctx(void* provctx) { return provctx; }
void text_freectx(void*) {}

int text_does_selection(void*, int selection) {
  return (selection & (OSSL_KEYMGMT_SELECT_KEYPAIR | OSSL_KEYMGMT_SELECT_ALL_PARAMETERS)) != 0 ? 1 : 0;
}

Result<std::string> describe(const TokenKey& k, int selection) {
  std::string text;
  if ((selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0) {
    if (k.ephemeral) return generated_key_refused("a key generated through the provider cannot be printed");
    if (k.token_private())
      text = "Private-Key: in the token, not readable (certcustody key " + k.label + ")\n";
  }
  std::unique_ptr<BIO, OsslDeleter<BIO_free>> mem(BIO_new(BIO_s_mem()));
  const bool key_part = (selection & OSSL_KEYMGMT_SELECT_KEYPAIR) != 0;
  if (!mem || (key_part ? EVP_PKEY_print_public(mem.get(), k.pub.get(), 0, nullptr)
                        : EVP_PKEY_print_params(mem.get(), k.pub.get(), 0, nullptr)) != 1)
    return openssl_error("provider.encode_failed", "the public part of the key cannot be printed", "retry");
  char* data = nullptr;
  const long n = BIO_get_mem_data(mem.get(), &data);
  return text.append(data, static_cast<std::size_t>(n > 0 ? n : 0));
}

int text_encode(void* provctx, OSSL_CORE_BIO* out, const void* obj_raw, const OSSL_PARAM[] /*obj_abstract*/,
                int selection, OSSL_PASSPHRASE_CALLBACK*, void*) {
  auto* prov = static_cast<ProviderContext*>(provctx);
  return guarded(prov, 0, [&] {
    const auto* ref = static_cast<const KeyRef*>(obj_raw);
    if (ref == nullptr || !*ref || !(*ref)->pub) return 0;
    auto text = describe(**ref, selection);
    if (!text) {
      CC_PROV_RAISE(prov, text.error());
      return 0;
    }
    return prov->write(out, *text) ? 1 : 0;
  });
}

// PEM/DER of a private key: there is none to write. Named, instead of
// OpenSSL's encoders failing silently on the refused export.
int private_does_selection(void*, int selection) {
  return (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0 ? 1 : 0;
}

int private_encode(void* provctx, OSSL_CORE_BIO*, const void* obj_raw, const OSSL_PARAM[], int,
                   OSSL_PASSPHRASE_CALLBACK*, void*) {
  auto* prov = static_cast<ProviderContext*>(provctx);
  return guarded(prov, 0, [&] {
    const auto* ref = static_cast<const KeyRef*>(obj_raw);
    if (ref == nullptr || !*ref) return 0;
    const TokenKey& k = **ref;
    if (k.ephemeral) {
      CC_PROV_RAISE(prov, generated_key_refused("a key generated through the provider cannot be written out"));
    } else if (k.token_private()) {
      CC_PROV_RAISE(prov, (Error{"provider.private_key_not_exportable",
                                 "the private half of certcustody key " + k.label +
                                     " stays in the token: there is no private key to write",
                                 "write the public key (openssl pkey -pubout), or name the key by its URI "
                                 "wherever OpenSSL takes a key"}));
    }
    return 0;
  });
}

#define FN(id, f) {id, reinterpret_cast<void (*)()>(f)}

}  // namespace

extern const OSSL_DISPATCH kTextEncoder[];
const OSSL_DISPATCH kTextEncoder[] = {FN(OSSL_FUNC_ENCODER_NEWCTX, text_newctx),
                                      FN(OSSL_FUNC_ENCODER_FREECTX, text_freectx),
                                      FN(OSSL_FUNC_ENCODER_DOES_SELECTION, text_does_selection),
                                      FN(OSSL_FUNC_ENCODER_ENCODE, text_encode),
                                      {0, nullptr}};

}  // namespace certcustody::provider

namespace certcustody::provider {
extern const OSSL_DISPATCH kPrivateKeyEncoder[];
const OSSL_DISPATCH kPrivateKeyEncoder[] = {FN(OSSL_FUNC_ENCODER_NEWCTX, text_newctx),
                                            FN(OSSL_FUNC_ENCODER_FREECTX, text_freectx),
                                            FN(OSSL_FUNC_ENCODER_DOES_SELECTION, private_does_selection),
                                            FN(OSSL_FUNC_ENCODER_ENCODE, private_encode),
                                            {0, nullptr}};
}  // namespace certcustody::provider
