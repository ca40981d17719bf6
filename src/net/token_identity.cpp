#include "net/token_identity.h"

#include <openssl/err.h>
#include <openssl/store.h>

namespace certcustody {

Error error_from_openssl_queue(const Error& fallback) {
  std::optional<Error> named;
  const char* data = nullptr;
  int flags = 0;
  unsigned long e;
  while ((e = ERR_get_error_all(nullptr, nullptr, nullptr, &data, &flags)) != 0) {
    if (named || data == nullptr || !(flags & ERR_TXT_STRING)) continue;
    std::string text(data);
    // "error <code>: <what> — <remedy>", as provider::ProviderContext::raise writes it
    if (text.rfind("error ", 0) != 0) continue;
    auto colon = text.find(": ", 6);
    auto dash = text.find(" \xE2\x80\x94 ");
    if (colon == std::string::npos) continue;
    Error n;
    n.code = text.substr(6, colon - 6);
    n.what = text.substr(colon + 2, dash == std::string::npos ? std::string::npos : dash - colon - 2);
    n.remedy = dash == std::string::npos ? "" : text.substr(dash + 5);
    named = n;
  }
  if (named) return *named;
  return fallback;
}

Result<TlsIdentity> load_token_identity(const std::string& uri) {
  ERR_clear_error();
  OSSL_STORE_CTX* store = OSSL_STORE_open_ex(uri.c_str(), nullptr, "provider=certcustody", nullptr, nullptr, nullptr,
                                             nullptr, nullptr);
  auto fail = [&](const std::string& what) {
    return error_from_openssl_queue(Error{"net.identity_unavailable", what + " (" + uri + ")",
                                          "check the RA key URI, the token and `certcustody token info`"});
  };
  if (store == nullptr) return fail("cannot open the RA key URI");
  TlsIdentity id;
  while (!OSSL_STORE_eof(store)) {
    OSSL_STORE_INFO* info = OSSL_STORE_load(store);
    if (info == nullptr) break;
    if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY && !id.key)
      id.key.reset(OSSL_STORE_INFO_get1_PKEY(info));
    else if (OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_CERT && !id.certificate)
      id.certificate.reset(OSSL_STORE_INFO_get1_CERT(info));
    OSSL_STORE_INFO_free(info);
  }
  OSSL_STORE_close(store);
  if (!id.key) return fail("no private key found");
  if (!id.certificate)
    return Error{"net.ra_certificate_missing", "the token holds no certificate beside the RA key " + uri,
                 "import the RA certificate with `certcustody ra import --label <label> --cert ra.pem`"};
  if (X509_check_private_key(id.certificate.get(), id.key.get()) != 1)
    return openssl_error("net.ra_certificate_mismatch", "the certificate beside " + uri + " is not for that key",
                         "re-import the RA certificate issued for this key (`certcustody ra import --replace`)");
  return id;
}

}  // namespace certcustody
