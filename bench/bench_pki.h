// The benchmarks' test PKI: an in-memory CA issuing RA (client) certificates,
// for an RA key in the token (made as `certcustody ra keygen/csr/import` make
// it, then loaded through the certcustody provider) or for a software key.
// Set-up code: failures throw std::runtime_error.
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstddef>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>

#include "common/error.h"
#include "common/ossl.h"
#include "custody/key_custody.h"
#include "net/token_identity.h"
#include "ra/ra_credential.h"

namespace certcustody::bench {

template <class T>
T value_or_throw(Result<T> r, const std::string& what) {
  if (!r) throw std::runtime_error(what + ": " + r.error().to_string());
  return std::move(r).value();
}

inline void openssl_or_throw(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error(what + " failed " + drain_openssl_errors());
}

struct Extension {
  int nid;
  const char* value;
};

inline X509NamePtr common_name(const std::string& cn) {
  X509NamePtr name(X509_NAME_new());
  openssl_or_throw(name && X509_NAME_add_entry_by_txt(name.get(), "CN", MBSTRING_UTF8,
                                                      reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                                                      0) == 1,
                   "X509_NAME_add_entry_by_txt");
  return name;
}

// A certificate for `pub` named `subject`, signed by `issuer_key` (self-signed
// when `issuer` is null), with `extensions` and a copy of `requested` (a CSR's
// extension request, as `openssl x509 -req -copy_extensions copy` does).
inline X509Ptr issue_certificate(EVP_PKEY* pub, const X509_NAME* subject, X509* issuer, EVP_PKEY* issuer_key,
                                 std::initializer_list<Extension> extensions,
                                 const STACK_OF(X509_EXTENSION)* requested = nullptr) {
  static long serial = 1000;
  X509Ptr c(X509_new());
  openssl_or_throw(c && X509_set_version(c.get(), X509_VERSION_3) == 1 &&
                       ASN1_INTEGER_set(X509_get_serialNumber(c.get()), ++serial) == 1 &&
                       X509_gmtime_adj(X509_getm_notBefore(c.get()), -3600) != nullptr &&
                       X509_gmtime_adj(X509_getm_notAfter(c.get()), 2L * 24 * 3600) != nullptr &&
                       X509_set_subject_name(c.get(), subject) == 1 &&
                       X509_set_issuer_name(c.get(), issuer ? X509_get_subject_name(issuer) : subject) == 1 &&
                       X509_set_pubkey(c.get(), pub) == 1,
                   "assembling a certificate");
  X509V3_CTX v3;
  X509V3_set_ctx(&v3, issuer ? issuer : c.get(), c.get(), nullptr, nullptr, 0);
  for (const Extension& e : extensions) {
    X509_EXTENSION* ext = X509V3_EXT_nconf_nid(nullptr, &v3, e.nid, e.value);
    const bool added = ext != nullptr && X509_add_ext(c.get(), ext, -1) == 1;
    X509_EXTENSION_free(ext);
    openssl_or_throw(added, std::string("adding extension ") + OBJ_nid2sn(e.nid));
  }
  for (int i = 0; requested != nullptr && i < sk_X509_EXTENSION_num(requested); ++i)
    openssl_or_throw(X509_add_ext(c.get(), sk_X509_EXTENSION_value(requested, i), -1) == 1,
                     "copying a requested extension");
  openssl_or_throw(X509_sign(c.get(), issuer_key, EVP_sha256()) > 0, "X509_sign");
  return c;
}

inline EvpPkeyPtr software_key(KeyType type) {
  EVP_PKEY* k = type == KeyType::rsa2048 ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<std::size_t>(2048))
                                         : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  openssl_or_throw(k != nullptr, "software key generation");
  return EvpPkeyPtr(k);
}

inline void write_pem(const std::string& path, X509* cert, EVP_PKEY* key) {
  BioPtr bio(BIO_new_file(path.c_str(), "w"));
  openssl_or_throw(bio && (cert == nullptr || PEM_write_bio_X509(bio.get(), cert) == 1) &&
                       (key == nullptr ||
                        PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) == 1),
                   "writing " + path);
}

// A self-signed test CA for RA certificates.
struct TestCa {
  EvpPkeyPtr key;
  X509Ptr certificate;
};

inline TestCa make_test_ca(const std::string& cn) {
  TestCa ca{software_key(KeyType::ec_p256), nullptr};
  ca.certificate = issue_certificate(ca.key.get(), common_name(cn).get(), nullptr, ca.key.get(),
                                     {{NID_basic_constraints, "critical,CA:TRUE"},
                                      {NID_key_usage, "critical,keyCertSign,cRLSign"}});
  return ca;
}

// The RA credential `label` in the token, made as `certcustody ra keygen/csr/
// import` make it (key generated there, CSR signed there by make_ra_csr,
// certificate from `ca` stored beside the key), then loaded as the connector
// loads it: load_token_identity("pkcs11:token=<token_label>;object=<label>"),
// through the certcustody provider (which must be loaded and share `custody`).
inline TlsIdentity make_token_ra(KeyCustody& custody, const std::string& token_label, const std::string& label,
                                 KeyType type, const TestCa& ca) {
  (void)value_or_throw(custody.generate_key_pair(label, type, KeyPurpose::sign), "generating " + label);
  X509ReqPtr csr = value_or_throw(make_ra_csr(custody, label, "CN=RA " + label), "CSR for " + label);
  STACK_OF(X509_EXTENSION)* requested = X509_REQ_get_extensions(csr.get());
  X509Ptr cert;
  try {
    cert = issue_certificate(X509_REQ_get0_pubkey(csr.get()), X509_REQ_get_subject_name(csr.get()),
                             ca.certificate.get(), ca.key.get(), {{NID_basic_constraints, "critical,CA:FALSE"}},
                             requested);
  } catch (...) {
    sk_X509_EXTENSION_pop_free(requested, X509_EXTENSION_free);
    throw;
  }
  sk_X509_EXTENSION_pop_free(requested, X509_EXTENSION_free);
  (void)value_or_throw(import_ra_certificate(custody, label, cert.get(), false),
                       "importing the certificate of " + label);
  return value_or_throw(load_token_identity("pkcs11:token=" + token_label + ";object=" + label),
                        "load_token_identity " + label);
}

// A software key of `type` in memory with a client certificate from `ca`
// (the extensions make_ra_csr requests).
inline TlsIdentity make_software_ra(KeyType type, const std::string& cn, const TestCa& ca) {
  TlsIdentity id;
  id.key = software_key(type);
  id.certificate = issue_certificate(id.key.get(), common_name(cn).get(), ca.certificate.get(), ca.key.get(),
                                     {{NID_basic_constraints, "critical,CA:FALSE"},
                                      {NID_key_usage, type == KeyType::rsa2048
                                                          ? "critical,digitalSignature,keyEncipherment"
                                                          : "critical,digitalSignature"},
                                      {NID_ext_key_usage, "clientAuth"}});
  return id;
}

// Another reference to the same key and certificate (HttpsClient and the CA
// clients take their own).
inline TlsIdentity share(const TlsIdentity& id) {
  TlsIdentity copy;
  if (id.key && EVP_PKEY_up_ref(id.key.get()) == 1) copy.key.reset(id.key.get());
  if (id.certificate && X509_up_ref(id.certificate.get()) == 1) copy.certificate.reset(id.certificate.get());
  return copy;
}

}  // namespace certcustody::bench
