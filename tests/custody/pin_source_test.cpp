#include "custody/pin_source.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include "support/temp_dir.h"

namespace certcustody {
namespace {

using testing::TempDir;
using testing::write_file;

std::string str(const SecureBytes& b) { return std::string(as_string_view(b)); }

TEST(PinSource, ReadsFileAndStripsNewline) {
  TempDir d;
  write_file(d / "user.pin", "123456\r\n", 0600);
  auto src = PinSource::from_config(d / "user.pin");
  ASSERT_TRUE(src);
  auto pin = src->read();
  ASSERT_TRUE(pin) << pin.error().to_string();
  EXPECT_EQ(str(*pin), "123456");
}

TEST(PinSource, RefusesFileOthersCanRead) {
  TempDir d;
  write_file(d / "user.pin", "123456\n", 0644);
  auto pin = PinSource::from_config(d / "user.pin")->read();
  ASSERT_FALSE(pin);
  EXPECT_EQ(pin.error().code, "custody.pin_file_too_open");
  EXPECT_NE(pin.error().remedy.find("chmod 600 " + (d / "user.pin")), std::string::npos);
}

TEST(PinSource, MissingAndEmptyFiles) {
  TempDir d;
  auto missing = PinSource::from_config(d / "nope.pin")->read();
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, "custody.pin_file_unreadable");
  write_file(d / "empty.pin", "\n", 0600);
  auto empty = PinSource::from_config(d / "empty.pin")->read();
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code, "custody.pin_file_invalid");
}

TEST(PinSource, SystemdCredential) {
  TempDir d;
  write_file(d / "user-pin", "987654", 0400);
  auto src = PinSource::from_config("user-pin");
  ASSERT_TRUE(src);
  ::unsetenv("CREDENTIALS_DIRECTORY");
  auto unset = src->read();
  ASSERT_FALSE(unset);
  EXPECT_EQ(unset.error().code, "custody.credentials_directory_unset");
  EXPECT_NE(unset.error().remedy.find("LoadCredential=user-pin"), std::string::npos);
  ::setenv("CREDENTIALS_DIRECTORY", d.path().c_str(), 1);
  auto pin = src->read();
  ::unsetenv("CREDENTIALS_DIRECTORY");
  ASSERT_TRUE(pin) << pin.error().to_string();
  EXPECT_EQ(str(*pin), "987654");
}

TEST(PinSource, RejectsStrangeCredentialNames) {
  auto s = PinSource::from_config("..");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, "custody.pin_source_invalid");
}

TEST(PinSource, FingerprintChangesWhenFileIsRewritten) {
  TempDir d;
  write_file(d / "user.pin", "111111\n", 0600);
  auto src = *PinSource::from_config(d / "user.pin");
  std::string before = src.fingerprint();
  EXPECT_EQ(before, src.fingerprint());
  write_file(d / "user.pin", "2222222\n", 0600);
  EXPECT_NE(before, src.fingerprint());
  EXPECT_EQ(before.find("111111"), std::string::npos);
}

}  // namespace
}  // namespace certcustody
