#include "custody/tpm2_sign_session.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <cstring>

#include "custody/tpm2_error.h"

namespace certcustody {
namespace {

constexpr std::size_t kNonceSize = 32;  // the session hash's size (SHA-256)
constexpr TPMA_SESSION kAttributes = TPMA_SESSION_CONTINUESESSION;

}  // namespace

TpmSignSession::TpmSignSession(const SoftwareContext& sw) : sw_(sw), digests_(sw) {}

TpmSignSession::~TpmSignSession() = default;

TSS2_RC TpmSignSession::start(TSS2_SYS_CONTEXT* sys, TPM2_HANDLE srk, const TPMT_PUBLIC& srk_public) {
  forget();
  SessionSalt salt;
  TPM2B_NONCE caller{};
  caller.size = kNonceSize;
  if (RAND_bytes(caller.buffer, kNonceSize) != 1 || !make_session_salt(sw_, srk_public, salt))
    return TSS2_ESYS_RC_GENERAL_FAILURE;
  TPMT_SYM_DEF none{};
  none.algorithm = TPM2_ALG_NULL;
  TPM2B_NONCE tpm{};
  TPMI_SH_AUTH_SESSION handle = 0;
  TSS2_RC rc = Tss2_Sys_StartAuthSession(sys, srk, TPM2_RH_NULL, nullptr, &caller, &salt.encrypted, TPM2_SE_HMAC,
                                         &none, TPM2_ALG_SHA256, &handle, &tpm, nullptr);
  if (rc != TSS2_RC_SUCCESS) return rc;
  handle_ = handle;
  nonce_tpm_.assign(tpm.buffer, tpm.buffer + tpm.size);
  // sessionKey = KDFa(SHA-256, salt, "ATH", nonceTPM, nonceCaller, 256) (Part 1 §19.6.8).
  session_key_.assign(digests_.size(), 0);
  if (!tpm_kdfa(sw_, TPM2_ALG_SHA256, salt.salt, "ATH", nonce_tpm_, {caller.buffer, caller.size}, session_key_)) {
    close(sys);
    return TSS2_ESYS_RC_GENERAL_FAILURE;
  }
  return TSS2_RC_SUCCESS;
}

TSS2_RC TpmSignSession::sign(TSS2_SYS_CONTEXT* sys, TPM2_HANDLE key, std::span<const std::uint8_t> key_name,
                             const SecureBytes& auth, const TPM2B_DIGEST& digest, const TPMT_SIG_SCHEME& scheme,
                             TPMT_SIGNATURE& out) {
  // TPM_RC_RETRY and friends mean "not started, send it again" — e.g. the
  // first use of a DA-protected key after startup (the TPM records that in
  // NV first). ESYS retries these itself; so does this.
  for (int attempt = 0;; ++attempt) {
    const TSS2_RC rc = sign_once(sys, key, key_name, auth, digest, scheme, out);
    const TSS2_RC base = tpm_base_rc(rc);
    if (attempt >= 8 || (base != TPM2_RC_RETRY && base != TPM2_RC_YIELDED && base != TPM2_RC_TESTING)) return rc;
  }
}

TSS2_RC TpmSignSession::sign_once(TSS2_SYS_CONTEXT* sys, TPM2_HANDLE key, std::span<const std::uint8_t> key_name,
                                  const SecureBytes& auth, const TPM2B_DIGEST& digest, const TPMT_SIG_SCHEME& scheme,
                                  TPMT_SIGNATURE& out) {
  TPMT_TK_HASHCHECK validation{};
  validation.tag = TPM2_ST_HASHCHECK;
  validation.hierarchy = TPM2_RH_NULL;
  TSS2_RC rc = Tss2_Sys_Sign_Prepare(sys, key, &digest, &scheme, &validation);
  const std::uint8_t* cp = nullptr;
  std::size_t cp_size = 0;
  if (rc == TSS2_RC_SUCCESS) rc = Tss2_Sys_GetCpBuffer(sys, &cp_size, &cp);
  if (rc != TSS2_RC_SUCCESS) return rc;

  // An unbound session: the HMAC key is the session key followed by the
  // entity's auth value (Part 1 §19.6.8).
  SecureBytes hmac_key = session_key_;
  hmac_key.insert(hmac_key.end(), auth.begin(), auth.end());
  TSS2L_SYS_AUTH_COMMAND cmd{};
  cmd.count = 1;
  TPMS_AUTH_COMMAND& a = cmd.auths[0];
  a.sessionHandle = handle_;
  a.sessionAttributes = kAttributes;
  a.nonce.size = kNonceSize;
  Bytes cp_hash, mac;
  if (RAND_bytes(a.nonce.buffer, kNonceSize) != 1 || !digests_.cp_hash(TPM2_CC_Sign, {key_name}, {cp, cp_size}, cp_hash) ||
      !digests_.session_hmac(hmac_key, cp_hash, {a.nonce.buffer, kNonceSize}, nonce_tpm_, kAttributes, mac)) {
    forget();
    return TSS2_ESYS_RC_GENERAL_FAILURE;
  }
  a.hmac.size = static_cast<UINT16>(mac.size());
  std::memcpy(a.hmac.buffer, mac.data(), mac.size());
  rc = Tss2_Sys_SetCmdAuths(sys, &cmd);
  if (rc == TSS2_RC_SUCCESS) rc = Tss2_Sys_Execute(sys);
  if (rc != TSS2_RC_SUCCESS) {
    const TSS2_RC base = tpm_base_rc(rc);
    if (base == TPM2_RC_RETRY || base == TPM2_RC_YIELDED || base == TPM2_RC_TESTING) return rc;  // not started
    // A refused command leaves the session without a known nonce: end it (a
    // TPM that answered still holds it; a lost one does not).
    if ((rc & 0xFF0000) == TSS2_TPM_RC_LAYER || (rc & 0xFF0000) == TSS2_RESMGR_TPM_RC_LAYER) close(sys);
    else forget();
    return rc;
  }

  TSS2L_SYS_AUTH_RESPONSE rsp{};
  const std::uint8_t* rp = nullptr;
  std::size_t rp_size = 0;
  rc = Tss2_Sys_GetRspAuths(sys, &rsp);
  if (rc == TSS2_RC_SUCCESS) rc = Tss2_Sys_GetRpBuffer(sys, &rp_size, &rp);
  if (rc != TSS2_RC_SUCCESS || rsp.count != 1) {
    close(sys);
    return rc != TSS2_RC_SUCCESS ? rc : TSS2_ESYS_RC_RSP_AUTH_FAILED;
  }
  const TPMS_AUTH_RESPONSE& r = rsp.auths[0];
  Bytes rp_hash, expected;
  if (!digests_.rp_hash(TPM2_RC_SUCCESS, TPM2_CC_Sign, {rp, rp_size}, rp_hash) ||
      !digests_.session_hmac(hmac_key, rp_hash, {r.nonce.buffer, r.nonce.size}, {a.nonce.buffer, kNonceSize},
                             r.sessionAttributes, expected) ||
      expected.size() != r.hmac.size || CRYPTO_memcmp(expected.data(), r.hmac.buffer, expected.size()) != 0) {
    close(sys);
    return TSS2_ESYS_RC_RSP_AUTH_FAILED;  // not the TPM's answer, or altered on the way
  }
  nonce_tpm_.assign(r.nonce.buffer, r.nonce.buffer + r.nonce.size);
  return Tss2_Sys_Sign_Complete(sys, &out);
}

void TpmSignSession::close(TSS2_SYS_CONTEXT* sys) {
  if (handle_ != 0 && sys != nullptr) Tss2_Sys_FlushContext(sys, handle_);
  forget();
}

void TpmSignSession::forget() {
  handle_ = 0;
  secure_wipe(session_key_.data(), session_key_.size());
  session_key_.clear();
  nonce_tpm_.clear();
}

}  // namespace certcustody
