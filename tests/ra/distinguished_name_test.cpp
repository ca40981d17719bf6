#include "ra/distinguished_name.h"

#include <gtest/gtest.h>

namespace certcustody {
namespace {

std::string rt(const std::string& s) {
  auto n = parse_rfc4514_name(s);
  if (!n) return "ERR " + n.error().code;
  return name_to_string(n->get());
}

TEST(DistinguishedName, RoundTripsRfc4514) {
  EXPECT_EQ(rt("CN=certcustody RA"), "CN=certcustody RA");
  EXPECT_EQ(rt("CN=certcustody RA,O=Example,C=SE"), "CN=certcustody RA,O=Example,C=SE");
  EXPECT_EQ(rt("CN=ra, O=Example"), "CN=ra,O=Example");
}

TEST(DistinguishedName, EscapedCommaCannotAddAnRdn) {
  auto n = parse_rfc4514_name("CN=IWUser0\\,O=Evil");
  ASSERT_TRUE(n);
  EXPECT_EQ(X509_NAME_entry_count(n->get()), 1);
  EXPECT_EQ(name_to_string(n->get()), "CN=IWUser0\\,O=Evil");
  EXPECT_EQ(rt("CN=a\\2Cb"), "CN=a\\,b");
}

TEST(DistinguishedName, Refusals) {
  EXPECT_EQ(rt(""), "ERR ra.subject_invalid");
  EXPECT_EQ(rt("CN"), "ERR ra.subject_invalid");
  EXPECT_EQ(rt("CN=a+O=b"), "ERR ra.subject_invalid");
  EXPECT_EQ(rt("CN="), "ERR ra.subject_invalid");
  EXPECT_EQ(rt("XX=a"), "ERR ra.subject_invalid");
  EXPECT_EQ(rt(std::string("CN=a\x01") + "b"), "ERR ra.subject_invalid");
  EXPECT_EQ(rt("CN=a\\"), "ERR ra.subject_invalid");
  EXPECT_EQ(rt("CN=" + std::string(65, 'x')), "ERR ra.subject_invalid");  // ub-common-name 64
}

}  // namespace
}  // namespace certcustody
