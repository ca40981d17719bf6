#include "custody/tpm2_sign_session.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include <array>
#include <cstring>

#include "custody/tpm2_error.h"
#include "custody/tpm2_key_file.h"

namespace certcustody {
namespace {

constexpr std::size_t kNonceSize = 32;  // the session hash's size (SHA-256)
constexpr TPMA_SESSION kAttributes = TPMA_SESSION_CONTINUESESSION;

std::array<std::uint8_t, 4> be32(std::uint32_t v) {
  return {static_cast<std::uint8_t>(v >> 24), static_cast<std::uint8_t>(v >> 16), static_cast<std::uint8_t>(v >> 8),
          static_cast<std::uint8_t>(v)};
}

std::span<const std::uint8_t> bytes_of(const Bytes& b) { return {b.data(), b.size()}; }

// RSA-OAEP (SHA-256, label "SECRET\0") of `salt` to the storage key: the
// encrypted salt of TPM2_StartAuthSession (Part 1 §B.10.3).
bool encrypt_salt(const SoftwareContext& sw, const TPMT_PUBLIC& srk, const SecureBytes& salt,
                  TPM2B_ENCRYPTED_SECRET& out) {
  auto key = public_area_to_pkey(srk, "storage key", sw);
  if (!key) return false;
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(sw.libctx, key->get(), sw.propq));
  static const unsigned char kLabel[] = "SECRET";
  auto* label = static_cast<unsigned char*>(OPENSSL_memdup(kLabel, sizeof kLabel));
  std::size_t len = sizeof out.secret;
  const bool ok = ctx && label != nullptr && EVP_PKEY_encrypt_init(ctx.get()) == 1 &&
                  EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_OAEP_PADDING) == 1 &&
                  EVP_PKEY_CTX_set_rsa_oaep_md_name(ctx.get(), "SHA256", nullptr) == 1 &&
                  EVP_PKEY_CTX_set_rsa_mgf1_md_name(ctx.get(), "SHA256", nullptr) == 1 &&
                  EVP_PKEY_CTX_set0_rsa_oaep_label(ctx.get(), label, sizeof kLabel) == 1;
  if (!ok) OPENSSL_free(label);
  if (!ok || EVP_PKEY_encrypt(ctx.get(), out.secret, &len, salt.data(), salt.size()) != 1) return false;
  out.size = static_cast<UINT16>(len);
  return true;
}

// KDFa(SHA-256, salt, "ATH", nonceTPM, nonceCaller, 256): SP 800-108 counter
// mode with HMAC, which is OpenSSL's KBKDF (label, 0x00, context, [L]32).
bool session_key(const SoftwareContext& sw, const SecureBytes& salt, const Bytes& nonce_tpm, const Bytes& nonce_caller,
                 SecureBytes& out) {
  std::unique_ptr<EVP_KDF, OsslDeleter<EVP_KDF_free>> kdf(EVP_KDF_fetch(sw.libctx, "KBKDF", sw.propq));
  std::unique_ptr<EVP_KDF_CTX, OsslDeleter<EVP_KDF_CTX_free>> ctx(kdf ? EVP_KDF_CTX_new(kdf.get()) : nullptr);
  if (!ctx) return false;
  Bytes context = nonce_tpm;
  context.insert(context.end(), nonce_caller.begin(), nonce_caller.end());
  char mac[] = "HMAC", md[] = "SHA256", label[] = "ATH";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MAC, mac, 0),
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, md, 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<std::uint8_t*>(salt.data()), salt.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, label, 3),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, context.data(), context.size()),
      OSSL_PARAM_construct_end()};
  out.assign(32, 0);
  return EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) == 1;
}

}  // namespace

TpmSignSession::TpmSignSession(const SoftwareContext& sw)
    : sw_(sw), sha256_(EVP_MD_fetch(sw.libctx, "SHA256", sw.propq)), hmac_(EVP_MAC_fetch(sw.libctx, "HMAC", sw.propq)) {}

TpmSignSession::~TpmSignSession() {
  EVP_MD_free(sha256_);
  EVP_MAC_free(hmac_);
}

bool TpmSignSession::hash(std::initializer_list<std::span<const std::uint8_t>> parts, Bytes& out) const {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || sha256_ == nullptr || EVP_DigestInit_ex2(ctx.get(), sha256_, nullptr) != 1) return false;
  for (auto p : parts)
    if (EVP_DigestUpdate(ctx.get(), p.data(), p.size()) != 1) return false;
  out.resize(32);
  unsigned int n = 0;
  return EVP_DigestFinal_ex(ctx.get(), out.data(), &n) == 1 && n == 32;
}

bool TpmSignSession::hmac(const SecureBytes& key, std::initializer_list<std::span<const std::uint8_t>> parts,
                          Bytes& out) const {
  std::unique_ptr<EVP_MAC_CTX, OsslDeleter<EVP_MAC_CTX_free>> ctx(hmac_ ? EVP_MAC_CTX_new(hmac_) : nullptr);
  char md[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, md, 0), OSSL_PARAM_construct_end()};
  if (!ctx || EVP_MAC_init(ctx.get(), key.data(), key.size(), params) != 1) return false;
  for (auto p : parts)
    if (EVP_MAC_update(ctx.get(), p.data(), p.size()) != 1) return false;
  out.resize(32);
  std::size_t n = 0;
  return EVP_MAC_final(ctx.get(), out.data(), &n, out.size()) == 1 && n == 32;
}

TSS2_RC TpmSignSession::start(TSS2_SYS_CONTEXT* sys, TPM2_HANDLE srk, const TPMT_PUBLIC& srk_public) {
  forget();
  SecureBytes salt(32);
  TPM2B_NONCE caller{};
  caller.size = kNonceSize;
  if (RAND_priv_bytes(salt.data(), static_cast<int>(salt.size())) != 1 || RAND_bytes(caller.buffer, kNonceSize) != 1)
    return TSS2_ESYS_RC_GENERAL_FAILURE;
  TPM2B_ENCRYPTED_SECRET encrypted{};
  if (!encrypt_salt(sw_, srk_public, salt, encrypted)) return TSS2_ESYS_RC_GENERAL_FAILURE;
  TPMT_SYM_DEF none{};
  none.algorithm = TPM2_ALG_NULL;
  TPM2B_NONCE tpm{};
  TPMI_SH_AUTH_SESSION handle = 0;
  TSS2_RC rc = Tss2_Sys_StartAuthSession(sys, srk, TPM2_RH_NULL, nullptr, &caller, &encrypted, TPM2_SE_HMAC, &none,
                                         TPM2_ALG_SHA256, &handle, &tpm, nullptr);
  if (rc != TSS2_RC_SUCCESS) return rc;
  handle_ = handle;
  nonce_tpm_.assign(tpm.buffer, tpm.buffer + tpm.size);
  if (!session_key(sw_, salt, nonce_tpm_, Bytes(caller.buffer, caller.buffer + caller.size), session_key_)) {
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
  const auto cc = be32(TPM2_CC_Sign);
  const std::uint8_t attributes = kAttributes;
  TSS2L_SYS_AUTH_COMMAND cmd{};
  cmd.count = 1;
  TPMS_AUTH_COMMAND& a = cmd.auths[0];
  a.sessionHandle = handle_;
  a.sessionAttributes = kAttributes;
  a.nonce.size = kNonceSize;
  Bytes cp_hash, mac;
  if (RAND_bytes(a.nonce.buffer, kNonceSize) != 1 || !hash({cc, key_name, {cp, cp_size}}, cp_hash) ||
      !hmac(hmac_key, {bytes_of(cp_hash), {a.nonce.buffer, kNonceSize}, bytes_of(nonce_tpm_), {&attributes, 1}}, mac)) {
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
  const auto ok_code = be32(TPM2_RC_SUCCESS);
  const std::uint8_t rsp_attributes = r.sessionAttributes;
  Bytes rp_hash, expected;
  if (!hash({ok_code, cc, {rp, rp_size}}, rp_hash) ||
      !hmac(hmac_key, {bytes_of(rp_hash), {r.nonce.buffer, r.nonce.size}, {a.nonce.buffer, kNonceSize}, {&rsp_attributes, 1}},
            expected) ||
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
