// Server-side conformance of the CA simulator (tests/support/ca_simulator.*):
// the third-party MS-WSTEP / MS-XCEP request vectors are accepted and answered
// as the specifications and docs/ca-protocols.md describe, the RA's TLS client
// certificate is required, and every scripted behaviour does what it says.
// The client is the connector's own HttpsClient with a software RA key.
#include "support/ca_simulator.h"

#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509v3.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <thread>

#include "ca/digicert_wire.h"
#include "ca/mscep_wire.h"
#include "ca/soap.h"
#include "ca/xml.h"
#include "common/ossl.h"
#include "net/https_client.h"
#include "support/process.h"
#include "support/temp_dir.h"

namespace certcustody::testing {
namespace {

namespace xml = ca::xml;
namespace soap = ca::soap;
using Kind = SimBehaviour::Kind;
using std::chrono::milliseconds;

// Wire names, written out again here (not taken from the simulator) so that
// a typo on one side shows.
constexpr std::string_view kXcep = "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy";
constexpr std::string_view kEnr = "http://schemas.microsoft.com/windows/pki/2009/01/enrollment";
constexpr std::string_view kTrust = "http://docs.oasis-open.org/ws-sx/ws-trust/200512";
constexpr std::string_view kWsse = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
constexpr std::string_view kAuth = "http://schemas.xmlsoap.org/ws/2006/12/authorization";
constexpr std::string_view kRstAction = "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RST/wstep";
constexpr std::string_view kRstrcAction = "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RSTRC/wstep";
constexpr std::string_view kWsDetailFaultAction =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/"
    "RequestSecurityTokenCertificateEnrollmentWSDetailFault";
constexpr std::string_view kGetPoliciesResponseAction =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy/IPolicy/GetPoliciesResponse";
constexpr std::string_view kIssue = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue";
constexpr std::string_view kX509v3 =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3";
constexpr std::string_view kWssePkcs7 =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd#PKCS7";
constexpr std::string_view kMsPkcs10 = "http://schemas.microsoft.com/windows/pki/2009/01/enrollment#PKCS10";
constexpr std::string_view kDcEnroll = "http://schemas.verisign.com/pkiservices/2009/07/enrollment";
constexpr std::string_view kDcTrust = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/";
constexpr std::string_view kDcPolicy = "http://schemas.verisign.com/pkiservices/2009/07/policy";
constexpr std::string_view kDcManagement = "http://schemas.verisign.com/pkiservices/2009/07/management";
constexpr std::string_view kDcQuery = "http://schemas.verisign.com/pkiservices/2009/07/enrollment/QueryTokenStatus";
constexpr std::string_view kDcProfile = "2.16.840.1.113733.1.16.1.3.1.4.1.38113944";

const std::string kVectors = CERTCUSTODY_SOURCE_DIR "/../shared/reference/wstep-vectors/";

// --- certificates and CSRs -------------------------------------------------------
X509Ptr load_cert(const std::string& path) {
  BioPtr b(BIO_new_file(path.c_str(), "r"));
  return X509Ptr(b ? PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr) : nullptr);
}

X509Ptr cert_of(const Bytes& der) {
  const unsigned char* p = der.data();
  return X509Ptr(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
}

std::vector<X509Ptr> pkcs7_certs(const Bytes& der) {
  const unsigned char* p = der.data();
  std::unique_ptr<PKCS7, OsslDeleter<PKCS7_free>> p7(d2i_PKCS7(nullptr, &p, static_cast<long>(der.size())));
  std::vector<X509Ptr> out;
  if (!p7 || !PKCS7_type_is_signed(p7.get())) return out;
  STACK_OF(X509)* certs = p7->d.sign->cert;
  for (int i = 0; i < sk_X509_num(certs); ++i) {
    X509_up_ref(sk_X509_value(certs, i));
    out.emplace_back(sk_X509_value(certs, i));
  }
  return out;
}

bool signed_by(X509* cert, X509* ca) { return X509_verify(cert, X509_get0_pubkey(ca)) == 1; }

std::string cn_of(X509* cert) {
  char buf[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof buf);
  return buf;
}

std::string serial_hex(X509* cert) {
  std::unique_ptr<BIGNUM, OsslDeleter<BN_free>> bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr));
  char* hex = BN_bn2hex(bn.get());
  std::string s = hex;
  OPENSSL_free(hex);
  return s;
}

struct Csr {
  EvpPkeyPtr key;
  Bytes der;
  std::string spki_key() const { return spki_sha256_hex(public_key_der(key.get())); }
};

void add_req_ext(STACK_OF(X509_EXTENSION) * exts, int nid, const char* value) {
  sk_X509_EXTENSION_push(exts, X509V3_EXT_conf_nid(nullptr, nullptr, nid, value));
}

// szOID_ENROLL_CERTTYPE_EXTENSION: the template name as a BMPString (UTF-16BE).
void add_template_name_ext(STACK_OF(X509_EXTENSION) * exts, const std::string& ascii_name) {
  std::string utf16;
  for (char c : ascii_name) utf16 += std::string{'\0', c};
  std::unique_ptr<ASN1_STRING, OsslDeleter<ASN1_STRING_free>> bmp(ASN1_STRING_type_new(V_ASN1_BMPSTRING));
  ASN1_STRING_set(bmp.get(), utf16.data(), static_cast<int>(utf16.size()));
  unsigned char* der = nullptr;
  int n = i2d_ASN1_BMPSTRING(bmp.get(), &der);
  std::unique_ptr<ASN1_OCTET_STRING, OsslDeleter<ASN1_OCTET_STRING_free>> value(ASN1_OCTET_STRING_new());
  ASN1_OCTET_STRING_set(value.get(), der, n);
  OPENSSL_free(der);
  std::unique_ptr<ASN1_OBJECT, OsslDeleter<ASN1_OBJECT_free>> oid(OBJ_txt2obj("1.3.6.1.4.1.311.20.2", 1));
  sk_X509_EXTENSION_push(exts, X509_EXTENSION_create_by_OBJ(nullptr, oid.get(), 0, value.get()));
}

void free_exts(STACK_OF(X509_EXTENSION) * s) { sk_X509_EXTENSION_pop_free(s, X509_EXTENSION_free); }

// A signed PKCS#10 for CN=cn with SAN DNS:cn and EKU clientAuth; RSA when rsa_bits > 0.
Csr make_csr(const std::string& cn, int rsa_bits = 0, const std::string& template_name = {}) {
  Csr c;
  c.key.reset(rsa_bits > 0 ? EVP_RSA_gen(static_cast<unsigned>(rsa_bits)) : EVP_EC_gen("P-256"));
  X509ReqPtr req(X509_REQ_new());
  X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req.get()), "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_REQ_set_pubkey(req.get(), c.key.get());
  std::unique_ptr<STACK_OF(X509_EXTENSION), OsslDeleter<free_exts>> exts(sk_X509_EXTENSION_new_null());
  add_req_ext(exts.get(), NID_subject_alt_name, ("DNS:" + cn).c_str());
  add_req_ext(exts.get(), NID_ext_key_usage, "clientAuth");
  if (!template_name.empty()) add_template_name_ext(exts.get(), template_name);
  X509_REQ_add_extensions(req.get(), exts.get());
  X509_REQ_sign(req.get(), c.key.get(), EVP_sha256());
  unsigned char* der = nullptr;
  int n = i2d_X509_REQ(req.get(), &der);
  c.der.assign(der, der + n);
  OPENSSL_free(der);
  return c;
}

// --- XML ------------------------------------------------------------------------------
xmlNode* add_in(xmlNode* parent, std::string_view ns, std::string_view prefix, std::string_view local,
                std::string_view text = {}) {
  xmlNode* n = xml::add(parent, nullptr, local, text);
  xmlSetNs(n, xml::declare(n, ns, prefix));
  return n;
}

void set_text(xmlNode* n, const std::string& text) {
  xmlNodeSetContent(n, nullptr);
  xmlNodeAddContentLen(n, reinterpret_cast<const xmlChar*>(text.data()), static_cast<int>(text.size()));
}

std::string read_vector(const std::string& name) { return read_file(kVectors + name); }

// A vector request with wsa:To set to `to` (added where the vector has none:
// the [MS-WSTEP] examples omit it, and the simulator, like AD CS, refuses
// that) and, when given, its enrollment:RequestID replaced.
std::string retarget(const std::string& vector, const std::string& to, const std::string& request_id = {}) {
  auto doc = xml::Document::parse(vector, "vector");
  if (!doc) return "cannot parse the vector: " + doc.error().what;
  xmlNode* header = xml::child(doc->root(), soap::kSoap12, "Header");
  if (xmlNode* dest = xml::child(header, soap::kWsa, "To")) {
    set_text(dest, to);
  } else {
    xml::add(header, xml::declare(header, soap::kWsa, "a"), "To", to);
  }
  xmlNode* rst = xml::elements(xml::child(doc->root(), soap::kSoap12, "Body")).at(0);
  if (!request_id.empty()) set_text(xml::child(rst, kEnr, "RequestID"), request_id);
  return doc->serialize();
}

std::string message_id_of(const std::string& vector) {
  auto doc = xml::Document::parse(vector, "vector");
  return doc ? xml::text(xml::path(doc->root(), {{soap::kSoap12, "Header"}, {soap::kWsa, "MessageID"}})) : "";
}

std::string ms_issue_request(const std::string& to, const Bytes& csr, const std::string& template_name,
                             const std::string& message_id = {}) {
  soap::Envelope e = soap::make_envelope(soap::Version::soap12, kRstAction, to, message_id);
  xmlNode* rst = add_in(e.body, kTrust, "wst", "RequestSecurityToken");
  xml::add(rst, rst->ns, "TokenType", kX509v3);
  xml::add(rst, rst->ns, "RequestType", kIssue);
  xmlNode* bst = add_in(rst, kWsse, "wsse", "BinarySecurityToken", xml::base64_encode(csr, true));
  xml::set_attribute(bst, nullptr, "ValueType", kMsPkcs10);
  xml::set_attribute(bst, nullptr, "EncodingType",
                     "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd#base64binary");
  if (!template_name.empty()) {
    xmlNode* ctx = add_in(rst, kAuth, "auth", "AdditionalContext");
    xmlNode* item = xml::add(ctx, ctx->ns, "ContextItem");
    xml::set_attribute(item, nullptr, "Name", "CertificateTemplate");
    xml::add(item, ctx->ns, "Value", template_name);
  }
  return e.doc.serialize();
}

std::string ms_query_request(const std::string& to, long id) {
  soap::Envelope e = soap::make_envelope(soap::Version::soap12, kRstAction, to);
  xmlNode* rst = add_in(e.body, kTrust, "wst", "RequestSecurityToken");
  xml::add(rst, rst->ns, "TokenType", kX509v3);
  xml::add(rst, rst->ns, "RequestType", "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/QueryTokenStatus");
  add_in(rst, kEnr, "enr", "RequestID", std::to_string(id));
  return e.doc.serialize();
}

std::string dc_enroll_request(const std::string& profile, const std::string& txid, const Bytes& csr,
                              const std::vector<std::pair<std::string, std::string>>& attributes = {}) {
  soap::Envelope e = soap::make_envelope(soap::Version::soap11, "", "");
  xmlNode* rst = add_in(e.body, kDcTrust, "T", "RequestSecurityToken");
  xmlNode* vs = add_in(rst, kDcEnroll, "E", "requestVSSecurityToken");
  xmlNs* E = vs->ns;
  xml::add(vs, E, "certificateProfileID", profile);
  xml::add(vs, E, "clientTransactionID", txid);
  xml::add(vs, E, "tokenType", "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#PKCS7");
  xml::add(vs, E, "requestType", kIssue);
  xmlNode* bst = xml::add(vs, E, "binarySecurityToken", xml::base64_encode(csr));
  xml::set_attribute(bst, nullptr, "ValueType", "http://schemas.verisign.com/pkiservices/2009/07/PKCS10");
  for (const auto& [name, value] : attributes) {
    xmlNode* nv = xml::add(vs, E, "nameValuePair");
    xml::add(nv, E, "name", name);
    xml::add(nv, E, "value", value);
  }
  xml::add(vs, E, "version", "2.0");
  return e.doc.serialize();
}

std::string dc_query_request(const std::string& txid, const std::string& request_id,
                             const std::string& profile = std::string(kDcProfile)) {
  soap::Envelope e = soap::make_envelope(soap::Version::soap11, "", "");
  xmlNode* vs = add_in(add_in(e.body, kDcTrust, "T", "RequestSecurityToken"), kDcEnroll, "E", "requestVSSecurityToken");
  if (!profile.empty()) xml::add(vs, vs->ns, "certificateProfileID", profile);
  xml::add(vs, vs->ns, "clientTransactionID", txid);
  xml::add(vs, vs->ns, "requestType", kDcQuery);
  xml::add(vs, vs->ns, "requestID", request_id);
  xml::add(vs, vs->ns, "version", "2.0");
  return e.doc.serialize();
}

std::string dc_revoke_request(const std::string& serial, const std::string& reason, const std::string& op = "Revoke") {
  soap::Envelope e = soap::make_envelope(soap::Version::soap11, "", "");
  xmlNode* u = add_in(e.body, kDcManagement, "M", "updateCertificateStatus");
  xml::add(u, u->ns, "version", "1.0");
  xml::add(u, u->ns, "clientTransactionID", "revoke-" + serial);
  xml::add(u, u->ns, "certificateSerialNumber", serial);
  xml::add(u, u->ns, "revocationReason", reason);
  xml::add(u, u->ns, "operationType", op);
  return e.doc.serialize();
}

// What an MS-WSTEP answer carries.
struct MsAnswer {
  long status = 0;
  std::string action, relates_to, disposition, request_id, reference_uri;
  Bytes cert, pkcs7;
  std::optional<soap::Fault> fault;
  std::string error_code, invalid_request, fault_request_id;  // CertificateEnrollmentWSDetail
};

MsAnswer read_ms(const HttpsResponse& r) {
  MsAnswer a;
  a.status = r.status;
  auto resp = soap::parse_response(r.body, "answer");
  if (!resp) {
    a.action = "unparsable: " + resp.error().what;
    return a;
  }
  a.action = resp->action;
  a.relates_to = resp->relates_to;
  a.fault = resp->fault;
  if (a.fault) {
    xmlNode* d = xml::child(a.fault->detail, kEnr, "CertificateEnrollmentWSDetail");
    a.error_code = xml::text(xml::child(d, kEnr, "ErrorCode"));
    a.invalid_request = xml::text(xml::child(d, kEnr, "InvalidRequest"));
    a.fault_request_id = xml::text(xml::child(d, kEnr, "RequestID"));
    return a;
  }
  xmlNode* rstr = xml::child(resp->payload, kTrust, "RequestSecurityTokenResponse");
  a.disposition = xml::text(xml::child(rstr, kEnr, "DispositionMessage"));
  a.request_id = xml::text(xml::child(rstr, kEnr, "RequestID"));
  xmlNode* outer = xml::child(rstr, kWsse, "BinarySecurityToken");
  if (outer != nullptr && xml::attribute(outer, "", "ValueType") == kWssePkcs7)
    a.pkcs7 = xml::base64_decode(xml::text(outer), "pkcs7").value();
  xmlNode* requested = xml::child(rstr, kTrust, "RequestedSecurityToken");
  xmlNode* token = xml::child(requested, kWsse, "BinarySecurityToken");
  if (token != nullptr && xml::attribute(token, "", "ValueType") == kX509v3)
    a.cert = xml::base64_decode(xml::text(token), "cert").value();
  a.reference_uri =
      xml::attribute(xml::path(requested, {{kWsse, "SecurityTokenReference"}, {kWsse, "Reference"}}), "", "URI")
          .value_or("");
  return a;
}

std::string signed_decimal(std::uint32_t hresult) { return std::to_string(static_cast<std::int32_t>(hresult)); }

// What a pki-ws answer carries.
struct DcAnswer {
  long status = 0;
  std::string txid, disposition, request_id;
  Bytes pkcs7;
  std::optional<soap::Fault> fault;
  std::string errorcode, message;
  std::string success_code;
};

DcAnswer read_dc(const HttpsResponse& r) {
  DcAnswer a;
  a.status = r.status;
  auto resp = soap::parse_response(r.body, "answer");
  if (!resp) {
    a.disposition = "unparsable: " + resp.error().what;
    return a;
  }
  if (resp->version != soap::Version::soap11) a.disposition = "not SOAP 1.1";
  a.fault = resp->fault;
  if (a.fault) {
    a.errorcode = xml::text(xml::child(a.fault->detail, "", "errorcode"));
    a.message = xml::text(xml::child(a.fault->detail, "", "message"));
    return a;
  }
  a.success_code = xml::text(xml::child(resp->payload, kDcManagement, "successCode"));
  xmlNode* v = xml::child(resp->payload, kDcEnroll, "RequestVSSecurityTokenResponse");
  a.txid = xml::text(xml::child(v, kDcEnroll, "clientTransactionID"));
  a.disposition = xml::text(xml::child(v, kDcEnroll, "dispositionMessage"));
  a.request_id = xml::text(xml::child(v, kDcEnroll, "requestID"));
  if (xmlNode* t = xml::path(v, {{kDcEnroll, "requestedVSSecurityToken"}, {kDcEnroll, "binarySecurityToken"}}))
    a.pkcs7 = xml::base64_decode(xml::text(t), "pkcs7").value();
  return a;
}

// The one end-entity certificate of a certs-only PKCS#7 (not a CA).
X509Ptr end_entity(const Bytes& pkcs7) {
  X509Ptr found;
  for (X509Ptr& c : pkcs7_certs(pkcs7))
    if (X509_check_ca(c.get()) == 0) found = std::move(c);
  return found;
}

// --- the fixture ----------------------------------------------------------------------
class CaSimulatorTest : public ::testing::Test {
 protected:
  // RA credentials once per suite: a test RA CA and its RA, and a foreign CA and its client.
  static void SetUpTestSuite() {
    creds_ = new TempDir;
    for (const std::string ca : {"ra-ca", "foreign-ca"})
      openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
               *creds_ / (ca + ".key"), "-out", *creds_ / (ca + ".pem"), "-subj", "/CN=Test " + ca, "-days", "2"});
    for (const auto& [who, ca] : {std::pair<std::string, std::string>{"ra", "ra-ca"}, {"foreign", "foreign-ca"}}) {
      openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
               *creds_ / (who + ".key"), "-out", *creds_ / (who + ".csr"), "-subj", "/CN=RA " + who});
      openssl({"x509", "-req", "-in", *creds_ / (who + ".csr"), "-CA", *creds_ / (ca + ".pem"), "-CAkey",
               *creds_ / (ca + ".key"), "-CAcreateserial", "-days", "2", "-out", *creds_ / (who + ".pem")});
    }
  }
  static void TearDownTestSuite() {
    delete creds_;
    creds_ = nullptr;
  }
  static void openssl(std::vector<std::string> args) {
    args.insert(args.begin(), "openssl");
    RunResult r = run(args);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }

  void SetUp() override {
    sim_ = std::make_unique<CaSimulator>(CaSimulator::Options{dir_.path(), *creds_ / "ra-ca.pem"});
    client_ = client("ra");
    ASSERT_TRUE(client_);
  }

  std::unique_ptr<HttpsClient> client(const std::string& who, HttpsOptions o = {}) {
    TlsIdentity id;
    BioPtr kb(BIO_new_file((*creds_ / (who + ".key")).c_str(), "r"));
    id.key.reset(PEM_read_bio_PrivateKey(kb.get(), nullptr, nullptr, nullptr));
    id.certificate = load_cert(*creds_ / (who + ".pem"));
    if (o.trust_anchor.empty()) o.trust_anchor = sim_->trust_anchor();
    auto c = HttpsClient::create(o, std::move(id));
    EXPECT_TRUE(c) << c.error().to_string();
    return c ? std::move(c.value()) : nullptr;
  }

  Result<HttpsResponse> post_ms(const std::string& url, const std::string& body, HttpsClient* via = nullptr) {
    return (via ? via : client_.get())->post(url, "application/soap+xml; charset=utf-8", body);
  }
  Result<HttpsResponse> post_dc(const std::string& service, const std::string& body) {
    return client_->post("https://" + sim_->digicert_fqdn() + "/pki-ws/" + service, "text/xml; charset=utf-8", body,
                         {"SOAPAction: \"\""});
  }
  MsAnswer ms(const std::string& url, const std::string& body) {
    auto r = post_ms(url, body);
    EXPECT_TRUE(r) << r.error().to_string();
    return r ? read_ms(*r) : MsAnswer{};
  }
  DcAnswer dc(const std::string& service, const std::string& body) {
    auto r = post_dc(service, body);
    EXPECT_TRUE(r) << r.error().to_string();
    return r ? read_dc(*r) : DcAnswer{};
  }
  bool have_vectors() const { return std::filesystem::exists(kVectors + "SOURCES.md"); }
  // A GetPolicies with a nil requestFilter, to the simulator's CEP.
  std::string get_policies_request() const {
    soap::Envelope gp = soap::make_envelope(
        soap::Version::soap12, "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy/IPolicy/GetPolicies",
        sim_->cep_url());
    xmlNode* get = add_in(gp.body, kXcep, "", "GetPolicies");
    xml::add(get, get->ns, "client");
    xml::set_nil(xml::add(get, get->ns, "requestFilter"));
    return gp.doc.serialize();
  }

  static TempDir* creds_;
  TempDir dir_;
  std::unique_ptr<CaSimulator> sim_;
  std::unique_ptr<HttpsClient> client_;
};

TempDir* CaSimulatorTest::creds_ = nullptr;

// --- MS-XCEP ----------------------------------------------------------------------------
struct PolicyView {
  std::map<std::string, xmlNode*> policies;                         // by commonName
  std::map<std::string, std::pair<std::string, std::string>> oids;  // oIDReferenceID → (value, group)
  xmlNode* ca = nullptr;
};

PolicyView view_of(xmlNode* gpr) {
  PolicyView v;
  for (xmlNode* p : xml::children(xml::path(gpr, {{kXcep, "response"}, {kXcep, "policies"}}), kXcep, "policy"))
    v.policies[xml::text(xml::path(p, {{kXcep, "attributes"}, {kXcep, "commonName"}}))] = p;
  for (xmlNode* o : xml::children(xml::child(gpr, kXcep, "oIDs"), kXcep, "oID"))
    v.oids[xml::text(xml::child(o, kXcep, "oIDReferenceID"))] = {xml::text(xml::child(o, kXcep, "value")),
                                                                 xml::text(xml::child(o, kXcep, "group"))};
  v.ca = xml::path(gpr, {{kXcep, "cAs"}, {kXcep, "cA"}});
  return v;
}

TEST_F(CaSimulatorTest, GetPoliciesVectorsAreAnsweredWithTemplatesCasAndOids) {
  if (!have_vectors()) {
    if (running_in_ci()) FAIL() << "no " << kVectors << " under CI";
    GTEST_SKIP() << "no " << kVectors;
  }
  sim_->add_template("WebServer", {.min_key_bits = 3072, .key_algorithm = "RSA"});
  sim_->add_template("Legacy", {.min_key_bits = 2048, .subject_name_flags = 1});
  X509Ptr issuing = load_cert(sim_->issuing_ca());
  ASSERT_TRUE(issuing);
  // cepces' request (requestFilter with versions 0) and the MS docs' (requestFilter nil, UsernameToken).
  for (const std::string name : {"cepces-xcep-getpolicies-request.xml", "xcep-getpolicies-request-msdocs.xml"}) {
    SCOPED_TRACE(name);
    const std::string vector = read_vector(name);
    auto r = post_ms(sim_->cep_url(), retarget(vector, sim_->cep_url()));
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    auto resp = soap::parse_response(r->body, "answer");
    ASSERT_TRUE(resp) << resp.error().to_string();
    EXPECT_EQ(resp->action, kGetPoliciesResponseAction);
    EXPECT_EQ(resp->relates_to, message_id_of(vector));
    ASSERT_TRUE(xml::is(resp->payload, kXcep, "GetPoliciesResponse"));
    PolicyView v = view_of(resp->payload);
    ASSERT_EQ(v.policies.size(), 2u);
    xmlNode* web = v.policies["WebServer"];
    xmlNode* pk = xml::path(web, {{kXcep, "attributes"}, {kXcep, "privateKeyAttributes"}});
    EXPECT_EQ(xml::text(xml::child(pk, kXcep, "minimalKeyLength")), "3072");
    auto alg = v.oids[xml::text(xml::child(pk, kXcep, "algorithmOIDReference"))];
    EXPECT_EQ(alg, (std::pair<std::string, std::string>{"1.2.840.113549.1.1.1", "3"}));
    EXPECT_EQ(xml::text(xml::path(web, {{kXcep, "attributes"}, {kXcep, "subjectNameFlags"}})), "65537");
    EXPECT_EQ(v.oids[xml::text(xml::child(web, kXcep, "policyOIDReference"))].second, "9");  // template OID
    xmlNode* legacy = v.policies["Legacy"];
    EXPECT_TRUE(xml::is_nil(
        xml::path(legacy, {{kXcep, "attributes"}, {kXcep, "privateKeyAttributes"}, {kXcep, "algorithmOIDReference"}})));
    EXPECT_EQ(xml::text(xml::path(legacy, {{kXcep, "attributes"}, {kXcep, "subjectNameFlags"}})), "1");
    // The issuer: referenced by the policy, reachable at ces_url() with certificate authentication.
    EXPECT_EQ(xml::text(xml::path(web, {{kXcep, "cAs"}, {kXcep, "cAReference"}})),
              xml::text(xml::child(v.ca, kXcep, "cAReferenceID")));
    xmlNode* uri = xml::path(v.ca, {{kXcep, "uris"}, {kXcep, "cAURI"}});
    EXPECT_EQ(xml::text(xml::child(uri, kXcep, "uri")), sim_->ces_url());
    EXPECT_EQ(xml::text(xml::child(uri, kXcep, "clientAuthentication")), "8");
    auto ca_der = xml::base64_decode(xml::text(xml::child(v.ca, kXcep, "certificate")), "ca");
    ASSERT_TRUE(ca_der);
    X509Ptr ca = cert_of(*ca_der);
    ASSERT_TRUE(ca);
    EXPECT_EQ(X509_cmp(ca.get(), issuing.get()), 0);
  }
}

// --- MS-WSTEP Issue ---------------------------------------------------------------------
TEST_F(CaSimulatorTest, SpecExampleIssueIsIssuedForTheTemplateNamedInItsCsr) {
  if (!have_vectors()) {
    if (running_in_ci()) FAIL() << "no " << kVectors << " under CI";
    GTEST_SKIP() << "no " << kVectors;
  }
  const std::string vector = read_vector("wstep-rst-issue-request.xml");
  sim_->add_template("User", {});
  // As published the example has no wsa:To: refused as AD CS refuses it.
  MsAnswer bare = ms(sim_->ces_url(), vector);
  EXPECT_EQ(bare.status, 500);
  ASSERT_TRUE(bare.fault);
  EXPECT_EQ(bare.fault->code, "Sender");
  EXPECT_EQ(bare.fault->subcode, "DestinationUnreachable");

  MsAnswer a = ms(sim_->ces_url(), retarget(vector, sim_->ces_url()));
  ASSERT_EQ(a.status, 200) << a.action;
  EXPECT_EQ(a.action, kRstrcAction);
  EXPECT_EQ(a.relates_to, "urn:uuid:b5d1a601-5091-4a7d-b34b-5204c18b5919");
  EXPECT_EQ(a.disposition, "Issued");
  EXPECT_GT(std::atol(a.request_id.c_str()), 0);
  X509Ptr cert = cert_of(a.cert), issuing = load_cert(sim_->issuing_ca());
  ASSERT_TRUE(cert);
  EXPECT_TRUE(signed_by(cert.get(), issuing.get()));
  // The example's token is labelled #PKCS7 but is a bare PKCS#10: its key is the certificate's.
  auto doc = xml::Document::parse(vector, "vector");
  ASSERT_TRUE(doc);
  xmlNode* rst = xml::elements(xml::child(doc->root(), soap::kSoap12, "Body")).at(0);
  Bytes csr_der = xml::base64_decode(xml::text(xml::child(rst, kWsse, "BinarySecurityToken")), "csr").value();
  const unsigned char* p = csr_der.data();
  X509ReqPtr csr(d2i_X509_REQ(nullptr, &p, static_cast<long>(csr_der.size())));
  ASSERT_TRUE(csr);
  EXPECT_EQ(EVP_PKEY_eq(X509_get0_pubkey(cert.get()), X509_REQ_get0_pubkey(csr.get())), 1);
  // Its extensionRequest's EKU (EFS, e-mail, client auth) and key usage are copied.
  EXPECT_EQ(X509_get_extended_key_usage(cert.get()) & (XKU_SSL_CLIENT | XKU_SMIME), XKU_SSL_CLIENT | XKU_SMIME);
  EXPECT_EQ(X509_get_key_usage(cert.get()), static_cast<std::uint32_t>(KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT));
  // The outer #PKCS7 token: the certificate and the issuing CA.
  std::vector<X509Ptr> chain = pkcs7_certs(a.pkcs7);
  ASSERT_EQ(chain.size(), 2u);
  EXPECT_EQ(X509_cmp(chain[0].get(), cert.get()), 0);
  EXPECT_EQ(X509_cmp(chain[1].get(), issuing.get()), 0);
  EXPECT_EQ(sim_->issued_for(spki_sha256_hex(public_key_der(X509_REQ_get0_pubkey(csr.get())))), 1);
  EXPECT_EQ(sim_->issued_total(), 1);
}

TEST_F(CaSimulatorTest, TemplateFromTheCsrOrTheContextMustBeKnown) {
  if (!have_vectors()) {
    if (running_in_ci()) FAIL() << "no " << kVectors << " under CI";
    GTEST_SKIP() << "no " << kVectors;
  }
  sim_->add_template("Web", {});
  // The spec example's CSR names "User": not a template of this CA.
  MsAnswer a = ms(sim_->ces_url(), retarget(read_vector("wstep-rst-issue-request.xml"), sim_->ces_url()));
  EXPECT_EQ(a.status, 500);
  EXPECT_EQ(a.action, kWsDetailFaultAction);
  EXPECT_EQ(a.error_code, "-2146875392");  // 0x80094800 CERTSRV_E_UNSUPPORTED_CERT_TYPE
  // A CSR naming a known template is issued; naming it in both places is fine,
  // two different templates are a conflict (MS-WCCE 3.2.2.6.2.1.4.1).
  Csr named_in_csr = make_csr("csr-named.example.test", 0, "Web");
  EXPECT_EQ(ms(sim_->ces_url(), ms_issue_request(sim_->ces_url(), named_in_csr.der, "")).disposition, "Issued");
  EXPECT_EQ(ms(sim_->ces_url(), ms_issue_request(sim_->ces_url(), named_in_csr.der, "Web")).disposition, "Issued");
  EXPECT_EQ(ms(sim_->ces_url(), ms_issue_request(sim_->ces_url(), named_in_csr.der, "Nope")).error_code,
            signed_decimal(0x80094802));  // CERTSRV_E_TEMPLATE_CONFLICT
  // An enterprise CA refuses a request that names no template at all.
  EXPECT_EQ(ms(sim_->ces_url(), ms_issue_request(sim_->ces_url(), make_csr("none.example.test").der, "")).error_code,
            signed_decimal(0x80094801));  // CERTSRV_E_NO_CERT_TYPE
  EXPECT_EQ(sim_->issued_total(), 2);
}

// One that ignores the SOAP AdditionalContext (issue 16 item 17) finds the
// template in the CSR only, by name or by the OID its policy gives out.
TEST_F(CaSimulatorTest, CaIgnoringTheSoapContextReadsTheTemplateFromTheCsr) {
  sim_ = std::make_unique<CaSimulator>(CaSimulator::Options{dir_ / "ctx", *creds_ / "ra-ca.pem", false, true});
  sim_->add_template("Web", {});
  client_ = client("ra");
  EXPECT_EQ(ms(sim_->ces_url(), ms_issue_request(sim_->ces_url(), make_csr("ctx.example.test").der, "Web")).error_code,
            signed_decimal(0x80094801));
  EXPECT_EQ(
      ms(sim_->ces_url(), ms_issue_request(sim_->ces_url(), make_csr("csr.example.test", 0, "Web").der, "")).disposition,
      "Issued");
  EXPECT_EQ(sim_->issued_total(), 1);
}

TEST_F(CaSimulatorTest, CepcesIssueVectorWithoutTemplateIsRefusedByAnEnterpriseCa) {
  if (!have_vectors()) {
    if (running_in_ci()) FAIL() << "no " << kVectors << " under CI";
    GTEST_SKIP() << "no " << kVectors;
  }
  sim_->add_template("Web", {});
  const std::string vector = read_vector("cepces-wstep-rst-issue-request.xml");
  // cepces' test CSR names no template, nor does its SOAP: an enterprise CA refuses it …
  EXPECT_EQ(ms(sim_->ces_url(), retarget(vector, sim_->ces_url())).error_code, signed_decimal(0x80094801));
  // … a standalone one issues it.
  sim_ = std::make_unique<CaSimulator>(CaSimulator::Options{dir_ / "standalone", *creds_ / "ra-ca.pem", true});
  sim_->add_template("Web", {});
  client_ = client("ra");
  MsAnswer a = ms(sim_->ces_url(), retarget(vector, sim_->ces_url()));
  ASSERT_EQ(a.status, 200);
  EXPECT_EQ(a.relates_to, message_id_of(vector));
  EXPECT_EQ(a.disposition, "Issued");
  X509Ptr cert = cert_of(a.cert);
  ASSERT_TRUE(cert);
  EXPECT_EQ(cn_of(cert.get()), "host1.example.test");
  // Sent to another host name than the simulator's, To names another endpoint.
  const std::string elsewhere = "https://ca.example.test/CA_CES_Certificate/service.svc/CES";
  MsAnswer wrong = ms(sim_->ces_url(), retarget(vector, elsewhere));
  ASSERT_TRUE(wrong.fault);
  EXPECT_EQ(wrong.fault->subcode, "DestinationUnreachable");
  EXPECT_NE(wrong.fault->reason.find(elsewhere), std::string::npos);
}

TEST_F(CaSimulatorTest, PendedRequestIsPolledWithBothQueryTokenStatusVectors) {
  if (!have_vectors()) {
    if (running_in_ci()) FAIL() << "no " << kVectors << " under CI";
    GTEST_SKIP() << "no " << kVectors;
  }
  sim_->add_template("Web", {});
  sim_->script("Web", {.kind = Kind::pend_then_issue, .pending_polls = 1});
  Csr csr = make_csr("pended.example.test");
  MsAnswer pend = ms(sim_->ces_url(), ms_issue_request(sim_->ces_url(), csr.der, "Web"));
  ASSERT_EQ(pend.status, 200);
  EXPECT_EQ(pend.disposition, "Taken Under Submission");
  EXPECT_EQ(pend.reference_uri, sim_->ces_url());
  EXPECT_TRUE(pend.cert.empty());
  ASSERT_GT(std::atol(pend.request_id.c_str()), 0);
  // The spec's retrieval example as published asks for request 65, which this CA never made.
  const std::string spec = read_vector("wstep-rst-querytokenstatus-request.xml");
  MsAnswer unknown = ms(sim_->ces_url(), retarget(spec, sim_->ces_url()));
  EXPECT_EQ(unknown.status, 500);
  EXPECT_EQ(unknown.error_code, "-2146877438");  // 0x80094002 CERTSRV_E_NO_REQUEST
  // For our request: still pending (the one scripted poll), then issued to cepces' poll,
  // which carries an empty BinarySecurityToken.
  MsAnswer first = ms(sim_->ces_url(), retarget(spec, sim_->ces_url(), pend.request_id));
  EXPECT_EQ(first.disposition, "Taken Under Submission");
  EXPECT_EQ(first.request_id, pend.request_id);
  EXPECT_EQ(first.relates_to, message_id_of(spec));
  const std::string cepces = read_vector("cepces-wstep-rst-querytokenstatus-request.xml");
  MsAnswer done = ms(sim_->ces_url(), retarget(cepces, sim_->ces_url(), pend.request_id));
  ASSERT_EQ(done.status, 200);
  EXPECT_EQ(done.disposition, "Issued");
  EXPECT_EQ(done.request_id, pend.request_id);
  X509Ptr cert = cert_of(done.cert);
  ASSERT_TRUE(cert);
  EXPECT_EQ(cn_of(cert.get()), "pended.example.test");
  EXPECT_EQ(sim_->issued_for(csr.spki_key()), 1);
  // Asking again returns the same certificate, not a new one.
  EXPECT_EQ(ms(sim_->ces_url(), ms_query_request(sim_->ces_url(), std::atol(pend.request_id.c_str()))).cert, done.cert);
  EXPECT_EQ(sim_->issued_total(), 1);
}

TEST_F(CaSimulatorTest, PendThenDenyFaultsAfterThePolls) {
  sim_->script("Web", {.kind = Kind::pend_then_deny, .pending_polls = 2});
  MsAnswer pend = ms(sim_->ces_url(), ms_issue_request(sim_->ces_url(), make_csr("denied.example.test").der, "Web"));
  ASSERT_EQ(pend.disposition, "Taken Under Submission");
  const long id = std::atol(pend.request_id.c_str());
  for (int i = 0; i < 2; ++i)
    EXPECT_EQ(ms(sim_->ces_url(), ms_query_request(sim_->ces_url(), id)).disposition, "Taken Under Submission") << i;
  for (int i = 0; i < 2; ++i) {  // the denial stays
    MsAnswer denied = ms(sim_->ces_url(), ms_query_request(sim_->ces_url(), id));
    EXPECT_EQ(denied.status, 500);
    ASSERT_TRUE(denied.fault);
    EXPECT_EQ(denied.fault->code, "Receiver");
    EXPECT_EQ(denied.fault->reason, "Denied by Policy Module");
    EXPECT_EQ(denied.error_code, signed_decimal(0x80094014));  // CERTSRV_E_ADMIN_DENIED_REQUEST
    EXPECT_EQ(denied.fault_request_id, pend.request_id);
  }
  EXPECT_EQ(sim_->issued_total(), 0);
}

TEST_F(CaSimulatorTest, ScriptedFaultsCarryTheirHresultThenIssue) {
  sim_->add_template("Web", {});
  sim_->script("Web", {.kind = Kind::fault, .hresult = 0x80094812, .reason = "subject e-mail required", .times = 1});
  Csr csr = make_csr("fault.example.test");
  MsAnswer a = ms(sim_->ces_url(), ms_issue_request(sim_->ces_url(), csr.der, "Web", "urn:uuid:fault-1"));
  EXPECT_EQ(a.status, 500);
  EXPECT_EQ(a.action, kWsDetailFaultAction);
  EXPECT_EQ(a.relates_to, "urn:uuid:fault-1");
  ASSERT_TRUE(a.fault);
  EXPECT_EQ(a.fault->code, "Receiver");
  EXPECT_EQ(a.fault->reason, "subject e-mail required");
  EXPECT_EQ(a.error_code, "-2146875374");  // 0x80094812, as a signed Int32
  EXPECT_EQ(a.invalid_request, "true");
  EXPECT_GT(std::atol(a.fault_request_id.c_str()), 0);
  EXPECT_EQ(ms(sim_->ces_url(), ms_issue_request(sim_->ces_url(), csr.der, "Web")).disposition, "Issued");  // times = 1

  // hresult 0: WCF's generic fault, no detail.
  sim_->script("Broken", {.kind = Kind::fault});
  MsAnswer wcf = ms(sim_->ces_url(), ms_issue_request(sim_->ces_url(), csr.der, "Broken"));
  EXPECT_EQ(wcf.status, 500);
  ASSERT_TRUE(wcf.fault);
  EXPECT_EQ(wcf.fault->subcode, "InternalServiceFault");
  EXPECT_EQ(wcf.fault->detail, nullptr);
  EXPECT_EQ(sim_->issued_for(csr.spki_key()), 1);
}

TEST_F(CaSimulatorTest, KeyPolicyAndCsrSignatureAreChecked) {
  sim_->add_template("Rsa3072", {.min_key_bits = 3072, .key_algorithm = "RSA"});
  auto code = [this](const Bytes& der, const std::string& tpl) {
    return ms(sim_->ces_url(), ms_issue_request(sim_->ces_url(), der, tpl)).error_code;
  };
  EXPECT_EQ(code(make_csr("small.example.test", 2048).der, "Rsa3072"), signed_decimal(0x80094811));  // KEY_LENGTH
  EXPECT_EQ(code(make_csr("ec.example.test").der, "Rsa3072"), signed_decimal(0x80090008));           // NTE_BAD_ALGID
  Bytes tampered = make_csr("tampered.example.test").der;
  tampered[tampered.size() - 3] ^= 0x01;                                                 // inside the signature
  EXPECT_EQ(code(tampered, "Rsa3072"), signed_decimal(0x80090006));                      // NTE_BAD_SIGNATURE
  EXPECT_EQ(code(Bytes{0x30, 0x03, 0x02, 0x01, 0x00}, ""), signed_decimal(0x8009310B));  // not a PKCS#10
  EXPECT_EQ(sim_->issued_total(), 0);
}

TEST_F(CaSimulatorTest, MalformedHostileAndHttpErrorAnswers) {
  sim_->script("Bad", {.kind = Kind::malformed_xml});
  sim_->script("Evil", {.kind = Kind::hostile_xml});
  sim_->script("Down", {.kind = Kind::http_error, .http_status = 502});
  sim_->script(std::string(kScriptPolicy), {.kind = Kind::http_error, .http_status = 503, .times = 1});
  const Bytes csr = make_csr("raw.example.test").der;
  auto bad = post_ms(sim_->ces_url(), ms_issue_request(sim_->ces_url(), csr, "Bad"));
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 200);
  auto bad_parse = xml::Document::parse(bad->body, "answer");
  ASSERT_FALSE(bad_parse);
  EXPECT_EQ(bad_parse.error().code, "ca.xml_malformed");

  auto evil = post_ms(sim_->ces_url(), ms_issue_request(sim_->ces_url(), csr, "Evil"));
  ASSERT_TRUE(evil);
  EXPECT_EQ(evil->status, 200);
  EXPECT_NE(evil->body.find("<!ENTITY l9"), std::string::npos);
  EXPECT_NE(evil->body.find("SYSTEM \"file:///etc/passwd\""), std::string::npos);
  auto evil_parse = xml::Document::parse(evil->body, "answer");
  ASSERT_FALSE(evil_parse);
  EXPECT_EQ(evil_parse.error().code, "ca.xml_hostile");

  auto down = post_ms(sim_->ces_url(), ms_issue_request(sim_->ces_url(), csr, "Down"));
  ASSERT_TRUE(down);
  EXPECT_EQ(down->status, 502);
  EXPECT_EQ(down->content_type, "text/plain");

  // The policy service fails once, then answers.
  const std::string gp = get_policies_request();
  auto first = post_ms(sim_->cep_url(), gp);
  auto second = post_ms(sim_->cep_url(), gp);
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->status, 503);
  EXPECT_EQ(second->status, 200);
  EXPECT_EQ(sim_->issued_total(), 0);
}

// The unreadable answers (issue 16 item 5): the request is decided first.
TEST_F(CaSimulatorTest, GarbageAnswersComeAfterTheCertificateIsIssued) {
  sim_->add_template("Web", {});
  sim_->add_template(std::string(kDcProfile), {});
  struct Case {
    Kind kind;
    std::string content_type_start;
  };
  const Case cases[] = {{Kind::html_page, "text/html"},
                        {Kind::truncated_answer, "application/soap+xml"},
                        {Kind::empty_answer, "application/soap+xml"},
                        {Kind::damaged_pkcs7, "application/soap+xml"}};
  for (const Case& c : cases) {
    SCOPED_TRACE(static_cast<int>(c.kind));
    sim_->script("Web", {.kind = c.kind, .times = 1});
    Csr csr = make_csr("garbage.example.test");
    auto r = post_ms(sim_->ces_url(), ms_issue_request(sim_->ces_url(), csr.der, "Web"));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->content_type.rfind(c.content_type_start, 0), 0u) << r->content_type;
    ca::PendingTicket request;
    request.csr_der = csr.der;
    auto parsed = soap::parse_response(r->body, "answer");
    EXPECT_FALSE(parsed && ca::mscep::enrollment_result(*parsed, request, "answer")) << r->body;
    EXPECT_EQ(sim_->issued_for(csr.spki_key()), 1);
    // DigiCert: a repeat of the transaction gets the real answer.
    const std::string tx = "tx-garbage-" + std::to_string(static_cast<int>(c.kind));
    sim_->script(tx, {.kind = c.kind, .times = 1});
    const Bytes dc_csr = make_csr("dc-garbage.example.test").der;
    auto first = post_dc("enrollmentService", dc_enroll_request(std::string(kDcProfile), tx, dc_csr));
    ASSERT_TRUE(first);
    request.transaction_id = tx;
    request.csr_der = dc_csr;
    auto dc_parsed = soap::parse_response(first->body, "answer");
    EXPECT_FALSE(dc_parsed && ca::digicert::enrollment_result(*dc_parsed, request, "answer")) << first->body;
    EXPECT_FALSE(dc("enrollmentService", dc_enroll_request(std::string(kDcProfile), tx, dc_csr)).pkcs7.empty());
    EXPECT_EQ(sim_->issued_for(tx), 1);
  }
}

// A CA that certifies another key (issue 16 item 18), now or after the polls.
TEST_F(CaSimulatorTest, OtherKeyIssuesForAFreshKey) {
  sim_->add_template("Web", {});
  sim_->script("Web", {.other_key = true});
  Csr csr = make_csr("swapped.example.test");
  MsAnswer a = ms(sim_->ces_url(), ms_issue_request(sim_->ces_url(), csr.der, "Web"));
  X509Ptr cert = cert_of(a.cert);
  ASSERT_TRUE(cert);
  EXPECT_EQ(cn_of(cert.get()), "swapped.example.test");
  EXPECT_NE(EVP_PKEY_eq(X509_get0_pubkey(cert.get()), csr.key.get()), 1);
}

// Issue 16 item 19: the CAs and their URIs as the policy lists them; any
// …/service.svc/CES path is a CES endpoint, and a pending request's
// Reference names the one that took it.
TEST_F(CaSimulatorTest, PolicyListsTheConfiguredCasAndEveryCesPathEnrols) {
  sim_->add_template("Web", {.hash_algorithm = "2.16.840.1.101.3.4.2.1"});
  sim_->add_template("OnlySecond", {.cas = {1}});
  const std::string second = sim_->url("/Second_CES_Certificate/service.svc/CES");
  sim_->set_cas({SimCa{{SimCaUri{sim_->ces_url(), 8, 1, false}, SimCaUri{sim_->url("/K/service.svc/CES"), 2, -1, true}}},
                 SimCa{{SimCaUri{second, 8, 2, false}}, false}});
  const std::string gp = get_policies_request();
  auto r = post_ms(sim_->cep_url(), gp);
  ASSERT_TRUE(r);
  auto resp = soap::parse_response(r->body, "answer");
  ASSERT_TRUE(resp) << resp.error().to_string();
  PolicyView v = view_of(resp->payload);
  std::vector<xmlNode*> cas = xml::children(xml::child(resp->payload, kXcep, "cAs"), kXcep, "cA");
  ASSERT_EQ(cas.size(), 2u);
  std::vector<xmlNode*> uris = xml::children(xml::child(cas[0], kXcep, "uris"), kXcep, "cAURI");
  ASSERT_EQ(uris.size(), 2u);
  EXPECT_EQ(xml::text(xml::child(uris[1], kXcep, "clientAuthentication")), "2");
  EXPECT_TRUE(xml::is_nil(xml::child(uris[1], kXcep, "priority")));
  EXPECT_EQ(xml::text(xml::child(uris[1], kXcep, "renewalOnly")), "true");
  EXPECT_EQ(xml::text(xml::child(cas[1], kXcep, "enrollPermission")), "false");
  EXPECT_EQ(xml::text(xml::child(cas[1], kXcep, "cAReferenceID")), "1");
  auto refs = [&](const std::string& name) {
    std::vector<std::string> out;
    for (xmlNode* c : xml::children(xml::child(v.policies[name], kXcep, "cAs"), kXcep, "cAReference"))
      out.push_back(xml::text(c));
    return out;
  };
  EXPECT_EQ(refs("Web"), (std::vector<std::string>{"0", "1"}));
  EXPECT_EQ(refs("OnlySecond"), std::vector<std::string>{"1"});
  const std::string hash =
      xml::text(xml::path(v.policies["Web"], {{kXcep, "attributes"}, {kXcep, "hashAlgorithmOIDReference"}}));
  EXPECT_EQ(v.oids[hash], (std::pair<std::string, std::string>{"2.16.840.1.101.3.4.2.1", "1"}));
  sim_->script("Web", {.kind = Kind::pend_then_issue, .pending_polls = 0});
  MsAnswer pend = ms(second, ms_issue_request(second, make_csr("second.example.test").der, "Web"));
  EXPECT_EQ(pend.reference_uri, second);
  EXPECT_EQ(ms(second, ms_query_request(second, std::atol(pend.request_id.c_str()))).disposition, "Issued");
  EXPECT_EQ(sim_->requests_to("/Second_CES_Certificate/service.svc/CES"), 2);
  // cAs nil.
  sim_->set_cas({});
  auto nil = soap::parse_response(post_ms(sim_->cep_url(), gp)->body, "answer");
  ASSERT_TRUE(nil);
  EXPECT_TRUE(xml::is_nil(xml::child(nil->payload, kXcep, "cAs")));
  EXPECT_TRUE(xml::is_nil(xml::child(view_of(nil->payload).policies["Web"], kXcep, "cAs")));
}

TEST_F(CaSimulatorTest, DelayedAnswerArrivesLateOrTimesTheClientOut) {
  sim_->script("Slow", {.delay = milliseconds(1200), .times = 2});
  const Bytes csr = make_csr("slow.example.test").der;
  auto t0 = std::chrono::steady_clock::now();
  MsAnswer a = ms(sim_->ces_url(), ms_issue_request(sim_->ces_url(), csr, "Slow"));
  auto elapsed = std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(a.disposition, "Issued");
  EXPECT_GE(elapsed, 1150);
  EXPECT_LT(elapsed, 5000);
  HttpsOptions impatient;
  impatient.total_timeout = milliseconds(400);
  auto hasty = client("ra", impatient);
  auto r = post_ms(sim_->ces_url(), ms_issue_request(sim_->ces_url(), csr, "Slow"), hasty.get());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "net.ca_timeout") << r.error().to_string();
  // Used up: fast again.
  t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(ms(sim_->ces_url(), ms_issue_request(sim_->ces_url(), csr, "Slow")).disposition, "Issued");
  EXPECT_LT(std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - t0).count(), 1000);
}

TEST_F(CaSimulatorTest, ShutdownDoesNotWaitForADelayedAnswer) {
  sim_->script("Slow", {.delay = milliseconds(20000)});
  std::atomic<bool> failed{false};
  std::thread caller([&] {
    auto r = post_ms(sim_->ces_url(), ms_issue_request(sim_->ces_url(), make_csr("late.example.test").der, "Slow"));
    failed = !r || r->status != 200;
  });
  for (int i = 0; i < 200 && sim_->requests() == 0; ++i) std::this_thread::sleep_for(milliseconds(10));
  ASSERT_EQ(sim_->requests(), 1);
  auto t0 = std::chrono::steady_clock::now();
  sim_.reset();
  EXPECT_LT(std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - t0).count(), 3000);
  caller.join();
  SUCCEED() << "client saw " << (failed ? "an error" : "an answer");
}

TEST_F(CaSimulatorTest, ClientCertificateFromAnotherCaIsRefusedInTheHandshake) {
  auto foreign = client("foreign");
  ASSERT_TRUE(foreign);
  auto r = post_ms(sim_->ces_url(), ms_query_request(sim_->ces_url(), 1), foreign.get());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "net.tls_channel_failed") << r.error().to_string();
  EXPECT_EQ(sim_->requests(), 0);
  EXPECT_TRUE(sim_->client_subjects().empty());
  auto ok = post_ms(sim_->ces_url(), ms_query_request(sim_->ces_url(), 1));
  ASSERT_TRUE(ok) << ok.error().to_string();
  EXPECT_EQ(ok->status, 500);  // CERTSRV_E_NO_REQUEST, but answered
  EXPECT_EQ(sim_->client_subjects(), std::vector<std::string>{"/CN=RA ra"});
  EXPECT_EQ(sim_->requests(), 1);
}

TEST_F(CaSimulatorTest, ConcurrentEnrolmentsOnSeparateConnections) {
  std::atomic<int> issued{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t)
    threads.emplace_back([&, t] {
      auto own = client("ra");
      for (int i = 0; own && i < 4; ++i) {
        Csr csr = make_csr("c" + std::to_string(t) + "-" + std::to_string(i) + ".example.test");
        auto r = post_ms(sim_->ces_url(), ms_issue_request(sim_->ces_url(), csr.der, "Web"), own.get());
        if (r && read_ms(*r).disposition == "Issued") ++issued;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(issued.load(), 24);
  EXPECT_EQ(sim_->issued_total(), 24);
  EXPECT_GE(sim_->client_subjects().size(), 6u);
}

// --- DigiCert pki-ws --------------------------------------------------------------------
TEST_F(CaSimulatorTest, DigiCertPoliciesListProfilesWithAttributes) {
  sim_->add_template(std::string(kDcProfile),
                     {.supported = {"common_name", "mail_email"}, .fixed = {"mail"}, .key_algorithm = "RSA"});
  soap::Envelope e = soap::make_envelope(soap::Version::soap11, "", "");
  xml::add(add_in(e.body, kDcPolicy, "P", "getPolicies"), nullptr, "version", "2.0");
  auto r = post_dc("policyService", e.doc.serialize());
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  auto resp = soap::parse_response(r->body, "answer");
  ASSERT_TRUE(resp);
  EXPECT_EQ(resp->version, soap::Version::soap11);
  ASSERT_TRUE(xml::is(resp->payload, kDcPolicy, "getPoliciesResponse"));
  // The profile OIDs are in oIDs (digicert-pki-ws-notes.md), referenced by
  // each policy as in MS-XCEP.
  std::map<std::string, std::string> oids;
  for (xmlNode* o : xml::children(xml::child(resp->payload, kDcPolicy, "oIDs"), kDcPolicy, "oID"))
    oids[xml::text(xml::child(o, kDcPolicy, "oIDReferenceID"))] = xml::text(xml::child(o, kDcPolicy, "value"));
  std::vector<xmlNode*> policies =
      xml::children(xml::path(resp->payload, {{kDcPolicy, "response"}, {kDcPolicy, "policies"}}), kDcPolicy, "policy");
  ASSERT_EQ(policies.size(), 1u);
  EXPECT_EQ(oids[xml::text(xml::child(policies[0], kDcPolicy, "policyOIDReference"))], kDcProfile);
  xmlNode* key = xml::path(policies[0], {{kDcPolicy, "attributes"}, {kDcPolicy, "privateKeyAttributes"}});
  EXPECT_EQ(oids[xml::text(xml::child(key, kDcPolicy, "algorithmOIDReference"))], "1.2.840.113549.1.1.1");
  EXPECT_EQ(xml::text(xml::child(key, kDcPolicy, "minimalKeyLength")), "2048");
  std::map<std::string, std::string> usage;
  for (xmlNode* a : xml::children(policies[0], kDcPolicy, "attribute"))
    usage[xml::text(xml::child(a, kDcPolicy, "name"))] = xml::text(xml::child(a, kDcPolicy, "usage"));
  EXPECT_EQ(usage, (std::map<std::string, std::string>{
                       {"common_name", "supported"}, {"mail_email", "supported"}, {"mail", "fixed"}}));
}

TEST_F(CaSimulatorTest, DigiCertRepeatedTransactionGetsTheSameCertificate) {
  sim_->add_template(std::string(kDcProfile), {});
  Csr csr = make_csr("dc.example.test");
  DcAnswer first = dc("enrollmentService", dc_enroll_request(std::string(kDcProfile), "tx-1", csr.der,
                                                             {{"common_name", "dc.example.test"}}));
  ASSERT_EQ(first.status, 200);
  EXPECT_EQ(first.txid, "tx-1");
  ASSERT_FALSE(first.pkcs7.empty());
  X509Ptr cert = end_entity(first.pkcs7), issuing = load_cert(sim_->issuing_ca());
  ASSERT_TRUE(cert);
  EXPECT_EQ(pkcs7_certs(first.pkcs7).size(), 2u);
  EXPECT_TRUE(signed_by(cert.get(), issuing.get()));
  EXPECT_EQ(cn_of(cert.get()), "dc.example.test");
  DcAnswer again = dc("enrollmentService", dc_enroll_request(std::string(kDcProfile), "tx-1", csr.der));
  EXPECT_EQ(again.pkcs7, first.pkcs7);
  EXPECT_EQ(sim_->issued_for("tx-1"), 1);
  DcAnswer other = dc("enrollmentService", dc_enroll_request(std::string(kDcProfile), "tx-2", csr.der));
  EXPECT_NE(other.pkcs7, first.pkcs7);
  EXPECT_EQ(sim_->issued_for("tx-2"), 1);
  EXPECT_EQ(sim_->issued_total(), 2);
}

TEST_F(CaSimulatorTest, DigiCertRefusalsAreSoap11FaultsWithErrorcode) {
  sim_->add_template(std::string(kDcProfile), {.supported = {"common_name"}});
  const Bytes csr = make_csr("refused.example.test").der;
  DcAnswer unknown = dc("enrollmentService", dc_enroll_request("1.2.3.4.5", "tx-u", csr));
  EXPECT_EQ(unknown.status, 500);
  ASSERT_TRUE(unknown.fault);
  EXPECT_EQ(unknown.fault->code, "Server");
  EXPECT_EQ(unknown.errorcode, "SIM_PROFILE_UNKNOWN");
  EXPECT_NE(unknown.message.find("1.2.3.4.5"), std::string::npos);
  DcAnswer attr = dc("enrollmentService",
                     dc_enroll_request(std::string(kDcProfile), "tx-a", csr, {{"country", "CH"}, {"seat_id", "s1"}}));
  EXPECT_EQ(attr.errorcode, "SIM_ATTRIBUTE_UNSUPPORTED");
  sim_->script("tx-f", {.kind = Kind::fault, .reason = "Enrollment failed", .digicert_errorcode = "8019", .times = 1});
  DcAnswer scripted = dc("enrollmentService", dc_enroll_request(std::string(kDcProfile), "tx-f", csr));
  EXPECT_EQ(scripted.errorcode, "8019");
  EXPECT_EQ(scripted.message, "Enrollment failed");
  // A fault is not remembered for the transaction: the retry is issued.
  EXPECT_FALSE(dc("enrollmentService", dc_enroll_request(std::string(kDcProfile), "tx-f", csr)).pkcs7.empty());
  EXPECT_EQ(sim_->issued_total(), 1);
}

TEST_F(CaSimulatorTest, DigiCertPendingIsPolledByRequestId) {
  sim_->add_template(std::string(kDcProfile), {});
  sim_->script("tx-p", {.kind = Kind::pend_then_issue, .pending_polls = 1});
  const Bytes csr = make_csr("dc-pended.example.test").der;
  DcAnswer pend = dc("enrollmentService", dc_enroll_request(std::string(kDcProfile), "tx-p", csr));
  ASSERT_EQ(pend.status, 200);
  EXPECT_TRUE(pend.pkcs7.empty());
  ASSERT_FALSE(pend.request_id.empty());
  // A resubmission of the transaction does not use up the poll.
  DcAnswer resubmitted = dc("enrollmentService", dc_enroll_request(std::string(kDcProfile), "tx-p", csr));
  EXPECT_EQ(resubmitted.request_id, pend.request_id);
  EXPECT_TRUE(resubmitted.pkcs7.empty());
  // A poll must name the profile the request was made for (issue 16 item 21).
  DcAnswer no_profile = dc("enrollmentService", dc_query_request("tx-p", pend.request_id, ""));
  ASSERT_TRUE(no_profile.fault);
  EXPECT_EQ(no_profile.fault->code, "Client");
  EXPECT_EQ(dc("enrollmentService", dc_query_request("tx-p", pend.request_id, "1.2.3.4")).errorcode,
            "SIM_PROFILE_MISMATCH");
  EXPECT_TRUE(dc("enrollmentService", dc_query_request("tx-p", pend.request_id)).pkcs7.empty());
  DcAnswer issued = dc("enrollmentService", dc_query_request("tx-p", pend.request_id));
  ASSERT_FALSE(issued.pkcs7.empty());
  EXPECT_EQ(dc("enrollmentService", dc_enroll_request(std::string(kDcProfile), "tx-p", csr)).pkcs7, issued.pkcs7);
  EXPECT_EQ(sim_->issued_for("tx-p"), 1);
}

TEST_F(CaSimulatorTest, DigiCertRevocationIsRecorded) {
  sim_->add_template(std::string(kDcProfile), {});
  DcAnswer a =
      dc("enrollmentService", dc_enroll_request(std::string(kDcProfile), "tx-r", make_csr("r.example.test").der));
  X509Ptr cert = end_entity(a.pkcs7);
  ASSERT_TRUE(cert);
  const std::string serial = serial_hex(cert.get());
  DcAnswer revoked = dc("certificateManagementService", dc_revoke_request(serial, "Superseded"));
  EXPECT_EQ(revoked.status, 200);
  EXPECT_EQ(revoked.success_code, "0");
  EXPECT_EQ(sim_->revoked(), std::vector<std::string>{serial + ":Superseded"});
  // Lower case with a leading zero byte is the same serial; a repeat is not a second entry.
  std::string spelled = "00" + serial;
  std::transform(spelled.begin(), spelled.end(), spelled.begin(), [](unsigned char ch) { return std::tolower(ch); });
  EXPECT_EQ(dc("certificateManagementService", dc_revoke_request(spelled, "KeyCompromise")).success_code, "0");
  EXPECT_EQ(sim_->revoked().size(), 1u);
  DcAnswer unknown = dc("certificateManagementService", dc_revoke_request("4ABCDEF0123", "Superseded"));
  EXPECT_EQ(unknown.status, 500);
  EXPECT_EQ(unknown.errorcode, "SIM_SERIAL_UNKNOWN");
  DcAnswer bad_op = dc("certificateManagementService", dc_revoke_request(serial, "Superseded", "Suspend"));
  ASSERT_TRUE(bad_op.fault);
  EXPECT_EQ(bad_op.fault->code, "Client");
  DcAnswer bad_reason = dc("certificateManagementService", dc_revoke_request(serial, "Bored"));
  ASSERT_TRUE(bad_reason.fault);
  EXPECT_EQ(sim_->revoked().size(), 1u);
}

TEST_F(CaSimulatorTest, WrongContentTypeAndSoapVersionAreRefused) {
  const std::string body = ms_query_request(sim_->ces_url(), 1);
  auto as_soap11 = client_->post(sim_->ces_url(), "text/xml; charset=utf-8", body);
  ASSERT_TRUE(as_soap11);
  EXPECT_EQ(as_soap11->status, 415);
  auto to_digicert = post_dc("enrollmentService", body);  // a SOAP 1.2 envelope
  ASSERT_TRUE(to_digicert);
  DcAnswer refused = read_dc(*to_digicert);
  ASSERT_TRUE(refused.fault);
  EXPECT_EQ(refused.fault->code, "Client");
  auto nowhere = post_ms("https://127.0.0.1:" + std::to_string(sim_->port()) + "/certsrv/", body);
  ASSERT_TRUE(nowhere);
  EXPECT_EQ(nowhere->status, 404);
}

// --- script files and the executable ----------------------------------------------------
constexpr const char* kScript = R"({
  "templates": {
    "Web": {"min_key_bits": 2048, "key_algorithm": "RSA", "subject_name_flags": 65537, "cas": [0],
            "hash_algorithm": "2.16.840.1.101.3.4.2.2"},
    "2.16.840.1.113733.1.16.1.3.1.4.1.38113944": {"supported": ["common_name"], "fixed": ["mail"]}
  },
  "behaviours": {
    "Pended": {"kind": "pend_then_issue", "pending_polls": 0},
    "Refused": {"kind": "fault", "hresult": "0x80094812", "reason": "no e-mail", "times": 1},
    "Swapped": {"kind": "html_page", "other_key": true, "times": 1}
  }
})";

TEST_F(CaSimulatorTest, ScriptJsonSetsTemplatesAndBehaviours) {
  ASSERT_TRUE(sim_->load_script(kScript));
  const Bytes csr = make_csr("scripted.example.test").der;
  EXPECT_EQ(ms(sim_->ces_url(), ms_issue_request(sim_->ces_url(), csr, "Refused")).error_code, "-2146875374");
  EXPECT_EQ(ms(sim_->ces_url(), ms_issue_request(sim_->ces_url(), csr, "Pended")).disposition,
            "Taken Under Submission");
  EXPECT_EQ(ms(sim_->ces_url(), ms_issue_request(sim_->ces_url(), csr, "Unlisted")).error_code, "-2146875392");
  EXPECT_EQ(ms(sim_->ces_url(), ms_issue_request(sim_->ces_url(), csr, "Web")).error_code,
            signed_decimal(0x80090008));  // an EC key for an RSA template
  for (const char* bad :
       {"{", R"({"templates": []})", R"({"behaviours": {"x": {"kind": "explode"}}})",
        R"({"behaviours": {"x": {"delay": 5}}})", R"({"templates": {"t": {"min_key_bits": "big"}}})"}) {
    Status s = sim_->load_script(bad);
    ASSERT_FALSE(s) << bad;
    EXPECT_EQ(s.error().code, "sim.script_invalid") << bad;
  }
}

TEST_F(CaSimulatorTest, ExecutableServesUntilSigterm) {
  TempDir run_dir;
  write_file(run_dir / "script.json", kScript);
  Process p({CERTCUSTODY_CA_SIMULATOR, "--dir", run_dir / "sim", "--client-ca", *creds_ / "ra-ca.pem", "--script",
             run_dir / "script.json"},
            {}, run_dir / "sim.log");
  ASSERT_TRUE(p.wait_for_output("\npid ", 10000)) << p.log();
  const std::string log = p.log();
  const auto port_at = log.find("listening on 127.0.0.1:");
  ASSERT_EQ(port_at, 0u) << log;
  const std::string port = log.substr(23, log.find('\n') - 23);
  const pid_t pid = std::atoi(log.substr(log.find("\npid ") + 5).c_str());
  EXPECT_NE(log.find("ces_url https://127.0.0.1:" + port + "/CA_CES_Certificate/service.svc/CES"), std::string::npos);
  HttpsOptions o;
  o.trust_anchor = run_dir / "sim/tls-ca.pem";
  auto c = client("ra", o);
  ASSERT_TRUE(c);
  const std::string ces = "https://127.0.0.1:" + port + "/CA_CES_Certificate/service.svc/CES";
  auto r = c->post(ces, "application/soap+xml; charset=utf-8",
                   ms_issue_request(ces, make_csr("process.example.test").der, "Pended"));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(read_ms(*r).disposition, "Taken Under Submission");
  ASSERT_GT(pid, 1);
  ::kill(pid, SIGTERM);
  EXPECT_EQ(p.wait(10000), 0) << p.log();
  EXPECT_NE(p.log().find("stopping on signal"), std::string::npos) << p.log();
}

}  // namespace
}  // namespace certcustody::testing
