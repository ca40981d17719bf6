// Software keys and small certificate hierarchies for the PFX tests.
#pragma once

#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include <string>

#include "common/ossl.h"

namespace certcustody::testing {

inline EvpPkeyPtr rsa_key(unsigned bits) { return EvpPkeyPtr(EVP_RSA_gen(bits)); }
inline EvpPkeyPtr ec_key() { return EvpPkeyPtr(EVP_EC_gen("P-256")); }

struct CertSpec {
  std::string cn;
  EVP_PKEY* key = nullptr;         // the subject's key
  X509* issuer = nullptr;          // null: self-signed
  EVP_PKEY* issuer_key = nullptr;  // null: self-signed with `key`
  bool ca = false;
  const char* key_usage = nullptr;  // X509v3 config text, e.g. "critical,keyEncipherment"; null: none
  long not_before_s = -3600;       // relative to now
  long not_after_s = 86400;
  long serial = 1;
};

inline bool add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  const bool ok = ext != nullptr && X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

// A certificate for spec.key, signed with SHA-256; null on failure.
inline X509Ptr make_cert(const CertSpec& spec) {
  X509Ptr c(X509_new());
  X509_NAME* name = X509_get_subject_name(c.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(spec.cn.c_str()), -1,
                             -1, 0);
  X509* issuer = spec.issuer != nullptr ? spec.issuer : c.get();
  EVP_PKEY* signer = spec.issuer_key != nullptr ? spec.issuer_key : spec.key;
  const bool ok = X509_set_version(c.get(), X509_VERSION_3) == 1 &&
                  ASN1_INTEGER_set(X509_get_serialNumber(c.get()), spec.serial) == 1 &&
                  X509_set_issuer_name(c.get(), X509_get_subject_name(issuer)) == 1 &&
                  X509_gmtime_adj(X509_getm_notBefore(c.get()), spec.not_before_s) != nullptr &&
                  X509_gmtime_adj(X509_getm_notAfter(c.get()), spec.not_after_s) != nullptr &&
                  X509_set_pubkey(c.get(), spec.key) == 1 &&
                  add_ext(c.get(), issuer, NID_basic_constraints, spec.ca ? "critical,CA:TRUE" : "CA:FALSE") &&
                  (spec.key_usage == nullptr || add_ext(c.get(), issuer, NID_key_usage, spec.key_usage)) &&
                  X509_sign(c.get(), signer, EVP_sha256()) > 0;
  return ok ? std::move(c) : X509Ptr();
}

inline std::string to_pem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* p = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &p);
  return std::string(p, static_cast<std::size_t>(n));
}

inline std::string to_pem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* p = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &p);
  return std::string(p, static_cast<std::size_t>(n));
}

}  // namespace certcustody::testing
