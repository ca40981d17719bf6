// PKCS#11 mechanism parameters for the operations certcustody performs, the
// encodings around them (DigestInfo, ECDSA-Sig-Value), and what a token's
// mechanism list allows.
#pragma once

#include <p11-kit/pkcs11.h>

#include <map>
#include <optional>
#include <span>
#include <string>

#include "common/error.h"
#include "common/ossl.h"
#include "custody/key_custody.h"

namespace certcustody {

// The digest mechanism of a hash (PKCS#11 3.0 values for SHA-3).
CK_MECHANISM_TYPE ck_hash(HashAlg h);
// The MGF1 of a hash; nullopt where PKCS#11 defines none (SHA-512/224, SHA-512/256).
std::optional<CK_RSA_PKCS_MGF_TYPE> ck_mgf1(HashAlg h);
// "CKM_RSA_PKCS_PSS", "CKM_SHA3_256", ... for messages.
std::string ck_mechanism_name(CK_MECHANISM_TYPE m);

// DER DigestInfo (RFC 8017 §9.2) around a digest: the input of CKM_RSA_PKCS.
Result<Bytes> digest_info(HashAlg hash, std::span<const std::uint8_t> digest);

// r || s (PKCS#11 CKM_ECDSA output) to DER ECDSA-Sig-Value (RFC 5480 / X9.62).
Result<Bytes> ecdsa_raw_to_der(std::span<const std::uint8_t> raw);

// EC signature size (2 x field bytes) from a DER CKA_EC_PARAMS; 0 if unknown.
std::size_t ecdsa_signature_size(std::span<const std::uint8_t> ec_params_der);
// The curve's size in bits (P-521: 521) from a DER CKA_EC_PARAMS; 0 if unknown.
unsigned ec_degree(std::span<const std::uint8_t> ec_params_der);

// A token's mechanisms (C_GetMechanismList + C_GetMechanismInfo).
using MechanismTable = std::map<CK_MECHANISM_TYPE, CK_MECHANISM_INFO>;

// The key a signature is asked of: its size decides input and salt limits.
struct SigningKey {
  bool ec = false;
  unsigned bits = 0;                // RSA modulus / EC curve size
  std::size_t modulus_bytes = 0;    // RSA
  std::string name;                 // for messages
};

// The bytes C_Sign takes for `params` over `input`: a DigestInfo for PKCS#1
// v1.5 with a digest, else the input itself; custody.digest_length when the
// input is not a digest of the stated kind, custody.data_invalid when it does
// not fit the key, custody.mechanism_unsupported when `token` (its mechanism
// list, named `token_name`) cannot do the scheme, digest, MGF1 or key size.
Result<Bytes> signing_input(const SignParams& params, std::span<const std::uint8_t> input, const SigningKey& key,
                            const MechanismTable& token, const std::string& token_name);

// "RSA-PSS with SHA-256, MGF1 SHA-1, a salt of 20 bytes", for messages.
std::string describe_signature(const SignParams& params);

// custody.mechanism_unsupported unless the token decrypts RSA-OAEP with `hash`.
Status check_oaep_mechanism(HashAlg hash, unsigned key_bits, const MechanismTable& token,
                            const std::string& token_name);

}  // namespace certcustody
