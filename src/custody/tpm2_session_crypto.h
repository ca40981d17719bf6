// The arithmetic of TPM 2.0 authorization sessions, on OpenSSL and with no
// TPM involved, so that each piece is checked on its own against published
// vectors (tests/custody/tpm2_session_crypto_test.cpp): KDFa and KDFe (TPM 2.0
// Part 1 §11.4.10), the salt of a session salted with a storage key (RSA-OAEP,
// Annex B.10.3; ECDH, Annex C.6.1), cpHash/rpHash and the session HMACs
// (§19.6.5, §19.6.8), and the auth value as the TPM uses it (§19.6.4.3).
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <initializer_list>
#include <optional>
#include <span>
#include <string>

#include "common/ossl.h"
#include "common/secure_buffer.h"
#include "custody/key_custody.h"

namespace certcustody {

using ByteSpan = std::span<const std::uint8_t>;

// OpenSSL's name and the digest size of a TPM hash algorithm (SHA-1/2);
// nullptr and 0 for any other.
const char* tpm_hash_name(TPMI_ALG_HASH alg);
std::size_t tpm_hash_size(TPMI_ALG_HASH alg);

// KDFa: SP 800-108 counter mode with HMAC-`alg` over
// [i]32 || label || 00 || contextU || contextV || [bits]32; fills `out`
// (bits = 8 * out.size()). OpenSSL's KBKDF lays its input out the same way.
bool tpm_kdfa(const SoftwareContext& sw, TPMI_ALG_HASH alg, ByteSpan key, const std::string& label,
              ByteSpan context_u, ByteSpan context_v, std::span<std::uint8_t> out);
// KDFe: the SP 800-56A concatenation KDF H([i]32 || Z || label || 00 ||
// partyUInfo || partyVInfo), which is OpenSSL's SSKDF with that FixedInfo.
bool tpm_kdfe(const SoftwareContext& sw, TPMI_ALG_HASH alg, ByteSpan z, const std::string& label, ByteSpan party_u,
              ByteSpan party_v, std::span<std::uint8_t> out);

// "Trailing octets of zero are to be removed from any string before it is
// used as an authValue" (Part 1 §19.6.4.3): the TPM does so when it stores
// and checks a value; tpm2-tss 3.2 (Debian 12) does not, so every path here
// uses the stripped value.
void strip_trailing_zeros(SecureBytes& auth);

// The salt of TPM2_StartAuthSession(tpmKey = a storage key) and its
// encryption to that key: the secret is as long as a digest of the key's
// nameAlg; RSA keys get it by OAEP (nameAlg, label "SECRET"), ECC keys by
// one-pass ECDH on the key's curve: the encryption is the ephemeral point,
// the salt KDFe(nameAlg, Z = x of d·Q, "SECRET", ephemeral x, key x).
struct SessionSalt {
  SecureBytes salt;
  TPM2B_ENCRYPTED_SECRET encrypted{};
};
bool make_session_salt(const SoftwareContext& sw, const TPMT_PUBLIC& tpm_key, SessionSalt& out);
// The ECDH case with a given ephemeral key pair on the key's curve.
bool ecdh_session_salt(const SoftwareContext& sw, const TPMT_PUBLIC& tpm_key, EVP_PKEY* ephemeral, SessionSalt& out);
// Why a session cannot be salted to this key (name algorithm, key type or
// curve this code does not offer), or nothing when it can.
std::optional<std::string> session_salt_unsupported(const TPMT_PUBLIC& tpm_key);

// cpHash, rpHash and the session HMAC of a SHA-256 session, with the digest
// and the MAC fetched once (the signing hot path).
class SessionDigests {
 public:
  explicit SessionDigests(const SoftwareContext& sw);
  ~SessionDigests();
  SessionDigests(const SessionDigests&) = delete;
  SessionDigests& operator=(const SessionDigests&) = delete;

  // H(commandCode || names || parameters) (Part 1 §18.7).
  bool cp_hash(TPM2_CC cc, std::initializer_list<ByteSpan> names, ByteSpan parameters, Bytes& out) const;
  // H(responseCode || commandCode || parameters) (§18.8).
  bool rp_hash(TPM2_RC rc, TPM2_CC cc, ByteSpan parameters, Bytes& out) const;
  // HMAC(sessionKey || authValue, pHash || nonceNewer || nonceOlder || attributes) (§19.6.5).
  bool session_hmac(ByteSpan key, ByteSpan p_hash, ByteSpan nonce_newer, ByteSpan nonce_older,
                    TPMA_SESSION attributes, Bytes& out) const;
  std::size_t size() const { return 32; }

 private:
  bool hash(std::initializer_list<ByteSpan> parts, Bytes& out) const;

  EVP_MD* sha256_ = nullptr;
  EVP_MAC* hmac_ = nullptr;
};

}  // namespace certcustody
