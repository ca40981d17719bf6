// A salted HMAC session for TPM2_Sign, driven through the SAPI layer.
//
// Why not ESYS: tpm2-tss 3.2 creates a new OpenSSL library context (and loads
// the default provider) for every hash it computes in an HMAC session — about
// 2 ms of CPU per signature, four times swtpm's own ECDSA. Here the session
// arithmetic of TPM 2.0 Part 1 §19.6 (KDFa session key, cpHash/rpHash, the
// command and response HMACs) runs on a digest and MAC fetched once. The
// security is the salted session's: the auth value never crosses the bus, and
// a response that does not authenticate is refused.
#pragma once

#include <tss2/tss2_sys.h>

#include <span>

#include "common/error.h"
#include "common/ossl.h"
#include "common/secure_buffer.h"
#include "custody/key_custody.h"
#include "custody/tpm2_session_crypto.h"

namespace certcustody {

class TpmSignSession {
 public:
  explicit TpmSignSession(const SoftwareContext& sw);
  ~TpmSignSession();
  TpmSignSession(const TpmSignSession&) = delete;
  TpmSignSession& operator=(const TpmSignSession&) = delete;

  bool started() const { return handle_ != 0; }
  TPM2_HANDLE handle() const { return handle_; }
  // Starts the session salted to the storage key (its handle and public
  // area): RSA-OAEP or ECDH, as the key is (tpm2_session_crypto.h).
  TSS2_RC start(TSS2_SYS_CONTEXT* sys, TPM2_HANDLE srk, const TPMT_PUBLIC& srk_public);
  // TPM2_Sign with the key at `key` (name `key_name`, auth value `auth`
  // without trailing zero bytes).
  // After any failure the session is forgotten (start it again).
  TSS2_RC sign(TSS2_SYS_CONTEXT* sys, TPM2_HANDLE key, std::span<const std::uint8_t> key_name,
               const SecureBytes& auth, const TPM2B_DIGEST& digest, const TPMT_SIG_SCHEME& scheme,
               TPMT_SIGNATURE& out);
  // Flushes the session from the TPM (when the connection is still there).
  void close(TSS2_SYS_CONTEXT* sys);
  // Forgets the session without a TPM command (the connection is gone).
  void forget();

 private:
  TSS2_RC sign_once(TSS2_SYS_CONTEXT* sys, TPM2_HANDLE key, std::span<const std::uint8_t> key_name,
                    const SecureBytes& auth, const TPM2B_DIGEST& digest, const TPMT_SIG_SCHEME& scheme,
                    TPMT_SIGNATURE& out);

  SoftwareContext sw_;
  SessionDigests digests_;
  TPM2_HANDLE handle_ = 0;
  SecureBytes session_key_;
  Bytes nonce_tpm_;
};

}  // namespace certcustody
