// The policy engine, table-driven over every rule and fallback, with the
// reference's examples (connector-behaviour.md §4–§5).
#include "policy.h"

#include <gtest/gtest.h>

#include <functional>

#include "config/profiles.h"

namespace certcustody::policy {
namespace {

const std::string kGuidHex = "04 10 b8 ba 11 22 33 44 55 66 77 88 99 aa bb cc dd ee";
const std::string kGuidB64 = "BBC4uhEiM0RVZneImaq7zN3u";  // the same 18 DER bytes
const std::string kGuidOid = "1.3.6.1.4.1.311.25.1";

Profile base() {
  Profile p;
  p.name = "users";
  p.ca = "digicert";
  p.template_id = "2.16.840.1.113733.1.16.1.2.3.1.1.61904612";
  return p;
}

RequestAttributes iwuser() {
  RequestAttributes r;
  r.upn = "IWUser0@contoso.example";
  r.email = "IWUser0@contoso.example";
  r.common_name = "IWUser0";
  r.object_guid = kGuidHex;
  return r;
}

struct Case {
  const char* name;
  std::function<void(Profile&, RequestAttributes&, TemplatePolicy&)> setup;
  std::string subject;  // expected subject_text, when it succeeds
  std::string san;      // expected san_text
  std::string error;    // expected error code instead
};
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class Rules : public ::testing::TestWithParam<Case> {};

TEST_P(Rules, Evaluate) {
  const Case& c = GetParam();
  Profile p = base();
  RequestAttributes r = iwuser();
  TemplatePolicy t;
  c.setup(p, r, t);
  auto spec = evaluate(p, r, t);
  if (!c.error.empty()) {
    ASSERT_FALSE(spec) << subject_text(spec->subject.get()) << " / " << san_text(spec->san.get());
    EXPECT_EQ(spec.error().code, c.error) << spec.error().to_string();
    EXPECT_FALSE(spec.error().remedy.empty());
    return;
  }
  ASSERT_TRUE(spec) << spec.error().to_string();
  EXPECT_EQ(subject_text(spec->subject.get()), c.subject);
  EXPECT_EQ(san_text(spec->san.get()), c.san);
}

// A vector, not the initializer_list: the list's array dies with the
// expression that built the Case, long before the test runs.
auto san = [](std::initializer_list<SanKind> list) {
  return [kinds = std::vector<SanKind>(list)](Profile& p, RequestAttributes&, TemplatePolicy&) {
    for (SanKind k : kinds) p.san.push_back({k, {}, {}, {}});
  };
};
auto guid = [](ValueEncoding e) { return SanEntry{SanKind::other_name, kGuidOid, "object_guid", e}; };

INSTANTIATE_TEST_SUITE_P(
    Reference, Rules,
    ::testing::Values(
        // --- the three Subject forms
        Case{"cn", [](Profile&, RequestAttributes&, TemplatePolicy&) {}, "CN = IWUser0", "", ""},
        Case{"cn_with_email", [](Profile& p, RequestAttributes&, TemplatePolicy&) { p.subject = SubjectForm::cn_with_email; },
             "CN = IWUser0, emailAddress = IWUser0@contoso.example", "", ""},
        Case{"cn_as_email", [](Profile& p, RequestAttributes&, TemplatePolicy&) { p.subject = SubjectForm::cn_as_email; },
             "CN = IWUser0@contoso.example", "", ""},
        Case{"cn_as_email_from_upn",
             [](Profile& p, RequestAttributes& r, TemplatePolicy&) {
               p.subject = SubjectForm::cn_as_email;
               r.email.reset();
             },
             "CN = IWUser0@contoso.example", "", ""},
        // cn-as-email with cn_from: exactly that attribute, no fallback, validated as an address
        Case{"cn_as_email_from_common_name",
             [](Profile& p, RequestAttributes& r, TemplatePolicy&) {
               p.subject = SubjectForm::cn_as_email;
               p.cn_from = "common_name";
               r.common_name = "device-7@contoso.example";
             },
             "CN = device-7@contoso.example", "", ""},
        Case{"cn_as_email_from_upn_before_email",
             [](Profile& p, RequestAttributes& r, TemplatePolicy&) {
               p.subject = SubjectForm::cn_as_email;
               p.cn_from = "upn";
               r.upn = "u.ser@contoso.example";
             },
             "CN = u.ser@contoso.example", "", ""},
        Case{"cn_as_email_named_attribute_has_no_fallback",
             [](Profile& p, RequestAttributes& r, TemplatePolicy&) {
               p.subject = SubjectForm::cn_as_email;
               p.cn_from = "email";
               r.email.reset();
             },
             "", "", "policy.subject_value_missing"},
        Case{"cn_as_email_common_name_is_not_an_address",
             [](Profile& p, RequestAttributes&, TemplatePolicy&) {
               p.subject = SubjectForm::cn_as_email;
               p.cn_from = "common_name";
             },
             "", "", "policy.subject_not_email"},
        Case{"cn_as_email_needs_a_whole_address",
             [](Profile& p, RequestAttributes& r, TemplatePolicy&) {
               p.subject = SubjectForm::cn_as_email;
               r.email = "IW User0@contoso.example";
             },
             "", "", "policy.subject_not_email"},
        Case{"cn_as_email_two_at_signs",
             [](Profile& p, RequestAttributes& r, TemplatePolicy&) {
               p.subject = SubjectForm::cn_as_email;
               p.cn_from = "upn";
               r.upn = "a@b@contoso.example";
             },
             "", "", "policy.subject_not_email"},
        Case{"cn_as_email_domain_checked",
             [](Profile& p, RequestAttributes& r, TemplatePolicy&) {
               p.subject = SubjectForm::cn_as_email;
               p.allowed_email_domains = {"contoso.example"};
               r.email = "user@fabrikam.example";
             },
             "", "", "policy.email_domain_not_allowed"},
        Case{"cn_as_email_upn_domain_checked",
             [](Profile& p, RequestAttributes& r, TemplatePolicy&) {
               p.subject = SubjectForm::cn_as_email;
               p.cn_from = "upn";
               p.allowed_upn_domains = {"contoso.example"};
               r.upn = "user@fabrikam.example";
             },
             "", "", "policy.upn_domain_not_allowed"},
        Case{"cn_as_email_from_upn_is_the_mail_names_remedy_too",
             [](Profile& p, RequestAttributes& r, TemplatePolicy& tp) {
               p.subject = SubjectForm::cn_as_email;
               p.cn_from = "upn";
               r.upn = "global_admin@contoso.example";
               tp.fixed = {"subject.mail_firstname", "subject.mail_lastname"};
             },
             "CN = global_admin@contoso.example", "", ""},
        Case{"cn_from_upn", [](Profile& p, RequestAttributes&, TemplatePolicy&) { p.cn_from = "upn"; },
             "CN = IWUser0@contoso.example", "", ""},
        Case{"cn_with_email_without_email",
             [](Profile& p, RequestAttributes& r, TemplatePolicy&) {
               p.subject = SubjectForm::cn_with_email;
               r.email.reset();
             },
             "", "", "policy.subject_email_missing"},
        Case{"cn_missing", [](Profile&, RequestAttributes& r, TemplatePolicy&) { r.common_name.reset(); }, "", "",
             "policy.subject_value_missing"},
        // --- e-mail SAN fallback chain: e-mail, UPN, e-mail-form Subject, else fail (0x80070057)
        Case{"email_san", san({SanKind::email}), "CN = IWUser0", "email:IWUser0@contoso.example", ""},
        Case{"email_san_from_upn",
             [](Profile& p, RequestAttributes& r, TemplatePolicy& tp) {
               san({SanKind::email})(p, r, tp);
               r.email.reset();
               r.upn = "global_admin@contoso.example";
             },
             "CN = IWUser0", "email:global_admin@contoso.example", ""},
        Case{"email_san_from_subject",
             [](Profile& p, RequestAttributes& r, TemplatePolicy& tp) {
               san({SanKind::email})(p, r, tp);
               r.email.reset();
               r.upn.reset();
               r.common_name = "IWUser0@contoso.example";
             },
             "CN = IWUser0@contoso.example", "email:IWUser0@contoso.example", ""},
        Case{"user_without_email",
             [](Profile& p, RequestAttributes& r, TemplatePolicy& tp) {
               san({SanKind::email})(p, r, tp);
               r.email.reset();
               r.upn.reset();
             },
             "", "", "policy.san_email_unavailable"},
        // --- UPN SAN fallback chain: UPN, e-mail, e-mail-form Subject, else fail
        Case{"upn_san", san({SanKind::upn}), "CN = IWUser0", "othername:UPN:IWUser0@contoso.example", ""},
        Case{"upn_san_from_email",
             [](Profile& p, RequestAttributes& r, TemplatePolicy& tp) {
               san({SanKind::upn})(p, r, tp);
               r.upn.reset();
               r.email = "mail@contoso.example";
             },
             "CN = IWUser0", "othername:UPN:mail@contoso.example", ""},
        Case{"upn_san_from_subject",
             [](Profile& p, RequestAttributes& r, TemplatePolicy& tp) {
               san({SanKind::upn})(p, r, tp);
               r.upn.reset();
               r.email.reset();
               r.common_name = "cn@contoso.example";
             },
             "CN = cn@contoso.example", "othername:UPN:cn@contoso.example", ""},
        Case{"upn_san_unavailable",
             [](Profile& p, RequestAttributes& r, TemplatePolicy& tp) {
               san({SanKind::upn})(p, r, tp);
               r.upn.reset();
               r.email.reset();
             },
             "", "", "policy.san_upn_unavailable"},
        // --- otherName: declared encoding, validated, never re-encoded
        Case{"guid_hex", [](Profile& p, RequestAttributes&, TemplatePolicy&) { p.san.push_back(guid(ValueEncoding::hex)); },
             "CN = IWUser0", "othername:1.3.6.1.4.1.311.25.1::0410B8BA112233445566778899AABBCCDDEE", ""},
        Case{"guid_base64",
             [](Profile& p, RequestAttributes& r, TemplatePolicy&) {
               p.san.push_back(guid(ValueEncoding::base64));
               r.object_guid = kGuidB64;
             },
             "CN = IWUser0", "othername:1.3.6.1.4.1.311.25.1::0410B8BA112233445566778899AABBCCDDEE", ""},
        Case{"guid_hex_declared_base64",
             [](Profile& p, RequestAttributes& r, TemplatePolicy&) {
               p.san.push_back(guid(ValueEncoding::base64));
               r.object_guid = "0410b8ba112233445566778899aabbccddee";
             },
             "", "", "policy.othername_value_invalid"},
        Case{"guid_base64_declared_hex",
             [](Profile& p, RequestAttributes& r, TemplatePolicy&) {
               p.san.push_back(guid(ValueEncoding::hex));
               r.object_guid = kGuidB64;
             },
             "", "", "policy.othername_encoding_invalid"},
        Case{"guid_odd_hex",
             [](Profile& p, RequestAttributes& r, TemplatePolicy&) {
               p.san.push_back(guid(ValueEncoding::hex));
               r.object_guid = "04 10 b";
             },
             "", "", "policy.othername_encoding_invalid"},
        Case{"guid_bad_base64_padding",
             [](Profile& p, RequestAttributes& r, TemplatePolicy&) {
               p.san.push_back(guid(ValueEncoding::base64));
               r.object_guid = "BB=C4uhE";
             },
             "", "", "policy.othername_encoding_invalid"},
        Case{"guid_not_der",
             [](Profile& p, RequestAttributes& r, TemplatePolicy&) {
               p.san.push_back(guid(ValueEncoding::hex));
               r.object_guid = "b8ba1122";
             },
             "", "", "policy.othername_value_invalid"},
        Case{"guid_missing",
             [](Profile& p, RequestAttributes& r, TemplatePolicy&) {
               p.san.push_back(guid(ValueEncoding::hex));
               r.object_guid.reset();
             },
             "", "", "policy.othername_missing"},
        // --- injection, control characters, Unicode, lengths
        Case{"comma_injection", [](Profile&, RequestAttributes& r, TemplatePolicy&) { r.common_name = "IWUser0,O=Evil"; },
             "CN = \"IWUser0,O=Evil\"", "", ""},
        Case{"plus_and_quote", [](Profile&, RequestAttributes& r, TemplatePolicy&) { r.common_name = "a+b\"c"; },
             "CN = \"a+b\\\"c\"", "", ""},
        Case{"nul_in_cn", [](Profile&, RequestAttributes& r, TemplatePolicy&) { r.common_name = std::string("IW\0x", 4); },
             "", "", "policy.character_not_allowed"},
        Case{"newline_in_cn", [](Profile&, RequestAttributes& r, TemplatePolicy&) { r.common_name = "IW\nO=Evil"; }, "",
             "", "policy.character_not_allowed"},
        Case{"unicode_name", [](Profile&, RequestAttributes& r, TemplatePolicy&) { r.common_name = "\xC3\x85sa \xC3\x96" "berg"; },
             "CN = \xC3\x85sa \xC3\x96" "berg", "", ""},
        Case{"cn_64_unicode_chars",
             [](Profile&, RequestAttributes& r, TemplatePolicy&) {
               r.common_name.emplace();
               for (int i = 0; i < 64; ++i) *r.common_name += "\xC3\xA9";
             },
             std::string("CN = ") + [] {
               std::string s;
               for (int i = 0; i < 64; ++i) s += "\xC3\xA9";
               return s;
             }(),
             "", ""},
        Case{"cn_65_chars", [](Profile&, RequestAttributes& r, TemplatePolicy&) { r.common_name = std::string(65, 'x'); },
             "", "", "policy.cn_too_long"},
        Case{"email_injection",
             [](Profile& p, RequestAttributes& r, TemplatePolicy& tp) {
               san({SanKind::email})(p, r, tp);
               r.email = "a@b.example, DNS:evil.example";
             },
             "", "", "policy.email_invalid"},
        // --- syntax and domains
        Case{"email_syntax",
             [](Profile& p, RequestAttributes& r, TemplatePolicy& tp) {
               san({SanKind::email})(p, r, tp);
               r.email = "not-an-address";
             },
             "", "", "policy.email_invalid"},
        Case{"email_non_ascii",
             [](Profile& p, RequestAttributes& r, TemplatePolicy& tp) {
               san({SanKind::email})(p, r, tp);
               r.email = "\xC3\xA5sa@contoso.example";
             },
             "", "", "policy.email_invalid"},
        Case{"upn_syntax",
             [](Profile& p, RequestAttributes& r, TemplatePolicy& tp) {
               san({SanKind::upn})(p, r, tp);
               r.upn = "a@b@contoso.example";
             },
             "", "", "policy.upn_invalid"},
        Case{"email_domain_not_allowed",
             [](Profile& p, RequestAttributes& r, TemplatePolicy& tp) {
               san({SanKind::email})(p, r, tp);
               p.allowed_email_domains = {"contoso.example"};
               r.email = "user@fabrikam.example";
             },
             "", "", "policy.email_domain_not_allowed"},
        Case{"domain_case_insensitive",
             [](Profile& p, RequestAttributes& r, TemplatePolicy& tp) {
               san({SanKind::upn})(p, r, tp);
               p.allowed_upn_domains = {"Contoso.Example"};
             },
             "CN = IWUser0", "othername:UPN:IWUser0@contoso.example", ""},
        // --- the CA template (§3, §5)
        Case{"attribute_not_supported",
             [](Profile& p, RequestAttributes& r, TemplatePolicy& tp) {
               san({SanKind::upn})(p, r, tp);
               tp.supported = {"subject.cn", "san.email"};
             },
             "", "", "policy.attribute_not_supported"},
        Case{"attribute_fixed_by_template",
             [](Profile& p, RequestAttributes& r, TemplatePolicy& tp) {
               san({SanKind::upn})(p, r, tp);
               tp.supported = {"subject.cn"};
               tp.fixed = {"san.upn"};
             },
             "CN = IWUser0", "othername:UPN:IWUser0@contoso.example", ""},
        Case{"othername_wildcard_of_a_microsoft_template",
             [](Profile& p, RequestAttributes&, TemplatePolicy& tp) {
               p.san.push_back(guid(ValueEncoding::hex));
               tp.supported = {"subject.cn", "subject.email", "san.email", "san.upn", "san.othername:*"};
             },
             "CN = IWUser0", "othername:1.3.6.1.4.1.311.25.1::0410B8BA112233445566778899AABBCCDDEE", ""},
        Case{"subject_built_from_directory",
             [](Profile&, RequestAttributes&, TemplatePolicy& tp) { tp.supported = {"subject.from_directory"}; }, "",
             "", "policy.attribute_not_supported"},
        Case{"key_type_mismatch", [](Profile&, RequestAttributes&, TemplatePolicy& tp) { tp.key_algorithm = "EC"; }, "",
             "", "policy.key_type_mismatch"},
        Case{"upn_newline_injection",
             [](Profile& p, RequestAttributes& r, TemplatePolicy& tp) {
               san({SanKind::upn})(p, r, tp);
               r.upn = "IWUser0@contoso.example\nDNS:evil.example";
             },
             "", "", "policy.character_not_allowed"},
        Case{"email_nul_injection",
             [](Profile& p, RequestAttributes& r, TemplatePolicy& tp) {
               san({SanKind::email})(p, r, tp);
               r.email = std::string("a@contoso.example\0evil", 23);
             },
             "", "", "policy.character_not_allowed"},
        Case{"guid_injection",
             [](Profile& p, RequestAttributes& r, TemplatePolicy&) {
               p.san.push_back(guid(ValueEncoding::hex));
               r.object_guid = "0410\nb8ba";
             },
             "", "", "policy.othername_encoding_invalid"},
        Case{"key_too_small", [](Profile&, RequestAttributes&, TemplatePolicy& tp) { tp.min_key_bits = 3072; }, "", "",
             "policy.key_too_small"},
        Case{"upn_underscore_breaks_mail_names",
             [](Profile&, RequestAttributes& r, TemplatePolicy& tp) {
               r.upn = "global_admin@contoso.example";
               tp.fixed = {"subject.mail_firstname", "subject.mail_lastname"};
             },
             "", "", "policy.upn_breaks_mail_names"},
        Case{"upn_as_cn_is_the_remedy",
             [](Profile& p, RequestAttributes& r, TemplatePolicy& tp) {
               r.upn = "global_admin@contoso.example";
               tp.fixed = {"subject.mail_firstname", "subject.mail_lastname"};
               p.cn_from = "upn";
             },
             "CN = global_admin@contoso.example", "", ""}),
    [](const auto& param_info) { return std::string(param_info.param.name); });

TEST(Rules, InjectedSeparatorsStayInsideOneCn) {
  RequestAttributes r = iwuser();
  r.common_name = "IWUser0,O=Evil+OU=x";
  auto s = evaluate(base(), r);
  ASSERT_TRUE(s);
  ASSERT_EQ(X509_NAME_entry_count(s->subject.get()), 1);
  const ASN1_STRING* v = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(s->subject.get(), 0));
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(v)), ASN1_STRING_length(v)),
            "IWUser0,O=Evil+OU=x");
}

TEST(Rules, AttributeNotSupportedSaysWhich) {
  Profile p = base();
  p.san.push_back({SanKind::upn, {}, {}, {}});
  TemplatePolicy t;
  t.supported = {"subject.cn"};
  auto r = evaluate(p, iwuser(), t);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what.find("attribute san.upn is not in the template's supported attributes"), std::string::npos)
      << r.error().what;
}

TEST(Rules, UpnRemedyRecommendsCnUpn) {
  Profile p = base();
  RequestAttributes r = iwuser();
  r.upn = "global_admin@contoso.example";
  TemplatePolicy t;
  t.fixed = {"subject.mail_firstname"};
  auto e = evaluate(p, r, t);
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().remedy.find("CN=<upn>"), std::string::npos) << e.error().remedy;
}

TEST(Rules, EmptySanNamesTheCaError) {
  Profile p = base();
  p.san.push_back({SanKind::email, {}, {}, {}});
  RequestAttributes r;
  r.common_name = "IWUser0";
  auto e = evaluate(p, r);
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().remedy.find("0x80070057"), std::string::npos) << e.error().remedy;
}

TEST(Rules, SpecCarriesKeyValidityAndEkus) {
  Profile p = base();
  p.key_type = KeyType::ec_p256;
  p.validity_days = 90;
  p.ekus = {"clientAuth", "1.3.6.1.5.5.7.3.4"};
  auto s = evaluate(p, iwuser());
  ASSERT_TRUE(s);
  EXPECT_EQ(s->key_type, KeyType::ec_p256);
  EXPECT_EQ(s->validity_days, 90u);
  EXPECT_EQ(s->ekus, (std::vector<std::string>{"1.3.6.1.5.5.7.3.2", "1.3.6.1.5.5.7.3.4"}));
  EXPECT_EQ(X509_NAME_entry_count(s->subject.get()), 1);
}

TEST(RequestJson, ParsesVersion1) {
  auto r = parse_request_json(
      R"({"version":1,"id":"r-1","attributes":{"upn":"IWUser0@contoso.example","email":null,"common_name":"IWUser0","device_id":""}})");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->upn, "IWUser0@contoso.example");
  EXPECT_FALSE(r->email);
  EXPECT_FALSE(r->device_id);  // empty counts as absent
}

TEST(RequestJson, RefusesOverlongValues) {
  auto r = parse_request_json(R"({"version":1,"attributes":{"common_name":")" + std::string(5000, 'x') + R"("}})");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what.find("longer than 4096"), std::string::npos);
}

TEST(RequestJson, RefusesMalformed) {
  for (const char* bad : {"[]", "{", R"({"attributes":{}})", R"({"version":3,"attributes":{}})",
                          R"({"version":1,"recipient":"sha256:00","attributes":{}})",
                          R"({"version":1,"attributes":{"shoe_size":"42"}})", R"({"version":1,"attributes":{"upn":7}})",
                          R"({"version":1,"attributes":{},"extra":1})"}) {
    auto r = parse_request_json(bad);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_EQ(r.error().code, "policy.request_invalid") << bad;
    }
  }
}

TEST(TemplatePolicyJson, Parses) {
  auto t = parse_template_policy_json(R"({"supported":["subject.cn","san.email"],"fixed":["subject.mail_firstname"],"min_key_bits":2048})");
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->supported.contains("san.email"));
  EXPECT_TRUE(t->fixed.contains("subject.mail_firstname"));
  EXPECT_EQ(t->min_key_bits, 2048u);
}

TEST(ProfileConfig, ParsesAndNamesErrors) {
  const std::string good = R"([profile.users]
ca = "digicert"
template = "2.16.840.1.113733.1.16.1.2.3.1.1.61904612"
subject = "cn-with-email"
san = ["email", "upn"]
ekus = ["clientAuth"]
[[profile.users.othername]]
oid = "1.3.6.1.4.1.311.25.1"
attribute = "object_guid"
encoding = "base64"
)";
  auto ps = parse_profiles(good, "cc.toml");
  ASSERT_TRUE(ps) << ps.error().to_string();
  ASSERT_EQ(ps->size(), 1u);
  EXPECT_EQ((*ps)[0].subject, SubjectForm::cn_with_email);
  ASSERT_EQ((*ps)[0].san.size(), 3u);
  EXPECT_EQ((*ps)[0].san[2].encoding, ValueEncoding::base64);

  auto form = parse_profiles("[profile.x]\nca = \"c\"\ntemplate = \"t\"\nsubject = \"uid\"\n", "cc.toml");
  ASSERT_FALSE(form);
  EXPECT_NE(form.error().what.find("cc.toml:4:11: key profile.x.subject"), std::string::npos) << form.error().what;
  auto enc = parse_profiles("[profile.x]\nca = \"c\"\ntemplate = \"t\"\n[[profile.x.othername]]\noid = \"1.2.3\"\n"
                            "attribute = \"object_guid\"\nencoding = \"guess\"\n",
                            "cc.toml");
  ASSERT_FALSE(enc);
  EXPECT_NE(enc.error().what.find("key profile.x.othername.encoding"), std::string::npos) << enc.error().what;
  auto oid = parse_profiles("[profile.x]\nca = \"c\"\ntemplate = \"t\"\n[[profile.x.othername]]\noid = \"guid\"\n"
                            "attribute = \"object_guid\"\nencoding = \"hex\"\n",
                            "cc.toml");
  ASSERT_FALSE(oid);
  EXPECT_EQ(oid.error().code, "policy.profile_invalid");

  EXPECT_FALSE((*ps)[0].cn_from);  // unset: the Subject form's default source

  auto as_email = parse_profiles("[profile.x]\nca = \"c\"\ntemplate = \"t\"\nsubject = \"cn-as-email\"\n"
                                 "cn_from = \"upn\"\n",
                                 "cc.toml");
  ASSERT_TRUE(as_email) << as_email.error().to_string();
  EXPECT_EQ((*as_email)[0].cn_from, "upn");
  auto guid_cn = parse_profiles("[profile.x]\nca = \"c\"\ntemplate = \"t\"\nsubject = \"cn-as-email\"\n"
                                "cn_from = \"object_guid\"\n",
                                "cc.toml");
  ASSERT_FALSE(guid_cn);
  EXPECT_EQ(guid_cn.error().code, "policy.profile_invalid");
  EXPECT_NE(guid_cn.error().what.find("cn_from \"object_guid\" cannot give the CN of subject cn-as-email"),
            std::string::npos)
      << guid_cn.error().what;

  EXPECT_EQ((*ps)[0].pfx_format, "aes256-sha256");  // the default
  auto legacy = parse_profiles("[profile.x]\nca = \"c\"\ntemplate = \"t\"\npfx_format = \"3des-sha1\"\n", "cc.toml");
  ASSERT_TRUE(legacy) << legacy.error().to_string();
  EXPECT_EQ((*legacy)[0].pfx_format, "3des-sha1");
  auto rc2 = parse_profiles("[profile.x]\nca = \"c\"\ntemplate = \"t\"\npfx_format = \"rc2-40\"\n", "cc.toml");
  ASSERT_FALSE(rc2);
  EXPECT_NE(rc2.error().what.find("key profile.x.pfx_format"), std::string::npos) << rc2.error().what;
}

TEST(RequestJson, Version2NamesIdProfileAndRecipient) {
  auto d = parse_request_document(
      R"({"version":2,"id":"r-7","profile":"users","recipient":"sha256:ab","attributes":{"upn":"a@b.example"}})");
  ASSERT_TRUE(d) << d.error().to_string();
  EXPECT_EQ(d->version, 2);
  EXPECT_EQ(d->id, "r-7");
  EXPECT_EQ(d->profile, "users");
  EXPECT_EQ(d->recipient, "sha256:ab");
  EXPECT_EQ(d->attributes.upn, "a@b.example");
  auto v1 = parse_request_document(R"({"version":1,"attributes":{}})");
  ASSERT_TRUE(v1);
  EXPECT_FALSE(v1->recipient);
  EXPECT_FALSE(parse_request_document(R"({"version":2,"recipient":7,"attributes":{}})"));
}

}  // namespace
}  // namespace certcustody::policy
