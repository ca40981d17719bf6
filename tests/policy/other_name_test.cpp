// otherName values: canonical hex or base64 of exactly one DER element, put
// into the certificate byte for byte. BER (indefinite or non-minimal
// lengths, constructed strings, non-canonical contents) is refused by name,
// at any depth, never re-encoded.
#include <gtest/gtest.h>

#include "policy.h"

namespace certcustody::policy {
namespace {

const std::string kOid = "1.3.6.1.4.1.311.25.1";
const std::string kGuid = "b8 ba 11 22 33 44 55 66 77 88 99 aa bb cc dd ee";

Result<RequestSpec> with_value(const std::string& value, ValueEncoding enc) {
  Profile p;
  p.name = "devices";
  p.san.push_back({SanKind::other_name, kOid, "object_guid", enc});
  RequestAttributes r;
  r.common_name = "IWUser0";
  r.object_guid = value;
  return evaluate(p, r);
}

struct Ber {
  const char* name;
  std::string hex;
  const char* named;  // a word the error must carry
};

TEST(PolicyOtherName, BerFormsAreRefusedByName) {
  for (const Ber& b : std::initializer_list<Ber>{
           {"indefinite constructed OCTET STRING", "24 80 04 10 " + kGuid + " 00 00", "indefinite"},
           {"indefinite SEQUENCE", "30 80 04 10 " + kGuid + " 00 00", "indefinite"},
           {"indefinite [0]", "a0 80 04 10 " + kGuid + " 00 00", "indefinite"},
           {"long form for a short length", "04 81 10 " + kGuid, "length"},
           {"length with a leading zero", "04 82 00 10 " + kGuid, "length"},
           {"non-minimal length inside a SEQUENCE", "30 13 04 81 10 " + kGuid, "length"},
           {"constructed OCTET STRING", "24 12 04 10 " + kGuid, "constructed"},
           {"constructed UTF8String in a SEQUENCE", "30 07 2c 05 0c 03 61 62 63", "constructed"},
           {"high-tag form for a low tag", "1f 04 10 " + kGuid, "tag"},
           {"BOOLEAN true not FF", "01 01 01", "BOOLEAN"},
           {"BOOLEAN inside a SEQUENCE", "30 03 01 01 05", "BOOLEAN"},
           {"BIT STRING with set unused bits", "03 02 01 01", "BIT STRING"},
           {"primitive SEQUENCE", "10 00", "SEQUENCE"},
       }) {
    auto s = with_value(b.hex, ValueEncoding::hex);
    ASSERT_FALSE(s) << b.name << " passed: " << san_text(s->san.get());
    EXPECT_EQ(s.error().code, "policy.othername_not_der") << b.name << ": " << s.error().to_string();
    EXPECT_NE(s.error().what.find(b.named), std::string::npos) << b.name << ": " << s.error().what;
    EXPECT_NE(s.error().what.find("object_guid"), std::string::npos) << s.error().what;
  }
}

TEST(PolicyOtherName, NotExactlyOneElementIsRefused) {
  for (const std::string& hex : {"04 10 " + kGuid + " 00", "04 10 " + kGuid + " 04 00", std::string("04 05 41"),
                                 std::string("00 00"), std::string("30 03 04 05 41")}) {
    auto s = with_value(hex, ValueEncoding::hex);
    ASSERT_FALSE(s) << hex << " passed: " << san_text(s->san.get());
    EXPECT_TRUE(s.error().code == "policy.othername_value_invalid" || s.error().code == "policy.othername_not_der")
        << hex << ": " << s.error().to_string();
  }
}

TEST(PolicyOtherName, DerIsPutInByteForByte) {
  for (const std::string& hex : {"04 10 " + kGuid, std::string("30 08 04 01 41 01 01 ff 05 00"),
                                 std::string("a0 05 0c 03 61 62 63"), std::string("02 02 00 80"),
                                 std::string("03 02 04 f0"), std::string("80 03 01 02 03")}) {
    auto s = with_value(hex, ValueEncoding::hex);
    ASSERT_TRUE(s) << hex << ": " << s.error().to_string();
    std::string expect;
    for (char c : hex)
      if (c != ' ') expect.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
    EXPECT_EQ(san_text(s->san.get()), "othername:" + kOid + "::" + expect);
  }
}

TEST(PolicyOtherName, Base64MustBeCanonical) {
  // 17 bytes (one '=') and 16 bytes ("=="), canonical and with pad bits set.
  ASSERT_TRUE(with_value("BA+4uhEiM0RVZneImaq7zN0=", ValueEncoding::base64));
  ASSERT_TRUE(with_value("BA64uhEiM0RVZneImaq7zA==", ValueEncoding::base64));
  for (const char* bad : {"BA+4uhEiM0RVZneImaq7zN1=",   // non-zero pad bits
                          "BA64uhEiM0RVZneImaq7zB==",   // non-zero pad bits
                          "BA64uhEiM0RVZneImaq7zP==",
                          "BA+4uhEiM0RVZneImaq7zN0",    // padding missing
                          "BA64uhEiM0RVZneImaq7zA=",
                          "BA64uhEiM0RVZneImaq7zA===",  // extra padding
                          "BA64uhEiM0RVZneImaq7zA==\n", "BA64uhEi M0RVZneImaq7zA==", " BA64uhEiM0RVZneImaq7zA==",
                          "BA-4uhEiM0RVZneImaq7zN0=",   // base64url alphabet
                          "BA_4uhEiM0RVZneImaq7zN0=", "BA+4uhEiM0RVZneImaq7zN0=====", "BA=4uhEiM0RVZneImaq7zN0=",
                          "=", "===="}) {
    auto s = with_value(bad, ValueEncoding::base64);
    ASSERT_FALSE(s) << "\"" << bad << "\" passed: " << san_text(s->san.get());
    EXPECT_EQ(s.error().code, "policy.othername_encoding_invalid") << bad << ": " << s.error().to_string();
  }
}

TEST(PolicyOtherName, HexMustBeCanonical) {
  ASSERT_TRUE(with_value("0410b8ba112233445566778899aabbccddee", ValueEncoding::hex));
  ASSERT_TRUE(with_value("0410B8BA112233445566778899AABBCCDDEE", ValueEncoding::hex));
  ASSERT_TRUE(with_value("04 10 " + kGuid, ValueEncoding::hex));  // the reference's byte-pair form
  for (const std::string& bad : std::initializer_list<std::string>{
           "04 10 " + kGuid + " ", " 04 10 " + kGuid, "04  10 " + kGuid, "0410 " + kGuid, "0 410" + kGuid,
        "04:10:b8:ba:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee", "0x0410b8ba112233445566778899aabbccddee",
        "04\t10 " + kGuid, "0410b8ba112233445566778899aabbccddeeg0", "0410b8ba112233445566778899aabbccdde",
        std::string("")}) {
    auto s = with_value(bad, ValueEncoding::hex);
    ASSERT_FALSE(s) << "\"" << bad << "\" passed: " << san_text(s->san.get());
    EXPECT_EQ(s.error().code, "policy.othername_encoding_invalid") << bad << ": " << s.error().to_string();
  }
}

// A UTF8String / BMPString inside an otherName is text in the SAN as well,
// at any depth.
TEST(PolicyOtherName, TextInsideIsHeldToTheCharacterRules) {
  struct Sample {
    const char* hex;
    const char* code;
  };
  for (const Sample& c : {Sample{"0c 0a 61 64 6d 69 6e e2 80 ae 67 6e", "policy.character_not_allowed"},  // UTF8String, RLO
                          Sample{"1e 04 00 41 20 2d", "policy.character_not_allowed"},                      // BMPString, LRO
                          Sample{"16 03 41 0a 42", "policy.character_not_allowed"},                         // IA5String, LF
                          Sample{"30 07 0c 05 61 c2 85 62 63", "policy.character_not_allowed"},             // nested, NEL
                          Sample{"0c 03 61 c0 af", "policy.value_not_utf8"}}) {                             // overlong
    auto s = with_value(c.hex, ValueEncoding::hex);
    ASSERT_FALSE(s) << c.hex << " passed: " << san_text(s->san.get());
    EXPECT_EQ(s.error().code, c.code) << c.hex << ": " << s.error().to_string();
    EXPECT_NE(s.error().what.find("object_guid"), std::string::npos) << s.error().what;
  }
  auto s = with_value("0c 05 c3 85 73 61 21", ValueEncoding::hex);  // UTF8String "Åsa!"
  ASSERT_TRUE(s) << s.error().to_string();
}

}  // namespace
}  // namespace certcustody::policy
