// The connector's view of a CA, whatever it speaks (DigiCert pki-ws, MS-XCEP/
// MS-WSTEP, CMP): fetch a template's policy, submit a PKCS#10, poll a pending
// request, revoke a certificate.
//
// A definitive answer is a value (issued, pending) or a named "ca.*" error
// (rejected, denied, template unknown, ...). Whether an error may be retried,
// and whether the request may already have reached the CA, is read from its
// code with is_transient() / may_have_reached_ca() (ca/resilience.h).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/error.h"
#include "common/ossl.h"
#include "policy.h"

namespace certcustody::ca {

struct SubmitRequest {
  std::string template_id;   // DigiCert: certificate profile OID; MS: template name; CMP: unused
  Bytes csr_der;             // PKCS#10, signed by the user key
  // Idempotency key (the pipeline's request id). DigiCert receives it as the
  // clientTransactionID; a CA that has no such field gets it nowhere.
  std::string transaction_id;
  // DigiCert nameValuePairs (common_name, mail, mail_firstName, ...).
  std::vector<std::pair<std::string, std::string>> attributes;
};

// A request the CA holds for approval ("taken under submission").
struct PendingTicket {
  std::string request_id;  // the CA's id (MS RequestID, DigiCert transaction)
  std::string poll_uri;    // where to ask again (MS: SecurityTokenReference URI); may be empty
  std::string message;     // the CA's disposition text
  std::string transaction_id;  // the submission's idempotency key, where the CA uses one (DigiCert)
  // What the request was made with: a poll names the template again (DigiCert's
  // certificateProfileID), and a certificate issued later must be for the CSR's key.
  std::string template_id;
  Bytes csr_der;
};
// The ticket of a submission before the CA has answered: its transaction,
// template and CSR, to check the answer against and to poll with.
PendingTicket ticket_for(const SubmitRequest& request);

struct Enrollment {
  enum class Status { issued, pending };
  Status status = Status::pending;
  Bytes certificate;          // DER, when issued
  std::vector<Bytes> chain;   // DER, issuer first; may be empty
  PendingTicket ticket;       // when pending; request_id also set when issued where the CA gives one
};

// RFC 5280 CRLReason values.
enum class RevocationReason : int {
  unspecified = 0, key_compromise = 1, ca_compromise = 2, affiliation_changed = 3, superseded = 4,
  cessation_of_operation = 5, certificate_hold = 6, privilege_withdrawn = 9
};
// "superseded", "keyCompromise", "key_compromise" or the number.
Result<RevocationReason> parse_revocation_reason(std::string_view text);
std::string_view reason_name(RevocationReason r);  // camelCase, as RFC 5280 names it

struct RevokeRequest {
  Bytes certificate;  // DER of the certificate to revoke (serial and issuer come from it)
  RevocationReason reason = RevocationReason::unspecified;
  std::string transaction_id;
};

class CaClient {
 public:
  virtual ~CaClient() = default;
  virtual std::string_view dialect() const = 0;  // "digicert", "mscep", "cmp"
  // True when re-sending a submission cannot make a second certificate (the
  // CA deduplicates by SubmitRequest::transaction_id).
  virtual bool submit_is_idempotent() const { return false; }

  // Attributes the template supports or fixes and its key constraints, for
  // the policy layer's template match.
  virtual Result<policy::TemplatePolicy> fetch_policy(const std::string& template_id) = 0;
  virtual Result<Enrollment> submit(const SubmitRequest& request) = 0;
  virtual Result<Enrollment> poll(const PendingTicket& ticket) = 0;
  virtual Status revoke(const RevokeRequest& request) = 0;
};

// Serial number of a DER certificate as upper-case hex (no separators).
Result<std::string> serial_hex(const Bytes& certificate_der);
std::string serial_hex(const X509* cert);  // the same, of a decoded certificate

// The certificates of a DER PKCS#7 SignedData (certs-only, or a CMC response),
// decoded once: OpenSSL 3.0's certificate decoding dominates an enrolment's
// client CPU (docs/performance.md), so they are passed on as objects.
Result<std::vector<X509Ptr>> pkcs7_certificates(const Bytes& der, const std::string& what);
// Splits a set of certificates into the one end-entity certificate (not a CA)
// and the others, as DER; ca.response_unreadable unless there is exactly one,
// ca.issued_key_mismatch unless it is for the key of `request`'s CSR. The
// ticket of the result carries the request's transaction, template and CSR.
Result<Enrollment> issued_from_certificates(const std::vector<X509Ptr>& certs, const PendingTicket& request,
                                            const std::string& what);
// The check every client makes before it reports "issued": `cert` certifies
// the public key of the PKCS#10 `csr_der` (SubjectPublicKeyInfo compared; a
// key encoded another way is compared as a key). ca.issued_key_mismatch
// otherwise, naming the certificate; ca.ticket_invalid without a CSR.
Status check_issued_key(X509* cert, const Bytes& csr_der, const std::string& what);

// An answer that arrived after the request was sent but cannot be read (not
// the protocol's message, damaged encoding): ca.response_unreadable, which
// resilience.h classifies as "the request may have reached the CA".
Error unreadable(const std::string& what, const std::string& remedy = {});

}  // namespace certcustody::ca
