#include "custody/token_uri.h"

#include <gtest/gtest.h>

#include <cstring>

namespace certcustody {
namespace {

CK_TOKEN_INFO token(const char* label, const char* serial) {
  CK_TOKEN_INFO t{};
  std::memset(t.label, ' ', sizeof t.label);
  std::memcpy(t.label, label, std::strlen(label));
  std::memset(t.serialNumber, ' ', sizeof t.serialNumber);
  std::memcpy(t.serialNumber, serial, std::strlen(serial));
  std::memset(t.manufacturerID, ' ', sizeof t.manufacturerID);
  std::memset(t.model, ' ', sizeof t.model);
  return t;
}

TEST(TokenUri, MatchesByLabelAndSerial) {
  auto u = TokenUri::parse("pkcs11:token=cert%20custody;serial=ABC123");
  ASSERT_TRUE(u) << u.error().to_string();
  CK_SLOT_INFO si{};
  EXPECT_TRUE(u->matches(1, si, token("cert custody", "ABC123")));
  EXPECT_FALSE(u->matches(1, si, token("cert custody", "XYZ")));
  EXPECT_FALSE(u->matches(1, si, token("other", "ABC123")));
}

TEST(TokenUri, SlotIdSelects) {
  auto u = TokenUri::parse("pkcs11:slot-id=7");
  ASSERT_TRUE(u);
  CK_SLOT_INFO si{};
  EXPECT_TRUE(u->matches(7, si, token("x", "1")));
  EXPECT_FALSE(u->matches(8, si, token("x", "1")));
}

TEST(TokenUri, ObjectSelectors) {
  auto u = TokenUri::parse("pkcs11:token=t;object=ra;id=%01%02;type=private");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->object_label(), "ra");
  EXPECT_EQ(u->object_id(), (std::vector<unsigned char>{1, 2}));
  EXPECT_EQ(u->object_class(), static_cast<CK_OBJECT_CLASS>(CKO_PRIVATE_KEY));
}

TEST(TokenUri, NarrowsToAnObject) {
  auto u = TokenUri::parse("pkcs11:token=cert%20custody");
  ASSERT_TRUE(u);
  std::string o = u->object_uri("ra key;1", CKO_PRIVATE_KEY);
  auto back = TokenUri::parse(o);
  ASSERT_TRUE(back) << o;
  EXPECT_EQ(back->object_label(), "ra key;1") << o;
  EXPECT_EQ(back->object_class(), static_cast<CK_OBJECT_CLASS>(CKO_PRIVATE_KEY)) << o;
  EXPECT_NE(o.find("token=cert%20custody"), std::string::npos) << o;
}

TEST(TokenUri, RefusesMalformed) {
  auto bad = TokenUri::parse("pkcs12:token=x");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, "custody.token_uri_invalid");
  EXPECT_FALSE(TokenUri::parse("pkcs11:token=%zz"));
}

TEST(TokenUri, RefusesPinInUri) {
  auto u = TokenUri::parse("pkcs11:token=t?pin-value=123456");
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().code, "custody.pin_in_uri");
  EXPECT_EQ(u.error().what.find("123456"), std::string::npos);  // the PIN is not echoed
}

}  // namespace
}  // namespace certcustody
