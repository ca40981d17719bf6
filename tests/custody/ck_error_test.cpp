#include "custody/ck_error.h"

#include <gtest/gtest.h>

namespace certcustody {
namespace {

CkContext ctx() { return CkContext{"C_Login", "pkcs11:token=prod", "PIN file /etc/certcustody/user.pin", "ra"}; }

TEST(CkError, NamesCodes) {
  EXPECT_EQ(ck_rv_name(CKR_PIN_INCORRECT), "CKR_PIN_INCORRECT");
  EXPECT_EQ(ck_rv_name(CKR_DEVICE_REMOVED), "CKR_DEVICE_REMOVED");
  EXPECT_EQ(ck_rv_name(0x80001234UL), "CKR_0x80001234");
}

TEST(CkError, PinIncorrectNamesThePinFile) {
  Error e = ck_error(CKR_PIN_INCORRECT, ctx());
  EXPECT_EQ(e.code, "custody.pin_incorrect");
  EXPECT_EQ(e.native, CKR_PIN_INCORRECT);
  EXPECT_NE(e.remedy.find("/etc/certcustody/user.pin"), std::string::npos);
  EXPECT_NE(e.what.find("CKR_PIN_INCORRECT"), std::string::npos);
}

TEST(CkError, PinLockedSendsToTheSecurityOfficer) {
  Error e = ck_error(CKR_PIN_LOCKED, ctx());
  EXPECT_EQ(e.code, "custody.pin_locked");
  EXPECT_NE(e.remedy.find("Security Officer"), std::string::npos);
}

TEST(CkError, KeyHandleInvalidNamesKeyAndToken) {
  Error e = ck_error(CKR_KEY_HANDLE_INVALID, ctx());
  EXPECT_EQ(e.code, "custody.key_not_found");
  EXPECT_NE(e.remedy.find("'ra'"), std::string::npos);
  EXPECT_NE(e.remedy.find("pkcs11:token=prod"), std::string::npos);
}

TEST(CkError, UnknownCodesStillNamed) {
  Error e = ck_error(0x80000042UL, ctx());
  EXPECT_EQ(e.code, "custody.token_error");
  EXPECT_NE(e.remedy.find("CKR_0x80000042"), std::string::npos);
}

TEST(CkError, EveryStandardCodeHasARemedy) {
  for (CK_RV rv = 1; rv < 0x200; ++rv) {
    if (ck_rv_name(rv).rfind("CKR_0x", 0) == 0) continue;
    Error e = ck_error(rv, ctx());
    EXPECT_FALSE(e.remedy.empty()) << ck_rv_name(rv);
    EXPECT_EQ(e.code.rfind("custody.", 0), 0u) << ck_rv_name(rv);
  }
}

TEST(CkError, Classification) {
  EXPECT_TRUE(ck_is_token_loss(CKR_DEVICE_REMOVED));
  EXPECT_TRUE(ck_is_token_loss(CKR_TOKEN_NOT_PRESENT));
  EXPECT_TRUE(ck_is_token_loss(CKR_CRYPTOKI_NOT_INITIALIZED));
  EXPECT_TRUE(ck_is_session_loss(CKR_SESSION_HANDLE_INVALID));
  EXPECT_TRUE(ck_is_session_loss(CKR_USER_NOT_LOGGED_IN));
  EXPECT_FALSE(ck_is_session_loss(CKR_PIN_INCORRECT));
  EXPECT_FALSE(ck_is_token_loss(CKR_PIN_INCORRECT));
  EXPECT_TRUE(ck_is_stale_handle(CKR_OBJECT_HANDLE_INVALID));
}

}  // namespace
}  // namespace certcustody
