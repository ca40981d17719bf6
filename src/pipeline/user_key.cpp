#include "pipeline/user_key.h"

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace certcustody::pipeline {
namespace {

Error csr_error(const std::string& what) {
  return openssl_error("pipeline.csr_failed", what, "check the profile's key type and the OpenSSL installation");
}

using ExtStack = std::unique_ptr<STACK_OF(X509_EXTENSION), decltype([](STACK_OF(X509_EXTENSION)* s) {
                                   sk_X509_EXTENSION_pop_free(s, X509_EXTENSION_free);
                                 })>;

Status add_extensions(X509_REQ* req, const policy::RequestSpec& spec) {
  ExtStack exts(sk_X509_EXTENSION_new_null());
  if (spec.san && sk_GENERAL_NAME_num(spec.san.get()) > 0) {
    X509_EXTENSION* e = X509V3_EXT_i2d(NID_subject_alt_name, 0, spec.san.get());
    if (e == nullptr || sk_X509_EXTENSION_push(exts.get(), e) == 0) return csr_error("cannot encode the SAN");
  }
  if (!spec.ekus.empty()) {
    std::unique_ptr<EXTENDED_KEY_USAGE, OsslDeleter<EXTENDED_KEY_USAGE_free>> eku(sk_ASN1_OBJECT_new_null());
    for (const std::string& oid : spec.ekus) {
      ASN1_OBJECT* o = OBJ_txt2obj(oid.c_str(), 1);
      if (o == nullptr || sk_ASN1_OBJECT_push(eku.get(), o) == 0) return csr_error("cannot encode EKU " + oid);
    }
    X509_EXTENSION* e = X509V3_EXT_i2d(NID_ext_key_usage, 0, eku.get());
    if (e == nullptr || sk_X509_EXTENSION_push(exts.get(), e) == 0) return csr_error("cannot encode the EKUs");
  }
  for (const policy::RequestExtension& x : spec.extensions) {  // the CA template's (policy.h)
    std::unique_ptr<ASN1_OBJECT, OsslDeleter<ASN1_OBJECT_free>> oid(OBJ_txt2obj(x.oid.c_str(), 1));
    std::unique_ptr<ASN1_OCTET_STRING, OsslDeleter<ASN1_OCTET_STRING_free>> value(ASN1_OCTET_STRING_new());
    X509_EXTENSION* e =
        oid && value && ASN1_OCTET_STRING_set(value.get(), x.value.data(), static_cast<int>(x.value.size())) == 1
            ? X509_EXTENSION_create_by_OBJ(nullptr, oid.get(), x.critical ? 1 : 0, value.get())
            : nullptr;
    if (e == nullptr || sk_X509_EXTENSION_push(exts.get(), e) == 0) {
      X509_EXTENSION_free(e);
      return csr_error("cannot encode the template's extension " + x.oid);
    }
  }
  if (sk_X509_EXTENSION_num(exts.get()) > 0 && X509_REQ_add_extensions(req, exts.get()) != 1)
    return csr_error("cannot add the extension request");
  return {};
}

}  // namespace

Result<EvpPkeyPtr> generate_user_key(KeyType type) {
  EvpPkeyPtr key;
  switch (type) {
    case KeyType::rsa2048: key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{2048})); break;
    case KeyType::rsa3072: key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{3072})); break;
    case KeyType::rsa4096: key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", std::size_t{4096})); break;
    case KeyType::ec_p256: key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")); break;
    case KeyType::ec_p384: key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384")); break;
  }
  if (!key) return csr_error("cannot generate the " + key_type_name(type) + " user key");
  return key;
}

Result<Bytes> build_csr(const policy::RequestSpec& spec, EVP_PKEY* key) {
  X509ReqPtr req(X509_REQ_new());
  if (!req || X509_REQ_set_version(req.get(), 0) != 1 || X509_REQ_set_subject_name(req.get(), spec.subject.get()) != 1 ||
      X509_REQ_set_pubkey(req.get(), key) != 1)
    return csr_error("cannot build the PKCS#10");
  CC_TRY(add_extensions(req.get(), spec));
  const std::string digest = spec.digest.empty() ? "SHA256" : spec.digest;
  std::unique_ptr<EVP_MD, OsslDeleter<EVP_MD_free>> md(EVP_MD_fetch(nullptr, digest.c_str(), nullptr));
  if (!md) return csr_error("the template's request digest " + digest + " is not available");
  if (X509_REQ_sign(req.get(), key, md.get()) <= 0) return csr_error("cannot sign the PKCS#10 with the user key");
  unsigned char* der = nullptr;
  const int n = i2d_X509_REQ(req.get(), &der);
  if (n <= 0) return csr_error("cannot encode the PKCS#10");
  Bytes out(der, der + n);
  OPENSSL_free(der);
  return out;
}

Result<SecureBytes> private_key_pkcs8(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  const int n = i2d_PrivateKey(key, &der);  // PKCS#8 PrivateKeyInfo for RSA and EC in OpenSSL 3
  if (n <= 0) return csr_error("cannot encode the user key");
  SecureBytes out(der, der + n);
  OPENSSL_clear_free(der, static_cast<std::size_t>(n));
  return out;
}

Result<EvpPkeyPtr> private_key_from_pkcs8(const SecureBytes& der) {
  const unsigned char* p = der.data();
  EvpPkeyPtr key(d2i_AutoPrivateKey(nullptr, &p, static_cast<long>(der.size())));
  if (!key) return csr_error("the stored user key does not decode");
  return key;
}

}  // namespace certcustody::pipeline
