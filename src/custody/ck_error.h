// Every CK_RV becomes a named error that tells the operator what to do.
#pragma once

#include <p11-kit/pkcs11.h>

#include <string>

#include "common/error.h"

namespace certcustody {

// What the failing call was about, so the remedy can name it.
struct CkContext {
  std::string operation;  // e.g. "C_Login", "sign with key 'ra'"
  std::string token;      // the configured pkcs11: URI
  std::string pin_source; // the PIN file or credential in use
  std::string object;     // label or URI of the key/certificate concerned
};

// "CKR_PIN_INCORRECT" etc.; "CKR_0x..." for vendor codes.
std::string ck_rv_name(CK_RV rv);

// The named error for rv (rv != CKR_OK). Error::native holds rv.
Error ck_error(CK_RV rv, const CkContext& ctx);

// The token or module went away: re-initialise, find the token, log in again.
bool ck_is_token_loss(CK_RV rv);
// The session (or its login) went away: open new sessions and log in again.
bool ck_is_session_loss(CK_RV rv);
// An error a token that went away may give instead of CKR_TOKEN_NOT_PRESENT
// (network HSMs, remote p11-kit modules, SoftHSM without its directory):
// CKR_GENERAL_ERROR, CKR_FUNCTION_FAILED, a handle or key that vanished. The
// pool probes the token to tell.
bool ck_may_be_token_loss(CK_RV rv);
// A cached object handle is no longer valid: look the object up again.
bool ck_is_stale_handle(CK_RV rv);

}  // namespace certcustody
