#include "ca/digicert_wire.h"

#include <openssl/objects.h>

#include <cctype>
#include <charconv>
#include <memory>

namespace certcustody::ca::digicert {
namespace {

Error invalid(const std::string& what, const std::string& detail) {
  return unreadable(what + ": " + detail,
                    "check that the CA type (digicert) and FQDN match the service, and report the answer if they "
                    "do; the request is sent again under the same clientTransactionID");
}

xmlNode* body_element(soap::Envelope& e, std::string_view ns, std::string_view prefix, std::string_view local,
                      xmlNs** out_ns) {
  *out_ns = xml::declare(e.body, ns, prefix);
  return xml::add(e.body, *out_ns, local);
}

std::string_view wire_reason(RevocationReason r) {
  switch (r) {
    case RevocationReason::unspecified: return "Unspecified";
    case RevocationReason::key_compromise: return "KeyCompromise";
    case RevocationReason::ca_compromise: return "CACompromise";
    case RevocationReason::affiliation_changed: return "AffiliationChanged";
    case RevocationReason::superseded: return "Superseded";
    case RevocationReason::cessation_of_operation: return "CessationOfOperation";
    case RevocationReason::certificate_hold: return "CertificateHold";
    case RevocationReason::privilege_withdrawn: return "PrivilegeWithdrawn";
  }
  return "Unspecified";
}

// SOAP 1.1 envelope: pki-ws authenticates by the TLS client certificate and
// takes no WS-Addressing or WS-Security headers.
soap::Envelope envelope() { return soap::make_envelope(soap::Version::soap11, "", ""); }

}  // namespace

std::string service_url(const std::string& fqdn, std::string_view service) {
  return "https://" + fqdn + "/pki-ws/" + std::string(service);
}

Status check_profile_oid(const std::string& oid) {
  bool ok = !oid.empty() && oid.size() <= 200;
  int arcs = 0;
  for (std::size_t i = 0; ok && i < oid.size();) {
    std::size_t j = oid.find('.', i);
    if (j == std::string::npos) j = oid.size();
    const std::string arc = oid.substr(i, j - i);
    ok = !arc.empty() && (arc == "0" || arc[0] != '0');
    for (char c : arc) ok = ok && std::isdigit(static_cast<unsigned char>(c));
    if (arcs == 0) ok = ok && (arc == "0" || arc == "1" || arc == "2");
    ++arcs;
    i = j + 1;
    if (j == oid.size() - 1) ok = false;  // trailing dot
  }
  if (ok && arcs >= 2) {
    std::unique_ptr<ASN1_OBJECT, OsslDeleter<ASN1_OBJECT_free>> obj(OBJ_txt2obj(oid.c_str(), 1));
    if (obj) return {};
  }
  return Error{"ca.template_invalid",
               "template \"" + oid + "\" is not a certificate profile OID (dotted decimal such as "
                                     "2.16.840.1.113733.1.16.1.2.3.1.1.61904612)",
               "copy the certificate profile OID from the DigiCert PKI Manager into the profile's template"};
}

std::string policy_attribute(const std::string& wire_name) {
  if (wire_name == "common_name") return "subject.cn";
  if (wire_name == "mail_email") return "subject.email";
  if (wire_name == "mail") return "san.email";
  if (wire_name == "upn") return "san.upn";
  if (wire_name == "mail_firstName") return "subject.mail_firstname";
  if (wire_name == "mail_lastName") return "subject.mail_lastname";
  if (wire_name.rfind("othername:", 0) == 0) return "san.othername:" + wire_name.substr(10);
  return {};
}

soap::Envelope policy_request() {
  soap::Envelope e = envelope();
  xmlNs* p = nullptr;
  xmlNode* gp = body_element(e, kPolicy, "pol", "getPolicies", &p);
  xml::add(gp, p, "version", "2.0");
  return e;
}

Result<policy::TemplatePolicy> template_policy(const soap::Response& r, const std::string& profile_oid,
                                               const std::string& what) {
  if (r.fault) return fault_error(*r.fault, what);
  if (!xml::is(r.payload, kPolicy, "getPoliciesResponse"))
    return invalid(what, "expected getPoliciesResponse, got " + std::string(xml::name_of(r.payload)));
  std::size_t offered = 0;
  for (xmlNode* p : xml::children(r.payload, kPolicy, "policy")) {
    ++offered;
    if (xml::text(xml::child(p, kPolicy, "certificateProfileID")) != profile_oid) continue;
    policy::TemplatePolicy t;
    const std::string alg = xml::text(xml::child(p, kPolicy, "keyAlgorithm"));
    if (alg == "RSA" || alg == "EC") t.key_algorithm = alg;
    const std::string bits = xml::text(xml::child(p, kPolicy, "minimalKeyLength"));
    unsigned v = 0;
    if (std::from_chars(bits.data(), bits.data() + bits.size(), v).ec == std::errc{}) t.min_key_bits = v;
    for (xmlNode* a : xml::children(p, kPolicy, "attribute")) {
      const std::string name = policy_attribute(xml::text(xml::child(a, kPolicy, "name")));
      if (name.empty()) continue;
      (xml::text(xml::child(a, kPolicy, "usage")) == "fixed" ? t.fixed : t.supported).insert(name);
    }
    if (t.supported.empty() && t.fixed.empty()) t.supported.insert("none");  // a profile that takes nothing
    return t;
  }
  // The reference's "part of the request could not be parsed".
  return Error{"ca.template_not_found",
               what + ": certificate profile " + profile_oid + " is not among the " + std::to_string(offered) +
                   " profiles this RA may use",
               "fix the template OID in the profile (copy it from the DigiCert PKI Manager), or entitle the RA "
               "to that certificate profile"};
}

soap::Envelope enroll_request(const SubmitRequest& request) {
  soap::Envelope e = envelope();
  xmlNs* t = nullptr;
  xmlNode* rst = body_element(e, kTrust, "wst", "RequestSecurityToken", &t);
  xmlNs* v = xml::declare(rst, kEnroll, "vs");
  xmlNode* req = xml::add(rst, v, "requestVSSecurityToken");
  xml::add(req, v, "certificateProfileID", request.template_id);
  xml::add(req, v, "clientTransactionID", request.transaction_id);
  xml::add(req, v, "tokenType", kTokenType);
  xml::add(req, v, "requestType", kIssue);
  xmlNode* bst = xml::add(req, v, "binarySecurityToken", xml::base64_encode(request.csr_der));
  xml::set_attribute(bst, nullptr, "ValueType", kPkcs10);
  xml::set_attribute(bst, nullptr, "EncodingType", kBase64);
  for (const auto& [name, value] : request.attributes) {
    xmlNode* pair = xml::add(req, v, "nameValuePair");
    xml::add(pair, v, "name", name);
    xml::add(pair, v, "value", value);
  }
  xml::add(req, v, "version", "2.0");
  return e;
}

soap::Envelope poll_request(const PendingTicket& ticket) {
  soap::Envelope e = envelope();
  xmlNs* t = nullptr;
  xmlNode* rst = body_element(e, kTrust, "wst", "RequestSecurityToken", &t);
  xmlNs* v = xml::declare(rst, kEnroll, "vs");
  xmlNode* req = xml::add(rst, v, "requestVSSecurityToken");
  xml::add(req, v, "certificateProfileID", ticket.template_id);
  xml::add(req, v, "clientTransactionID", ticket.transaction_id);
  xml::add(req, v, "tokenType", kTokenType);
  xml::add(req, v, "requestType", kQueryTokenStatus);
  xml::add(req, v, "requestID", ticket.request_id);
  xml::add(req, v, "version", "2.0");
  return e;
}

Result<Enrollment> enrollment_result(const soap::Response& r, const PendingTicket& request, const std::string& what) {
  const std::string& transaction_id = request.transaction_id;
  if (r.fault) return fault_error(*r.fault, what);
  const xmlNode* resp = xml::child(r.payload, kEnroll, "RequestVSSecurityTokenResponse");
  if (!xml::is(r.payload, kTrust, "RequestSecurityTokenResponse") || resp == nullptr)
    return invalid(what, "expected RequestSecurityTokenResponse/RequestVSSecurityTokenResponse");
  const std::string echoed = xml::text(xml::child(resp, kEnroll, "clientTransactionID"));
  if (!echoed.empty() && echoed != transaction_id)
    return invalid(what, "the answer is for transaction \"" + echoed + "\", not \"" + transaction_id + "\"");
  const std::string disposition = xml::text(xml::child(resp, kEnroll, "dispositionMessage"));
  const std::string request_id = xml::text(xml::child(resp, kEnroll, "requestID"));
  const xmlNode* token = xml::path(resp, {{kEnroll, "requestedVSSecurityToken"}, {kEnroll, "binarySecurityToken"}});
  if (token != nullptr) {
    CC_TRY_ASSIGN(Bytes p7, xml::base64_decode(xml::text(token), what + " binarySecurityToken"));
    CC_TRY_ASSIGN(std::vector<X509Ptr> certs, pkcs7_certificates(p7, what + " binarySecurityToken"));
    CC_TRY_ASSIGN(Enrollment e, issued_from_certificates(certs, request, what));
    e.ticket.request_id = request_id;
    e.ticket.message = disposition;
    return e;
  }
  if (request_id.empty())
    return invalid(what, "neither a certificate nor a requestID (disposition \"" + disposition + "\")");
  Enrollment e;
  e.status = Enrollment::Status::pending;
  e.ticket = request;
  e.ticket.request_id = request_id;
  e.ticket.message = disposition;
  return e;
}

soap::Envelope revoke_request(const std::string& serial_hex, RevocationReason reason,
                              const std::string& transaction_id) {
  soap::Envelope e = envelope();
  xmlNs* m = nullptr;
  xmlNode* u = body_element(e, kManagement, "cm", "updateCertificateStatus", &m);
  xml::add(u, m, "version", "1.0");
  xml::add(u, m, "clientTransactionID", transaction_id);
  xml::add(u, m, "certificateSerialNumber", serial_hex);
  xml::add(u, m, "revocationReason", wire_reason(reason));
  xml::add(u, m, "operationType", "Revoke");
  return e;
}

Status revoke_result(const soap::Response& r, const std::string& what) {
  if (r.fault) return fault_error(*r.fault, what);
  if (!xml::is(r.payload, kManagement, "updateCertificateStatusResponse"))
    return invalid(what, "expected updateCertificateStatusResponse");
  const std::string code = xml::text(xml::child(r.payload, kManagement, "successCode"));
  if (code == "0") return {};
  return Error{"ca.revocation_refused",
               what + ": successCode " + (code.empty() ? "missing" : code) + " " +
                   xml::text(xml::child(r.payload, kManagement, "message")),
               "check the serial number and that this RA may revoke certificates of the profile"};
}

Error fault_error(const soap::Fault& f, const std::string& what) {
  const std::string errorcode = xml::text(xml::child(f.detail, "", "errorcode"));
  const std::string message = xml::text(xml::child(f.detail, "", "message"));
  std::string text = what + ": SOAP fault " + f.code + (f.reason.empty() ? "" : " \"" + f.reason + "\"");
  if (!errorcode.empty()) text += ", errorcode " + errorcode;
  if (!message.empty()) text += ": " + message;
  if (f.code == "Server" && errorcode.empty())
    return Error{"ca.internal_error", text, "transient error inside the CA's web service: retried automatically"};
  return Error{"ca.rejected", text,
               "the CA refused the request: fix what its message names (profile OID, attributes, RA entitlement)"};
}

}  // namespace certcustody::ca::digicert
