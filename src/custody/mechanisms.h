// PKCS#11 mechanism parameters for the operations certcustody performs, and
// the encodings around them (DigestInfo, ECDSA-Sig-Value).
#pragma once

#include <p11-kit/pkcs11.h>

#include <span>

#include "common/error.h"
#include "common/ossl.h"
#include "custody/key_custody.h"

namespace certcustody {

CK_MECHANISM_TYPE ck_hash(HashAlg h);
CK_RSA_PKCS_MGF_TYPE ck_mgf1(HashAlg h);

// DER DigestInfo (RFC 8017 §9.2) around a digest: the input of CKM_RSA_PKCS.
Result<Bytes> digest_info(HashAlg hash, std::span<const std::uint8_t> digest);

// r || s (PKCS#11 CKM_ECDSA output) to DER ECDSA-Sig-Value (RFC 5480 / X9.62).
Result<Bytes> ecdsa_raw_to_der(std::span<const std::uint8_t> raw);

// EC signature size (2 x field bytes) from a DER CKA_EC_PARAMS; 0 if unknown.
std::size_t ecdsa_signature_size(std::span<const std::uint8_t> ec_params_der);

}  // namespace certcustody
