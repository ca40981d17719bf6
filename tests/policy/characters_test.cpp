// Which characters may reach a certificate: classes of code points (Unicode
// General_Category Cc, Cf, Zl, Zp, Co, Cs, noncharacters, default-ignorable
// invisibles) are refused in every text value of the Subject and the SAN,
// with an error naming the code point and the attribute.
#include <openssl/asn1.h>
#include <unicode/uchar.h>

#include <gtest/gtest.h>

#include <cstdio>

#include "characters.h"
#include "config/profiles.h"
#include "policy.h"

namespace certcustody::policy {
namespace {

std::string utf8(char32_t cp) {
  unsigned char buf[6];
  int n = UTF8_putc(buf, sizeof buf, cp);
  if (n <= 0) ADD_FAILURE() << "cannot encode " << static_cast<unsigned long>(cp);
  return std::string(reinterpret_cast<const char*>(buf), n > 0 ? static_cast<std::size_t>(n) : 0);
}

std::string u_plus(char32_t cp) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "U+%04lX", static_cast<unsigned long>(cp));
  return buf;
}

Profile plain() {
  Profile p;
  p.name = "users";
  return p;
}

RequestAttributes with_cn(const std::string& cn) {
  RequestAttributes r;
  r.common_name = cn;
  r.upn = "IWUser0@contoso.example";
  r.email = "IWUser0@contoso.example";
  return r;
}

// One sample per edge of every refused range, and a few from the middle.
const char32_t kRefused[] = {
    0x0000, 0x0009, 0x001F,                       // C0 controls (Cc)
    0x007F,                                       // DEL (Cc)
    0x0080, 0x0085, 0x009B, 0x009F,               // C1 controls (Cc)
    0x00AD,                                       // SOFT HYPHEN (Cf)
    0x034F,                                       // COMBINING GRAPHEME JOINER (default ignorable)
    0x0600, 0x0605, 0x061C, 0x06DD, 0x070F,       // Arabic/Syriac format characters, ALM (Cf)
    0x0890, 0x0891, 0x08E2,                       // (Cf)
    0x115F, 0x1160, 0x3164, 0xFFA0,               // Hangul fillers (default ignorable)
    0x17B4, 0x17B5, 0x180B, 0x180E, 0x180F,       // Khmer, Mongolian (Cf / default ignorable)
    0x200B, 0x200C, 0x200D, 0x200E, 0x200F,       // zero width space, ZWNJ, ZWJ, LRM, RLM (Cf)
    0x2028, 0x2029,                               // line and paragraph separators (Zl, Zp)
    0x202A, 0x202B, 0x202C, 0x202D, 0x202E,       // bidi embeddings and overrides (Cf)
    0x2060, 0x2064, 0x2065,                       // word joiner, invisible operators
    0x2066, 0x2067, 0x2068, 0x2069,               // bidi isolates (Cf)
    0x206A, 0x206F,                               // deprecated format characters (Cf)
    0xE000, 0xF8FF,                               // private use (Co)
    0xFDD0, 0xFDEF, 0xFFFE, 0xFFFF,               // noncharacters
    0xFE00, 0xFE0F,                               // variation selectors
    0xFEFF,                                       // ZERO WIDTH NO-BREAK SPACE / BOM (Cf)
    0xFFF0, 0xFFF9, 0xFFFB,                       // interlinear annotation (Cf)
    0x110BD, 0x110CD, 0x13430, 0x1343F, 0x1BCA0, 0x1BCA3, 0x1D173, 0x1D17A,  // (Cf)
    0x1FFFE, 0x1FFFF, 0x10FFFF,                   // noncharacters of other planes
    0xE0000, 0xE0001, 0xE0020, 0xE007F, 0xE0100, 0xE01EF, 0xE0FFF,  // tags, variation selectors
    0xF0000, 0x10FFFD,                            // supplementary private use (Co)
};

TEST(PolicyCharacters, EveryRefusedClassIsNamedInTheCn) {
  for (char32_t cp : kRefused) {
    auto s = evaluate(plain(), with_cn("IW" + utf8(cp) + "User"));
    ASSERT_FALSE(s) << u_plus(cp) << " passed into " << subject_text(s->subject.get());
    EXPECT_EQ(s.error().code, "policy.character_not_allowed") << u_plus(cp) << ": " << s.error().to_string();
    EXPECT_NE(s.error().what.find(u_plus(cp)), std::string::npos) << s.error().what;
    EXPECT_NE(s.error().what.find("common_name"), std::string::npos) << s.error().what;
    EXPECT_FALSE(s.error().remedy.empty());
  }
}

TEST(PolicyCharacters, BidiAndZeroWidthAreNamedAsSuch) {
  auto bidi = evaluate(plain(), with_cn("IWUser0" + utf8(0x202E) + "txt.exe"));
  ASSERT_FALSE(bidi);
  EXPECT_NE(bidi.error().what.find("bidirectional"), std::string::npos) << bidi.error().what;
  auto zw = evaluate(plain(), with_cn("IW" + utf8(0x200B) + "User0"));
  ASSERT_FALSE(zw);
  EXPECT_NE(zw.error().what.find("zero-width"), std::string::npos) << zw.error().what;
}

TEST(PolicyCharacters, InvalidUtf8IsNamed) {
  for (const std::string& bad : {std::string("\xC0\xAF"), std::string("\xE0\x80\xAF"), std::string("\xED\xA0\x80"),
                                std::string("\xED\xBF\xBF"), std::string("\xF4\x90\x80\x80"), std::string("\xE2\x80"),
                                std::string("\x80"), std::string("\xFE"), std::string("\xF8\x88\x80\x80\x80")}) {
    auto s = evaluate(plain(), with_cn("IW" + bad + "User"));
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, "policy.value_not_utf8") << s.error().to_string();
    EXPECT_NE(s.error().what.find("common_name"), std::string::npos) << s.error().what;
  }
}

TEST(PolicyCharacters, NamesAndScriptsOfTheWorldPass) {
  for (const std::string& good :
       {std::string("\xC3\x85sa \xC3\x96" "berg"), std::string("\xE5\xB1\xB1\xE7\x94\xB0\xE5\xA4\xAA\xE9\x83\x8E"),
        std::string("\xD9\x85\xD8\xAD\xD9\x85\xD8\xAF"), std::string("\xE0\xA4\xA6\xE0\xA5\x87\xE0\xA4\xB5"),
        std::string("e\xCC\x81mile"), std::string("Jos\xC3\xA9\xC2\xA0Garc\xC3\xAD" "a"),
        std::string("\xF0\x9F\x98\x80 smile"), std::string("\xEF\xBF\xBD")}) {
    auto s = evaluate(plain(), with_cn(good));
    ASSERT_TRUE(s) << good << ": " << s.error().to_string();
  }
}

// The same check on every value that reaches the Subject or the SAN, not
// only the CN: the e-mail of cn-with-email, the e-mail and UPN SANs, a CN in
// e-mail form, and the text inside an otherName value.
TEST(PolicyCharacters, EveryTextValueIsChecked) {
  const std::string rlo = utf8(0x202E), c1 = utf8(0x0085);
  {
    Profile p = plain();
    p.subject = SubjectForm::cn_with_email;
    RequestAttributes r = with_cn("IWUser0");
    r.email = "IWUser0" + rlo + "@contoso.example";
    auto s = evaluate(p, r);
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, "policy.character_not_allowed") << s.error().to_string();
    EXPECT_NE(s.error().what.find("U+202E"), std::string::npos) << s.error().what;
    EXPECT_NE(s.error().what.find("email"), std::string::npos) << s.error().what;
  }
  {
    Profile p = plain();
    p.san.push_back({SanKind::upn, {}, {}, {}});
    RequestAttributes r = with_cn("IWUser0");
    r.upn = "IWUser0@contoso.example" + c1;
    auto s = evaluate(p, r);
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, "policy.character_not_allowed") << s.error().to_string();
    EXPECT_NE(s.error().what.find("upn"), std::string::npos) << s.error().what;
  }
  {
    Profile p = plain();
    p.san.push_back({SanKind::email, {}, {}, {}});
    RequestAttributes r = with_cn("IWUser0");
    r.email = "IWUser0@contoso.example" + utf8(0x2028);
    auto s = evaluate(p, r);
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, "policy.character_not_allowed") << s.error().to_string();
  }
  {
    Profile p = plain();
    p.subject = SubjectForm::cn_as_email;
    RequestAttributes r = with_cn("IWUser0");
    r.email = utf8(0xFEFF) + "IWUser0@contoso.example";
    auto s = evaluate(p, r);
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, "policy.character_not_allowed") << s.error().to_string();
  }
}

// The table against ICU (Unicode 15.0 in Debian 12's ICU 72) for every code
// point: refused exactly when ICU puts it in Cc, Cf, Zl, Zp, Co or Cs, calls
// it a noncharacter or a Default_Ignorable_Code_Point.
TEST(PolicyCharacters, TheTableIsUnicodesClassesForEveryCodePoint) {
  ASSERT_STREQ(U_UNICODE_VERSION, "15.0") << "the table cites Unicode 15.0; check it against this version";
  int wrong = 0;
  for (UChar32 c = 0; c <= 0x10FFFF; ++c) {
    const int8_t t = u_charType(c);
    const bool expect = t == U_CONTROL_CHAR || t == U_FORMAT_CHAR || t == U_LINE_SEPARATOR ||
                        t == U_PARAGRAPH_SEPARATOR || t == U_PRIVATE_USE_CHAR || t == U_SURROGATE ||
                        u_hasBinaryProperty(c, UCHAR_NONCHARACTER_CODE_POINT) ||
                        u_hasBinaryProperty(c, UCHAR_DEFAULT_IGNORABLE_CODE_POINT);
    if (expect != (refused_class(static_cast<char32_t>(c)) != nullptr) && ++wrong <= 10)
      ADD_FAILURE() << code_point_text(static_cast<char32_t>(c)) << (expect ? " should be refused" : " should pass");
  }
  EXPECT_EQ(wrong, 0);
}

TEST(PolicyCharacters, AProfileMayAllowTheDocumentedSet) {
  const std::string persian = "\xD9\x85\xDB\x8C" + utf8(0x200C) + "\xD8\xAE\xD9\x88\xD8\xA7\xD9\x87\xD9\x85";
  ASSERT_FALSE(evaluate(plain(), with_cn(persian)));
  Profile p = plain();
  p.allowed_code_points = {0x200C};
  auto s = evaluate(p, with_cn(persian));
  ASSERT_TRUE(s) << s.error().to_string();
  auto zwj = evaluate(p, with_cn("IW" + utf8(0x200D) + "User"));  // only what is listed
  ASSERT_FALSE(zwj);
  EXPECT_NE(zwj.error().remedy.find("allowed_code_points"), std::string::npos) << zwj.error().remedy;
  auto rlo = evaluate(p, with_cn("IW" + utf8(0x202E) + "User"));
  ASSERT_FALSE(rlo);
  EXPECT_NE(rlo.error().remedy.find("no profile can allow it"), std::string::npos) << rlo.error().remedy;
  p.allowed_code_points = {0x202E};  // built in code: refused by the profile check
  EXPECT_FALSE(validate_profile(p));
}

TEST(PolicyCharacters, AllowedCodePointsInTheConfiguration) {
  const std::string head = "[profile.x]\nca = \"c\"\ntemplate = \"t\"\n";
  auto ok = parse_profiles(head + "allowed_code_points = [\"U+200C\", \"U+200D\", \"U+FE00..U+FE0F\"]\n", "cc.toml");
  ASSERT_TRUE(ok) << ok.error().to_string();
  EXPECT_EQ((*ok)[0].allowed_code_points.size(), 18u);
  EXPECT_TRUE((*ok)[0].allowed_code_points.contains(0xFE0F));
  for (const char* bad : {"U+202E", "U+2066..U+2069", "U+200C..U+2010", "U+0041", "200C", "U+200", "U+110000",
                          "U+200D..U+200C", "U+200C..", "u+200C"}) {
    auto e = parse_profiles(head + "allowed_code_points = [\"" + bad + "\"]\n", "cc.toml");
    ASSERT_FALSE(e) << bad;
    EXPECT_EQ(e.error().code, "policy.profile_invalid") << bad;
    EXPECT_NE(e.error().what.find("cc.toml:4:"), std::string::npos) << e.error().what;
    EXPECT_NE(e.error().what.find(bad), std::string::npos) << e.error().what;
  }
}

// The template policy's attribute names end up in errors and logs.
TEST(PolicyCharacters, TemplateAttributeNamesAreChecked) {
  auto t = parse_template_policy_json("{\"supported\":[\"subject.cn\\u202e\"]}");
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code, "policy.character_not_allowed") << t.error().to_string();
  EXPECT_NE(t.error().what.find("supported"), std::string::npos) << t.error().what;
}

}  // namespace
}  // namespace certcustody::policy
