// The Microsoft CA's web services on the wire: MS-XCEP GetPolicies (the CEP
// server) and MS-WSTEP RequestSecurityToken / QueryTokenStatus (the CES
// server), and the HRESULTs of their faults as named errors. Everything that
// depends on the exact messages is here and in mscep_wire.cpp.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ca/ca_client.h"
#include "ca/soap.h"

namespace certcustody::ca::mscep {

inline constexpr std::string_view kXcep = "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy";
inline constexpr std::string_view kEnrollment = "http://schemas.microsoft.com/windows/pki/2009/01/enrollment";
inline constexpr std::string_view kTrust = "http://docs.oasis-open.org/ws-sx/ws-trust/200512";
inline constexpr std::string_view kWsse =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
inline constexpr std::string_view kAuth = "http://schemas.xmlsoap.org/ws/2006/12/authorization";
inline constexpr std::string_view kGetPoliciesAction =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy/IPolicy/GetPolicies";
inline constexpr std::string_view kRstAction = "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RST/wstep";
inline constexpr std::string_view kIssue = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue";
inline constexpr std::string_view kQueryTokenStatus =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/QueryTokenStatus";
inline constexpr std::string_view kX509v3 =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3";
inline constexpr std::string_view kPkcs10 = "http://schemas.microsoft.com/windows/pki/2009/01/enrollment#PKCS10";
inline constexpr std::string_view kBase64 =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd#base64binary";

// XCEP subjectNameFlags (MS-CRTD msPKI-Certificate-Name-Flag).
inline constexpr std::uint32_t kEnrolleeSuppliesSubject = 0x00000001;
inline constexpr std::uint32_t kEnrolleeSuppliesSubjectAltName = 0x00010000;

// The template extensions of a PKCS#10 (MS-WCCE 2.2.2.7.7).
inline constexpr std::string_view kTemplateNameOid = "1.3.6.1.4.1.311.20.2";  // szOID_ENROLL_CERTTYPE_EXTENSION
inline constexpr std::string_view kTemplateOid = "1.3.6.1.4.1.311.21.7";      // szOID_CERTIFICATE_TEMPLATE

// cAURI clientAuthentication (MS-XCEP 3.1.4.1.3.2). The connector
// authenticates with the RA's TLS client certificate: 8 only.
inline constexpr std::uint32_t kAuthAnonymous = 1, kAuthKerberos = 2, kAuthUsernamePassword = 4,
                               kAuthCertificate = 8;

// --- MS-XCEP: the policy response -----------------------------------------------
struct CaUri {
  std::string uri;
  std::uint32_t client_authentication = 0;
  std::optional<std::uint32_t> priority;  // lower is preferred; nil: after every numbered one
  bool renewal_only = false;
};

struct PolicyCa {
  std::string reference_id;  // cAReferenceID
  std::vector<CaUri> uris;
  bool enroll_permission = true;
};

struct PolicyTemplate {
  std::string name;                                // attributes/commonName
  std::string oid;                                 // policyOIDReference → oIDs (group 9); "" when not given
  std::optional<std::uint32_t> schema;             // policySchema
  std::optional<std::uint32_t> major_revision, minor_revision;
  std::vector<std::string> ca_references;          // the policy's cAs/cAReference
  policy::TemplatePolicy policy;                   // as the policy layer sees it, request extension included
};

struct PolicyResponse {
  std::vector<PolicyTemplate> templates;
  std::vector<PolicyCa> cas;
  std::optional<std::uint32_t> next_update_hours;

  const PolicyTemplate* find(const std::string& template_name) const;
};

soap::Envelope get_policies_request(const std::string& cep_url);
// The whole GetPoliciesResponse: templates (with their OIDs, versions, hash
// algorithm and CA references resolved through the oIDs table) and CAs.
Result<PolicyResponse> policy_response(const soap::Response& r, const std::string& what);
// The template named `template_name` as the policy layer sees it;
// ca.template_not_found when the policy server does not offer it.
Result<policy::TemplatePolicy> template_policy(const PolicyResponse& p, const std::string& template_name,
                                               const std::string& what);
Result<policy::TemplatePolicy> template_policy(const soap::Response& r, const std::string& template_name,
                                               const std::string& what);
// Where to enrol for the template: the URIs of the CAs its policy references
// that take certificate authentication, are not renewal-only and grant Enroll,
// in priority order (MS-XCEP 3.1.4.1.3.2: the lower number first; equal ones
// in the order listed). ca.policy_no_ca naming what was left out when none is.
Result<std::vector<std::string>> enrolment_uris(const PolicyResponse& p, const std::string& template_name,
                                                const std::string& what);
// The extension that names the template to an AD CS CA in the PKCS#10
// (MS-WCCE 3.1.2.4.2.2): szOID_CERTIFICATE_TEMPLATE {templateID, major,
// minor} for a template of schema 2 or later whose OID the policy gives, else
// szOID_ENROLL_CERTTYPE_EXTENSION, its common name as a BMPString.
Result<policy::RequestExtension> template_extension(const PolicyTemplate& t);

// --- MS-WSTEP -----------------------------------------------------------------------
soap::Envelope issue_request(const std::string& ces_url, const Bytes& csr_der, const std::string& template_name);
soap::Envelope query_request(const std::string& url, const std::string& request_id);
// Issued or pending from an RSTR(C), checked against the request (its CSR's
// key) and carrying it on in the ticket; faults become named errors.
Result<Enrollment> enrollment_result(const soap::Response& r, const PendingTicket& request, const std::string& what);

// --- faults ---------------------------------------------------------------------------
// A SOAP fault of either service as a named error.
Error fault_error(const soap::Fault& f, const std::string& what);
// An HRESULT (CertificateEnrollmentWSDetail/ErrorCode, masked) as a named error.
Error hresult_error(std::uint32_t hr, const std::string& what);

struct NamedHresult {
  std::uint32_t hr;
  const char* symbol;  // winerror.h name
  const char* code;    // the named error
  const char* meaning;
  const char* remedy;
};
// Every HRESULT with a name of its own (docs/ca-protocols.md lists the same).
std::span<const NamedHresult> named_hresults();

}  // namespace certcustody::ca::mscep
