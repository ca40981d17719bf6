// The Microsoft CA's web services on the wire: MS-XCEP GetPolicies (the CEP
// server) and MS-WSTEP RequestSecurityToken / QueryTokenStatus (the CES
// server), and the HRESULTs of their faults as named errors. Everything that
// depends on the exact messages is here and in mscep_wire.cpp.
#pragma once

#include <cstdint>
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

soap::Envelope get_policies_request(const std::string& cep_url);
// The template named `template_name` as the policy layer sees it;
// ca.template_not_found when the policy server does not offer it.
Result<policy::TemplatePolicy> template_policy(const soap::Response& r, const std::string& template_name,
                                               const std::string& what);

soap::Envelope issue_request(const std::string& ces_url, const Bytes& csr_der, const std::string& template_name);
soap::Envelope query_request(const std::string& url, const std::string& request_id);
// Issued or pending from an RSTR(C), checked against the request (its CSR's
// key) and carrying it on in the ticket; faults become named errors.
Result<Enrollment> enrollment_result(const soap::Response& r, const PendingTicket& request, const std::string& what);

// A SOAP fault of either service as a named error.
Error fault_error(const soap::Fault& f, const std::string& what);
// An HRESULT (CertificateEnrollmentWSDetail/ErrorCode, masked) as a named error.
Error hresult_error(std::uint32_t hr, const std::string& what);

}  // namespace certcustody::ca::mscep
