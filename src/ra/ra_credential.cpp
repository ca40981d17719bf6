#include "ra/ra_credential.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <fstream>
#include <sstream>

#include "ra/distinguished_name.h"

namespace certcustody {
namespace {

Status add_extension(STACK_OF(X509_EXTENSION) * exts, int nid, const char* value) {
  X509_EXTENSION* ext = X509V3_EXT_nconf_nid(nullptr, nullptr, nid, value);
  if (ext == nullptr || sk_X509_EXTENSION_push(exts, ext) == 0) {
    X509_EXTENSION_free(ext);
    return openssl_error("ra.csr_failed", std::string("cannot build extension ") + OBJ_nid2sn(nid),
                         "retry; report this if it persists");
  }
  return {};
}

Status add_ra_extensions(X509_REQ* req, bool rsa) {
  STACK_OF(X509_EXTENSION)* exts = sk_X509_EXTENSION_new_null();
  Status s = add_extension(exts, NID_key_usage, rsa ? "critical,digitalSignature,keyEncipherment"
                                                    : "critical,digitalSignature");
  if (s) s = add_extension(exts, NID_ext_key_usage, "clientAuth");
  if (s && X509_REQ_add_extensions(req, exts) != 1)
    s = openssl_error("ra.csr_failed", "cannot add the extension request", "retry");
  sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  return s;
}

std::string asn1_time(const ASN1_TIME* t) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  ASN1_TIME_print(bio.get(), t);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

}  // namespace

Result<X509ReqPtr> make_ra_csr(KeyCustody& custody, const std::string& label, const std::string& subject) {
  CC_TRY_ASSIGN(X509NamePtr name, parse_rfc4514_name(subject));
  CC_TRY_ASSIGN(EvpPkeyPtr pub, custody.public_key(label));
  const bool rsa = EVP_PKEY_is_a(pub.get(), "RSA") == 1;
  const bool p384 = !rsa && EVP_PKEY_get_bits(pub.get()) == 384;
  const HashAlg hash = p384 ? HashAlg::sha384 : HashAlg::sha256;
  const int sig_nid = rsa ? NID_sha256WithRSAEncryption : p384 ? NID_ecdsa_with_SHA384 : NID_ecdsa_with_SHA256;

  X509ReqPtr req(X509_REQ_new());
  if (!req || X509_REQ_set_version(req.get(), 0) != 1 || X509_REQ_set_subject_name(req.get(), name.get()) != 1 ||
      X509_REQ_set_pubkey(req.get(), pub.get()) != 1)
    return openssl_error("ra.csr_failed", "cannot assemble the certificate request", "retry");
  CC_TRY(add_ra_extensions(req.get(), rsa));

  X509_ALGOR* alg = X509_ALGOR_new();
  // RFC 4055 §5: NULL parameters for RSA; RFC 5758 §3.2: absent for ECDSA.
  X509_ALGOR_set0(alg, OBJ_nid2obj(sig_nid), rsa ? V_ASN1_NULL : V_ASN1_UNDEF, nullptr);
  int ok = X509_REQ_set1_signature_algo(req.get(), alg);
  X509_ALGOR_free(alg);
  if (ok != 1) return openssl_error("ra.csr_failed", "cannot set the signature algorithm", "retry");

  unsigned char* tbs = nullptr;
  int tbs_len = i2d_re_X509_REQ_tbs(req.get(), &tbs);
  if (tbs_len <= 0) return openssl_error("ra.csr_failed", "cannot encode the request body", "retry");
  auto sig = custody.sign(label, rsa ? SignScheme::rsa_pkcs1 : SignScheme::ecdsa, hash,
                          std::span<const std::uint8_t>(tbs, static_cast<std::size_t>(tbs_len)));
  OPENSSL_free(tbs);
  if (!sig) return sig.error();

  ASN1_BIT_STRING* bits = ASN1_BIT_STRING_new();
  ASN1_BIT_STRING_set(bits, sig->data(), static_cast<int>(sig->size()));
  bits->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);  // no unused bits
  bits->flags |= ASN1_STRING_FLAG_BITS_LEFT;
  X509_REQ_set0_signature(req.get(), bits);

  if (X509_REQ_verify(req.get(), pub.get()) != 1)
    return openssl_error("ra.csr_signature_invalid", "the token's signature over the CSR does not verify",
                         "check the token's health; the key may be damaged");
  return req;
}

std::string csr_to_pem(X509_REQ* req) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_REQ(bio.get(), req);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

Result<X509Ptr> read_certificate(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return Error{"ra.certificate_unreadable", "cannot read certificate file " + path,
                 "check the path and that the file is readable"};
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string data = ss.str();
  BioPtr bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
  X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
  if (cert == nullptr) {
    ERR_clear_error();
    const unsigned char* p = reinterpret_cast<const unsigned char*>(data.data());
    cert = d2i_X509(nullptr, &p, static_cast<long>(data.size()));
  }
  if (cert == nullptr)
    return openssl_error("ra.certificate_invalid", path + " holds no PEM or DER X.509 certificate",
                         "give the RA certificate the CA issued (PEM or DER)");
  return X509Ptr(cert);
}

std::string thumbprint(X509* cert, const char* md_name) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_MD* alg = EVP_MD_fetch(nullptr, md_name, nullptr);
  bool ok = alg != nullptr && X509_digest(cert, alg, md, &len) == 1;
  EVP_MD_free(alg);
  return ok ? to_hex_upper({md, len}) : std::string();
}

Result<ImportedCertificate> import_ra_certificate(KeyCustody& custody, const std::string& label, X509* cert,
                                                  bool replace) {
  CC_TRY_ASSIGN(EvpPkeyPtr token_key, custody.public_key(label));
  EVP_PKEY* cert_key = X509_get0_pubkey(cert);
  if (cert_key == nullptr || EVP_PKEY_eq(cert_key, token_key.get()) != 1)
    return Error{"ra.certificate_key_mismatch",
                 "the certificate's public key is not the public key of token key '" + label + "'",
                 "import the certificate the CA issued for the CSR of `certcustody ra csr --label " + label + "`"};
  if (X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0)
    return Error{"ra.certificate_expired", "the certificate expired on " + asn1_time(X509_get0_notAfter(cert)),
                 "request a new RA certificate from the CA"};
  if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0)
    return Error{"ra.certificate_not_yet_valid", "the certificate is valid only from " +
                                                     asn1_time(X509_get0_notBefore(cert)),
                 "check the host clock, or wait until the certificate becomes valid"};
  if ((X509_get_extension_flags(cert) & EXFLAG_XKUSAGE) && !(X509_get_extended_key_usage(cert) & XKU_SSL_CLIENT))
    return Error{"ra.certificate_not_client_auth", "the certificate's extended key usage excludes clientAuth",
                 "ask the CA for an RA certificate with EKU clientAuth (1.3.6.1.5.5.7.3.2)"};

  unsigned char* der = nullptr;
  int n = i2d_X509(cert, &der);
  if (n <= 0) return openssl_error("ra.certificate_invalid", "cannot encode the certificate", "retry");
  Status stored = custody.store_certificate(label, std::span<const std::uint8_t>(der, static_cast<std::size_t>(n)),
                                            replace);
  OPENSSL_free(der);
  CC_TRY(stored);
  return ImportedCertificate{name_to_string(X509_get_subject_name(cert)), thumbprint(cert, "SHA1"),
                             thumbprint(cert, "SHA256"), asn1_time(X509_get0_notAfter(cert))};
}

}  // namespace certcustody
