#include "support/ca_simulator.h"

#include <filesystem>
#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/cms.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <stdexcept>

#include "ca/soap.h"
#include "ca/xml.h"
#include "common/ossl.h"
#include "support/temp_dir.h"
#include "support/tls_server.h"

namespace certcustody::testing {
namespace {

namespace xml = ca::xml;
namespace soap = ca::soap;

// --- wire names (docs/ca-protocols.md) ---------------------------------------
constexpr std::string_view kCepPath = "/ADPolicyProvider_CEP_Certificate/service.svc/CEP";
constexpr std::string_view kCesPath = "/CA_CES_Certificate/service.svc/CES";
constexpr std::string_view kPkiWsPath = "/pki-ws/";

constexpr std::string_view kXcep = "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy";
constexpr std::string_view kEnr = "http://schemas.microsoft.com/windows/pki/2009/01/enrollment";
constexpr std::string_view kTrust = "http://docs.oasis-open.org/ws-sx/ws-trust/200512";
constexpr std::string_view kWsse = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
constexpr std::string_view kAuth = "http://schemas.xmlsoap.org/ws/2006/12/authorization";
constexpr std::string_view kWcfDispatcher =
    "http://schemas.microsoft.com/net/2005/12/windowscommunicationfoundation/dispatcher";
constexpr std::string_view kGetPoliciesAction =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy/IPolicy/GetPolicies";
constexpr std::string_view kGetPoliciesResponseAction =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy/IPolicy/GetPoliciesResponse";
constexpr std::string_view kRstAction = "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RST/wstep";
constexpr std::string_view kRstrcAction = "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/RSTRC/wstep";
constexpr std::string_view kWsDetailFaultAction =
    "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/"
    "RequestSecurityTokenCertificateEnrollmentWSDetailFault";
constexpr std::string_view kWcfFaultAction =
    "http://schemas.microsoft.com/net/2005/12/windowscommunicationfoundation/dispatcher/fault";
constexpr std::string_view kWsaFaultAction = "http://www.w3.org/2005/08/addressing/soap/fault";
constexpr std::string_view kIssue = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue";
constexpr std::string_view kMsQuery = "http://schemas.microsoft.com/windows/pki/2009/01/enrollment/QueryTokenStatus";
constexpr std::string_view kX509v3 =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3";
constexpr std::string_view kX509Pkcs7 =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#PKCS7";
constexpr std::string_view kMsPkcs10 = "http://schemas.microsoft.com/windows/pki/2009/01/enrollment#PKCS10";
// The [MS-WSTEP] example labels a bare PKCS#10 this way (wstep-rst-issue-request.xml).
constexpr std::string_view kWssePkcs7 =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd#PKCS7";
constexpr std::string_view kBase64 =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd#base64binary";

constexpr std::string_view kDcEnroll = "http://schemas.verisign.com/pkiservices/2009/07/enrollment";
constexpr std::string_view kDcTrust = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/";  // sic: trailing slash
constexpr std::string_view kDcPolicy = "http://schemas.verisign.com/pkiservices/2009/07/policy";
constexpr std::string_view kDcManagement = "http://schemas.verisign.com/pkiservices/2009/07/management";
constexpr std::string_view kDcPkcs10 = "http://schemas.verisign.com/pkiservices/2009/07/PKCS10";
constexpr std::string_view kDcQuery = "http://schemas.verisign.com/pkiservices/2009/07/enrollment/QueryTokenStatus";

// Template OIDs the simulator gives its MS templates (policyOIDReference,
// group 9); a CSR naming one in 1.3.6.1.4.1.311.21.7 enrols for that template.
constexpr std::string_view kTemplateOidArc = "1.3.6.1.4.1.311.21.8.1129.1";
constexpr std::string_view kRsaOid = "1.2.840.113549.1.1.1";
constexpr std::string_view kEcOid = "1.2.840.10045.2.1";

// HRESULTs the simulator answers with when it finds fault itself (winerror.h).
constexpr std::uint32_t kENoRequest = 0x80094002;        // CERTSRV_E_NO_REQUEST: unknown RequestID
constexpr std::uint32_t kEAdminDenied = 0x80094014;      // CERTSRV_E_ADMIN_DENIED_REQUEST: pend_then_deny
constexpr std::uint32_t kEUnsupportedType = 0x80094800;  // CERTSRV_E_UNSUPPORTED_CERT_TYPE: unknown template
constexpr std::uint32_t kENoCertType = 0x80094801;       // CERTSRV_E_NO_CERT_TYPE: no template in the request
constexpr std::uint32_t kETemplateConflict = 0x80094802; // CERTSRV_E_TEMPLATE_CONFLICT: two templates named
constexpr std::uint32_t kEKeyLength = 0x80094811;        // CERTSRV_E_KEY_LENGTH: key under minimalKeyLength
constexpr std::uint32_t kEInvalidArg = 0x80070057;       // E_INVALIDARG: request shape wrong
constexpr std::uint32_t kEBadSignature = 0x80090006;     // NTE_BAD_SIGNATURE: CSR signature does not verify
constexpr std::uint32_t kEBadAlgid = 0x80090008;         // NTE_BAD_ALGID: key algorithm not the template's
constexpr std::uint32_t kEAsn1BadTag = 0x8009310B;       // CRYPT_E_ASN1_BADTAG: CSR not DER PKCS#10

constexpr long kCaSeconds = 30L * 24 * 3600;  // throwaway CAs outlive any demo session
constexpr long kIssuedSeconds = 24L * 3600;   // issued certificates: one day

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

bool starts_with(const std::string& s, std::string_view prefix) { return s.rfind(prefix, 0) == 0; }

// --- PKI ----------------------------------------------------------------------
void free_extensions(STACK_OF(X509_EXTENSION) * s) { sk_X509_EXTENSION_pop_free(s, X509_EXTENSION_free); }
void free_sequence(ASN1_SEQUENCE_ANY* s) { sk_ASN1_TYPE_pop_free(s, ASN1_TYPE_free); }
void free_x509_stack(STACK_OF(X509) * s) { sk_X509_free(s); }
using ExtStack = std::unique_ptr<STACK_OF(X509_EXTENSION), OsslDeleter<free_extensions>>;

Error pki_error(const std::string& what) {
  return openssl_error("sim.pki_failed", "CA simulator: " + what, "check the OpenSSL installation");
}

Result<EvpPkeyPtr> new_ec_key() {
  EvpPkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return pki_error("cannot generate a P-256 key");
  return key;
}

X509NamePtr cn_name(const std::string& cn) {
  X509NamePtr name(X509_NAME_new());
  X509_NAME_add_entry_by_txt(name.get(), "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()), -1,
                             -1, 0);
  return name;
}

// 128 random bits, positive, first nibble 4..7: no leading zero to argue about in hex.
Status set_random_serial(X509* cert) {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) return pki_error("no random serial");
  b[0] = static_cast<unsigned char>((b[0] & 0x3F) | 0x40);
  std::unique_ptr<BIGNUM, OsslDeleter<BN_free>> bn(BN_bin2bn(b, sizeof b, nullptr));
  if (!bn || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert)) == nullptr) return pki_error("serial");
  return {};
}

// A v3 certificate without extensions, not yet signed.
Result<X509Ptr> new_cert(const X509_NAME* subject, EVP_PKEY* pub, const X509_NAME* issuer, long seconds) {
  X509Ptr c(X509_new());
  if (!c || X509_set_version(c.get(), X509_VERSION_3) != 1 || X509_set_subject_name(c.get(), subject) != 1 ||
      X509_set_issuer_name(c.get(), issuer) != 1 || X509_set_pubkey(c.get(), pub) != 1 ||
      X509_gmtime_adj(X509_getm_notBefore(c.get()), -300) == nullptr ||  // tolerate clock skew
      X509_gmtime_adj(X509_getm_notAfter(c.get()), seconds) == nullptr)
    return pki_error("cannot build a certificate");
  CC_TRY(set_random_serial(c.get()));
  return c;
}

Status add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  std::unique_ptr<X509_EXTENSION, OsslDeleter<X509_EXTENSION_free>> ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) return pki_error(std::string("extension ") + value);
  return {};
}

Status sign(X509* cert, EVP_PKEY* key) {
  if (X509_sign(cert, key, EVP_sha256()) <= 0) return pki_error("cannot sign a certificate");
  return {};
}

Result<X509Ptr> self_signed_ca(const std::string& cn, EVP_PKEY* key) {
  X509NamePtr name = cn_name(cn);
  CC_TRY_ASSIGN(X509Ptr c, new_cert(name.get(), key, name.get(), kCaSeconds));
  CC_TRY(add_ext(c.get(), c.get(), NID_basic_constraints, "critical,CA:TRUE"));
  CC_TRY(add_ext(c.get(), c.get(), NID_key_usage, "critical,keyCertSign,cRLSign"));
  CC_TRY(add_ext(c.get(), c.get(), NID_subject_key_identifier, "hash"));
  CC_TRY(sign(c.get(), key));
  return c;
}

Result<X509Ptr> tls_leaf(EVP_PKEY* key, X509* ca, EVP_PKEY* ca_key) {
  X509NamePtr name = cn_name("localhost");
  CC_TRY_ASSIGN(X509Ptr c, new_cert(name.get(), key, X509_get_subject_name(ca), kCaSeconds));
  CC_TRY(add_ext(c.get(), ca, NID_basic_constraints, "CA:FALSE"));
  CC_TRY(add_ext(c.get(), ca, NID_key_usage, "critical,digitalSignature"));
  CC_TRY(add_ext(c.get(), ca, NID_ext_key_usage, "serverAuth"));
  CC_TRY(add_ext(c.get(), ca, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost"));
  CC_TRY(add_ext(c.get(), ca, NID_authority_key_identifier, "keyid"));
  CC_TRY(sign(c.get(), ca_key));
  return c;
}

std::string pem_of(X509* cert) {
  BioPtr b(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(b.get(), cert);
  char* data = nullptr;
  long n = BIO_get_mem_data(b.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

std::string pem_of(EVP_PKEY* key) {
  BioPtr b(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(b.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(b.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

Bytes der_of(X509* cert) {
  unsigned char* p = nullptr;
  int n = i2d_X509(cert, &p);
  if (n <= 0) return {};
  Bytes out(p, p + n);
  OPENSSL_free(p);
  return out;
}

// Certs-only SignedData (no signer, no content), as `openssl crl2pkcs7` makes it.
Result<Bytes> pkcs7_certs_only(X509* leaf, X509* ca) {
  std::unique_ptr<STACK_OF(X509), OsslDeleter<free_x509_stack>> certs(sk_X509_new_null());
  sk_X509_push(certs.get(), leaf);
  sk_X509_push(certs.get(), ca);
  std::unique_ptr<PKCS7, OsslDeleter<PKCS7_free>> p7(
      PKCS7_sign(nullptr, nullptr, certs.get(), nullptr, PKCS7_PARTIAL | PKCS7_DETACHED));
  unsigned char* p = nullptr;
  int n = p7 ? i2d_PKCS7(p7.get(), &p) : 0;
  if (n <= 0) return pki_error("cannot encode the PKCS#7 chain");
  Bytes out(p, p + n);
  OPENSSL_free(p);
  return out;
}

// Upper-case hex without leading zeros: how serials are compared and reported.
std::string normal_serial(std::string hex) {
  std::string out;
  for (char c : hex)
    if (std::isxdigit(static_cast<unsigned char>(c))) out.push_back(static_cast<char>(std::toupper(c)));
  auto first = out.find_first_not_of('0');
  return first == std::string::npos ? "0" : out.substr(first);
}

std::string serial_of(const X509* cert) {
  std::unique_ptr<BIGNUM, OsslDeleter<BN_free>> bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr));
  char* hex = bn ? BN_bn2hex(bn.get()) : nullptr;
  std::string s = hex != nullptr ? hex : "";
  OPENSSL_free(hex);
  return normal_serial(s);
}

// A DER PKCS#10, or a CMS SignedData whose content is one (MS-WSTEP #PKCS7,
// as renewals send it; the CMS signature is not checked: the simulator does
// not model renewal authorisation).
Result<X509ReqPtr> parse_csr(const Bytes& der) {
  const unsigned char* p = der.data();
  X509ReqPtr req(d2i_X509_REQ(nullptr, &p, static_cast<long>(der.size())));
  if (req) return req;
  p = der.data();
  std::unique_ptr<CMS_ContentInfo, OsslDeleter<CMS_ContentInfo_free>> cms(
      d2i_CMS_ContentInfo(nullptr, &p, static_cast<long>(der.size())));
  ASN1_OCTET_STRING** content = cms ? CMS_get0_content(cms.get()) : nullptr;
  if (content != nullptr && *content != nullptr) {
    const unsigned char* q = ASN1_STRING_get0_data(*content);
    req.reset(d2i_X509_REQ(nullptr, &q, ASN1_STRING_length(*content)));
    if (req) return req;
  }
  return Error{"sim.csr_invalid", "the token is neither a DER PKCS#10 nor a CMS carrying one", ""};
}

std::string oid_text(const ASN1_OBJECT* obj) {
  char buf[128];
  int n = OBJ_obj2txt(buf, sizeof buf, obj, 1);
  return n > 0 && n < static_cast<int>(sizeof buf) ? std::string(buf, static_cast<std::size_t>(n)) : "";
}

// szOID_ENROLL_CERTTYPE_EXTENSION (1.3.6.1.4.1.311.20.2): BMPString template name.
std::optional<std::string> template_name_ext(const ASN1_OCTET_STRING* data) {
  const unsigned char* p = ASN1_STRING_get0_data(data);
  std::unique_ptr<ASN1_TYPE, OsslDeleter<ASN1_TYPE_free>> t(d2i_ASN1_TYPE(nullptr, &p, ASN1_STRING_length(data)));
  if (!t || (t->type != V_ASN1_BMPSTRING && t->type != V_ASN1_UTF8STRING)) return std::nullopt;
  unsigned char* utf8 = nullptr;
  int n = ASN1_STRING_to_UTF8(&utf8, t->value.asn1_string);
  if (n < 0) return std::nullopt;
  std::string s(reinterpret_cast<char*>(utf8), static_cast<std::size_t>(n));
  OPENSSL_free(utf8);
  return s;
}

// szOID_CERTIFICATE_TEMPLATE (1.3.6.1.4.1.311.21.7): SEQUENCE { templateID OID, major, minor }.
std::optional<std::string> template_oid_ext(const ASN1_OCTET_STRING* data) {
  const unsigned char* p = ASN1_STRING_get0_data(data);
  std::unique_ptr<ASN1_SEQUENCE_ANY, OsslDeleter<free_sequence>> seq(
      d2i_ASN1_SEQUENCE_ANY(nullptr, &p, ASN1_STRING_length(data)));
  if (!seq || sk_ASN1_TYPE_num(seq.get()) < 1) return std::nullopt;
  const ASN1_TYPE* first = sk_ASN1_TYPE_value(seq.get(), 0);
  if (first->type != V_ASN1_OBJECT) return std::nullopt;
  return oid_text(first->value.object);
}

// The templates the CSR's extensionRequest names: names, and template OIDs.
std::vector<std::string> csr_templates(X509_REQ* req) {
  std::vector<std::string> out;
  ExtStack exts(X509_REQ_get_extensions(req));
  for (int i = 0; exts && i < sk_X509_EXTENSION_num(exts.get()); ++i) {
    X509_EXTENSION* e = sk_X509_EXTENSION_value(exts.get(), i);
    std::string oid = oid_text(X509_EXTENSION_get_object(e));
    std::optional<std::string> named;
    if (oid == "1.3.6.1.4.1.311.20.2") named = template_name_ext(X509_EXTENSION_get_data(e));
    if (oid == "1.3.6.1.4.1.311.21.7") named = template_oid_ext(X509_EXTENSION_get_data(e));
    if (named) out.push_back(*named);
  }
  return out;
}

// The CSR's subject and public key (or, `other_key`, a fresh one: a CA that
// substitutes the key), its SAN / EKU / KU, CA:FALSE, one day.
Result<X509Ptr> issue_from(X509_REQ* req, X509* ca, EVP_PKEY* ca_key, bool other_key) {
  EvpPkeyPtr substitute;
  if (other_key) {
    CC_TRY_ASSIGN(substitute, new_ec_key());
  }
  CC_TRY_ASSIGN(X509Ptr c, new_cert(X509_REQ_get_subject_name(req),
                                    other_key ? substitute.get() : X509_REQ_get0_pubkey(req),
                                    X509_get_subject_name(ca), kIssuedSeconds));
  ExtStack exts(X509_REQ_get_extensions(req));
  for (int i = 0; exts && i < sk_X509_EXTENSION_num(exts.get()); ++i) {
    X509_EXTENSION* e = sk_X509_EXTENSION_value(exts.get(), i);
    int nid = OBJ_obj2nid(X509_EXTENSION_get_object(e));
    if ((nid == NID_subject_alt_name || nid == NID_ext_key_usage || nid == NID_key_usage) &&
        X509_add_ext(c.get(), e, -1) != 1)
      return pki_error("cannot copy a CSR extension");
  }
  CC_TRY(add_ext(c.get(), ca, NID_basic_constraints, "CA:FALSE"));
  CC_TRY(add_ext(c.get(), ca, NID_subject_key_identifier, "hash"));
  CC_TRY(add_ext(c.get(), ca, NID_authority_key_identifier, "keyid"));
  CC_TRY(sign(c.get(), ca_key));
  return c;
}

std::string key_algorithm(EVP_PKEY* key) {
  if (EVP_PKEY_is_a(key, "RSA")) return "RSA";
  if (EVP_PKEY_is_a(key, "EC")) return "EC";
  return EVP_PKEY_get0_type_name(key) != nullptr ? EVP_PKEY_get0_type_name(key) : "?";
}

}  // namespace

std::string spki_sha256_hex(const std::vector<unsigned char>& spki_der) {
  auto d = digest("SHA256", spki_der);
  return d ? to_hex_lower(*d) : std::string{};
}

namespace {

std::string spki_key(X509_REQ* req) { return spki_sha256_hex(public_key_der(X509_REQ_get0_pubkey(req))); }

enum class Dialect { ms, digicert };

struct Rejection {
  std::uint32_t hresult = 0;  // MS ErrorCode; 0: a WCF InternalServiceFault without detail
  std::string errorcode;      // DigiCert detail/errorcode
  std::string reason;
};

struct Issued {
  Bytes cert, pkcs7;  // DER: the certificate; certs-only PKCS#7 with it and the issuing CA
};

// What an enrolment request (or a poll) gets.
struct Decision {
  enum class Kind { issued, pending, rejected, raw };
  Kind kind = Kind::rejected;
  long request_id = 0;
  std::shared_ptr<const Issued> issued;
  Rejection rejection;
  SimBehaviour raw;  // malformed_xml, hostile_xml, http_error
  std::optional<SimBehaviour::Kind> garble;  // an issued/pending answer that cannot be read (html_page, …)
  std::chrono::milliseconds delay{0};
};

Decision rejected(long id, Rejection r) {
  Decision d;
  d.request_id = id;
  d.rejection = std::move(r);
  return d;
}

// A request taken under submission, until a poll decides it.
struct PendingRequest {
  Bytes csr;
  std::string count_key;     // issued_for key
  std::string template_key;  // the template / DigiCert profile it was made for
  bool other_key = false;
  int polls_left = 0;
  bool deny = false;
  Rejection denial;
  std::chrono::milliseconds delay{0};
  std::optional<Decision> final;
};

struct Script {
  SimBehaviour behaviour;
  int used = 0;
};

struct TemplateEntry {
  SimTemplate t;
  int index = 0;  // stable: names the template's OID
};

struct EnrollInput {
  Dialect dialect = Dialect::ms;
  std::optional<std::string> template_key;  // MS: AdditionalContext; DigiCert: certificateProfileID
  std::string path;                         // MS: the CES endpoint's path (a script key)
  Bytes csr;
  std::string txid;  // DigiCert clientTransactionID
  std::vector<std::pair<std::string, std::string>> attributes;
};

bool is_raw(SimBehaviour::Kind k) {
  return k == SimBehaviour::Kind::malformed_xml || k == SimBehaviour::Kind::hostile_xml ||
         k == SimBehaviour::Kind::http_error;
}

bool is_garble(SimBehaviour::Kind k) {
  return k == SimBehaviour::Kind::html_page || k == SimBehaviour::Kind::truncated_answer ||
         k == SimBehaviour::Kind::empty_answer || k == SimBehaviour::Kind::damaged_pkcs7;
}

// A reply that cannot be read, in place of `reply` (issued or pending).
// empty_answer and damaged_pkcs7 are made by the renderers themselves.
HttpReply garbled(SimBehaviour::Kind k, HttpReply reply) {
  if (k == SimBehaviour::Kind::html_page)
    return {200, "text/html; charset=utf-8",
            "<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head><body><h1>The service is "
            "down for maintenance</h1><p>Please try again later.<br></p></body></html>\n"};
  if (k == SimBehaviour::Kind::truncated_answer) reply.body.resize(reply.body.size() / 2);
  return reply;
}

// Bytes that are no PKCS#7: a SEQUENCE header promising more than follows.
const Bytes kDamagedPkcs7 = {0x30, 0x82, 0x04, 0x00, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02};

std::string template_oid(int index) { return std::string(kTemplateOidArc) + "." + std::to_string(index); }

// --- XML building ---------------------------------------------------------------
// An element in namespace `ns`, declared with `prefix` on it unless already in scope.
xmlNode* add_in(xmlNode* parent, std::string_view ns, std::string_view prefix, std::string_view local,
                std::string_view text = {}) {
  xmlNode* n = xml::add(parent, nullptr, local, text);
  xmlSetNs(n, xml::declare(n, ns, prefix));
  return n;
}

// An unqualified element (SOAP 1.1 fault children); xmlNewChild would inherit the parent's namespace.
xmlNode* add_plain(xmlNode* parent, std::string_view local, std::string_view text = {}) {
  xmlNode* n = xml::add(parent, nullptr, local, text);
  xmlSetNs(n, nullptr);
  return n;
}

xmlNode* add_nil(xmlNode* parent, xmlNs* ns, std::string_view local) {
  xmlNode* n = xml::add(parent, ns, local);
  xml::set_nil(n);
  return n;
}

void set_lang(xmlNode* n) { xmlNodeSetLang(n, reinterpret_cast<const xmlChar*>("en-US")); }

// SOAP 1.2: wsa:Action (mustUnderstand) and wsa:RelatesTo; SOAP 1.1: no headers.
soap::Envelope reply_envelope(soap::Version v, std::string_view action, const std::string& relates_to) {
  soap::Envelope e = soap::make_envelope(v, action, "");
  if (v == soap::Version::soap12) {
    xmlNode* root = e.doc.root();
    xmlNs* a = xml::declare(root, soap::kWsa, "a");
    xml::set_attribute(xml::add(e.header, a, "Action", action), root->ns, "mustUnderstand", "1");
    if (!relates_to.empty()) xml::add(e.header, a, "RelatesTo", relates_to);
  }
  return e;
}

HttpReply soap_reply(const soap::Envelope& e, int status = 200) {
  return {status, e.content_type(), e.doc.serialize()};
}

struct Fault12 {
  soap::Envelope env;
  xmlNode* fault;
};

// SOAP 1.2 Fault{Code{Value s:<code>, Subcode{Value a:<subcode>}?}, Reason{Text}}; callers add a Detail.
Fault12 fault12(std::string_view action, const std::string& relates_to, std::string_view code, std::string_view sub_ns,
                std::string_view subcode, const std::string& reason) {
  soap::Envelope e = reply_envelope(soap::Version::soap12, action, relates_to);
  xmlNs* s = e.doc.root()->ns;
  xmlNode* f = xml::add(e.body, s, "Fault");
  xmlNode* c = xml::add(f, s, "Code");
  xml::add(c, s, "Value", "s:" + std::string(code));
  if (!subcode.empty()) {
    xmlNode* v = xml::add(xml::add(c, s, "Subcode"), s, "Value", "a:" + std::string(subcode));
    xml::declare(v, sub_ns, "a");  // WCF declares the subcode's namespace right there
  }
  set_lang(xml::add(xml::add(f, s, "Reason"), s, "Text", reason));
  return {std::move(e), f};
}

constexpr std::string_view kWcfInternalReason =
    "The server was unable to process the request due to an internal error (CA simulator).";

// MS-WSTEP fault: CertificateEnrollmentWSDetail{ErrorCode (signed decimal), InvalidRequest, RequestID}.
HttpReply ms_fault(const std::string& relates_to, const Rejection& r, long request_id) {
  if (r.hresult == 0) {
    Fault12 f = fault12(kWcfFaultAction, relates_to, "Receiver", kWcfDispatcher, "InternalServiceFault",
                        r.reason.empty() ? std::string(kWcfInternalReason) : r.reason);
    return soap_reply(f.env, 500);
  }
  Fault12 f = fault12(kWsDetailFaultAction, relates_to, "Receiver", "", "", r.reason);
  xmlNode* d = add_in(xml::add(f.fault, f.env.doc.root()->ns, "Detail"), kEnr, "", "CertificateEnrollmentWSDetail");
  xml::declare(d, xml::kXsi, "xsi");
  xml::add(d, d->ns, "ErrorCode", std::to_string(static_cast<std::int32_t>(r.hresult)));
  xml::add(d, d->ns, "InvalidRequest", "true");
  if (request_id > 0) {
    xml::add(d, d->ns, "RequestID", std::to_string(request_id));
  } else {
    add_nil(d, d->ns, "RequestID");
  }
  return soap_reply(f.env, 500);
}

Rejection bad_request(std::string reason) { return Rejection{kEInvalidArg, "SIM_BAD_REQUEST", std::move(reason)}; }

// SOAP 1.1 fault with detail/errorcode and detail/message, unqualified (docs/ca-protocols.md).
HttpReply dc_fault(const Rejection& r, std::string_view code = "Server") {
  soap::Envelope e = soap::make_envelope(soap::Version::soap11, "", "");
  xmlNode* f = xml::add(e.body, e.doc.root()->ns, "Fault");
  add_plain(f, "faultcode", "s:" + std::string(code));
  add_plain(f, "faultstring", r.reason);
  xmlNode* d = add_plain(f, "detail");
  add_plain(d, "errorcode", r.errorcode.empty() ? "SIM_FAULT" : r.errorcode);
  add_plain(d, "message", r.reason);
  return soap_reply(e, 500);
}

HttpReply dc_client_fault(std::string reason) {
  return dc_fault(Rejection{0, "SIM_BAD_REQUEST", std::move(reason)}, "Client");
}

// Billion laughs plus an external entity: a parser that expands either is broken.
std::string hostile_document(std::string_view envelope_ns) {
  std::string d =
      "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<!DOCTYPE s:Envelope [\n  <!ENTITY l0 \"certcustody\">\n";
  for (int i = 1; i <= 9; ++i) {
    std::string prev = "&l" + std::to_string(i - 1) + ";";
    d += "  <!ENTITY l" + std::to_string(i) + " \"";
    for (int k = 0; k < 10; ++k) d += prev;
    d += "\">\n";
  }
  d += "  <!ENTITY ext SYSTEM \"file:///etc/passwd\">\n]>\n<s:Envelope xmlns:s=\"" + std::string(envelope_ns) +
       "\"><s:Body><answer>&l9;&ext;</answer></s:Body></s:Envelope>\n";
  return d;
}

HttpReply raw_reply(const SimBehaviour& b, soap::Version v) {
  const std::string_view env_ns = v == soap::Version::soap12 ? soap::kSoap12 : soap::kSoap11;
  const std::string ct = v == soap::Version::soap12 ? "application/soap+xml; charset=utf-8" : "text/xml; charset=utf-8";
  if (b.kind == SimBehaviour::Kind::malformed_xml)
    return {200, ct,
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><s:Envelope xmlns:s=\"" + std::string(env_ns) +
                "\"><s:Body><Response><unclosed></s:Body>"};
  if (b.kind == SimBehaviour::Kind::hostile_xml) return {200, ct, hostile_document(env_ns)};
  return {b.http_status, "text/plain",
          "HTTP " + std::to_string(b.http_status) + ": the CA simulator was scripted to fail this request\n"};
}

// A table of MS-XCEP oID entries, each value once.
struct OidTable {
  struct Entry {
    std::string value, name;
    int group;
  };
  std::vector<Entry> entries;
  std::string ref(const std::string& value, int group, const std::string& name) {
    for (std::size_t i = 0; i < entries.size(); ++i)
      if (entries[i].value == value) return std::to_string(i);
    entries.push_back({value, name, group});
    return std::to_string(entries.size() - 1);
  }
};

const std::set<std::string>& revocation_reasons() {
  static const std::set<std::string> reasons = {"Unspecified",        "KeyCompromise",     "CACompromise",
                                                "AffiliationChanged", "Superseded",        "CessationOfOperation",
                                                "CertificateHold",    "PrivilegeWithdrawn"};
  return reasons;
}

// MS-WSTEP: auth:AdditionalContext/ContextItem[@Name="CertificateTemplate"]/Value.
std::optional<std::string> context_template(const xmlNode* rst) {
  for (xmlNode* item : xml::children(xml::child(rst, kAuth, "AdditionalContext"), kAuth, "ContextItem"))
    if (xml::attribute(item, "", "Name") == "CertificateTemplate") return xml::text(xml::child(item, kAuth, "Value"));
  return std::nullopt;
}

std::optional<long> positive_long(const std::string& s) {
  if (s.empty() || s.size() > 18 || !std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); }))
    return std::nullopt;
  long v = std::stol(s);
  return v > 0 ? std::optional<long>(v) : std::nullopt;
}

}  // namespace

// --- the simulator's state and its answers ----------------------------------------
struct CaSimulator::State {
  std::string dir;
  bool standalone = false;
  bool ignore_additional_context = false;
  std::atomic<int> port{0};
  EvpPkeyPtr ca_key;
  X509Ptr ca_cert;
  Bytes ca_der;  // encoded once: answers are built concurrently
  std::atomic<long> requests{0};

  mutable std::mutex mu;       // everything below
  std::condition_variable cv;  // wakes delayed answers at shutdown
  bool stopping = false;
  std::map<std::string, TemplateEntry> templates;
  int next_template_index = 1;
  std::map<std::string, Script> scripts;
  std::map<long, PendingRequest> pending;
  std::map<std::string, Decision> transactions;  // DigiCert clientTransactionID → issued / pending
  std::set<std::string> serials;                 // issued, normal_serial form
  std::vector<std::string> revoked;
  std::map<std::string, long> issued_counts;
  long issued_total = 0;
  long next_request_id = 1;
  std::optional<std::vector<SimCa>> cas;  // nullopt: the one default CA at ces_url()
  std::map<std::string, long> requests_by_path;

  Status init(const Options& o);
  std::string base() const { return "https://127.0.0.1:" + std::to_string(port.load()); }
  std::string cep_url() const { return base() + std::string(kCepPath); }
  std::string ces_url() const { return base() + std::string(kCesPath); }
  std::vector<SimCa> policy_cas() const;  // under mu
  void wait_delay(std::chrono::milliseconds d);

  HttpReply handle(const HttpRequest& r);

  // enrolment core, shared by both dialects
  std::optional<SimBehaviour> take_script_locked(std::initializer_list<std::string_view> keys);
  std::optional<SimBehaviour> take_script(std::initializer_list<std::string_view> keys);
  std::string template_for_locked(std::string key) const;
  std::string choose_template_locked(const EnrollInput& in, const Result<X509ReqPtr>& csr,
                                     std::optional<Rejection>& refusal) const;
  std::optional<Rejection> check_locked(const EnrollInput& in, const std::string& tpl,
                                        const std::optional<Rejection>& refusal, const Result<X509ReqPtr>& csr) const;
  Decision enroll(const EnrollInput& in);
  Decision decide_locked(const EnrollInput& in, const std::string& tpl, const std::optional<Rejection>& refusal,
                         const Result<X509ReqPtr>& csr, const std::optional<SimBehaviour>& b);
  Decision pend_locked(const Bytes& csr, const std::string& count_key, const std::string& tpl, const SimBehaviour& b);
  Decision issue_locked(X509_REQ* req, const std::string& count_key, long id, bool other_key);
  Decision advance_locked(long id, PendingRequest& p);
  Decision poll(long id, const std::optional<std::string>& profile = std::nullopt);
  Decision replay_locked(const Decision& stored);

  // Microsoft CA (SOAP 1.2)
  HttpReply ms_endpoint(const HttpRequest& http, bool cep);
  HttpReply ms_policies(const soap::Request& req);
  soap::Envelope policies_envelope(const std::string& relates_to);
  void add_policy(xmlNode* policies, xmlNs* x, const std::string& name, const TemplateEntry& e, OidTable& oids) const;
  void add_cas(xmlNode* gpr, xmlNs* x) const;
  HttpReply ms_rst(const soap::Request& req, const std::string& path);
  HttpReply ms_issue(const soap::Request& req, const std::string& path);
  HttpReply ms_query(const soap::Request& req, const std::string& path);
  HttpReply ms_render(const std::string& relates_to, const Decision& d, const std::string& path);

  // DigiCert pki-ws (SOAP 1.1)
  HttpReply dc_endpoint(const HttpRequest& http, const std::string& service);
  HttpReply dc_policies(const soap::Request& req);
  HttpReply dc_enroll(const soap::Request& req);
  HttpReply dc_manage(const soap::Request& req);
  HttpReply dc_render(const std::string& txid, const Decision& d);
  Status revoke(const std::string& serial, const std::string& reason);
};

Status CaSimulator::State::init(const Options& o) {
  dir = o.dir;
  CC_TRY_ASSIGN(EvpPkeyPtr tls_ca_key, new_ec_key());
  CC_TRY_ASSIGN(X509Ptr tls_ca, self_signed_ca("certcustody CA simulator TLS CA", tls_ca_key.get()));
  CC_TRY_ASSIGN(EvpPkeyPtr tls_key, new_ec_key());
  CC_TRY_ASSIGN(X509Ptr tls_cert, tls_leaf(tls_key.get(), tls_ca.get(), tls_ca_key.get()));
  CC_TRY_ASSIGN(ca_key, new_ec_key());
  CC_TRY_ASSIGN(ca_cert, self_signed_ca("certcustody CA simulator issuing CA", ca_key.get()));
  ca_der = der_of(ca_cert.get());
  try {
    std::filesystem::create_directories(dir);
    write_file(dir + "/tls-ca.pem", pem_of(tls_ca.get()), 0644);
    write_file(dir + "/tls.pem", pem_of(tls_cert.get()) + pem_of(tls_ca.get()), 0644);
    write_file(dir + "/tls.key", pem_of(tls_key.get()), 0600);
    write_file(dir + "/issuing-ca.pem", pem_of(ca_cert.get()), 0644);
  } catch (const std::exception& e) {
    return Error{"sim.dir_unwritable", e.what(), "give the simulator a writable --dir"};
  }
  return {};
}

void CaSimulator::State::wait_delay(std::chrono::milliseconds d) {
  if (d.count() <= 0) return;
  std::unique_lock l(mu);
  cv.wait_for(l, d, [this] { return stopping; });
}

// Any ".../service.svc/CES" path is a CES endpoint of the one CA (AD CS
// names them <CA>_CES_<authentication>), so a policy can list several.
bool is_ces_path(const std::string& path) {
  constexpr std::string_view tail = "/service.svc/CES";
  return path == kCesPath || (path.size() > tail.size() && path.compare(path.size() - tail.size(), tail.size(), tail) == 0);
}

HttpReply CaSimulator::State::handle(const HttpRequest& r) {
  ++requests;
  const std::string path = r.target.substr(0, r.target.find('?'));
  {
    std::lock_guard l(mu);
    ++requests_by_path[path];
  }
  if (r.method != "POST") return {405, "text/plain", "the CA simulator answers POST only\n"};
  if (path == kCepPath) return ms_endpoint(r, true);
  if (is_ces_path(path)) return ms_endpoint(r, false);
  if (starts_with(path, kPkiWsPath)) return dc_endpoint(r, path.substr(kPkiWsPath.size()));
  return {404, "text/plain", "no such endpoint: " + path + "\n"};
}

// --- enrolment core ---------------------------------------------------------------
// The behaviour scripted for the first of `keys` that has a script, one use
// consumed; nullopt when none has one or its `times` are used up ("issue").
std::optional<SimBehaviour> CaSimulator::State::take_script_locked(std::initializer_list<std::string_view> keys) {
  for (std::string_view k : keys) {
    if (k.empty()) continue;
    auto it = scripts.find(std::string(k));
    if (it == scripts.end()) continue;
    Script& s = it->second;
    if (s.behaviour.times >= 0 && s.used >= s.behaviour.times) return std::nullopt;
    ++s.used;
    return s.behaviour;
  }
  return std::nullopt;
}

std::optional<SimBehaviour> CaSimulator::State::take_script(std::initializer_list<std::string_view> keys) {
  std::lock_guard l(mu);
  return take_script_locked(keys);
}

// A template OID the simulator gave out (GetPolicies) names its template.
std::string CaSimulator::State::template_for_locked(std::string key) const {
  for (const auto& [name, e] : templates)
    if (template_oid(e.index) == key) return name;
  return key;
}

// The template a request is for (MS-WCCE 3.2.2.6.2.1.4.1): every identifier
// it carries — the AdditionalContext name, the CSR's template name and
// template OID extensions — must name one template. DigiCert: the profile.
std::string CaSimulator::State::choose_template_locked(const EnrollInput& in, const Result<X509ReqPtr>& csr,
                                                       std::optional<Rejection>& refusal) const {
  if (in.dialect == Dialect::digicert) return in.template_key.value_or("");
  std::set<std::string> named;
  if (in.template_key && !in.template_key->empty() && !ignore_additional_context) named.insert(*in.template_key);
  if (csr)
    for (const std::string& id : csr_templates(csr->get())) named.insert(template_for_locked(id));
  if (named.size() > 1) {
    std::string list;
    for (const std::string& n : named) list += (list.empty() ? "" : ", ") + n;
    refusal = Rejection{kETemplateConflict, "SIM_TEMPLATE_CONFLICT", "The request names more than one certificate "
                                                                     "template: " + list};
    return {};
  }
  if (named.empty() && !standalone && csr)
    refusal = Rejection{kENoCertType, "SIM_NO_TEMPLATE", "The request contains no certificate template information"};
  return named.empty() ? std::string() : *named.begin();
}

std::optional<Rejection> CaSimulator::State::check_locked(const EnrollInput& in, const std::string& tpl,
                                                          const std::optional<Rejection>& refusal,
                                                          const Result<X509ReqPtr>& csr) const {
  if (!csr) return Rejection{kEAsn1BadTag, "SIM_CSR_INVALID", "The request is not a DER PKCS#10"};
  if (refusal) return refusal;
  auto known = templates.find(tpl);
  if (!tpl.empty() && known == templates.end() && !templates.empty() && !scripts.contains(tpl))
    return Rejection{kEUnsupportedType, "SIM_PROFILE_UNKNOWN",
                     "The requested certificate template is not supported by this CA: " + tpl};
  EVP_PKEY* pub = X509_REQ_get0_pubkey(csr->get());
  if (pub == nullptr || X509_REQ_verify(csr->get(), pub) != 1)
    return Rejection{kEBadSignature, "SIM_CSR_SIGNATURE", "The request's signature does not verify"};
  if (known == templates.end()) return std::nullopt;
  const SimTemplate& t = known->second.t;
  const std::string alg = key_algorithm(pub);
  if (!t.key_algorithm.empty() && t.key_algorithm != alg)
    return Rejection{kEBadAlgid, "SIM_KEY_ALGORITHM", "The template requires " + t.key_algorithm + " keys, not " + alg};
  // As the policy layer reads it: a minimum in bits applies to RSA keys.
  if (alg == "RSA" && static_cast<unsigned>(EVP_PKEY_get_bits(pub)) < t.min_key_bits)
    return Rejection{
        kEKeyLength, "SIM_KEY_TOO_SHORT",
        "The public key does not meet the template's minimum of " + std::to_string(t.min_key_bits) + " bits"};
  if (in.dialect == Dialect::digicert && !(t.supported.empty() && t.fixed.empty()))
    for (const auto& [name, value] : in.attributes) {
      auto listed = [&n = name](const std::vector<std::string>& v) {
        return std::find(v.begin(), v.end(), n) != v.end();
      };
      if (name != "seat_id" && !listed(t.supported) && !listed(t.fixed))
        return Rejection{0, "SIM_ATTRIBUTE_UNSUPPORTED", "The profile does not support the attribute " + name};
    }
  return std::nullopt;
}

Decision CaSimulator::State::enroll(const EnrollInput& in) {
  std::lock_guard l(mu);
  // The clientTransactionID is the idempotency key: a repeat gets the first answer.
  if (in.dialect == Dialect::digicert)
    if (auto it = transactions.find(in.txid); it != transactions.end()) return replay_locked(it->second);
  Result<X509ReqPtr> csr = parse_csr(in.csr);
  std::optional<Rejection> refusal;
  const std::string tpl = choose_template_locked(in, csr, refusal);
  std::optional<SimBehaviour> b = take_script_locked({in.path, in.txid, tpl, kScriptAny});
  Decision d = decide_locked(in, tpl, refusal, csr, b);
  // Stored before the delay is set: a slow answer is slow once, its replay is
  // not; an unreadable one is unreadable once, its replay is the real answer.
  if (in.dialect == Dialect::digicert && (d.kind == Decision::Kind::issued || d.kind == Decision::Kind::pending)) {
    transactions[in.txid] = d;
    transactions[in.txid].garble.reset();
  }
  d.delay = b ? b->delay : std::chrono::milliseconds(0);
  return d;
}

Decision CaSimulator::State::decide_locked(const EnrollInput& in, const std::string& tpl,
                                           const std::optional<Rejection>& refusal, const Result<X509ReqPtr>& csr,
                                           const std::optional<SimBehaviour>& b) {
  if (b && is_raw(b->kind)) {
    Decision d;
    d.kind = Decision::Kind::raw;
    d.raw = *b;
    return d;
  }
  // A scripted fault comes after the CA created the request, so it carries a RequestID.
  if (b && b->kind == SimBehaviour::Kind::fault)
    return rejected(next_request_id++, Rejection{b->hresult, b->digicert_errorcode, b->reason});
  if (std::optional<Rejection> r = check_locked(in, tpl, refusal, csr)) return rejected(next_request_id++, *r);
  const std::string count_key = in.dialect == Dialect::digicert ? in.txid : spki_key(csr->get());
  Decision d;
  if (b && (b->kind == SimBehaviour::Kind::pend_then_issue || b->kind == SimBehaviour::Kind::pend_then_deny)) {
    d = pend_locked(in.csr, count_key, tpl, *b);
  } else {
    d = issue_locked(csr->get(), count_key, next_request_id++, b && b->other_key);
  }
  if (b && is_garble(b->kind)) d.garble = b->kind;
  return d;
}

Decision CaSimulator::State::pend_locked(const Bytes& csr, const std::string& count_key, const std::string& tpl,
                                         const SimBehaviour& b) {
  PendingRequest p;
  p.csr = csr;
  p.count_key = count_key;
  p.template_key = tpl;
  p.other_key = b.other_key;
  p.polls_left = std::max(0, b.pending_polls);
  p.deny = b.kind == SimBehaviour::Kind::pend_then_deny;
  p.denial = Rejection{b.hresult != 0 ? b.hresult : kEAdminDenied,
                       b.digicert_errorcode.empty() ? "SIM_DENIED" : b.digicert_errorcode,
                       b.reason.empty() ? "Denied by Policy Module" : b.reason};
  p.delay = b.delay;
  Decision d;
  d.kind = Decision::Kind::pending;
  d.request_id = next_request_id++;
  pending.emplace(d.request_id, std::move(p));
  return d;
}

Decision CaSimulator::State::issue_locked(X509_REQ* req, const std::string& count_key, long id, bool other_key) {
  Result<X509Ptr> cert = issue_from(req, ca_cert.get(), ca_key.get(), other_key);
  Result<Bytes> p7 = cert ? pkcs7_certs_only(cert->get(), ca_cert.get()) : Result<Bytes>(cert.error());
  if (!p7) return rejected(id, Rejection{0, "SIM_INTERNAL", p7.error().to_string()});
  serials.insert(serial_of(cert->get()));
  ++issued_counts[count_key];
  ++issued_total;
  Decision d;
  d.kind = Decision::Kind::issued;
  d.request_id = id;
  d.issued = std::make_shared<const Issued>(Issued{der_of(cert->get()), std::move(*p7)});
  return d;
}

Decision CaSimulator::State::advance_locked(long id, PendingRequest& p) {
  if (p.final) return *p.final;
  if (p.polls_left > 0) {
    --p.polls_left;
    Decision d;
    d.kind = Decision::Kind::pending;
    d.request_id = id;
    return d;
  }
  if (p.deny) {
    p.final = rejected(id, p.denial);
  } else {
    Result<X509ReqPtr> csr = parse_csr(p.csr);
    p.final = csr ? issue_locked(csr->get(), p.count_key, id, p.other_key)
                  : rejected(id, Rejection{0, "SIM_INTERNAL", "lost CSR"});
  }
  return *p.final;
}

// `profile`: the certificateProfileID a DigiCert poll names, which must be the request's.
Decision CaSimulator::State::poll(long id, const std::optional<std::string>& profile) {
  std::lock_guard l(mu);
  auto it = pending.find(id);
  if (it == pending.end())
    return rejected(
        id, Rejection{kENoRequest, "SIM_REQUEST_UNKNOWN", "The request " + std::to_string(id) + " does not exist"});
  if (profile && *profile != it->second.template_key)
    return rejected(id, Rejection{0, "SIM_PROFILE_MISMATCH",
                                  "Request " + std::to_string(id) + " was made for certificate profile \"" +
                                      it->second.template_key + "\", not \"" + *profile + "\""});
  Decision d = advance_locked(id, it->second);
  d.delay = it->second.delay;
  return d;
}

// A repeated DigiCert transaction: the stored answer, or its pending request's
// current state (without using up a poll).
Decision CaSimulator::State::replay_locked(const Decision& stored) {
  if (stored.kind != Decision::Kind::pending) return stored;
  auto it = pending.find(stored.request_id);
  if (it != pending.end() && it->second.final) return *it->second.final;
  Decision d = stored;
  d.delay = std::chrono::milliseconds(0);
  return d;
}

// --- Microsoft CA: MS-XCEP and MS-WSTEP ----------------------------------------------
HttpReply CaSimulator::State::ms_endpoint(const HttpRequest& http, bool cep) {
  if (!starts_with(lower(http.header("content-type")), "application/soap+xml"))
    return {415, "text/plain", "MS-XCEP / MS-WSTEP take SOAP 1.2: Content-Type application/soap+xml\n"};
  auto req = soap::parse_request(http.body, "the request");
  if (!req) return {400, "text/plain", req.error().what + "\n"};  // as WCF answers an unreadable body
  if (req->version != soap::Version::soap12)
    return soap_reply(fault12(kWsaFaultAction, "", "VersionMismatch", "", "", "expected a SOAP 1.2 envelope").env, 500);
  // WCF's address filter: To must name this endpoint (by the URL the client dialled, too).
  const std::string path = http.target.substr(0, http.target.find('?'));
  const std::string url = cep ? cep_url() : base() + path;
  if (req->to != url && req->to != "https://" + http.header("host") + http.target)
    return soap_reply(fault12(kWsaFaultAction, req->message_id, "Sender", soap::kWsa, "DestinationUnreachable",
                              "The message with To '" + req->to + "' cannot be processed at the receiver: " +
                                  "AddressFilter mismatch (this endpoint is " + url + ")")
                          .env,
                      500);
  if (req->action != (cep ? kGetPoliciesAction : kRstAction))
    return soap_reply(fault12(kWsaFaultAction, req->message_id, "Sender", soap::kWsa, "ActionNotSupported",
                              "The message with Action '" + req->action + "' cannot be processed at the receiver")
                          .env,
                      500);
  return cep ? ms_policies(*req) : ms_rst(*req, path);
}

HttpReply CaSimulator::State::ms_policies(const soap::Request& req) {
  if (!xml::is(req.payload, kXcep, "GetPolicies"))
    return ms_fault(req.message_id, bad_request("the body is not an MS-XCEP GetPolicies"), 0);
  if (std::optional<SimBehaviour> b = take_script({kScriptPolicy, kScriptAny})) {
    wait_delay(b->delay);
    if (is_raw(b->kind)) return raw_reply(*b, soap::Version::soap12);
    if (b->kind == SimBehaviour::Kind::fault)
      return ms_fault(req.message_id, Rejection{b->hresult, b->digicert_errorcode, b->reason}, 0);
  }
  return soap_reply(policies_envelope(req.message_id));
}

soap::Envelope CaSimulator::State::policies_envelope(const std::string& relates_to) {
  std::map<std::string, TemplateEntry> tpls;
  {
    std::lock_guard l(mu);
    tpls = templates;
  }
  soap::Envelope e = reply_envelope(soap::Version::soap12, kGetPoliciesResponseAction, relates_to);
  xmlNode* gpr = add_in(e.body, kXcep, "", "GetPoliciesResponse");
  xml::declare(gpr, xml::kXsi, "xsi");  // once, for the many nil elements
  xmlNs* x = gpr->ns;
  xmlNode* resp = xml::add(gpr, x, "response");
  xml::add(resp, x, "policyID", "certcustody-ca-simulator");
  xml::add(resp, x, "policyFriendlyName", "certcustody CA simulator");
  xml::add(resp, x, "nextUpdateHours", "8");
  add_nil(resp, x, "policiesNotChanged");
  OidTable oids;
  if (tpls.empty()) {
    add_nil(resp, x, "policies");
  } else {
    xmlNode* policies = xml::add(resp, x, "policies");
    for (const auto& [name, entry] : tpls) add_policy(policies, x, name, entry, oids);
  }
  add_cas(gpr, x);
  xmlNode* list = xml::add(gpr, x, "oIDs");
  for (const OidTable::Entry& o : oids.entries) {
    xmlNode* oid = xml::add(list, x, "oID");
    xml::add(oid, x, "value", o.value);
    xml::add(oid, x, "group", std::to_string(o.group));
    xml::add(oid, x, "oIDReferenceID", oids.ref(o.value, o.group, o.name));
    xml::add(oid, x, "defaultName", o.name);
  }
  if (oids.entries.empty()) xml::set_nil(list);
  return e;
}

// One CertificateEnrollmentPolicy in [MS-XCEP] 3.1.4.1.3.x element order.
void CaSimulator::State::add_policy(xmlNode* policies, xmlNs* x, const std::string& name, const TemplateEntry& e,
                                    OidTable& oids) const {
  const SimTemplate& t = e.t;
  xmlNode* p = xml::add(policies, x, "policy");
  xml::add(p, x, "policyOIDReference", oids.ref(template_oid(e.index), 9, name));
  const std::size_t ca_count = policy_cas().size();
  std::vector<int> refs = t.cas;
  if (refs.empty())
    for (std::size_t i = 0; i < ca_count; ++i) refs.push_back(static_cast<int>(i));
  if (refs.empty()) {
    add_nil(p, x, "cAs");
  } else {
    xmlNode* cas = xml::add(p, x, "cAs");
    for (int r : refs) xml::add(cas, x, "cAReference", std::to_string(r));
  }
  xmlNode* a = xml::add(p, x, "attributes");
  xml::add(a, x, "commonName", name);
  // algorithmOIDReference belongs to schema 3 templates (CNG key algorithms).
  xml::add(a, x, "policySchema", t.key_algorithm.empty() ? "2" : "3");
  xmlNode* validity = xml::add(a, x, "certificateValidity");
  xml::add(validity, x, "validityPeriodSeconds", std::to_string(kIssuedSeconds));
  xml::add(validity, x, "renewalPeriodSeconds", "3600");
  xmlNode* perm = xml::add(a, x, "permission");
  xml::add(perm, x, "enroll", "true");
  xml::add(perm, x, "autoEnroll", "false");
  xmlNode* pk = xml::add(a, x, "privateKeyAttributes");
  xml::add(pk, x, "minimalKeyLength", std::to_string(t.min_key_bits));
  for (const char* n : {"keySpec", "keyUsageProperty", "permissions"}) add_nil(pk, x, n);
  if (t.key_algorithm.empty()) {
    add_nil(pk, x, "algorithmOIDReference");
  } else {
    const bool ec = t.key_algorithm == "EC";
    xml::add(pk, x, "algorithmOIDReference", oids.ref(std::string(ec ? kEcOid : kRsaOid), 3, ec ? "ECC" : "RSA"));
  }
  add_nil(pk, x, "cryptoProviders");
  xmlNode* rev = xml::add(a, x, "revision");
  xml::add(rev, x, "majorRevision", "100");
  xml::add(rev, x, "minorRevision", "0");
  add_nil(a, x, "supersededPolicies");
  add_nil(a, x, "privateKeyFlags");
  xml::add(a, x, "subjectNameFlags", std::to_string(t.subject_name_flags));
  for (const char* n : {"enrollmentFlags", "generalFlags"}) add_nil(a, x, n);
  if (t.hash_algorithm.empty()) {
    add_nil(a, x, "hashAlgorithmOIDReference");
  } else {
    xml::add(a, x, "hashAlgorithmOIDReference", oids.ref(t.hash_algorithm, 1, "hash"));
  }
  for (const char* n : {"rARequirements", "keyArchivalAttributes", "extensions"}) add_nil(a, x, n);
}

std::vector<SimCa> CaSimulator::State::policy_cas() const {
  std::lock_guard l(mu);
  if (cas) return *cas;
  return {SimCa{{SimCaUri{ces_url(), 8, 1, false}}, true}};
}

// The CAs (cAReferenceID = index), each with its URIs; cAs nil when there are none.
void CaSimulator::State::add_cas(xmlNode* gpr, xmlNs* x) const {
  const std::vector<SimCa> list = policy_cas();
  if (list.empty()) {
    add_nil(gpr, x, "cAs");
    return;
  }
  xmlNode* cas = xml::add(gpr, x, "cAs");
  for (std::size_t i = 0; i < list.size(); ++i) {
    xmlNode* ca = xml::add(cas, x, "cA");
    xmlNode* uris = xml::add(ca, x, "uris");
    for (const SimCaUri& u : list[i].uris) {
      xmlNode* uri = xml::add(uris, x, "cAURI");
      xml::add(uri, x, "clientAuthentication", std::to_string(u.client_authentication));
      xml::add(uri, x, "uri", u.uri);
      if (u.priority < 0) {
        add_nil(uri, x, "priority");
      } else {
        xml::add(uri, x, "priority", std::to_string(u.priority));
      }
      xml::add(uri, x, "renewalOnly", u.renewal_only ? "true" : "false");
    }
    xml::add(ca, x, "certificate", xml::base64_encode(ca_der));
    xml::add(ca, x, "enrollPermission", list[i].enroll_permission ? "true" : "false");
    xml::add(ca, x, "cAReferenceID", std::to_string(i));
  }
}

HttpReply CaSimulator::State::ms_rst(const soap::Request& req, const std::string& path) {
  if (!xml::is(req.payload, kTrust, "RequestSecurityToken"))
    return ms_fault(req.message_id, bad_request("the body is not a WS-Trust RequestSecurityToken"), 0);
  const std::string type = xml::text(xml::child(req.payload, kTrust, "RequestType"));
  if (type == kIssue) return ms_issue(req, path);
  if (type == kMsQuery) return ms_query(req, path);
  return ms_fault(req.message_id, bad_request("unsupported RequestType '" + type + "'"), 0);
}

HttpReply CaSimulator::State::ms_issue(const soap::Request& req, const std::string& path) {
  xmlNode* bst = xml::child(req.payload, kWsse, "BinarySecurityToken");
  const std::string value_type = xml::attribute(bst, "", "ValueType").value_or("");
  if (bst == nullptr || (value_type != kMsPkcs10 && value_type != kWssePkcs7))
    return ms_fault(req.message_id, bad_request("Issue needs a wsse:BinarySecurityToken of ValueType #PKCS10"), 0);
  if (auto enc = xml::attribute(bst, "", "EncodingType"); enc && *enc != kBase64)
    return ms_fault(req.message_id, bad_request("EncodingType must be #base64binary"), 0);
  auto der = xml::base64_decode(xml::text(bst), "the BinarySecurityToken");
  if (!der || der->empty())
    return ms_fault(req.message_id, bad_request("the BinarySecurityToken is empty or not base64"), 0);
  EnrollInput in;
  in.template_key = context_template(req.payload);
  in.path = path;
  in.csr = std::move(*der);
  return ms_render(req.message_id, enroll(in), path);
}

HttpReply CaSimulator::State::ms_query(const soap::Request& req, const std::string& path) {
  // cepces also sends an empty BinarySecurityToken here: ignored.
  std::optional<long> id = positive_long(xml::text(xml::child(req.payload, kEnr, "RequestID")));
  if (!id) return ms_fault(req.message_id, bad_request("QueryTokenStatus needs a RequestID"), 0);
  return ms_render(req.message_id, poll(*id), path);
}

// `path`: the CES endpoint that answers, named as the pending request's Reference.
HttpReply CaSimulator::State::ms_render(const std::string& relates_to, const Decision& d, const std::string& path) {
  wait_delay(d.delay);
  if (d.kind == Decision::Kind::raw) return raw_reply(d.raw, soap::Version::soap12);
  if (d.kind == Decision::Kind::rejected) return ms_fault(relates_to, d.rejection, d.request_id);
  soap::Envelope e = reply_envelope(soap::Version::soap12, kRstrcAction, relates_to);
  xmlNode* coll = add_in(e.body, kTrust, "", "RequestSecurityTokenResponseCollection");
  if (d.garble == SimBehaviour::Kind::empty_answer) return soap_reply(e);  // no RequestSecurityTokenResponse
  xmlNs* enr = xml::declare(coll, kEnr, "enr");
  xmlNs* wsse = xml::declare(coll, kWsse, "wsse");
  xmlNode* r = xml::add(coll, coll->ns, "RequestSecurityTokenResponse");
  xml::add(r, coll->ns, "TokenType", kX509v3);
  const bool issued = d.kind == Decision::Kind::issued;
  set_lang(xml::add(r, enr, "DispositionMessage", issued ? "Issued" : "Taken Under Submission"));
  auto token = [&](xmlNode* parent, std::string_view value_type, const Bytes& der) {
    xmlNode* t = xml::add(parent, wsse, "BinarySecurityToken", xml::base64_encode(der, true));
    xml::set_attribute(t, nullptr, "ValueType", value_type);
    xml::set_attribute(t, nullptr, "EncodingType", kBase64);
  };
  if (issued) token(r, kWssePkcs7, d.garble == SimBehaviour::Kind::damaged_pkcs7 ? kDamagedPkcs7 : d.issued->pkcs7);
  xmlNode* rst = xml::add(r, coll->ns, "RequestedSecurityToken");
  if (issued) {
    token(rst, kX509v3, d.issued->cert);
  } else {
    xmlNode* ref = xml::add(xml::add(rst, wsse, "SecurityTokenReference"), wsse, "Reference");
    xml::set_attribute(ref, nullptr, "URI", base() + path);
  }
  xml::add(r, enr, "RequestID", std::to_string(d.request_id));
  return d.garble ? garbled(*d.garble, soap_reply(e)) : soap_reply(e);
}

// --- DigiCert pki-ws -------------------------------------------------------------------
HttpReply CaSimulator::State::dc_endpoint(const HttpRequest& http, const std::string& service) {
  if (!starts_with(lower(http.header("content-type")), "text/xml"))
    return {415, "text/plain", "pki-ws takes SOAP 1.1: Content-Type text/xml\n"};
  auto req = soap::parse_request(http.body, "the request");
  if (!req) return {400, "text/plain", req.error().what + "\n"};
  if (req->version != soap::Version::soap11) return dc_client_fault("pki-ws speaks SOAP 1.1");
  if (service == "policyService") return dc_policies(*req);
  if (service == "enrollmentService") return dc_enroll(*req);
  if (service == "certificateManagementService") return dc_manage(*req);
  return {404, "text/plain", "no such pki-ws service: " + service + "\n"};
}

HttpReply CaSimulator::State::dc_policies(const soap::Request& req) {
  if (!xml::is(req.payload, kDcPolicy, "getPolicies")) return dc_client_fault("the body is not a getPolicies");
  if (std::optional<SimBehaviour> b = take_script({kScriptPolicy, kScriptAny})) {
    wait_delay(b->delay);
    if (is_raw(b->kind)) return raw_reply(*b, soap::Version::soap11);
    if (b->kind == SimBehaviour::Kind::fault) return dc_fault(Rejection{0, b->digicert_errorcode, b->reason});
  }
  std::map<std::string, TemplateEntry> tpls;
  {
    std::lock_guard l(mu);
    tpls = templates;
  }
  // In the shape the public notes point at (digicert-pki-ws-notes.md: getPolicies
  // "returning oIDs (profile OIDs)"): MS-XCEP-like policies whose
  // policyOIDReference names the profile OID in oIDs; the attribute list is
  // our reading, kept in each policy.
  soap::Envelope e = soap::make_envelope(soap::Version::soap11, "", "");
  xmlNode* resp = add_in(e.body, kDcPolicy, "P", "getPoliciesResponse");
  xmlNs* p = resp->ns;
  xmlNode* policies = xml::add(xml::add(resp, p, "response"), p, "policies");
  OidTable oids;
  for (const auto& [oid, entry] : tpls) {
    xmlNode* pol = xml::add(policies, p, "policy");
    xml::add(pol, p, "policyOIDReference", oids.ref(oid, 9, "Simulated profile " + oid));
    xmlNode* attributes = xml::add(pol, p, "attributes");
    xml::add(attributes, p, "commonName", "Simulated profile " + oid);
    xmlNode* key = xml::add(attributes, p, "privateKeyAttributes");
    xml::add(key, p, "minimalKeyLength", std::to_string(entry.t.min_key_bits));
    if (!entry.t.key_algorithm.empty())
      xml::add(key, p, "algorithmOIDReference",
               oids.ref(std::string(entry.t.key_algorithm == "EC" ? kEcOid : kRsaOid), 3, entry.t.key_algorithm));
    for (const auto& [list, usage] : {std::pair{&entry.t.supported, "supported"}, std::pair{&entry.t.fixed, "fixed"}})
      for (const std::string& name : *list) {
        xmlNode* attr = xml::add(pol, p, "attribute");
        xml::add(attr, p, "name", name);
        xml::add(attr, p, "usage", usage);
      }
  }
  xmlNode* list = xml::add(resp, p, "oIDs");
  for (std::size_t i = 0; i < oids.entries.size(); ++i) {
    xmlNode* o = xml::add(list, p, "oID");
    xml::add(o, p, "value", oids.entries[i].value);
    xml::add(o, p, "group", std::to_string(oids.entries[i].group));
    xml::add(o, p, "oIDReferenceID", std::to_string(i));
    xml::add(o, p, "defaultName", oids.entries[i].name);
  }
  return soap_reply(e);
}

HttpReply CaSimulator::State::dc_enroll(const soap::Request& req) {
  xmlNode* vs = xml::child(req.payload, kDcEnroll, "requestVSSecurityToken");
  if (!xml::is(req.payload, kDcTrust, "RequestSecurityToken") || vs == nullptr)
    return dc_client_fault("the body is not a RequestSecurityToken{requestVSSecurityToken}");
  const std::string txid = xml::text(xml::child(vs, kDcEnroll, "clientTransactionID"));
  const std::string type = xml::text(xml::child(vs, kDcEnroll, "requestType"));
  if (type == kDcQuery) {
    std::optional<long> id = positive_long(xml::text(xml::child(vs, kDcEnroll, "requestID")));
    if (!id) return dc_client_fault("QueryTokenStatus needs a requestID");
    const std::string profile = xml::text(xml::child(vs, kDcEnroll, "certificateProfileID"));
    if (profile.empty()) return dc_client_fault("QueryTokenStatus needs the certificateProfileID of the request");
    return dc_render(txid, poll(*id, profile));
  }
  if (type != kIssue) return dc_client_fault("unsupported requestType '" + type + "'");
  EnrollInput in;
  in.dialect = Dialect::digicert;
  in.template_key = xml::text(xml::child(vs, kDcEnroll, "certificateProfileID"));
  in.txid = txid;
  if (in.txid.empty() || in.template_key->empty())
    return dc_client_fault("certificateProfileID and clientTransactionID are required");
  xmlNode* bst = xml::child(vs, kDcEnroll, "binarySecurityToken");
  if (auto vt = xml::attribute(bst, "", "ValueType"); vt && *vt != kDcPkcs10)
    return dc_client_fault("binarySecurityToken ValueType must be " + std::string(kDcPkcs10));
  auto der = xml::base64_decode(xml::text(bst), "the binarySecurityToken");
  if (bst == nullptr || !der || der->empty()) return dc_client_fault("binarySecurityToken is missing or not base64");
  in.csr = std::move(*der);
  for (xmlNode* nv : xml::children(vs, kDcEnroll, "nameValuePair"))
    in.attributes.emplace_back(xml::text(xml::child(nv, kDcEnroll, "name")),
                               xml::text(xml::child(nv, kDcEnroll, "value")));
  return dc_render(txid, enroll(in));
}

HttpReply CaSimulator::State::dc_render(const std::string& txid, const Decision& d) {
  wait_delay(d.delay);
  if (d.kind == Decision::Kind::raw) return raw_reply(d.raw, soap::Version::soap11);
  if (d.kind == Decision::Kind::rejected) return dc_fault(d.rejection);
  soap::Envelope e = soap::make_envelope(soap::Version::soap11, "", "");
  xmlNode* rstr = add_in(e.body, kDcTrust, "T", "RequestSecurityTokenResponse");
  if (d.garble == SimBehaviour::Kind::empty_answer) return soap_reply(e);  // no RequestVSSecurityTokenResponse
  xmlNode* v = add_in(rstr, kDcEnroll, "E", "RequestVSSecurityTokenResponse");
  xmlNs* E = v->ns;
  const bool issued = d.kind == Decision::Kind::issued;
  xml::add(v, E, "clientTransactionID", txid);
  xml::add(v, E, "dispositionMessage", issued ? "Issued" : "Pending approval");
  xml::add(v, E, "requestID", std::to_string(d.request_id));
  if (issued) {
    xmlNode* t = xml::add(xml::add(v, E, "requestedVSSecurityToken"), E, "binarySecurityToken",
                          xml::base64_encode(d.garble == SimBehaviour::Kind::damaged_pkcs7 ? kDamagedPkcs7
                                                                                           : d.issued->pkcs7));
    xml::set_attribute(t, nullptr, "ValueType", kX509Pkcs7);
    xml::set_attribute(t, nullptr, "EncodingType", kBase64);
  }
  return d.garble ? garbled(*d.garble, soap_reply(e)) : soap_reply(e);
}

// Revoking twice is not an error: a revocation whose answer was lost may be retried.
Status CaSimulator::State::revoke(const std::string& serial, const std::string& reason) {
  std::lock_guard l(mu);
  if (!serials.contains(serial)) return Error{"SIM_SERIAL_UNKNOWN", "no certificate with serial " + serial, ""};
  if (std::none_of(revoked.begin(), revoked.end(), [&](const std::string& r) { return starts_with(r, serial + ":"); }))
    revoked.push_back(serial + ":" + reason);
  return {};
}

HttpReply CaSimulator::State::dc_manage(const soap::Request& req) {
  const std::string_view M = kDcManagement;
  if (!xml::is(req.payload, M, "updateCertificateStatus"))
    return dc_client_fault("the body is not an updateCertificateStatus");
  const std::string txid = xml::text(xml::child(req.payload, M, "clientTransactionID"));
  if (std::optional<SimBehaviour> b = take_script({txid, kScriptRevoke, kScriptAny})) {
    wait_delay(b->delay);
    if (is_raw(b->kind)) return raw_reply(*b, soap::Version::soap11);
    if (b->kind == SimBehaviour::Kind::fault) return dc_fault(Rejection{0, b->digicert_errorcode, b->reason});
  }
  const std::string op = xml::text(xml::child(req.payload, M, "operationType"));
  const std::string reason = xml::text(xml::child(req.payload, M, "revocationReason"));
  const std::string serial = normal_serial(xml::text(xml::child(req.payload, M, "certificateSerialNumber")));
  if (op != "Revoke") return dc_client_fault("unsupported operationType '" + op + "'");
  if (!revocation_reasons().contains(reason)) return dc_client_fault("unknown revocationReason '" + reason + "'");
  if (Status s = revoke(serial, reason); !s) return dc_fault(Rejection{0, s.error().code, s.error().what});
  soap::Envelope e = soap::make_envelope(soap::Version::soap11, "", "");
  xmlNode* resp = add_in(e.body, M, "M", "updateCertificateStatusResponse");
  xml::add(resp, resp->ns, "successCode", "0");
  xml::add(resp, resp->ns, "message", "certificate " + serial + " revoked");
  return soap_reply(e);
}

// --- script files (docs/ca-simulator.md) ------------------------------------------------
namespace {

using Json = nlohmann::json;

Error script_error(const std::string& what) {
  return Error{"sim.script_invalid", "CA simulator script: " + what, "see docs/ca-simulator.md, \"Script file\""};
}

Status only_keys(const Json& j, std::initializer_list<std::string_view> allowed, const std::string& where) {
  if (!j.is_object()) return script_error(where + " must be an object");
  for (auto it = j.begin(); it != j.end(); ++it)
    if (std::find(allowed.begin(), allowed.end(), it.key()) == allowed.end())
      return script_error("unknown key \"" + it.key() + "\" in " + where);
  return {};
}

Result<SimTemplate> template_from(const Json& j, const std::string& where) {
  CC_TRY(only_keys(j, {"supported", "fixed", "min_key_bits", "key_algorithm", "subject_name_flags", "cas",
                       "hash_algorithm"},
                    where));
  SimTemplate t;
  t.supported = j.value("supported", std::vector<std::string>{});
  t.fixed = j.value("fixed", std::vector<std::string>{});
  t.min_key_bits = j.value("min_key_bits", t.min_key_bits);
  t.key_algorithm = j.value("key_algorithm", std::string{});
  t.subject_name_flags = j.value("subject_name_flags", t.subject_name_flags);
  t.cas = j.value("cas", std::vector<int>{});
  t.hash_algorithm = j.value("hash_algorithm", std::string{});
  if (!t.key_algorithm.empty() && t.key_algorithm != "RSA" && t.key_algorithm != "EC")
    return script_error(where + ": key_algorithm must be \"RSA\" or \"EC\"");
  return t;
}

Result<SimBehaviour::Kind> kind_from(const std::string& s) {
  using K = SimBehaviour::Kind;
  static const std::map<std::string, K> kinds = {
      {"issue", K::issue},          {"pend_then_issue", K::pend_then_issue}, {"pend_then_deny", K::pend_then_deny},
      {"fault", K::fault},          {"malformed_xml", K::malformed_xml},     {"hostile_xml", K::hostile_xml},
      {"http_error", K::http_error}, {"html_page", K::html_page},            {"truncated_answer", K::truncated_answer},
      {"empty_answer", K::empty_answer}, {"damaged_pkcs7", K::damaged_pkcs7}};
  auto it = kinds.find(s);
  if (it == kinds.end()) return script_error("unknown kind \"" + s + "\"");
  return it->second;
}

// "0x80094800", 2148026368 or the wire's signed -2146875392.
Result<std::uint32_t> hresult_from(const Json& j) {
  if (j.is_number_integer()) return static_cast<std::uint32_t>(j.get<std::int64_t>());
  if (j.is_string()) {
    const std::string s = j.get<std::string>();
    char* end = nullptr;
    unsigned long v = std::strtoul(s.c_str(), &end, 0);
    if (!s.empty() && *end == '\0' && v <= 0xFFFFFFFFul) return static_cast<std::uint32_t>(v);
  }
  return script_error("hresult must be a number or a string such as \"0x80094800\"");
}

Result<SimBehaviour> behaviour_from(const Json& j, const std::string& where) {
  CC_TRY(only_keys(
      j, {"kind", "hresult", "reason", "digicert_errorcode", "pending_polls", "delay_ms", "http_status", "times",
          "other_key"},
      where));
  SimBehaviour b;
  CC_TRY_ASSIGN(b.kind, kind_from(j.value("kind", std::string("issue"))));
  if (j.contains("hresult")) {
    CC_TRY_ASSIGN(b.hresult, hresult_from(j.at("hresult")));
  }
  b.reason = j.value("reason", std::string{});
  b.digicert_errorcode = j.value("digicert_errorcode", std::string{});
  b.pending_polls = j.value("pending_polls", b.pending_polls);
  b.delay = std::chrono::milliseconds(j.value("delay_ms", 0L));
  b.http_status = j.value("http_status", b.http_status);
  b.times = j.value("times", b.times);
  b.other_key = j.value("other_key", b.other_key);
  if (b.http_status < 100 || b.http_status > 599) return script_error(where + ": http_status out of range");
  return b;
}

}  // namespace

Status CaSimulator::load_script(std::string_view text) {
  Json j = Json::parse(text, nullptr, false);
  if (j.is_discarded()) return script_error("not valid JSON");
  try {
    CC_TRY(only_keys(j, {"templates", "behaviours"}, "the script"));
    const Json none = Json::object();
    const Json& templates = j.contains("templates") ? j.at("templates") : none;
    const Json& behaviours = j.contains("behaviours") ? j.at("behaviours") : none;
    if (!templates.is_object() || !behaviours.is_object())
      return script_error("\"templates\" and \"behaviours\" must be objects");
    for (auto it = templates.begin(); it != templates.end(); ++it) {
      CC_TRY_ASSIGN(SimTemplate tpl, template_from(it.value(), "template \"" + it.key() + "\""));
      add_template(it.key(), std::move(tpl));
    }
    for (auto it = behaviours.begin(); it != behaviours.end(); ++it) {
      CC_TRY_ASSIGN(SimBehaviour beh, behaviour_from(it.value(), "behaviour \"" + it.key() + "\""));
      script(it.key(), std::move(beh));
    }
  } catch (const Json::exception& e) {  // a value of the wrong type
    return script_error(e.what());
  }
  return {};
}

// --- the public face ---------------------------------------------------------------------
CaSimulator::CaSimulator(Options options, int port) : state_(std::make_unique<State>()) {
  if (Status s = state_->init(options); !s) throw std::runtime_error(s.error().to_string());
  state_->standalone = options.standalone;
  state_->ignore_additional_context = options.ignore_additional_context;
  server_ = std::make_unique<TlsTestServer>(
      TlsTestServer::Options{options.dir + "/tls.pem", options.dir + "/tls.key", options.client_ca_file, 0, false},
      [s = state_.get()](const HttpRequest& r) { return s->handle(r); }, port);
  state_->port = server_->port();
}

CaSimulator::~CaSimulator() {
  {
    std::lock_guard l(state_->mu);
    state_->stopping = true;
  }
  state_->cv.notify_all();  // delayed answers go now, so the server's threads can be joined
  server_.reset();
}

int CaSimulator::port() const { return state_->port; }
std::string CaSimulator::trust_anchor() const { return state_->dir + "/tls-ca.pem"; }
std::string CaSimulator::issuing_ca() const { return state_->dir + "/issuing-ca.pem"; }
std::string CaSimulator::cep_url() const { return state_->cep_url(); }
std::string CaSimulator::ces_url() const { return state_->ces_url(); }
std::string CaSimulator::digicert_fqdn() const { return "127.0.0.1:" + std::to_string(port()); }
std::string CaSimulator::url(const std::string& path) const { return state_->base() + path; }

void CaSimulator::set_cas(std::vector<SimCa> cas) {
  std::lock_guard l(state_->mu);
  state_->cas = std::move(cas);
}

void CaSimulator::add_template(const std::string& name_or_oid, SimTemplate t) {
  std::lock_guard l(state_->mu);
  auto [it, added] = state_->templates.try_emplace(name_or_oid);
  if (added) it->second.index = state_->next_template_index++;
  it->second.t = std::move(t);
}

void CaSimulator::script(const std::string& key, SimBehaviour b) {
  std::lock_guard l(state_->mu);
  state_->scripts[key] = Script{std::move(b), 0};
}

long CaSimulator::issued_for(const std::string& key) const {
  std::lock_guard l(state_->mu);
  auto it = state_->issued_counts.find(key);
  return it == state_->issued_counts.end() ? 0 : it->second;
}

long CaSimulator::issued_total() const {
  std::lock_guard l(state_->mu);
  return state_->issued_total;
}

std::vector<std::string> CaSimulator::revoked() const {
  std::lock_guard l(state_->mu);
  return state_->revoked;
}

long CaSimulator::requests() const { return state_->requests; }

long CaSimulator::requests_to(const std::string& path) const {
  std::lock_guard l(state_->mu);
  auto it = state_->requests_by_path.find(path);
  return it == state_->requests_by_path.end() ? 0 : it->second;
}
std::vector<std::string> CaSimulator::client_subjects() const { return server_->client_subjects(); }

}  // namespace certcustody::testing
