#include "ca/mscep_wire.h"

#include <openssl/asn1.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <limits>
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

// An xs:unsignedInt element; nullopt when absent, nil or not a number.
std::optional<std::uint32_t> unsigned_of(const xmlNode* n) {
  long long v = 0;
  if (n == nullptr || xml::is_nil(n) || !parse_int(xml::text(n), v) || v < 0 ||
      v > std::numeric_limits<std::uint32_t>::max())
    return std::nullopt;
  return static_cast<std::uint32_t>(v);
}

bool true_of(const xmlNode* n) {
  const std::string t = xml::text(n);
  return t == "true" || t == "1";
}

Error invalid(const std::string& what, const std::string& detail) {
  return unreadable(what + ": " + detail,
                    "check that the CA type (mscep) and URL match the service, and report the answer if they do; "
                    "a request answered this way may have reached the CA: look it up there");
}

// oIDs (MS-XCEP 3.1.4.1.3.16): oIDReferenceID -> value and group.
struct Oid {
  std::string value;
  long long group = 0;
};
using OidTable = std::map<std::string, Oid>;
constexpr long long kGroupHashAlgorithm = 1;  // CRYPT_HASH_ALG_OID_GROUP_ID
constexpr long long kGroupTemplate = 9;       // CRYPT_TEMPLATE_OID_GROUP_ID

OidTable oid_table(const xmlNode* response_root) {
  OidTable t;
  for (xmlNode* o : xml::children(xml::child(response_root, kXcep, "oIDs"), kXcep, "oID")) {
    Oid oid{xml::text(xml::child(o, kXcep, "value")), 0};
    parse_int(xml::text(xml::child(o, kXcep, "group")), oid.group);
    t[xml::text(xml::child(o, kXcep, "oIDReferenceID"))] = std::move(oid);
  }
  return t;
}

// The OID an *OIDReference element points at, when it is of `group` (0: any).
std::string referenced_oid(const xmlNode* reference, const OidTable& oids, long long group) {
  if (reference == nullptr || xml::is_nil(reference)) return {};
  auto it = oids.find(xml::text(reference));
  if (it == oids.end() || (group != 0 && it->second.group != group)) return {};
  return it->second.value;
}

// The request digest a hashAlgorithmOIDReference asks for (a hash or a
// signature algorithm OID, looked up in OpenSSL's tables). Only a digest
// stronger than the SHA-256 the connector signs with anyway is taken: the
// MS docs' own example names sha1RSA, and a CA checks the CSR's signature
// whatever its hash.
std::string request_digest(const std::string& oid) {
  std::unique_ptr<ASN1_OBJECT, OsslDeleter<ASN1_OBJECT_free>> obj(OBJ_txt2obj(oid.c_str(), 1));
  int nid = obj ? OBJ_obj2nid(obj.get()) : NID_undef;
  int md = NID_undef, pk = NID_undef;
  if (OBJ_find_sigid_algs(nid, &md, &pk) == 1) nid = md;
  if (nid == NID_sha384) return "SHA384";
  if (nid == NID_sha512) return "SHA512";
  return {};
}

policy::TemplatePolicy to_policy(const xmlNode* attributes, const OidTable& oids) {
  policy::TemplatePolicy t;
  const xmlNode* key = xml::child(attributes, kXcep, "privateKeyAttributes");
  if (auto bits = unsigned_of(xml::child(key, kXcep, "minimalKeyLength")); bits && *bits > 0) t.min_key_bits = *bits;
  const std::string alg = referenced_oid(xml::child(key, kXcep, "algorithmOIDReference"), oids, 0);
  if (alg == "1.2.840.113549.1.1.1") t.key_algorithm = "RSA";
  if (alg == "1.2.840.10045.2.1") t.key_algorithm = "EC";
  t.request_digest =
      request_digest(referenced_oid(xml::child(attributes, kXcep, "hashAlgorithmOIDReference"), oids,
                                    kGroupHashAlgorithm));
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

Result<PolicyTemplate> read_template(const xmlNode* p, const OidTable& oids) {
  const xmlNode* attributes = xml::child(p, kXcep, "attributes");
  PolicyTemplate t;
  t.name = xml::text(xml::child(attributes, kXcep, "commonName"));
  t.oid = referenced_oid(xml::child(p, kXcep, "policyOIDReference"), oids, kGroupTemplate);
  t.schema = unsigned_of(xml::child(attributes, kXcep, "policySchema"));
  const xmlNode* revision = xml::child(attributes, kXcep, "revision");
  t.major_revision = unsigned_of(xml::child(revision, kXcep, "majorRevision"));
  t.minor_revision = unsigned_of(xml::child(revision, kXcep, "minorRevision"));
  for (xmlNode* ref : xml::children(xml::child(p, kXcep, "cAs"), kXcep, "cAReference"))
    t.ca_references.push_back(xml::text(ref));
  t.policy = to_policy(attributes, oids);
  CC_TRY_ASSIGN(policy::RequestExtension ext, template_extension(t));
  t.policy.request_extensions.push_back(std::move(ext));
  return t;
}

PolicyCa read_ca(const xmlNode* c) {
  PolicyCa ca;
  ca.reference_id = xml::text(xml::child(c, kXcep, "cAReferenceID"));
  const xmlNode* permission = xml::child(c, kXcep, "enrollPermission");
  ca.enroll_permission = permission == nullptr || xml::is_nil(permission) || true_of(permission);
  for (xmlNode* u : xml::children(xml::child(c, kXcep, "uris"), kXcep, "cAURI")) {
    CaUri uri;
    uri.uri = xml::text(xml::child(u, kXcep, "uri"));
    uri.client_authentication = unsigned_of(xml::child(u, kXcep, "clientAuthentication")).value_or(0);
    uri.priority = unsigned_of(xml::child(u, kXcep, "priority"));
    uri.renewal_only = true_of(xml::child(u, kXcep, "renewalOnly"));
    ca.uris.push_back(std::move(uri));
  }
  return ca;
}

std::string auth_name(std::uint32_t a) {
  switch (a) {
    case kAuthAnonymous: return "anonymous authentication";
    case kAuthKerberos: return "Kerberos authentication";
    case kAuthUsernamePassword: return "user name and password authentication";
    case kAuthCertificate: return "certificate authentication";
    default: return "client authentication " + std::to_string(a);
  }
}

// Why a CA URI cannot be used for an initial enrolment ("" when it can).
std::string unusable(const PolicyCa& ca, const CaUri& u) {
  if (!ca.enroll_permission) return "no Enroll permission on CA " + ca.reference_id;
  if (u.client_authentication != kAuthCertificate) return auth_name(u.client_authentication);
  if (u.renewal_only) return "renewal only";
  if (u.uri.rfind("https://", 0) != 0) return "not https";
  return {};
}

Error policy_no_ca(const std::string& what, const std::string& template_name, const std::string& left_out) {
  return Error{"ca.policy_no_ca",
               what + ": the enrollment policy lists no CA the connector can enrol at for template \"" +
                   template_name + "\"" + (left_out.empty() ? "" : " (left out: " + left_out + ")"),
               "publish the template on a CA that has an enrollment web service (CES) with certificate "
               "authentication, and grant the RA's account Enroll on that CA and template; the connector "
               "authenticates only with its RA certificate (clientAuthentication 8)"};
}

// A DER value of an extension, from an OpenSSL ASN.1 object.
template <class T, int (*I2d)(T*, unsigned char**)>
Result<Bytes> der_of(T* value, const std::string& what) {
  unsigned char* buf = nullptr;
  const int len = I2d(value, &buf);
  if (len <= 0) return openssl_error("ca.request_failed", "cannot encode " + what, "check memory");
  Bytes out(buf, buf + len);
  OPENSSL_free(buf);
  return out;
}

void free_sequence(ASN1_SEQUENCE_ANY* s) { sk_ASN1_TYPE_pop_free(s, ASN1_TYPE_free); }
int i2d_sequence(ASN1_SEQUENCE_ANY* s, unsigned char** out) { return i2d_ASN1_SEQUENCE_ANY(s, out); }
int i2d_bmp(ASN1_BMPSTRING* s, unsigned char** out) { return i2d_ASN1_BMPSTRING(s, out); }

// CertificateTemplateOID ::= SEQUENCE { templateID OBJECT IDENTIFIER,
//   templateMajorVersion INTEGER OPTIONAL, templateMinorVersion INTEGER OPTIONAL }
Result<Bytes> template_oid_value(const PolicyTemplate& t) {
  std::unique_ptr<ASN1_SEQUENCE_ANY, OsslDeleter<free_sequence>> seq(sk_ASN1_TYPE_new_null());
  bool ok = seq != nullptr;
  auto push = [&](int type, void* value) {
    ASN1_TYPE* v = value != nullptr ? ASN1_TYPE_new() : nullptr;
    if (v == nullptr) {
      ok = false;
      return;
    }
    ASN1_TYPE_set(v, type, value);
    ok = ok && sk_ASN1_TYPE_push(seq.get(), v) > 0;
    if (!ok) ASN1_TYPE_free(v);
  };
  push(V_ASN1_OBJECT, OBJ_txt2obj(t.oid.c_str(), 1));
  for (const auto& version : {t.major_revision, t.minor_revision}) {
    if (!version) break;  // the minor one only after the major one
    ASN1_INTEGER* i = ASN1_INTEGER_new();
    if (i != nullptr && ASN1_INTEGER_set_uint64(i, *version) != 1) {
      ASN1_INTEGER_free(i);
      i = nullptr;
    }
    push(V_ASN1_INTEGER, i);
  }
  if (!ok) return openssl_error("ca.template_invalid", "template OID \"" + t.oid + "\" cannot be encoded",
                                "check the template OID the enrollment policy server gives");
  return der_of<ASN1_SEQUENCE_ANY, i2d_sequence>(seq.get(), "the certificate template extension");
}

Result<Bytes> template_name_value(const std::string& name) {
  ASN1_STRING* bmp = nullptr;
  if (ASN1_mbstring_copy(&bmp, reinterpret_cast<const unsigned char*>(name.data()), static_cast<int>(name.size()),
                         MBSTRING_UTF8, B_ASN1_BMPSTRING) < 0)
    return openssl_error("ca.template_invalid", "template name \"" + name + "\" cannot be a BMPString",
                         "use the template's name as the policy server gives it");
  std::unique_ptr<ASN1_STRING, OsslDeleter<ASN1_STRING_free>> owned(bmp);
  return der_of<ASN1_BMPSTRING, i2d_bmp>(owned.get(), "the template name extension");
}

// The first of `candidates` by (priority, order), deduplicated.
std::vector<std::string> by_priority(std::vector<std::pair<CaUri, std::size_t>> candidates) {
  std::stable_sort(candidates.begin(), candidates.end(), [](const auto& a, const auto& b) {
    const auto pa = a.first.priority.value_or(std::numeric_limits<std::uint32_t>::max());
    const auto pb = b.first.priority.value_or(std::numeric_limits<std::uint32_t>::max());
    return pa != pb ? pa < pb : a.second < b.second;
  });
  std::vector<std::string> out;
  for (const auto& [u, order] : candidates)
    if (std::find(out.begin(), out.end(), u.uri) == out.end()) out.push_back(u.uri);
  return out;
}

constexpr std::array<NamedHresult, 14> kNamed{{
    {0x800706BA, "RPC_S_SERVER_UNAVAILABLE", "ca.rpc_unavailable",
     "the RPC server is unavailable (the enrollment service cannot reach the CA)",
     "fix the CA host/name the enrollment service uses and check the CA service is running; retried automatically"},
    {0x80094015, "CERTSRV_E_NO_POLICY_SERVER", "ca.policy_server_missing",
     "an enrollment policy server cannot be located", "configure the enrollment policy (CEP) server URL"},
    {0x80070057, "E_INVALIDARG", "ca.parameter_incorrect", "the parameter is incorrect",
     "check the CA name in the profile, and that the user has every attribute the profile needs (a user without "
     "e-mail gives an empty SAN)"},
    {0x80094800, "CERTSRV_E_UNSUPPORTED_CERT_TYPE", "ca.template_not_supported",
     "the CA does not issue this certificate template",
     "publish the template on the CA (Certificate Templates → New → Certificate Template to Issue)"},
    {0x80094801, "CERTSRV_E_NO_CERT_TYPE", "ca.template_missing",
     "the request carries no certificate template the CA can find",
     "check the profile's template (`certcustody ca policy`); the connector names it in the SOAP "
     "AdditionalContext and in the CSR's template extension, which it takes from the enrollment policy (CEP) "
     "server — configure policy_url"},
    {0x80094802, "CERTSRV_E_TEMPLATE_CONFLICT", "ca.template_conflict",
     "the request names more than one certificate template",
     "the profile's template name and the template OID the enrollment policy server gives must be the same "
     "template: fix the profile or the CEP"},
    {0x80094807, "CERTSRV_E_BAD_TEMPLATE_VERSION", "ca.template_version_mismatch",
     "denied by the policy module: the template version differs",
     "wait for directory replication or re-publish the template on the CA"},
    {0x8009480F, "CERTSRV_E_SUBJECT_DNS_REQUIRED", "ca.subject_dns_required",
     "the template requires a DNS name from the directory",
     "set the template's Subject Name to \"Supply in the request\""},
    {0x80094811, "CERTSRV_E_KEY_LENGTH", "ca.key_too_short",
     "the public key is shorter than the template's minimum",
     "give the profile a key_type of at least the template's minimum key size (`certcustody ca policy` shows it)"},
    {0x80094812, "CERTSRV_E_SUBJECT_EMAIL_REQUIRED", "ca.subject_email_required",
     "the template requires an e-mail in the subject from the directory",
     "set the template's Subject Name to \"Supply in the request\""},
    {0x80094002, "CERTSRV_E_NO_REQUEST", "ca.request_unknown", "the CA has no request with this RequestID",
     "the request was deleted on the CA, or the poll reached another CA: submit it again under a new id"},
    {0x80094009, "CERTSRV_E_RESTRICTEDOFFICER", "ca.restricted_officer",
     "the CA's officer restrictions do not allow this requester",
     "allow the RA's account to manage requests for this template on the CA (enrollment agent/officer rights)"},
    {0x80094012, "CERTSRV_E_TEMPLATE_DENIED", "ca.denied_by_policy",
     "denied by the policy module: the template's permissions do not allow enrolment",
     "grant the connector's account Read and Enroll on the template"},
    {0x80094014, "CERTSRV_E_ADMIN_DENIED_REQUEST", "ca.denied",
     "the request was denied by a CA administrator (certificate manager)",
     "ask the CA's certificate managers why; submit a new request once the reason is fixed"},
}};

}  // namespace

std::span<const NamedHresult> named_hresults() { return kNamed; }

const PolicyTemplate* PolicyResponse::find(const std::string& template_name) const {
  for (const PolicyTemplate& t : templates)
    if (t.name == template_name) return &t;
  return nullptr;
}

soap::Envelope get_policies_request(const std::string& cep_url) {
  soap::Envelope e = soap::make_envelope(soap::Version::soap12, kGetPoliciesAction, cep_url);
  xmlNs* x = xml::declare(e.body, kXcep, "");
  xmlNode* gp = xml::add(e.body, nullptr, "GetPolicies");
  xmlSetNs(gp, x);
  xmlNode* client = xml::add(gp, x, "client");
  xml::set_nil(xml::add(client, x, "lastUpdate"));
  xml::set_nil(xml::add(client, x, "preferredLanguage"));
  // As cepces 0.3.17 sends it: its changelog says real CEP servers return all
  // templates only with clientVersion/serverVersion given (cepces issue #74),
  // although MS-XCEP 3.1.4.1.2.1 says a nil filter means none.
  xmlNode* filter = xml::add(gp, x, "requestFilter");
  xml::set_nil(xml::add(filter, x, "policyOIDs"));
  xml::add(filter, x, "clientVersion", "0");
  xml::add(filter, x, "serverVersion", "0");
  return e;
}

Result<PolicyResponse> policy_response(const soap::Response& r, const std::string& what) {
  if (r.fault) return fault_error(*r.fault, what);
  if (!xml::is(r.payload, kXcep, "GetPoliciesResponse"))
    return invalid(what, "expected an XCEP GetPoliciesResponse, got " + std::string(xml::name_of(r.payload)));
  const OidTable oids = oid_table(r.payload);
  const xmlNode* response = xml::child(r.payload, kXcep, "response");
  PolicyResponse out;
  out.next_update_hours = unsigned_of(xml::child(response, kXcep, "nextUpdateHours"));
  for (xmlNode* p : xml::children(xml::child(response, kXcep, "policies"), kXcep, "policy")) {
    CC_TRY_ASSIGN(PolicyTemplate t, read_template(p, oids));
    out.templates.push_back(std::move(t));
  }
  for (xmlNode* c : xml::children(xml::child(r.payload, kXcep, "cAs"), kXcep, "cA")) out.cas.push_back(read_ca(c));
  return out;
}

Result<policy::TemplatePolicy> template_policy(const PolicyResponse& p, const std::string& template_name,
                                               const std::string& what) {
  if (const PolicyTemplate* t = p.find(template_name)) return t->policy;
  std::string offered;
  for (const PolicyTemplate& t : p.templates) offered += (offered.empty() ? "" : ", ") + t.name;
  return Error{"ca.template_not_found",
               what + ": the enrollment policy server offers no template \"" + template_name + "\" (it offers: " +
                   (offered.empty() ? "none" : offered) + ")",
               "fix the profile's template name, or publish the template on the CA and grant the RA's account "
               "Read and Enroll on it"};
}

Result<policy::TemplatePolicy> template_policy(const soap::Response& r, const std::string& template_name,
                                               const std::string& what) {
  CC_TRY_ASSIGN(PolicyResponse p, policy_response(r, what));
  return template_policy(p, template_name, what);
}

Result<std::vector<std::string>> enrolment_uris(const PolicyResponse& p, const std::string& template_name,
                                                const std::string& what) {
  const PolicyTemplate* t = p.find(template_name);
  if (t == nullptr) return template_policy(p, template_name, what).error();
  std::vector<std::pair<CaUri, std::size_t>> usable;
  std::string left_out;
  for (const std::string& ref : t->ca_references) {
    auto ca = std::find_if(p.cas.begin(), p.cas.end(), [&](const PolicyCa& c) { return c.reference_id == ref; });
    if (ca == p.cas.end()) {
      left_out += (left_out.empty() ? "" : ", ") + ("CA " + ref + " (not among the policy's CAs)");
      continue;
    }
    for (const CaUri& u : ca->uris) {
      if (const std::string why = unusable(*ca, u); !why.empty()) {
        left_out += (left_out.empty() ? "" : ", ") + u.uri + " (" + why + ")";
        continue;
      }
      usable.emplace_back(u, usable.size());
    }
  }
  if (usable.empty()) return policy_no_ca(what, template_name, left_out);
  return by_priority(std::move(usable));
}

Result<policy::RequestExtension> template_extension(const PolicyTemplate& t) {
  policy::RequestExtension ext;
  if (!t.oid.empty() && t.schema.value_or(2) >= 2) {
    ext.oid = std::string(kTemplateOid);
    CC_TRY_ASSIGN(ext.value, template_oid_value(t));
  } else {
    ext.oid = std::string(kTemplateNameOid);
    CC_TRY_ASSIGN(ext.value, template_name_value(t.name));
  }
  return ext;
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
  for (const NamedHresult& n : kNamed)
    if (n.hr == hr)
      return Error{n.code, what + ": " + n.meaning + " (" + hex32(hr) + " " + n.symbol + ")", n.remedy, hr};
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
