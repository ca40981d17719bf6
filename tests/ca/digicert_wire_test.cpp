// DigiCert pki-ws messages: what we send carries what the published client
// code shows, and the answers we expect are read back correctly.
#include <gtest/gtest.h>

#include "ca/digicert_wire.h"
#include "ca/resilience.h"
#include "config/config.h"

namespace certcustody::ca {
namespace {

using digicert::kEnroll;
constexpr const char* kProfile = "2.16.840.1.113733.1.16.1.2.3.1.1.61904612";

PendingTicket ticket(const std::string& transaction, const std::string& profile = {}) {
  PendingTicket t;
  t.transaction_id = transaction;
  t.template_id = profile;
  return t;
}

TEST(DigicertWire, ProfileOidSyntax) {
  EXPECT_TRUE(digicert::check_profile_oid("2.16.840.1.113733.1.16.1.2.3.1.1.61904612"));
  for (const char* bad : {"", "Symantec", "2", "2.16.", ".2.16", "2..16", "3.1", "2.016.840", "2.16.840 ", "2.16.x"}) {
    auto s = digicert::check_profile_oid(bad);
    ASSERT_FALSE(s) << bad;
    EXPECT_EQ(s.error().code, "ca.template_invalid");
  }
}

TEST(DigicertWire, FqdnMustBeBare) {
  EXPECT_FALSE(ca_fqdn_problem("pki-ws.symauth.com"));
  EXPECT_FALSE(ca_fqdn_problem("127.0.0.1:8443"));
  for (const char* bad : {"", "https://pki-ws.symauth.com", "pki-ws.symauth.com/", "pki-ws.symauth.com/pki-ws",
                          "pki ws.example", "host:0", "host:99999", "host:", ".example", "a..b"})
    EXPECT_TRUE(ca_fqdn_problem(bad)) << bad;
  EXPECT_EQ(digicert::service_url("pki-ws.symauth.com", "enrollmentService"),
            "https://pki-ws.symauth.com/pki-ws/enrollmentService");
}

TEST(DigicertWire, EnrollRequestCarriesProfileTransactionCsrAndPairs) {
  SubmitRequest req{"2.16.840.1.113733.1.16.1.2.3.1.1.61904612", Bytes{0x30, 0x00}, "req-42",
                    {{"common_name", "IWUser0"}, {"mail", "iw@contoso.example"}}};
  auto env = digicert::enroll_request(req);
  EXPECT_EQ(env.version, soap::Version::soap11);
  auto parsed = soap::parse_request(env.doc.serialize(), "ours");
  ASSERT_TRUE(parsed) << parsed.error().to_string();
  ASSERT_TRUE(xml::is(parsed->payload, digicert::kTrust, "RequestSecurityToken"));
  const xmlNode* r = xml::child(parsed->payload, kEnroll, "requestVSSecurityToken");
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(xml::text(xml::child(r, kEnroll, "certificateProfileID")), req.template_id);
  EXPECT_EQ(xml::text(xml::child(r, kEnroll, "clientTransactionID")), "req-42");
  EXPECT_EQ(xml::text(xml::child(r, kEnroll, "requestType")), digicert::kIssue);
  EXPECT_EQ(xml::text(xml::child(r, kEnroll, "version")), "2.0");
  const xmlNode* bst = xml::child(r, kEnroll, "binarySecurityToken");
  EXPECT_EQ(xml::attribute(bst, "", "ValueType"), std::string(digicert::kPkcs10));
  EXPECT_EQ(*xml::base64_decode(xml::text(bst), "t"), req.csr_der);
  auto pairs = xml::children(r, kEnroll, "nameValuePair");
  ASSERT_EQ(pairs.size(), 2u);
  EXPECT_EQ(xml::text(xml::child(pairs[1], kEnroll, "name")), "mail");
  EXPECT_EQ(xml::text(xml::child(pairs[1], kEnroll, "value")), "iw@contoso.example");
}

TEST(DigicertWire, AttributeValuesCannotInjectElements) {
  SubmitRequest req{"2.16.840.1", Bytes{1}, "t", {{"common_name", "</value><name>x</name><value>"}}};
  auto parsed = soap::parse_request(digicert::enroll_request(req).doc.serialize(), "ours");
  ASSERT_TRUE(parsed);
  const xmlNode* pair = xml::path(parsed->payload, {{kEnroll, "requestVSSecurityToken"}, {kEnroll, "nameValuePair"}});
  EXPECT_EQ(xml::elements(pair).size(), 2u);
  EXPECT_EQ(xml::text(xml::child(pair, kEnroll, "value")), "</value><name>x</name><value>");
}

Result<policy::TemplatePolicy> policy_of(const std::string& body, const std::string& oid) {
  CC_TRY_ASSIGN(soap::Response r,
                soap::parse_response("<e:Envelope xmlns:e=\"http://schemas.xmlsoap.org/soap/envelope/\"><e:Body>" + body +
                                         "</e:Body></e:Envelope>",
                                     "t"));
  return digicert::template_policy(r, oid, "t");
}

TEST(DigicertWire, PolicyMapsWireAttributesToPolicyNames) {
  const std::string body =
      R"(<getPoliciesResponse xmlns="http://schemas.verisign.com/pkiservices/2009/07/policy"><policy>
<certificateProfileID>2.16.840.1.113733.1.16.1.2.3.1.1.1</certificateProfileID><keyAlgorithm>RSA</keyAlgorithm>
<minimalKeyLength>2048</minimalKeyLength>
<attribute><name>common_name</name><usage>supported</usage></attribute>
<attribute><name>mail</name><usage>supported</usage></attribute>
<attribute><name>mail_firstName</name><usage>fixed</usage></attribute>
<attribute><name>seat_id</name><usage>supported</usage></attribute></policy></getPoliciesResponse>)";
  auto t = policy_of(body, "2.16.840.1.113733.1.16.1.2.3.1.1.1");
  ASSERT_TRUE(t) << t.error().to_string();
  EXPECT_EQ(t->supported, (std::set<std::string>{"subject.cn", "san.email"}));
  EXPECT_EQ(t->fixed, (std::set<std::string>{"subject.mail_firstname"}));
  EXPECT_EQ(t->key_algorithm, "RSA");
  EXPECT_EQ(t->min_key_bits, 2048u);
  auto missing = policy_of(body, "2.16.840.1.113733.1.16.9");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, "ca.template_not_found");
}

TEST(DigicertWire, FaultDetailIsReported) {
  auto r = soap::parse_response(
      R"(<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><e:Fault><faultcode>e:Client</faultcode><faultstring>rejected</faultstring><detail><errorcode>2001</errorcode><message>Invalid certificate profile</message></detail></e:Fault></e:Body></e:Envelope>)",
      "t");
  ASSERT_TRUE(r);
  auto e = digicert::enrollment_result(*r, ticket("x"), "enrolment");
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, "ca.rejected");
  EXPECT_NE(e.error().what.find("errorcode 2001: Invalid certificate profile"), std::string::npos);
}

TEST(DigicertWire, AnswerForAnotherTransactionIsRefused) {
  auto r = soap::parse_response(
      R"(<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body><t:RequestSecurityTokenResponse xmlns:t="http://docs.oasis-open.org/ws-sx/ws-trust/200512/"><v:RequestVSSecurityTokenResponse xmlns:v="http://schemas.verisign.com/pkiservices/2009/07/enrollment"><v:clientTransactionID>other</v:clientTransactionID><v:requestID>5</v:requestID></v:RequestVSSecurityTokenResponse></t:RequestSecurityTokenResponse></e:Body></e:Envelope>)",
      "t");
  ASSERT_TRUE(r);
  auto e = digicert::enrollment_result(*r, ticket("mine"), "enrolment");
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, "ca.response_unreadable");
  EXPECT_TRUE(leaves_outcome_unknown(e.error()));
  auto ok = digicert::enrollment_result(*r, ticket("other", kProfile), "enrolment");
  ASSERT_TRUE(ok) << ok.error().to_string();
  EXPECT_EQ(ok->status, Enrollment::Status::pending);
  EXPECT_EQ(ok->ticket.request_id, "5");
  EXPECT_EQ(ok->ticket.transaction_id, "other");
  EXPECT_EQ(ok->ticket.template_id, kProfile);  // kept for the poll
}

// Issue 16 item 21: a poll names the certificate profile it was enrolled with.
TEST(DigicertWire, PollNamesTheProfileTransactionAndRequest) {
  PendingTicket t = ticket("tx-7", kProfile);
  t.request_id = "42";
  auto parsed = soap::parse_request(digicert::poll_request(t).doc.serialize(), "ours");
  ASSERT_TRUE(parsed);
  const xmlNode* r = xml::child(parsed->payload, kEnroll, "requestVSSecurityToken");
  EXPECT_EQ(xml::text(xml::child(r, kEnroll, "certificateProfileID")), kProfile);
  EXPECT_EQ(xml::text(xml::child(r, kEnroll, "clientTransactionID")), "tx-7");
  EXPECT_EQ(xml::text(xml::child(r, kEnroll, "requestID")), "42");
  EXPECT_EQ(xml::text(xml::child(r, kEnroll, "requestType")), digicert::kQueryTokenStatus);
}

// Issue 16 item 21: getPolicies in the shape the public notes point at
// (digicert-pki-ws-notes.md: getPolicies returns "oIDs", the profile OIDs).
TEST(DigicertWire, PolicyWithProfileOidsInTheOidTableIsRead) {
  const std::string body = std::string(R"(<P:getPoliciesResponse xmlns:P="http://schemas.verisign.com/pkiservices/2009/07/policy">
<P:response><P:policies><P:policy><P:policyOIDReference>1</P:policyOIDReference>
<P:attributes><P:commonName>PFX users</P:commonName><P:privateKeyAttributes><P:minimalKeyLength>3072</P:minimalKeyLength>
<P:algorithmOIDReference>0</P:algorithmOIDReference></P:privateKeyAttributes></P:attributes>
<P:attribute><P:name>common_name</P:name><P:usage>supported</P:usage></P:attribute>
<P:attribute><P:name>mail</P:name><P:usage>fixed</P:usage></P:attribute>
</P:policy></P:policies></P:response>
<P:oIDs><P:oID><P:value>1.2.840.113549.1.1.1</P:value><P:group>3</P:group><P:oIDReferenceID>0</P:oIDReferenceID></P:oID>
<P:oID><P:value>)") + kProfile + R"(</P:value><P:group>9</P:group><P:oIDReferenceID>1</P:oIDReferenceID></P:oID>
<P:oID><P:value>2.16.840.1.113733.1.16.1.2.3.1.1.7</P:value><P:oIDReferenceID>2</P:oIDReferenceID></P:oID>
</P:oIDs></P:getPoliciesResponse>)";
  auto t = policy_of(body, kProfile);
  ASSERT_TRUE(t) << t.error().to_string();
  EXPECT_EQ(t->key_algorithm, "RSA");
  EXPECT_EQ(t->min_key_bits, 3072u);
  EXPECT_EQ(t->supported, std::set<std::string>{"subject.cn"});
  EXPECT_EQ(t->fixed, std::set<std::string>{"san.email"});
  // Listed in oIDs alone: known, nothing said about it (no check).
  auto bare = policy_of(body, "2.16.840.1.113733.1.16.1.2.3.1.1.7");
  ASSERT_TRUE(bare) << bare.error().to_string();
  EXPECT_TRUE(bare->supported.empty());
  EXPECT_TRUE(bare->fixed.empty());
  auto missing = policy_of(body, "2.16.840.1.113733.1.16.9");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, "ca.template_not_found");
  EXPECT_NE(missing.error().what.find("among the 2 profiles"), std::string::npos) << missing.error().what;
}

TEST(DigicertWire, RevokeRequestNamesSerialAndReason) {
  auto parsed = soap::parse_request(
      digicert::revoke_request("0A1B", RevocationReason::superseded, "rev-1").doc.serialize(), "ours");
  ASSERT_TRUE(parsed);
  ASSERT_TRUE(xml::is(parsed->payload, digicert::kManagement, "updateCertificateStatus"));
  EXPECT_EQ(xml::text(xml::child(parsed->payload, digicert::kManagement, "certificateSerialNumber")), "0A1B");
  EXPECT_EQ(xml::text(xml::child(parsed->payload, digicert::kManagement, "revocationReason")), "Superseded");
  EXPECT_EQ(xml::text(xml::child(parsed->payload, digicert::kManagement, "operationType")), "Revoke");
}

TEST(RevocationReason, ParsesNamesAndNumbers) {
  EXPECT_EQ(*parse_revocation_reason("superseded"), RevocationReason::superseded);
  EXPECT_EQ(*parse_revocation_reason("key_compromise"), RevocationReason::key_compromise);
  EXPECT_EQ(*parse_revocation_reason("KeyCompromise"), RevocationReason::key_compromise);
  EXPECT_EQ(*parse_revocation_reason("4"), RevocationReason::superseded);
  auto bad = parse_revocation_reason("because");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, "ca.reason_invalid");
  EXPECT_NE(bad.error().remedy.find("superseded"), std::string::npos);
}

}  // namespace
}  // namespace certcustody::ca
