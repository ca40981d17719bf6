// The RA credential: the connector's mutual-TLS identity towards the CA.
// Its key is generated in the token; the CSR is signed by the token; the CA's
// certificate is checked against the token key before it is stored.
#pragma once

#include <string>

#include "common/error.h"
#include "common/ossl.h"
#include "custody/key_custody.h"

namespace certcustody {

// A PKCS#10 request for the key `label`, signed inside the token with SHA-256
// (RSA PKCS#1 v1.5 or ECDSA), asking for key usage digitalSignature +
// keyEncipherment (RSA; digitalSignature alone for EC) and EKU clientAuth, as
// the reference's certreq.ini does. Verified before it is returned.
Result<X509ReqPtr> make_ra_csr(KeyCustody& custody, const std::string& label, const std::string& subject);

std::string csr_to_pem(X509_REQ* req);

// A certificate from PEM or DER bytes.
Result<X509Ptr> read_certificate(const std::string& path);

struct ImportedCertificate {
  std::string subject;
  std::string sha1_thumbprint;    // upper-case hex, no separators (RACertThumbprint)
  std::string sha256_thumbprint;  // upper-case hex
  std::string not_after;
};

std::string thumbprint(X509* cert, const char* md_name);

// Refuses a certificate whose public key is not the token key `label`, one
// that is expired or not yet valid, and one whose EKU excludes clientAuth;
// then stores it on the token beside the key.
Result<ImportedCertificate> import_ra_certificate(KeyCustody& custody, const std::string& label, X509* cert,
                                                  bool replace);

}  // namespace certcustody
