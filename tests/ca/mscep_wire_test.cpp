// MS-XCEP / MS-WSTEP on the wire: our messages against the specifications'
// examples and a real client's requests (../shared/reference/wstep-vectors,
// third-party data read in place, never copied), faults to named errors.
#include <gtest/gtest.h>
#include <openssl/x509.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "ca/mscep_wire.h"
#include "ca/resilience.h"
#include "support/temp_dir.h"

namespace certcustody::ca {
namespace {

namespace fs = std::filesystem;

std::string vector_file(const std::string& name) {
  const fs::path p = fs::path(CERTCUSTODY_SOURCE_DIR) / ".." / "shared" / "reference" / "wstep-vectors" / name;
  std::ifstream in(p);
  if (!in) return {};
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Outside CI a clone without ../shared skips these; under CI they must run.
#define LOAD_VECTOR(var, name)                                                         \
  const std::string var = vector_file(name);                                           \
  if (var.empty() && certcustody::testing::running_in_ci())                            \
    FAIL() << "../shared vectors absent under CI: " << (name);                          \
  if (var.empty()) GTEST_SKIP() << "../shared vectors absent: " << (name)

// The last (most specific) CN of the subject: AD names are DC=…, CN=Users, CN=abby.
std::string subject_cn(const Bytes& der) {
  const unsigned char* p = der.data();
  X509Ptr x(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!x) return "<bad>";
  const X509_NAME* name = X509_get_subject_name(x.get());
  int last = -1;
  for (int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1); i >= 0;
       i = X509_NAME_get_index_by_NID(name, NID_commonName, i))
    last = i;
  if (last < 0) return "";
  const ASN1_STRING* s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, last));
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), static_cast<std::size_t>(ASN1_STRING_length(s)));
}

// The PKCS#10 of a vector request (its BinarySecurityToken).
Bytes vector_csr(const std::string& request_text) {
  auto req = soap::parse_request(request_text, "vector");
  if (!req) return {};
  auto der = xml::base64_decode(xml::text(xml::child(req->payload, mscep::kWsse, "BinarySecurityToken")), "csr");
  return der ? *der : Bytes{};
}

// A fresh PKCS#10 (EC P-256), for a key no vector certifies.
Bytes fresh_csr() {
  EvpPkeyPtr key(EVP_EC_gen("P-256"));
  X509ReqPtr req(X509_REQ_new());
  X509_REQ_set_pubkey(req.get(), key.get());
  X509_REQ_sign(req.get(), key.get(), EVP_sha256());
  unsigned char* der = nullptr;
  const int n = i2d_X509_REQ(req.get(), &der);
  Bytes out(der, der + std::max(n, 0));
  OPENSSL_free(der);
  return out;
}

PendingTicket ticket_with(Bytes csr) {
  PendingTicket t;
  t.csr_der = std::move(csr);
  return t;
}

Result<Enrollment> parse_rstr(const std::string& text, const Bytes& csr = {}) {
  CC_TRY_ASSIGN(soap::Response r, soap::parse_response(text, "vector"));
  return mscep::enrollment_result(r, ticket_with(csr), "vector");
}

TEST(MscepWire, SpecIssuedResponseGivesCertificateChainAndRequestId) {
  LOAD_VECTOR(text, "wstep-rstr-issued-response.xml");
  LOAD_VECTOR(request, "wstep-rst-issue-request.xml");  // the same key: the answer is for this request
  auto r = soap::parse_response(text, "vector");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->relates_to, "urn:uuid:b5d1a601-5091-4a7d-b34b-5204c18b5919");
  auto e = mscep::enrollment_result(*r, ticket_with(vector_csr(request)), "vector");
  ASSERT_TRUE(e) << e.error().to_string();
  EXPECT_EQ(e->status, Enrollment::Status::issued);
  EXPECT_EQ(subject_cn(e->certificate), "abby");
  EXPECT_EQ(e->ticket.request_id, "61");
  EXPECT_EQ(e->ticket.message, "Issued");
  ASSERT_FALSE(e->chain.empty());
  std::vector<std::string> chain;
  for (const Bytes& c : e->chain) chain.push_back(subject_cn(c));
  EXPECT_NE(std::find(chain.begin(), chain.end(), "FB_EntSubCA"), chain.end());
  EXPECT_EQ(e->ticket.csr_der, vector_csr(request));
}

// Issue 16 item 18: "issued" only for the CSR's own key.
TEST(MscepWire, IssuedCertificateForAnotherKeyIsRefused) {
  LOAD_VECTOR(text, "wstep-rstr-issued-response.xml");
  auto e = parse_rstr(text, fresh_csr());
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, "ca.issued_key_mismatch") << e.error().to_string();
  EXPECT_NE(e.error().what.find("CN=abby"), std::string::npos) << e.error().what;
  EXPECT_FALSE(is_transient(e.error()));
  EXPECT_FALSE(leaves_outcome_unknown(e.error()));
  auto no_csr = parse_rstr(text);
  ASSERT_FALSE(no_csr);
  EXPECT_EQ(no_csr.error().code, "ca.ticket_invalid");
}

// The renewal example's chain token is cut short: its PKCS#7 declares 4,504
// bytes and the vector holds 4,456. A damaged answer is refused by name, not
// half-used.
TEST(MscepWire, SpecRenewalResponseWithDamagedChainIsRefused) {
  LOAD_VECTOR(text, "wstep-rstr-renewal-response.xml");
  auto e = parse_rstr(text);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, "ca.response_unreadable");
  EXPECT_NE(e.error().what.find("PKCS#7 token"), std::string::npos) << e.error().what;
  EXPECT_TRUE(leaves_outcome_unknown(e.error()));
}

struct FaultVector {
  const char* file;
  const char* code;
  const char* in_what;
};

class MscepFaultVectors : public ::testing::TestWithParam<FaultVector> {};

TEST_P(MscepFaultVectors, BecomeNamedErrors) {
  LOAD_VECTOR(text, GetParam().file);
  auto e = parse_rstr(text);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, GetParam().code) << e.error().to_string();
  EXPECT_NE(e.error().what.find(GetParam().in_what), std::string::npos) << e.error().what;
  EXPECT_FALSE(e.error().remedy.empty());
}

INSTANTIATE_TEST_SUITE_P(
    Vectors, MscepFaultVectors,
    ::testing::Values(
        FaultVector{"wstep-fault-denied-by-policy-module.xml", "ca.template_version_mismatch", "Denied by Policy Module"},
        FaultVector{"wstep-fault-restricted-officer.xml", "ca.restricted_officer", "CA request 28"},
        FaultVector{"wstep-fault-wcf-internal-error.xml", "ca.internal_error", "InternalServiceFault"},
        FaultVector{"wstep-fault-address-filter-mismatch.xml", "ca.endpoint_mismatch", "DestinationUnreachable"}),
    [](const ::testing::TestParamInfo<FaultVector>& param_info) {
      std::string n = param_info.param.file;
      n = n.substr(0, n.find('.'));
      for (char& c : n)
        if (c == '-') c = '_';
      return n;
    });

TEST(MscepWire, WcfInternalErrorIsTransientTheOthersAreNot) {
  EXPECT_TRUE(is_transient(Error{"ca.internal_error", "", "", 0}));
  EXPECT_TRUE(is_transient(mscep::hresult_error(0x800706BA, "x")));
  for (std::uint32_t hr : {0x80094015u, 0x80070057u, 0x80094800u, 0x80094812u, 0x80094012u, 0x80094009u})
    EXPECT_FALSE(is_transient(mscep::hresult_error(hr, "x"))) << std::hex << hr;
}

// Every HRESULT of connector-behaviour.md §5, as the CES sends it: a signed
// decimal ErrorCode in CertificateEnrollmentWSDetail.
TEST(MscepWire, ReferenceHresultsMapToTheirNamedErrors) {
  const std::pair<std::int64_t, const char*> cases[] = {
      {static_cast<std::int32_t>(0x800706BA), "ca.rpc_unavailable"},
      {static_cast<std::int32_t>(0x80094015), "ca.policy_server_missing"},
      {static_cast<std::int32_t>(0x80070057), "ca.parameter_incorrect"},
      {static_cast<std::int32_t>(0x80094800), "ca.template_not_supported"},
      {static_cast<std::int32_t>(0x80094812), "ca.subject_email_required"},
      {static_cast<std::int32_t>(0x80094012), "ca.denied_by_policy"},
      {static_cast<std::int32_t>(0x80094014), "ca.denied"},
      {static_cast<std::int32_t>(0x80094001), "ca.rejected"},
      {2148091904LL /* unsigned spelling of 0x80094800 */, "ca.template_not_supported"}};
  for (const auto& [code, name] : cases) {
    const std::string fault =
        "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body><s:Fault><s:Code><s:Value>"
        "s:Receiver</s:Value></s:Code><s:Reason><s:Text xml:lang=\"en-US\">x</s:Text></s:Reason><s:Detail>"
        "<CertificateEnrollmentWSDetail xmlns=\"http://schemas.microsoft.com/windows/pki/2009/01/enrollment\">"
        "<ErrorCode>" + std::to_string(code) + "</ErrorCode><InvalidRequest>true</InvalidRequest>"
        "<RequestID>7</RequestID></CertificateEnrollmentWSDetail></s:Detail></s:Fault></s:Body></s:Envelope>";
    auto e = parse_rstr(fault);
    ASSERT_FALSE(e);
    EXPECT_EQ(e.error().code, name) << code;
    EXPECT_EQ(e.error().native, static_cast<unsigned long>(code & 0xFFFFFFFF));
    EXPECT_NE(e.error().what.find("CA request 7"), std::string::npos);
  }
}

TEST(MscepWire, PendingAnswerKeepsRequestIdAndReferenceUri) {
  const std::string pending =
      R"(<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>
<RequestSecurityTokenResponseCollection xmlns="http://docs.oasis-open.org/ws-sx/ws-trust/200512"><RequestSecurityTokenResponse>
<TokenType>http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3</TokenType>
<DispositionMessage xml:lang="en-US" xmlns="http://schemas.microsoft.com/windows/pki/2009/01/enrollment">Taken Under Submission</DispositionMessage>
<RequestedSecurityToken><SecurityTokenReference xmlns="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"><Reference URI="https://ca.example/CES"/></SecurityTokenReference></RequestedSecurityToken>
<RequestID xmlns="http://schemas.microsoft.com/windows/pki/2009/01/enrollment">65</RequestID>
</RequestSecurityTokenResponse></RequestSecurityTokenResponseCollection></s:Body></s:Envelope>)";
  auto e = parse_rstr(pending);
  ASSERT_TRUE(e) << e.error().to_string();
  EXPECT_EQ(e->status, Enrollment::Status::pending);
  EXPECT_EQ(e->ticket.request_id, "65");
  EXPECT_EQ(e->ticket.poll_uri, "https://ca.example/CES");
  EXPECT_EQ(e->ticket.message, "Taken Under Submission");
}

TEST(MscepWire, AnswerWithoutTokenOrReferenceIsRefused) {
  auto e = parse_rstr(R"(<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>
<RequestSecurityTokenResponse xmlns="http://docs.oasis-open.org/ws-sx/ws-trust/200512"><RequestedSecurityToken/></RequestSecurityTokenResponse></s:Body></s:Envelope>)");
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, "ca.response_unreadable");
  EXPECT_TRUE(may_have_reached_ca(e.error()));
  EXPECT_TRUE(leaves_outcome_unknown(e.error()));
}

// Issue 16 item 5: whatever comes back after the request was sent and cannot
// be read leaves the outcome unknown, and is never a definitive rejection.
TEST(MscepWire, UnreadableAnswersLeaveTheOutcomeUnknown) {
  LOAD_VECTOR(issued, "wstep-rstr-issued-response.xml");
  const std::string envelope = "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body>";
  const std::string cases[] = {
      issued.substr(0, issued.size() / 2),                                  // cut off
      "<!DOCTYPE html><html><body><h1>Maintenance</h1></body></html>",      // a web page
      "<html><body><p>Service Unavailable</p></body></html>",               // well-formed, not SOAP
      envelope + "</s:Body></s:Envelope>",                                  // nothing in the Body
      envelope + "<x:Other xmlns:x=\"urn:other\"/></s:Body></s:Envelope>",  // not an RSTR
      "",                                                                   // nothing at all
      std::string("\x30\x82\x01\x00garbage", 11),                           // binary
  };
  for (const std::string& body : cases) {
    auto e = parse_rstr(body);
    ASSERT_FALSE(e) << body;
    EXPECT_TRUE(answer_unreadable(e.error())) << e.error().to_string();
    EXPECT_TRUE(leaves_outcome_unknown(e.error())) << e.error().to_string();
  }
}

// The DER value of a template extension, read back with OpenSSL's generic ASN.1.
std::vector<std::string> template_oid_fields(const Bytes& value) {
  const unsigned char* p = value.data();
  std::unique_ptr<ASN1_SEQUENCE_ANY, decltype([](ASN1_SEQUENCE_ANY* s) { sk_ASN1_TYPE_pop_free(s, ASN1_TYPE_free); })>
      seq(d2i_ASN1_SEQUENCE_ANY(nullptr, &p, static_cast<long>(value.size())));
  std::vector<std::string> out;
  for (int i = 0; seq && i < sk_ASN1_TYPE_num(seq.get()); ++i) {
    const ASN1_TYPE* t = sk_ASN1_TYPE_value(seq.get(), i);
    if (t->type == V_ASN1_OBJECT) {
      char buf[128];
      OBJ_obj2txt(buf, sizeof buf, t->value.object, 1);
      out.emplace_back(buf);
    } else if (t->type == V_ASN1_INTEGER) {
      out.push_back(std::to_string(ASN1_INTEGER_get(t->value.integer)));
    } else {
      out.push_back("?");
    }
  }
  return out;
}

std::string bmp_name(const Bytes& value) {
  const unsigned char* p = value.data();
  std::unique_ptr<ASN1_TYPE, OsslDeleter<ASN1_TYPE_free>> t(d2i_ASN1_TYPE(nullptr, &p, static_cast<long>(value.size())));
  if (!t || t->type != V_ASN1_BMPSTRING) return "<not a BMPString>";
  unsigned char* utf8 = nullptr;
  const int n = ASN1_STRING_to_UTF8(&utf8, t->value.bmpstring);
  std::string s(reinterpret_cast<char*>(utf8), static_cast<std::size_t>(std::max(n, 0)));
  OPENSSL_free(utf8);
  return s;
}

TEST(MscepWire, XcepDocsExampleGivesTheTemplatePolicy) {
  LOAD_VECTOR(text, "xcep-getpolicies-response-msdocs.xml");
  auto r = soap::parse_response(text, "vector");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->action, "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy/IPolicy/GetPoliciesResponse");
  auto t = mscep::template_policy(*r, "CEPUnitTest", "vector");
  ASSERT_TRUE(t) << t.error().to_string();
  EXPECT_EQ(t->min_key_bits, 2048u);
  EXPECT_TRUE(t->supported.empty());  // subjectNameFlags nil: unknown, no check
  // hashAlgorithmOIDReference names sha1RSA: not taken, the CSR stays SHA-256.
  EXPECT_EQ(t->request_digest, "");
  // Its policyOIDReference points at that hash OID (group 1), not a template
  // OID (group 9): the template is named by its common name.
  ASSERT_EQ(t->request_extensions.size(), 1u);
  EXPECT_EQ(t->request_extensions[0].oid, mscep::kTemplateNameOid);
  EXPECT_EQ(bmp_name(t->request_extensions[0].value), "CEPUnitTest");
  auto missing = mscep::template_policy(*r, "User", "vector");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, "ca.template_not_found");
  EXPECT_NE(missing.error().what.find("CEPUnitTest"), std::string::npos);
  // cAs nil: a client can list the template but enrol nowhere.
  auto policy = mscep::policy_response(*r, "vector");
  ASSERT_TRUE(policy) << policy.error().to_string();
  auto where = mscep::enrolment_uris(*policy, "CEPUnitTest", "vector");
  ASSERT_FALSE(where);
  EXPECT_EQ(where.error().code, "ca.policy_no_ca");
  EXPECT_NE(where.error().what.find("CEPUnitTest"), std::string::npos);
}

// A policy response with two CAs and every kind of URI (MS-XCEP 3.1.4.1.3.x).
constexpr const char* kTwoCaPolicy = R"(<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><s:Body>
<GetPoliciesResponse xmlns="http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy"><response>
<policyID>p</policyID><policyFriendlyName xsi:nil="true"/><nextUpdateHours>4</nextUpdateHours><policiesNotChanged xsi:nil="true"/>
<policies>
 <policy><policyOIDReference>0</policyOIDReference><cAs><cAReference>1</cAReference><cAReference>2</cAReference></cAs>
  <attributes><commonName>PfxUser</commonName><policySchema>2</policySchema>
   <privateKeyAttributes><minimalKeyLength>256</minimalKeyLength><algorithmOIDReference>2</algorithmOIDReference></privateKeyAttributes>
   <revision><majorRevision>105</majorRevision><minorRevision>3</minorRevision></revision>
   <subjectNameFlags>65537</subjectNameFlags><hashAlgorithmOIDReference>1</hashAlgorithmOIDReference></attributes></policy>
 <policy><policyOIDReference>3</policyOIDReference><cAs xsi:nil="true"/>
  <attributes><commonName>Unpublished</commonName><policySchema>2</policySchema></attributes></policy>
 <policy><policyOIDReference>4</policyOIDReference><cAs><cAReference>2</cAReference></cAs>
  <attributes><commonName>KerberosOnly</commonName><policySchema>1</policySchema></attributes></policy>
</policies></response>
<cAs>
 <cA><uris>
   <cAURI><clientAuthentication>8</clientAuthentication><uri>https://ces2.example/B_CES_Certificate/service.svc/CES</uri><priority xsi:nil="true"/><renewalOnly>false</renewalOnly></cAURI>
   <cAURI><clientAuthentication>8</clientAuthentication><uri>https://ces2.example/B_CES_Renewal/service.svc/CES</uri><priority>1</priority><renewalOnly>true</renewalOnly></cAURI>
   <cAURI><clientAuthentication>8</clientAuthentication><uri>https://ces1.example/B_CES_Certificate/service.svc/CES</uri><priority>5</priority><renewalOnly>false</renewalOnly></cAURI>
  </uris><enrollPermission>true</enrollPermission><cAReferenceID>1</cAReferenceID></cA>
 <cA><uris>
   <cAURI><clientAuthentication>2</clientAuthentication><uri>https://ces3.example/C_CES_Kerberos/service.svc/CES</uri><priority>1</priority><renewalOnly>false</renewalOnly></cAURI>
   <cAURI><clientAuthentication>8</clientAuthentication><uri>https://ces3.example/C_CES_Certificate/service.svc/CES</uri><priority>2</priority><renewalOnly>false</renewalOnly></cAURI>
   <cAURI><clientAuthentication>4</clientAuthentication><uri>https://ces3.example/C_CES_UsernamePassword/service.svc/CES</uri><priority>1</priority><renewalOnly>false</renewalOnly></cAURI>
  </uris><enrollPermission>true</enrollPermission><cAReferenceID>2</cAReferenceID></cA>
 <cA><uris>
   <cAURI><clientAuthentication>8</clientAuthentication><uri>https://ces4.example/D_CES_Certificate/service.svc/CES</uri><priority>0</priority><renewalOnly>false</renewalOnly></cAURI>
  </uris><enrollPermission>false</enrollPermission><cAReferenceID>3</cAReferenceID></cA>
</cAs>
<oIDs>
 <oID><value>1.3.6.1.4.1.311.21.8.99.1</value><group>9</group><oIDReferenceID>0</oIDReferenceID><defaultName>PfxUser</defaultName></oID>
 <oID><value>2.16.840.1.101.3.4.2.2</value><group>1</group><oIDReferenceID>1</oIDReferenceID><defaultName>sha384</defaultName></oID>
 <oID><value>1.2.840.10045.2.1</value><group>3</group><oIDReferenceID>2</oIDReferenceID><defaultName>ECC</defaultName></oID>
 <oID><value>1.3.6.1.4.1.311.21.8.99.2</value><group>9</group><oIDReferenceID>3</oIDReferenceID><defaultName>Unpublished</defaultName></oID>
 <oID><value>1.3.6.1.4.1.311.21.8.99.3</value><group>9</group><oIDReferenceID>4</oIDReferenceID><defaultName>KerberosOnly</defaultName></oID>
</oIDs></GetPoliciesResponse></s:Body></s:Envelope>)";

Result<mscep::PolicyResponse> two_ca_policy() {
  CC_TRY_ASSIGN(soap::Response r, soap::parse_response(kTwoCaPolicy, "policy"));
  return mscep::policy_response(r, "policy");
}

// Issue 16 item 19: the CA list and URIs of the policy, by priority.
TEST(MscepWire, PolicyGivesTheTemplatesCasInPriorityOrder) {
  auto p = two_ca_policy();
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_EQ(p->next_update_hours, 4u);
  ASSERT_EQ(p->cas.size(), 3u);
  auto where = mscep::enrolment_uris(*p, "PfxUser", "policy");
  ASSERT_TRUE(where) << where.error().to_string();
  // Certificate authentication only, no renewal-only URI; lower priority
  // first, a nil priority last; CA 3 is not referenced by the template.
  EXPECT_EQ(*where, (std::vector<std::string>{"https://ces3.example/C_CES_Certificate/service.svc/CES",
                                              "https://ces1.example/B_CES_Certificate/service.svc/CES",
                                              "https://ces2.example/B_CES_Certificate/service.svc/CES"}));
  auto none = mscep::enrolment_uris(*p, "Unpublished", "policy");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, "ca.policy_no_ca");
  EXPECT_FALSE(is_transient(none.error()));
}

TEST(MscepWire, UnusableCaUrisAreNamed) {
  auto p = two_ca_policy();
  ASSERT_TRUE(p) << p.error().to_string();
  mscep::PolicyResponse only_other_auth = *p;
  only_other_auth.cas[1].uris.erase(only_other_auth.cas[1].uris.begin() + 1);  // C's certificate URI
  auto none = mscep::enrolment_uris(only_other_auth, "KerberosOnly", "policy");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, "ca.policy_no_ca");
  EXPECT_NE(none.error().what.find("C_CES_Kerberos/service.svc/CES (Kerberos authentication)"), std::string::npos)
      << none.error().what;
  EXPECT_NE(none.error().what.find("(user name and password authentication)"), std::string::npos);
  mscep::PolicyResponse no_permission = *p;
  no_permission.templates[0].ca_references = {"3"};
  auto refused = mscep::enrolment_uris(no_permission, "PfxUser", "policy");
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().what.find("no Enroll permission on CA 3"), std::string::npos) << refused.error().what;
  no_permission.templates[0].ca_references = {"7"};
  EXPECT_NE(mscep::enrolment_uris(no_permission, "PfxUser", "policy").error().what.find("CA 7"), std::string::npos);
}

// Issue 16 items 17 and 19: the template extension the CSR carries, and the
// hash algorithm the template names.
TEST(MscepWire, PolicyGivesTheTemplateExtensionAndTheRequestDigest) {
  auto p = two_ca_policy();
  ASSERT_TRUE(p) << p.error().to_string();
  auto t = mscep::template_policy(*p, "PfxUser", "policy");
  ASSERT_TRUE(t) << t.error().to_string();
  EXPECT_EQ(t->key_algorithm, "EC");
  EXPECT_EQ(t->request_digest, "SHA384");
  ASSERT_EQ(t->request_extensions.size(), 1u);
  EXPECT_EQ(t->request_extensions[0].oid, mscep::kTemplateOid);
  EXPECT_FALSE(t->request_extensions[0].critical);
  EXPECT_EQ(template_oid_fields(t->request_extensions[0].value),
            (std::vector<std::string>{"1.3.6.1.4.1.311.21.8.99.1", "105", "3"}));
  // Schema 1: named by its common name, as MS-WCCE 3.1.2.4.2.2.1.8 has it.
  auto v1 = mscep::template_policy(*p, "KerberosOnly", "policy");
  ASSERT_TRUE(v1);
  ASSERT_EQ(v1->request_extensions.size(), 1u);
  EXPECT_EQ(v1->request_extensions[0].oid, mscep::kTemplateNameOid);
  EXPECT_EQ(bmp_name(v1->request_extensions[0].value), "KerberosOnly");
  // No revision: the OID alone.
  mscep::PolicyTemplate bare = *p->find("PfxUser");
  bare.major_revision.reset();
  bare.minor_revision.reset();
  auto ext = mscep::template_extension(bare);
  ASSERT_TRUE(ext);
  EXPECT_EQ(template_oid_fields(ext->value), std::vector<std::string>{"1.3.6.1.4.1.311.21.8.99.1"});
}

// Element names and namespaces of an element's children, in order.
std::vector<std::string> shape(const xmlNode* n) {
  std::vector<std::string> out;
  for (xmlNode* c : xml::elements(n)) out.push_back("{" + std::string(xml::ns_of(c)) + "}" + std::string(xml::name_of(c)));
  return out;
}

TEST(MscepWire, IssueRequestHasTheShapeARealClientSends) {
  LOAD_VECTOR(text, "cepces-wstep-rst-issue-request.xml");
  auto theirs = soap::parse_request(text, "cepces");
  ASSERT_TRUE(theirs) << theirs.error().to_string();
  const Bytes csr = {0x30, 0x03, 0x02, 0x01, 0x00};
  auto mine_env = mscep::issue_request("https://ca.example/CES", csr, "");
  auto mine = soap::parse_request(mine_env.doc.serialize(), "ours");
  ASSERT_TRUE(mine);
  EXPECT_EQ(mine->action, theirs->action);
  EXPECT_EQ(mine->to, "https://ca.example/CES");
  EXPECT_EQ(shape(mine->payload), shape(theirs->payload));
  for (const char* attr : {"ValueType", "EncodingType"}) {
    const xmlNode* a = xml::child(mine->payload, mscep::kWsse, "BinarySecurityToken");
    const xmlNode* b = xml::child(theirs->payload, mscep::kWsse, "BinarySecurityToken");
    EXPECT_EQ(xml::attribute(a, "", attr), xml::attribute(b, "", attr)) << attr;
  }
  auto back = xml::base64_decode(xml::text(xml::child(mine->payload, mscep::kWsse, "BinarySecurityToken")), "csr");
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, csr);
}

TEST(MscepWire, IssueRequestNamesTheTemplateInAdditionalContext) {
  auto env = mscep::issue_request("https://ca.example/CES", Bytes{1, 2, 3}, "PfxUser");
  auto r = soap::parse_request(env.doc.serialize(), "ours");
  ASSERT_TRUE(r);
  const xmlNode* item = xml::path(r->payload, {{mscep::kAuth, "AdditionalContext"}, {mscep::kAuth, "ContextItem"}});
  ASSERT_NE(item, nullptr);
  EXPECT_EQ(xml::attribute(item, "", "Name"), "CertificateTemplate");
  EXPECT_EQ(xml::text(xml::child(item, mscep::kAuth, "Value")), "PfxUser");
}

TEST(MscepWire, QueryRequestMatchesTheSpecExample) {
  LOAD_VECTOR(text, "wstep-rst-querytokenstatus-request.xml");
  auto theirs = soap::parse_request(text, "spec");
  ASSERT_TRUE(theirs);
  auto mine = soap::parse_request(mscep::query_request("https://ca.example/CES", "65").doc.serialize(), "ours");
  ASSERT_TRUE(mine);
  EXPECT_EQ(shape(mine->payload), shape(theirs->payload));
  EXPECT_EQ(xml::text(xml::child(mine->payload, mscep::kEnrollment, "RequestID")),
            xml::text(xml::child(theirs->payload, mscep::kEnrollment, "RequestID")));
  EXPECT_EQ(xml::text(xml::child(mine->payload, mscep::kTrust, "RequestType")),
            xml::text(xml::child(theirs->payload, mscep::kTrust, "RequestType")));
}

// Issue 16 item 20: the requestFilter as cepces 0.3.17 sends it, which its
// changelog says real CEP servers need to return every template.
TEST(MscepWire, GetPoliciesRequestMatchesARealClientsBody) {
  LOAD_VECTOR(text, "cepces-xcep-getpolicies-request.xml");
  auto theirs = soap::parse_request(text, "cepces");
  ASSERT_TRUE(theirs);
  auto mine = soap::parse_request(mscep::get_policies_request("https://ca.example/CEP").doc.serialize(), "ours");
  ASSERT_TRUE(mine);
  EXPECT_EQ(mine->action, theirs->action);
  EXPECT_EQ(shape(mine->payload), shape(theirs->payload));
  for (const char* part : {"client", "requestFilter"})
    EXPECT_EQ(shape(xml::child(mine->payload, mscep::kXcep, part)), shape(xml::child(theirs->payload, mscep::kXcep, part)))
        << part;
  const xmlNode* ours = xml::child(mine->payload, mscep::kXcep, "requestFilter");
  const xmlNode* cepces = xml::child(theirs->payload, mscep::kXcep, "requestFilter");
  EXPECT_FALSE(xml::is_nil(ours));
  EXPECT_TRUE(xml::is_nil(xml::child(ours, mscep::kXcep, "policyOIDs")));
  for (const char* v : {"clientVersion", "serverVersion"})
    EXPECT_EQ(xml::text(xml::child(ours, mscep::kXcep, v)), xml::text(xml::child(cepces, mscep::kXcep, v))) << v;
}

// Issue 16 item 20: the HRESULT table of docs/ca-protocols.md and the code's
// cannot drift apart: every named HRESULT is a row with its winerror.h name
// and named error, and every HRESULT row is one the code names.
TEST(MscepWire, DocsHresultTableIsTheCodesTable) {
  std::ifstream in(fs::path(CERTCUSTODY_SOURCE_DIR) / "docs" / "ca-protocols.md");
  ASSERT_TRUE(in);
  std::map<std::string, std::string> rows;  // "0x…" -> the row
  for (std::string line; std::getline(in, line);)
    if (line.rfind("| 0x", 0) == 0) rows[line.substr(2, 10)] = line;
  ASSERT_FALSE(rows.empty());
  std::set<std::string> named;
  for (const mscep::NamedHresult& n : mscep::named_hresults()) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%08X", n.hr);
    named.insert(hex);
    auto row = rows.find(hex);
    ASSERT_NE(row, rows.end()) << hex << " " << n.code << " is not in docs/ca-protocols.md";
    EXPECT_NE(row->second.find(std::string("`") + n.code + "`"), std::string::npos) << row->second;
    EXPECT_NE(row->second.find(n.symbol), std::string::npos) << row->second;
    EXPECT_EQ(mscep::hresult_error(n.hr, "x").code, n.code);
  }
  for (const auto& [hex, row] : rows) EXPECT_TRUE(named.contains(hex)) << "docs only: " << row;
}

}  // namespace
}  // namespace certcustody::ca
