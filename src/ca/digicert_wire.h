// The DigiCert PKI Platform web services ("pki-ws") on the wire.
//
// No verbatim message, WSDL or XSD of this service is public: these shapes are
// our reading of public client code (docs/ca-protocols.md lists what is known
// and what is assumed). Everything that depends on the exact messages is in
// this file and digicert_wire.cpp, so it can be corrected against a capture of
// the real service in one place.
#pragma once

#include <string>

#include "ca/ca_client.h"
#include "ca/soap.h"

namespace certcustody::ca::digicert {

inline constexpr std::string_view kEnroll = "http://schemas.verisign.com/pkiservices/2009/07/enrollment";
inline constexpr std::string_view kTrust = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/";  // sic: trailing slash
inline constexpr std::string_view kPolicy = "http://schemas.verisign.com/pkiservices/2009/07/policy";
inline constexpr std::string_view kManagement = "http://schemas.verisign.com/pkiservices/2009/07/management";
inline constexpr std::string_view kTokenType =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#PKCS7";
inline constexpr std::string_view kIssue = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue";
inline constexpr std::string_view kQueryTokenStatus =
    "http://schemas.verisign.com/pkiservices/2009/07/enrollment/QueryTokenStatus";
inline constexpr std::string_view kPkcs10 = "http://schemas.verisign.com/pkiservices/2009/07/PKCS10";
inline constexpr std::string_view kBase64 =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd#base64binary";
inline constexpr std::string_view kCaName = "Symantec";  // the reference: the CA name must be exactly this

// https://<fqdn>/pki-ws/<service>
std::string service_url(const std::string& fqdn, std::string_view service);

// Certificate profile OIDs are dotted decimal (2.16.840.1.113733.1.16.…).
Status check_profile_oid(const std::string& oid);

soap::Envelope policy_request();
// The profile's policy from a getPoliciesResponse. Read in either shape:
// policy*{certificateProfileID, keyAlgorithm, minimalKeyLength, attribute*},
// or response/policies/policy*{policyOIDReference, attributes{…}} with the
// profile OIDs in oIDs/oID{value, oIDReferenceID} (a profile listed there
// alone is known, without constraints).
Result<policy::TemplatePolicy> template_policy(const soap::Response& r, const std::string& profile_oid,
                                               const std::string& what);

soap::Envelope enroll_request(const SubmitRequest& request);
// QueryTokenStatus for the ticket's requestID, naming its transaction and the
// certificate profile it was enrolled with.
soap::Envelope poll_request(const PendingTicket& ticket);
// Issued or pending, for the request's clientTransactionID; an issued
// certificate must be for the key of the request's CSR.
Result<Enrollment> enrollment_result(const soap::Response& r, const PendingTicket& request, const std::string& what);

soap::Envelope revoke_request(const std::string& serial_hex, RevocationReason reason,
                              const std::string& transaction_id);
Status revoke_result(const soap::Response& r, const std::string& what);

Error fault_error(const soap::Fault& f, const std::string& what);

// Policy attribute names of pki-ws → the policy layer's names ("" if none).
std::string policy_attribute(const std::string& wire_name);

}  // namespace certcustody::ca::digicert
