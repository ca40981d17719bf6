#include "ca/mscep_wire.h"

#include <openssl/x509.h>

#include <charconv>
#include <cstdio>
#include <map>

namespace certcustody::ca::mscep {
namespace {

std::string hex32(std::uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%08X", v);
  return b;
}

bool parse_int(const std::string& s, long long& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && p == s.data() + s.size();
}

Error invalid(const std::string& what, const std::string& detail) {
  return unreadable(what + ": " + detail,
                    "check that the CA type (mscep) and URL match the service, and report the answer if they do; "
                    "a request answered this way may have reached the CA: look it up there");
}

// oIDReferenceID -> dotted OID, from GetPoliciesResponse/oIDs.
std::map<std::string, std::string> oid_table(const xmlNode* response_root) {
  std::map<std::string, std::string> t;
  for (xmlNode* o : xml::children(xml::child(response_root, kXcep, "oIDs"), kXcep, "oID"))
    t[xml::text(xml::child(o, kXcep, "oIDReferenceID"))] = xml::text(xml::child(o, kXcep, "value"));
  return t;
}

policy::TemplatePolicy to_policy(const xmlNode* attributes, const std::map<std::string, std::string>& oids) {
  policy::TemplatePolicy t;
  const xmlNode* key = xml::child(attributes, kXcep, "privateKeyAttributes");
  long long bits = 0;
  if (parse_int(xml::text(xml::child(key, kXcep, "minimalKeyLength")), bits) && bits > 0)
    t.min_key_bits = static_cast<unsigned>(bits);
  const xmlNode* alg = xml::child(key, kXcep, "algorithmOIDReference");
  if (alg != nullptr && !xml::is_nil(alg)) {
    auto it = oids.find(xml::text(alg));
    if (it != oids.end() && it->second == "1.2.840.113549.1.1.1") t.key_algorithm = "RSA";
    if (it != oids.end() && it->second == "1.2.840.10045.2.1") t.key_algorithm = "EC";
  }
  long long flags = 0;
  const xmlNode* f = xml::child(attributes, kXcep, "subjectNameFlags");
  if (f == nullptr || xml::is_nil(f) || !parse_int(xml::text(f), flags)) return t;  // unknown: no check
  const auto bitsv = static_cast<std::uint32_t>(flags);
  if ((bitsv & kEnrolleeSuppliesSubject) != 0) t.supported.insert({"subject.cn", "subject.email"});
  if ((bitsv & kEnrolleeSuppliesSubjectAltName) != 0)
    t.supported.insert({"san.email", "san.upn", "san.othername:*"});
  // The CA builds Subject and SAN from the directory: nothing the connector
  // puts into the request would be used (the reference's 0x80094812).
  if (t.supported.empty()) t.supported.insert("subject.from_directory");
  return t;
}

}  // namespace

soap::Envelope get_policies_request(const std::string& cep_url) {
  soap::Envelope e = soap::make_envelope(soap::Version::soap12, kGetPoliciesAction, cep_url);
  xmlNs* x = xml::declare(e.body, kXcep, "");
  xmlNode* gp = xml::add(e.body, nullptr, "GetPolicies");
  xmlSetNs(gp, x);
  xmlNode* client = xml::add(gp, x, "client");
  xml::set_nil(xml::add(client, x, "lastUpdate"));
  xml::set_nil(xml::add(client, x, "preferredLanguage"));
  xml::set_nil(xml::add(gp, x, "requestFilter"));  // MS-XCEP 3.1.4.1.2.1: nil = no filtering
  return e;
}

Result<policy::TemplatePolicy> template_policy(const soap::Response& r, const std::string& template_name,
                                               const std::string& what) {
  if (r.fault) return fault_error(*r.fault, what);
  if (!xml::is(r.payload, kXcep, "GetPoliciesResponse"))
    return invalid(what, "expected an XCEP GetPoliciesResponse, got " + std::string(xml::name_of(r.payload)));
  const xmlNode* policies = xml::path(r.payload, {{kXcep, "response"}, {kXcep, "policies"}});
  const auto oids = oid_table(r.payload);
  std::string offered;
  for (xmlNode* p : xml::children(policies, kXcep, "policy")) {
    const xmlNode* attributes = xml::child(p, kXcep, "attributes");
    const std::string name = xml::text(xml::child(attributes, kXcep, "commonName"));
    if (name == template_name) return to_policy(attributes, oids);
    offered += (offered.empty() ? "" : ", ") + name;
  }
  return Error{"ca.template_not_found",
               what + ": the enrollment policy server offers no template \"" + template_name + "\" (it offers: " +
                   (offered.empty() ? "none" : offered) + ")",
               "fix the profile's template name, or publish the template on the CA and grant the RA's account "
               "Read and Enroll on it"};
}

soap::Envelope issue_request(const std::string& ces_url, const Bytes& csr_der, const std::string& template_name) {
  soap::Envelope e = soap::make_envelope(soap::Version::soap12, kRstAction, ces_url);
  xmlNs* t = xml::declare(e.body, kTrust, "wst");
  xmlNs* w = xml::declare(e.body, kWsse, "wsse");
  xmlNode* rst = xml::add(e.body, t, "RequestSecurityToken");
  xml::add(rst, t, "TokenType", kX509v3);
  xml::add(rst, t, "RequestType", kIssue);
  xmlNode* bst = xml::add(rst, w, "BinarySecurityToken", xml::base64_encode(csr_der, true));
  xml::set_attribute(bst, nullptr, "ValueType", kPkcs10);
  xml::set_attribute(bst, nullptr, "EncodingType", kBase64);
  if (!template_name.empty()) {
    // Request attributes travel to the CA as AdditionalContext items.
    xmlNs* a = xml::declare(rst, kAuth, "auth");
    xmlNode* item = xml::add(xml::add(rst, a, "AdditionalContext"), a, "ContextItem");
    xml::set_attribute(item, nullptr, "Name", "CertificateTemplate");
    xml::add(item, a, "Value", template_name);
  }
  return e;
}

soap::Envelope query_request(const std::string& url, const std::string& request_id) {
  soap::Envelope e = soap::make_envelope(soap::Version::soap12, kRstAction, url);
  xmlNs* t = xml::declare(e.body, kTrust, "wst");
  xmlNs* en = xml::declare(e.body, kEnrollment, "enr");
  xmlNode* rst = xml::add(e.body, t, "RequestSecurityToken");
  xml::add(rst, t, "TokenType", kX509v3);
  xml::add(rst, t, "RequestType", kQueryTokenStatus);
  xml::add(rst, en, "RequestID", request_id);
  return e;
}

Result<Enrollment> enrollment_result(const soap::Response& r, const PendingTicket& request, const std::string& what) {
  if (r.fault) return fault_error(*r.fault, what);
  const xmlNode* rstr = r.payload;
  if (xml::is(rstr, kTrust, "RequestSecurityTokenResponseCollection"))
    rstr = xml::child(rstr, kTrust, "RequestSecurityTokenResponse");
  if (!xml::is(rstr, kTrust, "RequestSecurityTokenResponse"))
    return invalid(what, "no WS-Trust RequestSecurityTokenResponse in the answer");
  const std::string disposition = xml::text(xml::child(rstr, kEnrollment, "DispositionMessage"));
  const std::string request_id = xml::text(xml::child(rstr, kEnrollment, "RequestID"));
  const xmlNode* rst = xml::child(rstr, kTrust, "RequestedSecurityToken");
  if (const xmlNode* token = xml::child(rst, kWsse, "BinarySecurityToken"); token != nullptr) {
    CC_TRY_ASSIGN(Bytes cert, xml::base64_decode(xml::text(token), what + " RequestedSecurityToken"));
    // The sibling token is a CMC response / PKCS#7 carrying the chain; it
    // usually holds the issued certificate too, already decoded.
    std::vector<X509Ptr> all;
    bool have_issued = false;
    if (const xmlNode* p7 = xml::child(rstr, kWsse, "BinarySecurityToken"); p7 != nullptr) {
      CC_TRY_ASSIGN(Bytes p7der, xml::base64_decode(xml::text(p7), what + " PKCS#7 token"));
      CC_TRY_ASSIGN(all, pkcs7_certificates(p7der, what + " PKCS#7 token"));
      for (const X509Ptr& c : all) {
        unsigned char* der = nullptr;
        const int len = i2d_X509(c.get(), &der);
        have_issued = have_issued || (len > 0 && Bytes(der, der + len) == cert);
        OPENSSL_free(der);
      }
    }
    if (!have_issued) {
      const unsigned char* p = cert.data();
      X509Ptr x(d2i_X509(nullptr, &p, static_cast<long>(cert.size())));
      if (!x || p != cert.data() + cert.size())
        return invalid(what, "the RequestedSecurityToken is not a DER certificate");
      all.push_back(std::move(x));
    }
    CC_TRY_ASSIGN(Enrollment e, issued_from_certificates(all, request, what));
    if (e.certificate != cert) return invalid(what, "the RequestedSecurityToken is a CA certificate");
    e.ticket.request_id = request_id;
    e.ticket.message = disposition;
    return e;
  }
  const xmlNode* ref = xml::path(rst, {{kWsse, "SecurityTokenReference"}, {kWsse, "Reference"}});
  if (ref != nullptr && !request_id.empty()) {
    Enrollment e;
    e.status = Enrollment::Status::pending;
    e.ticket = request;
    e.ticket.request_id = request_id;
    e.ticket.poll_uri = xml::attribute(ref, "", "URI").value_or("");
    e.ticket.message = disposition;
    return e;
  }
  return invalid(what, "the answer carries neither a certificate nor a pending reference (disposition \"" +
                           disposition + "\", RequestID \"" + request_id + "\")");
}

Error hresult_error(std::uint32_t hr, const std::string& what) {
  struct Named {
    std::uint32_t hr;
    const char* code;
    const char* meaning;
    const char* remedy;
  };
  static constexpr Named kNamed[] = {
      {0x800706BA, "ca.rpc_unavailable", "the RPC server is unavailable (the enrollment service cannot reach the CA)",
       "fix the CA host/name the enrollment service uses and check the CA service is running; retried automatically"},
      {0x80094015, "ca.policy_server_missing", "an enrollment policy server cannot be located",
       "configure the enrollment policy (CEP) server URL"},
      {0x80070057, "ca.parameter_incorrect", "the parameter is incorrect",
       "check the CA name in the profile, and that the user has every attribute the profile needs (a user without "
       "e-mail gives an empty SAN)"},
      {0x80094800, "ca.template_not_supported", "the CA does not issue this certificate template",
       "publish the template on the CA (Certificate Templates → New → Certificate Template to Issue)"},
      {0x80094812, "ca.subject_email_required", "the template requires an e-mail in the subject from the directory",
       "set the template's Subject Name to \"Supply in the request\""},
      {0x80094012, "ca.denied_by_policy", "denied by the policy module: the template's permissions do not allow enrolment",
       "grant the connector's account Read and Enroll on the template"},
      {0x80094009, "ca.restricted_officer", "the CA's officer restrictions do not allow this requester",
       "allow the RA's account to manage requests for this template on the CA (enrollment agent/officer rights)"},
      {0x80094807, "ca.template_version_mismatch", "denied by the policy module: the template version differs",
       "wait for directory replication or re-publish the template on the CA"},
      {0x80094014, "ca.denied", "the request was denied by a CA administrator (certificate manager)",
       "ask the CA's certificate managers why; submit a new request once the reason is fixed"},
      {0x8009480F, "ca.subject_dns_required", "the template requires a DNS name from the directory",
       "set the template's Subject Name to \"Supply in the request\""},
  };
  for (const Named& n : kNamed)
    if (n.hr == hr) return Error{n.code, what + ": " + n.meaning + " (" + hex32(hr) + ")", n.remedy, hr};
  return Error{"ca.rejected", what + ": the CA refused the request with HRESULT " + hex32(hr),
               "look the HRESULT up (certutil -error " + hex32(hr) + ") and fix the template or request", hr};
}

Error fault_error(const soap::Fault& f, const std::string& what) {
  const std::string text = what + ": SOAP fault " + f.code + (f.subcode.empty() ? "" : "/" + f.subcode) +
                           (f.reason.empty() ? "" : " \"" + f.reason + "\"");
  const xmlNode* detail = xml::child(f.detail, kEnrollment, "CertificateEnrollmentWSDetail");
  long long code = 0;
  if (detail != nullptr && parse_int(xml::text(xml::child(detail, kEnrollment, "ErrorCode")), code) &&
      code >= INT32_MIN && code <= UINT32_MAX) {
    Error e = hresult_error(static_cast<std::uint32_t>(code & 0xFFFFFFFF), text);
    if (const std::string id = xml::text(xml::child(detail, kEnrollment, "RequestID")); !id.empty())
      e.what += " (CA request " + id + ")";
    return e;
  }
  if (f.subcode == "InternalServiceFault")
    return Error{"ca.internal_error", text, "transient error inside the CA's web service: retried automatically"};
  if (f.subcode == "DestinationUnreachable")
    return Error{"ca.endpoint_mismatch", text,
                 "the service does not answer to this URL: use the endpoint URL exactly as the CA publishes it"};
  return Error{"ca.fault", text, "see the CA's fault reason; fix the request or the CA configuration it names"};
}

}  // namespace certcustody::ca::mscep
