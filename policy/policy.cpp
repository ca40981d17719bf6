#include "policy.h"

#include <openssl/objects.h>

#include <algorithm>
#include <cctype>

#include "characters.h"
#include "other_name_value.h"

namespace certcustody::policy {
namespace {

constexpr const char* kUpnOid = "1.3.6.1.4.1.311.20.2.3";  // Microsoft UPN otherName
constexpr std::size_t kMaxCn = 64;                           // RFC 5280 ub-common-name

Error perr(const std::string& code, const std::string& what, const std::string& remedy) {
  return Error{"policy." + code, what, remedy};
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

// A value and the request attribute it was taken from.
struct Sourced {
  std::string value;
  std::string from;
};

// Every text value that reaches the Subject or the SAN passes here.
Status check_value(const std::string& what, const Sourced& v, const Profile& p) {
  const std::string named = what + " (attribute " + v.from + ")";
  if (v.value.empty()) return perr("value_invalid", named + " is empty", "fill in the user's attribute");
  return check_text(named, v.value, p.allowed_code_points);
}

const std::optional<std::string>& attr(const RequestAttributes& r, const std::string& name) {
  static const std::optional<std::string> none;
  const auto* v = r.find(name);
  return v != nullptr ? *v : none;
}

// §4: the first of the attributes present, else the CN if in e-mail form.
Result<Sourced> san_value(const RequestAttributes& r, const std::vector<std::string>& chain, const Sourced& cn,
                          Error unavailable) {
  for (const std::string& a : chain)
    if (const auto& v = attr(r, a)) return Sourced{*v, a};
  if (is_mail_form(cn.value)) return cn;
  return unavailable;
}

// §4: e-mail SAN: e-mail, else UPN, else the Subject if in e-mail form.
Result<Sourced> email_san_value(const RequestAttributes& r, const Sourced& cn) {
  return san_value(r, {"email", "upn"}, cn, perr("san_email_unavailable", "the profile asks for an e-mail SAN but the user has no e-mail, no UPN "
                                       "and a Subject that is not an e-mail address",
              "give the user an e-mail address or UPN, or remove the e-mail SAN from the profile (the CA would "
              "reject the empty SAN: 0x80070057, the parameter is incorrect)"));
}

// §4: UPN SAN: UPN, else e-mail, else the Subject if in e-mail form.
Result<Sourced> upn_san_value(const RequestAttributes& r, const Sourced& cn) {
  return san_value(r, {"upn", "email"}, cn, perr("san_upn_unavailable", "the profile asks for a UPN SAN but the user has no UPN, no e-mail and a "
                                     "Subject that is not an e-mail address",
              "give the user a UPN or e-mail address, or remove the UPN SAN from the profile"));
}

Status add_other_name(GENERAL_NAMES* names, const std::string& oid, Asn1TypePtr value) {
  GENERAL_NAME* g = GENERAL_NAME_new();
  ASN1_OBJECT* o = OBJ_txt2obj(oid.c_str(), 1);
  if (g == nullptr || o == nullptr || GENERAL_NAME_set0_othername(g, o, value.get()) != 1) {
    GENERAL_NAME_free(g);
    ASN1_OBJECT_free(o);
    return openssl_error("policy.encode_failed", "cannot build the otherName " + oid, "retry");
  }
  value.release();  // g owns it now
  if (sk_GENERAL_NAME_push(names, g) == 0) {
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
  Asn1TypePtr v(ASN1_TYPE_new());
  ASN1_UTF8STRING* s = ASN1_UTF8STRING_new();
  if (v == nullptr || s == nullptr || ASN1_STRING_set(s, upn.data(), static_cast<int>(upn.size())) != 1) {
    ASN1_UTF8STRING_free(s);
    return openssl_error("policy.encode_failed", "cannot build the UPN SAN", "retry");
  }
  ASN1_TYPE_set(v.get(), V_ASN1_UTF8STRING, s);
  return add_other_name(names, kUpnOid, std::move(v));
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
  if (p.subject != SubjectForm::cn_with_email && p.cn_from == "upn") return {};  // the Subject is CN=<upn>
  const std::string local = r.upn->substr(0, r.upn->find('@'));
  for (unsigned char c : local)
    if (!std::isalnum(c) && c != '.' && c != '-')
      return perr("upn_breaks_mail_names",
                  "UPN \"" + *r.upn + "\" has characters ('" + std::string(1, static_cast<char>(c)) +
                      "') that the template's mail_firstname/mail_lastname cannot take",
                  "use a Subject of CN=<upn> in profile " + p.name + ": subject = \"cn\", cn_from = \"upn\"");
  return {};
}

// The attributes the CN may come from, the first present wins (cn_from).
std::vector<std::string> cn_sources(const Profile& p) {
  if (p.cn_from) return {*p.cn_from};
  if (p.subject == SubjectForm::cn_as_email) return {"email", "upn"};
  return {"common_name"};
}

// cn-as-email: the CN is an address, held to the rules of the attribute it
// came from (the UPN's domains for a UPN, the e-mail domains otherwise).
Status check_cn_address(const Profile& p, const std::string& cn, const std::string& from) {
  if (!mail_syntax_ok(cn))
    return perr("subject_not_email",
                "subject form cn-as-email needs an e-mail address (user@domain), but " + from + " is \"" + cn + "\"",
                "send an address in " + from + ", name another attribute in cn_from, or use subject = \"cn\"");
  const bool upn = from == "upn";
  return check_mail(upn ? "UPN" : "e-mail", cn, upn ? p.allowed_upn_domains : p.allowed_email_domains, p.name);
}

Result<Sourced> common_name(const Profile& p, const RequestAttributes& r) {
  const std::vector<std::string> sources = cn_sources(p);
  const auto from = std::find_if(sources.begin(), sources.end(), [&](const std::string& a) { return attr(r, a).has_value(); });
  if (from == sources.end()) {
    const std::string names = sources.size() == 1 ? sources[0] : sources[0] + " or " + sources[1];
    return perr("subject_value_missing", "the Subject's CN comes from " + names + ", which the request lacks",
                "send the user's " + names + ", or change the profile's subject / cn_from");
  }
  const Sourced cn{*attr(r, *from), *from};
  CC_TRY(check_value("the subject CN", cn, p));
  if (utf8_length(cn.value) > kMaxCn)
    return perr("cn_too_long", "the CN \"" + cn.value.substr(0, 20) + "…\" has " +
                                   std::to_string(utf8_length(cn.value)) + " characters; at most 64 are allowed",
                "use a shorter value for the CN (RFC 5280 ub-common-name)");
  if (p.subject == SubjectForm::cn_as_email) CC_TRY(check_cn_address(p, cn.value, *from));
  return cn;
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
    CC_TRY(check_value("the Subject's e-mail", {*r.email, "email"}, p));
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
  for (char32_t c : p.allowed_code_points)
    if (!allowable(c))
      return perr("profile_invalid", "profile " + p.name + ": allowed_code_points has " + code_point_text(c) +
                                         ", which no profile may allow",
                  "allow only " + allowable_text());
  if (p.cn_from && *p.cn_from != "common_name" && *p.cn_from != "upn" && *p.cn_from != "email")
    return perr("profile_invalid",
                "profile " + p.name + ": cn_from \"" + *p.cn_from + "\" cannot give the CN" +
                    (p.subject == SubjectForm::cn_as_email ? " of subject cn-as-email (an e-mail address)" : ""),
                "use common_name, upn or email");
  return {};
}

Result<RequestSpec> evaluate(const Profile& p, const RequestAttributes& r, const TemplatePolicy& tpl) {
  CC_TRY(match_template(p, tpl));
  CC_TRY(check_mail_names(p, r, tpl));
  CC_TRY_ASSIGN(Sourced cn, common_name(p, r));
  RequestSpec spec;
  CC_TRY_ASSIGN(spec.subject, build_subject(p, r, cn.value));
  spec.san.reset(sk_GENERAL_NAME_new_null());
  for (const SanEntry& s : p.san) {
    if (s.kind == SanKind::email) {
      CC_TRY_ASSIGN(Sourced v, email_san_value(r, cn));
      CC_TRY(check_value("the e-mail SAN", v, p));
      CC_TRY(check_mail("e-mail", v.value, p.allowed_email_domains, p.name));
      CC_TRY(add_email(spec.san.get(), v.value));
    } else if (s.kind == SanKind::upn) {
      CC_TRY_ASSIGN(Sourced v, upn_san_value(r, cn));
      CC_TRY(check_value("the UPN SAN", v, p));
      CC_TRY(check_mail("UPN", v.value, p.allowed_upn_domains, p.name));
      CC_TRY(add_upn(spec.san.get(), v.value));
    } else {
      const auto& v = attr(r, s.attribute);
      if (!v)
        return perr("othername_missing", "the profile asks for otherName " + s.oid + " from " + s.attribute +
                                             ", which the request lacks",
                    "send the user's " + s.attribute + ", or remove that otherName from profile " + p.name);
      CC_TRY_ASSIGN(Asn1TypePtr value, other_name_value(*v, s.encoding, s.attribute, p.allowed_code_points));
      CC_TRY(add_other_name(spec.san.get(), s.oid, std::move(value)));
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
