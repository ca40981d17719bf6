#include "ca/ca_client.h"

#include <openssl/pkcs7.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <openssl/err.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <optional>

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

void free_sequence(ASN1_SEQUENCE_ANY* s) { sk_ASN1_TYPE_pop_free(s, ASN1_TYPE_free); }
using SequencePtr = std::unique_ptr<ASN1_SEQUENCE_ANY, OsslDeleter<free_sequence>>;

// Element `index` of a DER SEQUENCE, as its whole DER encoding, when it is a SEQUENCE itself.
std::optional<Bytes> sequence_element(const unsigned char* der, long len, int index) {
  SequencePtr seq(d2i_ASN1_SEQUENCE_ANY(nullptr, &der, len));
  if (!seq || sk_ASN1_TYPE_num(seq.get()) <= index) return std::nullopt;
  const ASN1_TYPE* t = sk_ASN1_TYPE_value(seq.get(), index);
  if (t->type != V_ASN1_SEQUENCE) return std::nullopt;  // its ASN1_STRING holds the whole encoding
  const unsigned char* p = ASN1_STRING_get0_data(t->value.sequence);
  return Bytes(p, p + ASN1_STRING_length(t->value.sequence));
}

// The DER SubjectPublicKeyInfo of a PKCS#10 (CertificationRequest.
// certificationRequestInfo.subjectPKInfo), read with OpenSSL's generic ASN.1:
// no key decoding, which costs about 100 µs a key in OpenSSL 3.0.
std::optional<Bytes> csr_spki(const Bytes& csr_der) {
  auto info = sequence_element(csr_der.data(), static_cast<long>(csr_der.size()), 0);
  if (!info) return std::nullopt;
  return sequence_element(info->data(), static_cast<long>(info->size()), 2);
}

Bytes certificate_spki(X509* cert) {
  unsigned char* buf = nullptr;
  const int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &buf);
  if (len <= 0) return {};
  Bytes out(buf, buf + len);
  OPENSSL_free(buf);
  return out;
}

// The same key in another encoding (e.g. explicit EC parameters).
bool same_key(X509* cert, const Bytes& csr_der) {
  const unsigned char* p = csr_der.data();
  X509ReqPtr req(d2i_X509_REQ(nullptr, &p, static_cast<long>(csr_der.size())));
  EVP_PKEY* theirs = X509_get0_pubkey(cert);
  const bool same = req && theirs != nullptr && EVP_PKEY_eq(theirs, X509_REQ_get0_pubkey(req.get())) == 1;
  ERR_clear_error();
  return same;
}

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

PendingTicket ticket_for(const SubmitRequest& request) {
  PendingTicket t;
  t.transaction_id = request.transaction_id;
  t.template_id = request.template_id;
  t.csr_der = request.csr_der;
  return t;
}

Error unreadable(const std::string& what, const std::string& remedy) {
  return Error{"ca.response_unreadable", what,
               remedy.empty() ? "the request may have reached the CA: look it up there before submitting again; "
                                "check that the CA type and URL in the configuration match the service"
                              : remedy};
}

Status check_issued_key(X509* cert, const Bytes& csr_der, const std::string& what) {
  if (csr_der.empty())
    return Error{"ca.ticket_invalid", what + ": no CSR to check the issued certificate's key against",
                 "poll with the CSR the request was made with (`ca poll --csr`); the pipeline keeps it"};
  const std::optional<Bytes> expected = csr_spki(csr_der);
  if (expected && *expected == certificate_spki(cert)) return {};
  if (same_key(cert, csr_der)) return {};
  char subject[256] = {};
  X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof subject);
  return Error{"ca.issued_key_mismatch",
               what + ": the CA returned certificate " + serial_hex(cert) + " (" + subject +
                   ") for another public key than the CSR's; it is not used",
               "revoke that certificate on the CA, and check that the CA's template certifies the key in the "
               "request (it must not generate, archive or substitute one)"};
}

Result<std::vector<X509Ptr>> pkcs7_certificates(const Bytes& der, const std::string& what) {
  const unsigned char* p = der.data();
  std::unique_ptr<PKCS7, OsslDeleter<PKCS7_free>> p7(d2i_PKCS7(nullptr, &p, static_cast<long>(der.size())));
  if (!p7 || PKCS7_type_is_signed(p7.get()) == 0 || p7->d.sign == nullptr) {
    const std::string detail = drain_openssl_errors();
    return unreadable(what + " is not a PKCS#7 SignedData" + (detail.empty() ? "" : " (" + detail + ")"));
  }
  std::vector<X509Ptr> out;
  STACK_OF(X509)* certs = p7->d.sign->cert;
  for (int i = 0; certs != nullptr && i < sk_X509_num(certs); ++i) {
    X509* x = sk_X509_value(certs, i);
    if (X509_up_ref(x) != 1) return openssl_error("ca.out_of_memory", what + ": X509_up_ref failed", "check memory");
    out.emplace_back(x);
  }
  return out;
}

Result<Enrollment> issued_from_certificates(const std::vector<X509Ptr>& certs, const PendingTicket& request,
                                            const std::string& what) {
  Enrollment e;
  e.status = Enrollment::Status::issued;
  X509* issued = nullptr;
  int end_entities = 0;
  for (const X509Ptr& x : certs) {
    unsigned char* buf = nullptr;
    const int len = i2d_X509(x.get(), &buf);  // the encoding kept from decoding: no re-encoding work
    if (len <= 0) return unreadable(what + " holds a damaged certificate");
    Bytes der(buf, buf + len);
    OPENSSL_free(buf);
    if (X509_check_ca(x.get()) == 0) {
      ++end_entities;
      issued = x.get();
      e.certificate = std::move(der);
    } else {
      e.chain.push_back(std::move(der));
    }
  }
  if (end_entities != 1)
    return unreadable(what + " holds " + std::to_string(end_entities) +
                      " end-entity certificates, expected exactly one");
  CC_TRY(check_issued_key(issued, request.csr_der, what));
  e.ticket = request;
  return e;
}

}  // namespace certcustody::ca
