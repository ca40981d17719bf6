#include "ca/ca_client.h"

#include <openssl/pkcs7.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <array>
#include <cctype>

namespace certcustody::ca {
namespace {

struct ReasonName {
  RevocationReason reason;
  std::string_view name;
};
constexpr std::array<ReasonName, 8> kReasons{{{RevocationReason::unspecified, "unspecified"},
                                               {RevocationReason::key_compromise, "keyCompromise"},
                                               {RevocationReason::ca_compromise, "cACompromise"},
                                               {RevocationReason::affiliation_changed, "affiliationChanged"},
                                               {RevocationReason::superseded, "superseded"},
                                               {RevocationReason::cessation_of_operation, "cessationOfOperation"},
                                               {RevocationReason::certificate_hold, "certificateHold"},
                                               {RevocationReason::privilege_withdrawn, "privilegeWithdrawn"}}};

// "keyCompromise", "key_compromise", "KeyCompromise" and "key-compromise" compare equal.
std::string fold(std::string_view s) {
  std::string out;
  for (char c : s)
    if (c != '_' && c != '-') out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  return out;
}

}  // namespace

Result<RevocationReason> parse_revocation_reason(std::string_view text) {
  for (const auto& r : kReasons)
    if (fold(text) == fold(r.name) || text == std::to_string(static_cast<int>(r.reason))) return r.reason;
  std::string names;
  for (const auto& r : kReasons) names += (names.empty() ? "" : ", ") + std::string(r.name);
  // Appended, not `"\"" + std::string(text) + ...`: GCC 12 at -O3 (the Release
  // build of bench/) reports a false -Wrestrict in operator+(const char*, string&&).
  std::string what = "\"";
  what.append(text).append("\" is not a revocation reason");
  return Error{"ca.reason_invalid", std::move(what), "use one of " + names + " (RFC 5280 CRLReason)"};
}

std::string_view reason_name(RevocationReason r) {
  for (const auto& n : kReasons)
    if (n.reason == r) return n.name;
  return "unspecified";
}

Result<std::string> serial_hex(const Bytes& certificate_der) {
  const unsigned char* p = certificate_der.data();
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(certificate_der.size())));
  if (!cert) return openssl_error("ca.certificate_invalid", "the certificate is not DER X.509", "pass the issued certificate");
  return serial_hex(cert.get());
}

std::string serial_hex(const X509* cert) {
  const ASN1_INTEGER* serial = X509_get0_serialNumber(cert);
  Bytes b(static_cast<std::size_t>(ASN1_STRING_length(serial)));
  std::copy_n(ASN1_STRING_get0_data(serial), b.size(), b.begin());
  return to_hex_upper(b);
}

Result<std::vector<X509Ptr>> pkcs7_certificates(const Bytes& der, const std::string& what) {
  const unsigned char* p = der.data();
  std::unique_ptr<PKCS7, OsslDeleter<PKCS7_free>> p7(d2i_PKCS7(nullptr, &p, static_cast<long>(der.size())));
  if (!p7 || PKCS7_type_is_signed(p7.get()) == 0 || p7->d.sign == nullptr)
    return openssl_error("ca.response_invalid", what + " is not a PKCS#7 SignedData",
                         "check that the CA type in the configuration matches the service");
  std::vector<X509Ptr> out;
  STACK_OF(X509)* certs = p7->d.sign->cert;
  for (int i = 0; certs != nullptr && i < sk_X509_num(certs); ++i) {
    X509* x = sk_X509_value(certs, i);
    if (X509_up_ref(x) != 1) return openssl_error("ca.out_of_memory", what + ": X509_up_ref failed", "check memory");
    out.emplace_back(x);
  }
  return out;
}

Result<Enrollment> issued_from_certificates(const std::vector<X509Ptr>& certs, const std::string& what) {
  Enrollment e;
  e.status = Enrollment::Status::issued;
  int end_entities = 0;
  for (const X509Ptr& x : certs) {
    unsigned char* buf = nullptr;
    const int len = i2d_X509(x.get(), &buf);  // the encoding kept from decoding: no re-encoding work
    if (len <= 0) return openssl_error("ca.response_invalid", what + " holds a damaged certificate", "report this CA answer");
    Bytes der(buf, buf + len);
    OPENSSL_free(buf);
    if (X509_check_ca(x.get()) == 0) {
      ++end_entities;
      e.certificate = std::move(der);
    } else {
      e.chain.push_back(std::move(der));
    }
  }
  if (end_entities != 1)
    return Error{"ca.response_invalid",
                 what + " holds " + std::to_string(end_entities) + " end-entity certificates, expected exactly one",
                 "report this CA answer"};
  return e;
}

}  // namespace certcustody::ca
