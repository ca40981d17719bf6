#include "custody/ck_error.h"

#include <cstdio>

namespace certcustody {
namespace {

struct RvName {
  CK_RV rv;
  const char* name;
};

#define RV(x) {x, #x}
constexpr RvName kNames[] = {
    RV(CKR_OK), RV(CKR_CANCEL), RV(CKR_HOST_MEMORY), RV(CKR_SLOT_ID_INVALID), RV(CKR_GENERAL_ERROR),
    RV(CKR_FUNCTION_FAILED), RV(CKR_ARGUMENTS_BAD), RV(CKR_NO_EVENT), RV(CKR_NEED_TO_CREATE_THREADS),
    RV(CKR_CANT_LOCK), RV(CKR_ATTRIBUTE_READ_ONLY), RV(CKR_ATTRIBUTE_SENSITIVE), RV(CKR_ATTRIBUTE_TYPE_INVALID),
    RV(CKR_ATTRIBUTE_VALUE_INVALID), RV(CKR_ACTION_PROHIBITED), RV(CKR_DATA_INVALID), RV(CKR_DATA_LEN_RANGE),
    RV(CKR_DEVICE_ERROR), RV(CKR_DEVICE_MEMORY), RV(CKR_DEVICE_REMOVED), RV(CKR_ENCRYPTED_DATA_INVALID),
    RV(CKR_ENCRYPTED_DATA_LEN_RANGE), RV(CKR_FUNCTION_CANCELED), RV(CKR_FUNCTION_NOT_PARALLEL),
    RV(CKR_FUNCTION_NOT_SUPPORTED), RV(CKR_KEY_HANDLE_INVALID), RV(CKR_KEY_SIZE_RANGE), RV(CKR_KEY_TYPE_INCONSISTENT),
    RV(CKR_KEY_NOT_NEEDED), RV(CKR_KEY_CHANGED), RV(CKR_KEY_NEEDED), RV(CKR_KEY_INDIGESTIBLE),
    RV(CKR_KEY_FUNCTION_NOT_PERMITTED), RV(CKR_KEY_NOT_WRAPPABLE), RV(CKR_KEY_UNEXTRACTABLE),
    RV(CKR_MECHANISM_INVALID), RV(CKR_MECHANISM_PARAM_INVALID), RV(CKR_OBJECT_HANDLE_INVALID),
    RV(CKR_OPERATION_ACTIVE), RV(CKR_OPERATION_NOT_INITIALIZED), RV(CKR_PIN_INCORRECT), RV(CKR_PIN_INVALID),
    RV(CKR_PIN_LEN_RANGE), RV(CKR_PIN_EXPIRED), RV(CKR_PIN_LOCKED), RV(CKR_SESSION_CLOSED), RV(CKR_SESSION_COUNT),
    RV(CKR_SESSION_HANDLE_INVALID), RV(CKR_SESSION_PARALLEL_NOT_SUPPORTED), RV(CKR_SESSION_READ_ONLY),
    RV(CKR_SESSION_EXISTS), RV(CKR_SESSION_READ_ONLY_EXISTS), RV(CKR_SESSION_READ_WRITE_SO_EXISTS),
    RV(CKR_SIGNATURE_INVALID), RV(CKR_SIGNATURE_LEN_RANGE), RV(CKR_TEMPLATE_INCOMPLETE),
    RV(CKR_TEMPLATE_INCONSISTENT), RV(CKR_TOKEN_NOT_PRESENT), RV(CKR_TOKEN_NOT_RECOGNIZED),
    RV(CKR_TOKEN_WRITE_PROTECTED), RV(CKR_UNWRAPPING_KEY_HANDLE_INVALID), RV(CKR_UNWRAPPING_KEY_SIZE_RANGE),
    RV(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT), RV(CKR_USER_ALREADY_LOGGED_IN), RV(CKR_USER_NOT_LOGGED_IN),
    RV(CKR_USER_PIN_NOT_INITIALIZED), RV(CKR_USER_TYPE_INVALID), RV(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
    RV(CKR_USER_TOO_MANY_TYPES), RV(CKR_WRAPPED_KEY_INVALID), RV(CKR_WRAPPED_KEY_LEN_RANGE),
    RV(CKR_WRAPPING_KEY_HANDLE_INVALID), RV(CKR_WRAPPING_KEY_SIZE_RANGE), RV(CKR_WRAPPING_KEY_TYPE_INCONSISTENT),
    RV(CKR_RANDOM_SEED_NOT_SUPPORTED), RV(CKR_RANDOM_NO_RNG), RV(CKR_DOMAIN_PARAMS_INVALID),
    RV(CKR_CURVE_NOT_SUPPORTED), RV(CKR_BUFFER_TOO_SMALL), RV(CKR_SAVED_STATE_INVALID),
    RV(CKR_INFORMATION_SENSITIVE), RV(CKR_STATE_UNSAVEABLE), RV(CKR_CRYPTOKI_NOT_INITIALIZED),
    RV(CKR_CRYPTOKI_ALREADY_INITIALIZED), RV(CKR_MUTEX_BAD), RV(CKR_MUTEX_NOT_LOCKED),
    RV(CKR_FUNCTION_REJECTED),
};
#undef RV

std::string token_of(const CkContext& c) { return c.token.empty() ? "the token" : "token " + c.token; }
std::string object_of(const CkContext& c) { return c.object.empty() ? "the object" : "'" + c.object + "'"; }
std::string pin_of(const CkContext& c) { return c.pin_source.empty() ? "the PIN source" : c.pin_source; }

struct Mapped {
  const char* code;
  std::string remedy;
};

Mapped map(CK_RV rv, const CkContext& c) {
  switch (rv) {
    case CKR_PIN_INCORRECT:
      return {"custody.pin_incorrect", "check that " + pin_of(c) + " holds the user PIN of " + token_of(c) +
                                           "; certcustody will not try this PIN again until the file changes, "
                                           "so the token is not locked by retries"};
    case CKR_PIN_LOCKED:
      return {"custody.pin_locked", "the user PIN of " + token_of(c) +
                                        " is locked: the Security Officer must unlock it (C_InitPIN) and "
                                        "write the new PIN to " + pin_of(c)};
    case CKR_PIN_EXPIRED:
      return {"custody.pin_expired", "the user PIN has expired: have the Security Officer set a new one and "
                                     "write it to " + pin_of(c)};
    case CKR_PIN_LEN_RANGE:
    case CKR_PIN_INVALID:
      return {"custody.pin_invalid", pin_of(c) + " holds a PIN of the wrong length or with characters the "
                                                 "token does not accept; rewrite it"};
    case CKR_USER_PIN_NOT_INITIALIZED:
      return {"custody.pin_not_initialized", "the Security Officer must set the user PIN of " + token_of(c) +
                                                 " (hsm-config/provision-softhsm.sh or the HSM vendor's tool)"};
    case CKR_KEY_HANDLE_INVALID:
    case CKR_OBJECT_HANDLE_INVALID:
      return {"custody.key_not_found", "key " + object_of(c) + " is not on " + token_of(c) +
                                           "; list the token with `certcustody token info` and fix the label"};
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_DEVICE_REMOVED:
      return {"custody.token_not_present", token_of(c) + " is not present: reconnect the HSM or restore the "
                                                          "token; certcustody reconnects by itself"};
    case CKR_TOKEN_NOT_RECOGNIZED:
      return {"custody.token_not_recognized", "the module does not recognise the token in the slot; check the "
                                              "HSM and its firmware"};
    case CKR_DEVICE_ERROR:
    case CKR_DEVICE_MEMORY:
      return {"custody.device_error", "the HSM reported a device fault or is out of memory; check its logs "
                                      "and health, then retry"};
    case CKR_SESSION_COUNT:
      return {"custody.too_many_sessions", "the token has no free sessions: lower [custody] sessions or stop "
                                           "other clients of " + token_of(c)};
    case CKR_TOKEN_WRITE_PROTECTED:
      return {"custody.token_write_protected", token_of(c) + " is write-protected; key generation and "
                                                             "certificate import need a writable token"};
    case CKR_MECHANISM_INVALID:
    case CKR_MECHANISM_PARAM_INVALID:
    case CKR_FUNCTION_NOT_SUPPORTED:
      return {"custody.mechanism_unsupported", "the token does not support this algorithm or its parameters; "
                                               "choose a key type/algorithm it lists (`certcustody token info`)"};
    case CKR_KEY_TYPE_INCONSISTENT:
    case CKR_KEY_FUNCTION_NOT_PERMITTED:
    case CKR_WRAPPING_KEY_TYPE_INCONSISTENT:
    case CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT:
      return {"custody.key_usage_refused", "key " + object_of(c) + " may not be used for this operation; "
                                           "use a key generated for it (RA key: sign; KEK: wrap/encrypt)"};
    case CKR_KEY_UNEXTRACTABLE:
    case CKR_KEY_NOT_WRAPPABLE:
    case CKR_ATTRIBUTE_SENSITIVE:
      return {"custody.key_not_exportable", "key " + object_of(c) + " is sensitive and non-extractable by "
                                            "design; its value never leaves the token"};
    case CKR_USER_NOT_LOGGED_IN:
      return {"custody.not_logged_in", "the session is not logged in; certcustody logs in again by itself, if "
                                       "this persists check " + pin_of(c)};
    case CKR_SESSION_HANDLE_INVALID:
    case CKR_SESSION_CLOSED:
      return {"custody.session_lost", "the token session was closed; certcustody reopens it by itself"};
    case CKR_CRYPTOKI_NOT_INITIALIZED:
      return {"custody.module_not_initialized", "the PKCS#11 module was finalised; certcustody re-initialises it"};
    case CKR_WRAPPED_KEY_INVALID:
    case CKR_WRAPPED_KEY_LEN_RANGE:
    case CKR_ENCRYPTED_DATA_INVALID:
    case CKR_ENCRYPTED_DATA_LEN_RANGE:
      return {"custody.ciphertext_invalid", "the data does not decrypt/unwrap under " + object_of(c) +
                                                ": wrong key, or the data was altered"};
    case CKR_DATA_LEN_RANGE:
    case CKR_DATA_INVALID:
      return {"custody.data_invalid", "the input is too long or malformed for this key and mechanism"};
    case CKR_TEMPLATE_INCOMPLETE:
    case CKR_TEMPLATE_INCONSISTENT:
    case CKR_ATTRIBUTE_VALUE_INVALID:
    case CKR_ATTRIBUTE_TYPE_INVALID:
    case CKR_DOMAIN_PARAMS_INVALID:
    case CKR_CURVE_NOT_SUPPORTED:
    case CKR_KEY_SIZE_RANGE:
      return {"custody.template_refused", "the token refused the key/object attributes (size, curve or "
                                          "policy); choose a key type the token supports"};
    case CKR_HOST_MEMORY:
      return {"custody.host_memory", "the host ran out of memory; free memory and retry"};
    case CKR_SIGNATURE_INVALID:
      return {"custody.signature_invalid", "the signature does not verify"};
    default:
      return {"custody.token_error", "the token returned " + ck_rv_name(rv) + "; see the HSM vendor's "
                                     "documentation for that code and retry"};
  }
}

}  // namespace

std::string ck_rv_name(CK_RV rv) {
  for (const auto& n : kNames)
    if (n.rv == rv) return n.name;
  char buf[32];
  std::snprintf(buf, sizeof buf, "CKR_0x%08lX", static_cast<unsigned long>(rv));
  return buf;
}

Error ck_error(CK_RV rv, const CkContext& ctx) {
  Mapped m = map(rv, ctx);
  std::string what = ctx.operation.empty() ? ck_rv_name(rv) : ctx.operation + " failed: " + ck_rv_name(rv);
  if (!ctx.object.empty() && ctx.operation.find(ctx.object) == std::string::npos) what += " (object " + ctx.object + ")";
  return Error{m.code, what, m.remedy, rv};
}

bool ck_is_token_loss(CK_RV rv) {
  return rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_CRYPTOKI_NOT_INITIALIZED ||
         rv == CKR_SLOT_ID_INVALID || rv == CKR_DEVICE_ERROR;
}

bool ck_is_session_loss(CK_RV rv) {
  return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED || rv == CKR_USER_NOT_LOGGED_IN;
}

bool ck_may_be_token_loss(CK_RV rv) {
  return rv == CKR_GENERAL_ERROR || rv == CKR_FUNCTION_FAILED || rv == CKR_DEVICE_MEMORY ||
         rv == CKR_TOKEN_NOT_RECOGNIZED || rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID;
}

bool ck_is_stale_handle(CK_RV rv) {
  return rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID;
}

}  // namespace certcustody
