#include "common/error.h"

#include <gtest/gtest.h>

namespace certcustody {
namespace {

Result<int> half(int v) {
  if (v % 2 != 0) return Error{"test.odd", std::to_string(v) + " is odd", "pass an even number"};
  return v / 2;
}

Result<int> quarter(int v) {
  CC_TRY_ASSIGN(int h, half(v));
  return half(h);
}

TEST(Result, CarriesValueOrNamedError) {
  auto ok = quarter(8);
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, 2);
  auto bad = quarter(6);  // 6 -> 3 -> odd
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, "test.odd");
  EXPECT_EQ(bad.error().to_string(), "error test.odd: 3 is odd \xE2\x80\x94 pass an even number");
}

}  // namespace
}  // namespace certcustody
