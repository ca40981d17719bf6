#include "policy.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>

#include <algorithm>
#include <cctype>

namespace certcustody::policy {
namespace {

constexpr const char* kUpnOid = "1.3.6.1.4.1.311.20.2.3";  // Microsoft UPN otherName
constexpr std::size_t kMaxCn = 64;                           // RFC 5280 ub-common-name

Error perr(const std::string& code, const std::string& what, const std::string& remedy) {
  return Error{"policy." + code, what, remedy};
}

bool has_control(const std::string& v) {
  return std::any_of(v.begin(), v.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; });
}

std::size_t utf8_length(const std::string& v) {
  return static_cast<std::size_t>(std::count_if(v.begin(), v.end(), [](unsigned char c) { return (c & 0xC0) != 0x80; }));
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool is_mail_form(const std::string& v) { return v.find('@') != std::string::npos; }

// user@domain: printable ASCII local part without RFC 5322 specials, and a
// domain of letter/digit/hyphen labels. Deliberately narrower than RFC 5322.
bool mail_syntax_ok(const std::string& v) {
  auto at = v.find('@');
  if (at == std::string::npos || at == 0 || at > 64 || v.find('@', at + 1) != std::string::npos) return false;
  const std::string local = v.substr(0, at), domain = v.substr(at + 1);
  for (unsigned char c : local)
    if (c <= 0x20 || c >= 0x7f || std::string("\"(),:;<>[\\]").find(static_cast<char>(c)) != std::string::npos)
      return false;
  if (domain.empty() || domain.size() > 253 || domain.front() == '.' || domain.back() == '.') return false;
  std::size_t start = 0;
  while (start <= domain.size()) {
    auto dot = domain.find('.', start);
    std::string label = domain.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    for (unsigned char c : label)
      if (!std::isalnum(c) && c != '-') return false;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return true;
}

Status check_mail(const std::string& kind, const std::string& v, const std::vector<std::string>& allowed,
                  const std::string& profile) {
  const std::string code = kind == "UPN" ? "upn" : "email";
  if (!mail_syntax_ok(v))
    return perr(code + "_invalid", kind + " \"" + v + "\" is not of the form user@domain",
                "fix the user's " + kind + " in the directory");
  if (!allowed.empty()) {
    const std::string domain = lower(v.substr(v.find('@') + 1));
    if (std::none_of(allowed.begin(), allowed.end(), [&](const std::string& d) { return lower(d) == domain; }))
      return perr(code + "_domain_not_allowed",
                  kind + " \"" + v + "\" is in domain " + domain + ", which profile " + profile + " does not allow",
                  "use an address in an allowed domain, or add the domain to the profile's allowed list");
  }
  return {};
}

Status check_value(const char* what, const std::string& v) {
  if (v.empty()) return perr("value_invalid", std::string(what) + " is empty", "fill in the user's attribute");
  if (has_control(v))
    return perr("value_invalid", std::string(what) + " contains a control or NUL character",
                "fix the user's attribute in the directory");
  return {};
}

const std::optional<std::string>& attr(const RequestAttributes& r, const std::string& name) {
  static const std::optional<std::string> none;
  const auto* v = r.find(name);
  return v != nullptr ? *v : none;
}

// §4: e-mail SAN: e-mail, else UPN, else the Subject if in e-mail form.
Result<std::string> email_san_value(const RequestAttributes& r, const std::string& cn) {
  if (r.email) return *r.email;
  if (r.upn) return *r.upn;
  if (is_mail_form(cn)) return cn;
  return perr("san_email_unavailable", "the profile asks for an e-mail SAN but the user has no e-mail, no UPN "
                                       "and a Subject that is not an e-mail address",
              "give the user an e-mail address or UPN, or remove the e-mail SAN from the profile (the CA would "
              "reject the empty SAN: 0x80070057, the parameter is incorrect)");
}

// §4: UPN SAN: UPN, else e-mail, else the Subject if in e-mail form.
Result<std::string> upn_san_value(const RequestAttributes& r, const std::string& cn) {
  if (r.upn) return *r.upn;
  if (r.email) return *r.email;
  if (is_mail_form(cn)) return cn;
  return perr("san_upn_unavailable", "the profile asks for a UPN SAN but the user has no UPN, no e-mail and a "
                                     "Subject that is not an e-mail address",
              "give the user a UPN or e-mail address, or remove the UPN SAN from the profile");
}

Result<Bytes> decode_value(const std::string& v, ValueEncoding enc, const std::string& attribute) {
  auto bad = [&](const std::string& why) {
    return perr("othername_encoding_invalid",
                "attribute " + attribute + " is declared " + (enc == ValueEncoding::hex ? "hex" : "base64") +
                    " but " + why,
                "send the value in the declared encoding (the CA takes it hex-encoded), or fix the profile's "
                "encoding; certcustody never re-encodes it");
  };
  Bytes out;
  if (enc == ValueEncoding::hex) {
    std::string digits;
    for (char c : v)
      if (c != ' ') digits.push_back(c);
    if (digits.empty() || digits.size() % 2 != 0) return bad("it has an odd number of hex digits");
    for (std::size_t i = 0; i < digits.size(); i += 2) {
      int hi = OPENSSL_hexchar2int(static_cast<unsigned char>(digits[i]));
      int lo = OPENSSL_hexchar2int(static_cast<unsigned char>(digits[i + 1]));
      if (hi < 0 || lo < 0) return bad("it contains non-hex characters");
      out.push_back(static_cast<std::uint8_t>(hi * 16 + lo));
    }
    return out;
  }
  if (v.empty() || v.size() % 4 != 0 || v.find_first_not_of(
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") != std::string::npos)
    return bad("it is not canonical base64");
  const auto pad = v.find('=');
  if (pad != std::string::npos && (pad < v.size() - 2 || v.find_first_not_of('=', pad) != std::string::npos))
    return bad("its padding is malformed");
  out.resize(v.size() / 4 * 3);
  int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(v.data()), static_cast<int>(v.size()));
  if (n < 0) return bad("it is not canonical base64");
  out.resize(static_cast<std::size_t>(n) - (v.size() - (pad == std::string::npos ? v.size() : pad)));
  return out;
}

// The decoded value must be exactly one DER element (e.g. 04 10 <GUID>).
Result<ASN1_TYPE*> der_value(const Bytes& der, const std::string& attribute) {
  const unsigned char* p = der.data();
  ASN1_TYPE* t = d2i_ASN1_TYPE(nullptr, &p, static_cast<long>(der.size()));
  if (t == nullptr || p != der.data() + der.size()) {
    ASN1_TYPE_free(t);
    ERR_clear_error();
    return perr("othername_value_invalid", "attribute " + attribute + " does not decode to one DER element",
                "send the DER encoding of the otherName value (for a GUID: 04 10 followed by its 16 bytes)");
  }
  return t;
}

Status add_other_name(GENERAL_NAMES* names, const std::string& oid, ASN1_TYPE* value) {
  GENERAL_NAME* g = GENERAL_NAME_new();
  ASN1_OBJECT* o = OBJ_txt2obj(oid.c_str(), 1);
  if (g == nullptr || o == nullptr || GENERAL_NAME_set0_othername(g, o, value) != 1 ||
      sk_GENERAL_NAME_push(names, g) == 0) {
    GENERAL_NAME_free(g);
    return openssl_error("policy.encode_failed", "cannot build the otherName " + oid, "retry");
  }
  return {};
}

Status add_email(GENERAL_NAMES* names, const std::string& email) {
  for (unsigned char c : email)
    if (c >= 0x80)
      return perr("email_invalid", "e-mail \"" + email + "\" has non-ASCII characters, which rfc822Name cannot carry",
                  "use an ASCII address for the certificate");
  GENERAL_NAME* g = GENERAL_NAME_new();
  ASN1_IA5STRING* s = ASN1_IA5STRING_new();
  if (g == nullptr || s == nullptr || ASN1_STRING_set(s, email.data(), static_cast<int>(email.size())) != 1) {
    GENERAL_NAME_free(g);
    ASN1_IA5STRING_free(s);
    return openssl_error("policy.encode_failed", "cannot build the e-mail SAN", "retry");
  }
  GENERAL_NAME_set0_value(g, GEN_EMAIL, s);
  sk_GENERAL_NAME_push(names, g);
  return {};
}

Status add_upn(GENERAL_NAMES* names, const std::string& upn) {
  ASN1_TYPE* v = ASN1_TYPE_new();
  ASN1_UTF8STRING* s = ASN1_UTF8STRING_new();
  if (v == nullptr || s == nullptr || ASN1_STRING_set(s, upn.data(), static_cast<int>(upn.size())) != 1) {
    ASN1_TYPE_free(v);
    ASN1_UTF8STRING_free(s);
    return openssl_error("policy.encode_failed", "cannot build the UPN SAN", "retry");
  }
  ASN1_TYPE_set(v, V_ASN1_UTF8STRING, s);
  return add_other_name(names, kUpnOid, v);
}

unsigned key_bits(KeyType t) {
  switch (t) {
    case KeyType::rsa2048: return 2048;
    case KeyType::rsa3072: return 3072;
    case KeyType::rsa4096: return 4096;
    case KeyType::ec_p256: return 256;
    case KeyType::ec_p384: return 384;
  }
  return 0;
}

std::vector<std::string> selected_attributes(const Profile& p) {
  std::vector<std::string> a = {"subject.cn"};
  if (p.subject == SubjectForm::cn_with_email) a.push_back("subject.email");
  for (const SanEntry& s : p.san)
    a.push_back(s.kind == SanKind::email ? "san.email" : s.kind == SanKind::upn ? "san.upn" : "san.othername:" + s.oid);
  return a;
}

Status match_template(const Profile& p, const TemplatePolicy& tpl) {
  if (!tpl.supported.empty())
    for (const std::string& a : selected_attributes(p))
      if (!tpl.supported.contains(a) && !tpl.fixed.contains(a) &&
          !(a.rfind("san.othername:", 0) == 0 && tpl.supported.contains("san.othername:*")))
        return perr("attribute_not_supported",
                    "attribute " + a + " is not in the template's supported attributes (profile " + p.name +
                        ", template " + p.template_id + ")",
                    "align the profile with the CA template: remove " + a +
                        " from the profile, or enable it in the template");
  const bool ec = p.key_type == KeyType::ec_p256 || p.key_type == KeyType::ec_p384;
  if (!tpl.key_algorithm.empty() && tpl.key_algorithm != (ec ? "EC" : "RSA"))
    return perr("key_type_mismatch",
                "profile " + p.name + " asks for " + key_type_name(p.key_type) + " but the template requires " +
                    tpl.key_algorithm + " keys",
                "set key_type in the profile to a " + tpl.key_algorithm + " type");
  if (key_bits(p.key_type) < tpl.min_key_bits && !ec)
    return perr("key_too_small",
                key_type_name(p.key_type) + " is below the template's minimum of " + std::to_string(tpl.min_key_bits) +
                    " bits",
                "choose a larger key_type in profile " + p.name);
  return {};
}

bool template_builds_mail_names(const TemplatePolicy& tpl) {
  for (const char* a : {"subject.mail_firstname", "subject.mail_lastname"})
    if (tpl.fixed.contains(a) || tpl.supported.contains(a)) return true;
  return false;
}

// §4: DigiCert profiles that build the Subject from mail_firstname /
// mail_lastname cannot take a UPN with characters such as '_'.
Status check_mail_names(const Profile& p, const RequestAttributes& r, const TemplatePolicy& tpl) {
  if (!template_builds_mail_names(tpl) || !r.upn) return {};
  if (p.subject == SubjectForm::cn && p.cn_from == "upn") return {};
  const std::string local = r.upn->substr(0, r.upn->find('@'));
  for (unsigned char c : local)
    if (!std::isalnum(c) && c != '.' && c != '-')
      return perr("upn_breaks_mail_names",
                  "UPN \"" + *r.upn + "\" has characters ('" + std::string(1, static_cast<char>(c)) +
                      "') that the template's mail_firstname/mail_lastname cannot take",
                  "use a Subject of CN=<upn> in profile " + p.name + ": subject = \"cn\", cn_from = \"upn\"");
  return {};
}

Result<std::string> common_name(const Profile& p, const RequestAttributes& r) {
  std::string from = p.subject == SubjectForm::cn_as_email ? "email" : p.cn_from;
  const auto* v = &attr(r, from);
  if (!*v && p.subject == SubjectForm::cn_as_email) v = &r.upn;  // CN=<mail>, else the UPN
  if (!*v)
    return perr("subject_value_missing", "the Subject's CN comes from " + from + ", which the request lacks",
                "send the user's " + from + ", or change the profile's subject / cn_from");
  CC_TRY(check_value(("subject CN (" + from + ")").c_str(), **v));
  if (utf8_length(**v) > kMaxCn)
    return perr("cn_too_long", "the CN \"" + v->value().substr(0, 20) + "…\" has " + std::to_string(utf8_length(**v)) +
                                   " characters; at most 64 are allowed",
                "use a shorter value for the CN (RFC 5280 ub-common-name)");
  if (p.subject == SubjectForm::cn_as_email && !is_mail_form(**v))
    return perr("subject_not_email", "subject form cn-as-email needs an e-mail address, got \"" + **v + "\"",
                "send the user's e-mail, or use subject = \"cn\"");
  return **v;
}

Result<X509NamePtr> build_subject(const Profile& p, const RequestAttributes& r, const std::string& cn) {
  X509NamePtr name(X509_NAME_new());
  auto add = [&](int nid, const std::string& v) {
    return X509_NAME_add_entry_by_NID(name.get(), nid, MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(v.data()),
                                      static_cast<int>(v.size()), -1, 0) == 1;
  };
  if (!add(NID_commonName, cn))
    return openssl_error("policy.value_invalid", "the CN is not valid UTF-8 or too long", "fix the user's attribute");
  if (p.subject == SubjectForm::cn_with_email) {
    if (!r.email)
      return perr("subject_email_missing", "subject form cn-with-email needs the user's e-mail, which is missing",
                  "give the user an e-mail address, or use subject = \"cn\"");
    CC_TRY(check_value("e-mail", *r.email));
    CC_TRY(check_mail("e-mail", *r.email, p.allowed_email_domains, p.name));
    if (!add(NID_pkcs9_emailAddress, *r.email))
      return perr("email_invalid", "e-mail \"" + *r.email + "\" cannot be an emailAddress (IA5String)",
                  "use an ASCII address");
  }
  return name;
}

}  // namespace

const std::optional<std::string>* RequestAttributes::find(const std::string& name) const {
  if (name == "upn") return &upn;
  if (name == "email") return &email;
  if (name == "common_name") return &common_name;
  if (name == "object_guid") return &object_guid;
  if (name == "device_id") return &device_id;
  return nullptr;
}

Status validate_profile(const Profile& p) {
  for (const SanEntry& s : p.san)
    if (s.kind == SanKind::other_name) {
      ASN1_OBJECT* o = OBJ_txt2obj(s.oid.c_str(), 1);
      ASN1_OBJECT_free(o);
      if (o == nullptr)
        return perr("profile_invalid", "profile " + p.name + ": \"" + s.oid + "\" is not a dotted OID",
                    "write the otherName type as an OID, e.g. 1.3.6.1.4.1.311.25.1");
      if (RequestAttributes{}.find(s.attribute) == nullptr)
        return perr("profile_invalid", "profile " + p.name + ": \"" + s.attribute + "\" is not a request attribute",
                    "use upn, email, common_name, object_guid or device_id");
    }
  for (const std::string& e : p.ekus) {
    ASN1_OBJECT* o = OBJ_txt2obj(e.c_str(), 0);
    ASN1_OBJECT_free(o);
    if (o == nullptr)
      return perr("profile_invalid", "profile " + p.name + ": EKU \"" + e + "\" is unknown",
                  "use a name (clientAuth, emailProtection) or an OID");
  }
  if (p.cn_from != "common_name" && p.cn_from != "upn" && p.cn_from != "email")
    return perr("profile_invalid", "profile " + p.name + ": cn_from \"" + p.cn_from + "\" is not allowed",
                "use common_name, upn or email");
  return {};
}

Result<RequestSpec> evaluate(const Profile& p, const RequestAttributes& r, const TemplatePolicy& tpl) {
  CC_TRY(match_template(p, tpl));
  CC_TRY(check_mail_names(p, r, tpl));
  CC_TRY_ASSIGN(std::string cn, common_name(p, r));
  RequestSpec spec;
  CC_TRY_ASSIGN(spec.subject, build_subject(p, r, cn));
  spec.san.reset(sk_GENERAL_NAME_new_null());
  for (const SanEntry& s : p.san) {
    if (s.kind == SanKind::email) {
      CC_TRY_ASSIGN(std::string v, email_san_value(r, cn));
      CC_TRY(check_value("e-mail SAN", v));
      CC_TRY(check_mail("e-mail", v, p.allowed_email_domains, p.name));
      CC_TRY(add_email(spec.san.get(), v));
    } else if (s.kind == SanKind::upn) {
      CC_TRY_ASSIGN(std::string v, upn_san_value(r, cn));
      CC_TRY(check_value("UPN SAN", v));
      CC_TRY(check_mail("UPN", v, p.allowed_upn_domains, p.name));
      CC_TRY(add_upn(spec.san.get(), v));
    } else {
      const auto& v = attr(r, s.attribute);
      if (!v)
        return perr("othername_missing", "the profile asks for otherName " + s.oid + " from " + s.attribute +
                                             ", which the request lacks",
                    "send the user's " + s.attribute + ", or remove that otherName from profile " + p.name);
      CC_TRY_ASSIGN(Bytes der, decode_value(*v, s.encoding, s.attribute));
      CC_TRY_ASSIGN(ASN1_TYPE * value, der_value(der, s.attribute));
      CC_TRY(add_other_name(spec.san.get(), s.oid, value));
    }
  }
  spec.key_type = p.key_type;
  spec.validity_days = p.validity_days;
  spec.extensions = tpl.request_extensions;
  spec.digest = tpl.request_digest;
  for (const std::string& e : p.ekus) {
    ASN1_OBJECT* o = OBJ_txt2obj(e.c_str(), 0);
    if (o == nullptr) return perr("profile_invalid", "EKU \"" + e + "\" is unknown", "fix the profile");
    char buf[128];
    OBJ_obj2txt(buf, sizeof buf, o, 1);
    ASN1_OBJECT_free(o);
    spec.ekus.emplace_back(buf);
  }
  return spec;
}

std::string subject_text(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_ONELINE & ~ASN1_STRFLGS_ESC_MSB);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

std::string san_text(const GENERAL_NAMES* names) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    if (i > 0) BIO_puts(bio.get(), ", ");
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(names, i);
    ASN1_OBJECT* oid = nullptr;
    ASN1_TYPE* value = nullptr;
    if (GENERAL_NAME_get0_otherName(g, &oid, &value) == 1 && OBJ_obj2nid(oid) == NID_undef) {
      // OpenSSL prints "<unsupported>" for otherNames it does not know: show OID and DER.
      char buf[128];
      OBJ_obj2txt(buf, sizeof buf, oid, 1);
      unsigned char* der = nullptr;
      int n = i2d_ASN1_TYPE(value, &der);
      BIO_printf(bio.get(), "othername:%s::%s", buf, n > 0 ? to_hex_upper({der, static_cast<std::size_t>(n)}).c_str() : "");
      OPENSSL_free(der);
      continue;
    }
    GENERAL_NAME_print(bio.get(), const_cast<GENERAL_NAME*>(g));
  }
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(n));
}

}  // namespace certcustody::policy
