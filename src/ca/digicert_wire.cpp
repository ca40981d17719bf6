#include "ca/digicert_wire.h"

#include <openssl/objects.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <map>
#include <memory>
#include <vector>

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

// getPoliciesResponse/oIDs: oIDReferenceID -> OID (the notes in
// ../shared/reference/wstep-vectors/digicert-pki-ws-notes.md: getPolicies
// returns "oIDs", the profile OIDs). As in MS-XCEP, group 9 marks a template
// (profile) OID; an entry without a group may be one too.
struct Oid {
  std::string value;
  bool profile = true;
};
using OidTable = std::map<std::string, Oid>;

OidTable oid_table(const xmlNode* payload) {
  OidTable t;
  const xmlNode* list = xml::child(payload, kPolicy, "oIDs");
  if (list == nullptr) list = xml::path(payload, {{kPolicy, "response"}, {kPolicy, "oIDs"}});
  for (xmlNode* o : xml::children(list, kPolicy, "oID")) {
    const std::string group = xml::text(xml::child(o, kPolicy, "group"));
    t[xml::text(xml::child(o, kPolicy, "oIDReferenceID"))] = {xml::text(xml::child(o, kPolicy, "value")),
                                                               group.empty() || group == "9"};
  }
  return t;
}

std::string lookup(const OidTable& oids, const xmlNode* reference) {
  if (reference == nullptr || xml::is_nil(reference)) return {};
  auto it = oids.find(xml::text(reference));
  return it == oids.end() ? std::string() : it->second.value;
}

// The policies of either shape: policy* right in the response (our first
// reading) or response/policies/policy* (the MS-XCEP-like one).
std::vector<xmlNode*> policies(const xmlNode* payload) {
  std::vector<xmlNode*> out = xml::children(payload, kPolicy, "policy");
  for (xmlNode* p : xml::children(xml::path(payload, {{kPolicy, "response"}, {kPolicy, "policies"}}), kPolicy, "policy"))
    out.push_back(p);
  return out;
}

// A child of the policy itself, or of its attributes[/privateKeyAttributes].
const xmlNode* setting(const xmlNode* policy, std::string_view name) {
  if (const xmlNode* n = xml::child(policy, kPolicy, name)) return n;
  const xmlNode* attributes = xml::child(policy, kPolicy, "attributes");
  if (const xmlNode* n = xml::child(attributes, kPolicy, name)) return n;
  return xml::child(xml::child(attributes, kPolicy, "privateKeyAttributes"), kPolicy, name);
}

// `explicit_id`: the first shape, where a profile that lists no attributes takes none.
policy::TemplatePolicy profile_policy(const xmlNode* p, const OidTable& oids, bool explicit_id) {
  policy::TemplatePolicy t;
  std::string alg = xml::text(setting(p, "keyAlgorithm"));
  if (const std::string oid = lookup(oids, setting(p, "algorithmOIDReference")); !oid.empty())
    alg = oid == "1.2.840.113549.1.1.1" ? "RSA" : oid == "1.2.840.10045.2.1" ? "EC" : "";
  if (alg == "RSA" || alg == "EC") t.key_algorithm = alg;
  const std::string bits = xml::text(setting(p, "minimalKeyLength"));
  unsigned v = 0;
  if (std::from_chars(bits.data(), bits.data() + bits.size(), v).ec == std::errc{}) t.min_key_bits = v;
  std::vector<xmlNode*> attributes = xml::children(p, kPolicy, "attribute");
  for (xmlNode* a : xml::children(xml::child(p, kPolicy, "attributes"), kPolicy, "attribute")) attributes.push_back(a);
  for (xmlNode* a : attributes) {
    const std::string name = policy_attribute(xml::text(xml::child(a, kPolicy, "name")));
    if (name.empty()) continue;
    (xml::text(xml::child(a, kPolicy, "usage")) == "fixed" ? t.fixed : t.supported).insert(name);
  }
  if (explicit_id && t.supported.empty() && t.fixed.empty()) t.supported.insert("none");  // takes nothing
  return t;
}

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
  const OidTable oids = oid_table(r.payload);
  std::vector<std::string> offered;
  for (const xmlNode* p : policies(r.payload)) {
    const bool explicit_id = xml::child(p, kPolicy, "certificateProfileID") != nullptr;
    const std::string id = explicit_id ? xml::text(xml::child(p, kPolicy, "certificateProfileID"))
                                       : lookup(oids, xml::child(p, kPolicy, "policyOIDReference"));
    offered.push_back(id);
    if (id == profile_oid) return profile_policy(p, oids, explicit_id);
  }
  // A profile OID the oIDs table lists without a policy of its own: the RA
  // may use it, and nothing is known of its constraints (no check).
  for (const auto& [ref, oid] : oids)
    if (oid.profile && oid.value == profile_oid) return policy::TemplatePolicy{};
  for (const auto& [ref, oid] : oids)
    if (oid.profile && std::find(offered.begin(), offered.end(), oid.value) == offered.end())
      offered.push_back(oid.value);
  // The reference's "part of the request could not be parsed".
  return Error{"ca.template_not_found",
               what + ": certificate profile " + profile_oid + " is not among the " + std::to_string(offered.size()) +
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
