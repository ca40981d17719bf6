// A fresh SoftHSM token and a Pkcs11Custody on it, per test.
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "custody/pkcs11_custody.h"
#include "support/softhsm_token.h"

namespace certcustody::testing {

class CustodyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    token_ = std::make_unique<SoftHsmToken>();
    open_custody(token_->custody_config());
  }
  void TearDown() override {
    custody_.reset();  // closes sessions and finalises before the token dir goes
    token_.reset();
  }
  void open_custody(const CustodyConfig& c) {
    custody_.reset();
    auto r = Pkcs11Custody::open(c);
    ASSERT_TRUE(r) << r.error().to_string();
    custody_ = std::move(r.value());
  }

  std::unique_ptr<SoftHsmToken> token_;
  std::unique_ptr<Pkcs11Custody> custody_;
};

}  // namespace certcustody::testing
