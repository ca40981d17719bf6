// A CA for the tests (and the README demo): an HTTPS server on a loopback
// port that speaks both SOAP dialects of docs/ca-protocols.md —
//   Microsoft CA: MS-XCEP GetPolicies (CEP), MS-WSTEP RequestSecurityToken
//                 Issue / QueryTokenStatus (CES), SOAP 1.2 + WS-Addressing;
//   DigiCert pki-ws: policyService, enrollmentService,
//                 certificateManagementService, SOAP 1.1 —
// requires a TLS client certificate issued by a given RA CA, and issues
// certificates from the CSRs with a throwaway CA it makes itself.
//
// Built from the MS-XCEP / MS-WSTEP message descriptions and the vectors in
// ../shared/reference/wstep-vectors/; docs/ca-simulator.md says how it reads
// them and what it answers. Behaviours (faults, pending, broken XML, slow or
// failing HTTP) are scripted per template / profile OID / transaction id.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace certcustody::testing {

class TlsTestServer;

// One template (MS: its name; DigiCert: its certificate profile OID).
struct SimTemplate {
  // DigiCert: wire attribute names (common_name, mail, mail_email, upn,
  // mail_firstName, mail_lastName, othername:<oid>); when either list is
  // non-empty, a nameValuePair outside both (seat_id aside) is refused.
  // MS: not used, see subject_name_flags.
  std::vector<std::string> supported{}, fixed{};  // {} everywhere: designated initialisers stay warning-free
  unsigned min_key_bits = 2048;
  std::string key_algorithm{};  // "" (any), "RSA" or "EC"
  // MS-XCEP subjectNameFlags: CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT (0x1) |
  // CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT_ALT_NAME (0x00010000). Advertised only.
  std::uint32_t subject_name_flags = 0x00010001;
  // MS: the CAs (indices into set_cas()) the template's policy references;
  // empty: every CA. Advertised only (every CES endpoint issues every template).
  std::vector<int> cas{};
  // MS: hashAlgorithmOIDReference's OID (e.g. "2.16.840.1.101.3.4.2.2"); "": nil. Advertised only.
  std::string hash_algorithm{};
};

// One enrolment URI of a CA in the MS-XCEP policy (cAURI).
struct SimCaUri {
  std::string uri;                     // any https://127.0.0.1:P/…/service.svc/CES path is a CES endpoint
  unsigned client_authentication = 8;  // 1 anonymous, 2 Kerberos, 4 user name/password, 8 certificate
  int priority = 1;                    // < 0: nil
  bool renewal_only = false;
};
struct SimCa {
  std::vector<SimCaUri> uris;
  bool enroll_permission = true;
};

struct SimBehaviour {
  // The garbage kinds (html_page … damaged_pkcs7) are answered after the
  // request was decided: the certificate is issued (or the request pended),
  // the answer that says so cannot be read.
  enum class Kind {
    issue, pend_then_issue, pend_then_deny, fault, malformed_xml, hostile_xml, http_error,
    html_page,        // HTTP 200, text/html: a web server's maintenance page
    truncated_answer, // HTTP 200, the real answer cut off in the middle
    empty_answer,     // HTTP 200, a SOAP envelope whose Body lacks the expected elements
    damaged_pkcs7     // HTTP 200, the real answer with a PKCS#7 token that does not decode
  };
  Kind kind = Kind::issue;
  // fault (MS): the HRESULT of CertificateEnrollmentWSDetail/ErrorCode (sent
  // as a signed decimal); 0: a WCF InternalServiceFault without detail.
  // pend_then_deny (MS): the denial's HRESULT, 0: CERTSRV_E_ADMIN_DENIED_REQUEST.
  std::uint32_t hresult = 0;
  std::string reason{};                // the fault's Reason / faultstring (DigiCert: also detail/message)
  std::string digicert_errorcode{};    // fault (DigiCert): detail/errorcode
  int pending_polls = 1;               // pend_*: polls answered "pending" before the decision
  std::chrono::milliseconds delay{0};  // answer this late, whatever the kind (polls of a pended request too)
  int http_status = 503;               // http_error
  int times = -1;                      // apply to the first N matching requests, then behave as `issue` (-1: always)
  bool other_key = false;              // issue (now or after the polls) for a fresh key, not the CSR's
};

// Script keys beyond template names, profile OIDs and DigiCert transaction ids.
inline constexpr std::string_view kScriptPolicy = "@policy";  // MS GetPolicies and DigiCert getPolicies
inline constexpr std::string_view kScriptRevoke = "@revoke";  // DigiCert updateCertificateStatus
inline constexpr std::string_view kScriptAny = "*";           // any request nothing more specific matched

class CaSimulator {
 public:
  struct Options {
    std::string dir;             // where it writes tls-ca.pem, issuing-ca.pem (and its TLS key)
    std::string client_ca_file;  // issuer of acceptable RA (client) certificates
    // MS: an enterprise CA refuses a request that names no template
    // (0x80094801); a standalone one issues it.
    bool standalone = false;
    // MS: read the template only from the CSR, as an AD CS CA behind a CES
    // that does not pass the SOAP AdditionalContext on.
    bool ignore_additional_context = false;
  };
  // Listens on 127.0.0.1:port (0: a free port). Throws std::runtime_error
  // when it cannot make its CAs or listen (a test set-up failure).
  explicit CaSimulator(Options options, int port = 0);
  ~CaSimulator();
  CaSimulator(const CaSimulator&) = delete;
  CaSimulator& operator=(const CaSimulator&) = delete;

  int port() const;
  std::string trust_anchor() const;   // PEM CA of the TLS certificate (SAN IP:127.0.0.1, DNS:localhost)
  std::string issuing_ca() const;     // PEM of the throwaway issuing CA
  std::string cep_url() const;        // https://127.0.0.1:P/ADPolicyProvider_CEP_Certificate/service.svc/CEP
  std::string ces_url() const;        // https://127.0.0.1:P/CA_CES_Certificate/service.svc/CES
  std::string digicert_fqdn() const;  // "127.0.0.1:P" (the client builds https://<fqdn>/pki-ws/...)
  std::string url(const std::string& path) const;  // https://127.0.0.1:P<path>

  // Thread-safe; may be called while clients are talking to it.
  void add_template(const std::string& name_or_oid, SimTemplate t);
  // key: a template name / profile OID, a DigiCert clientTransactionID (wins
  // over the template), an MS CES endpoint's path (wins over both), or one of
  // the kScript* keys. Replaces an earlier script.
  void script(const std::string& key, SimBehaviour b);
  // The CAs of the MS-XCEP policy (default: one, at ces_url(), certificate
  // authentication, priority 1); {} answers cAs nil.
  void set_cas(std::vector<SimCa> cas);
  // Templates and behaviours from JSON (docs/ca-simulator.md, "Script file").
  Status load_script(std::string_view json);

  // Certificates issued per DigiCert clientTransactionID, or (MS) per
  // lower-case hex SHA-256 of the CSR's DER SubjectPublicKeyInfo.
  long issued_for(const std::string& key) const;
  long issued_total() const;
  std::vector<std::string> revoked() const;          // "SERIALHEX:reason", reason as sent
  long requests() const;                             // HTTP requests answered
  long requests_to(const std::string& path) const;   // … at this path ("/CA_CES_Certificate/service.svc/CES")
  std::vector<std::string> client_subjects() const;  // one per TLS connection, "/CN=..."

  struct State;  // behind the server's handler; defined in ca_simulator.cpp

 private:
  std::unique_ptr<State> state_;
  std::unique_ptr<TlsTestServer> server_;
};

// Lower-case hex SHA-256 of a DER SubjectPublicKeyInfo: the MS issued_for key.
std::string spki_sha256_hex(const std::vector<unsigned char>& spki_der);

}  // namespace certcustody::testing
