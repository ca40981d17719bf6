#include "ca/ca_client.h"

#include <openssl/x509.h>

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
  return Error{"ca.reason_invalid", "\"" + std::string(text) + "\" is not a revocation reason",
               "use one of " + names + " (RFC 5280 CRLReason)"};
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
  const ASN1_INTEGER* serial = X509_get0_serialNumber(cert.get());
  Bytes b(static_cast<std::size_t>(ASN1_STRING_length(serial)));
  std::copy_n(ASN1_STRING_get0_data(serial), b.size(), b.begin());
  return to_hex_upper(b);
}

}  // namespace certcustody::ca
