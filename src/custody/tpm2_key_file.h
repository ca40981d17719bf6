// TPM key material outside the TPM: the "TSS2 PRIVATE KEY" PEM file (the
// private part is encrypted by the parent key; only that TPM can load it),
// key templates, and TPM public areas as OpenSSL keys.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <cstdint>
#include <string>

#include "common/error.h"
#include "common/ossl.h"
#include "custody/key_custody.h"

namespace certcustody {

struct TpmKeyBlob {
  TPM2B_PUBLIC pub{};
  TPM2B_PRIVATE priv{};
  std::uint32_t parent = 0;  // persistent handle of the parent, or TPM2_RH_OWNER (a primary from the template)
  bool empty_auth = true;
};

// PEM text of a loadable key.
Result<std::string> encode_tss2_pem(const TpmKeyBlob& blob);
// Parses the PEM file at `path` (named in errors).
Result<TpmKeyBlob> read_tss2_file(const std::string& path);
// Parses PEM text; `name` (the file) is named in errors (custody.key_file_invalid).
Result<TpmKeyBlob> parse_tss2_pem(const std::string& text, const std::string& name);

// Templates of the keys certcustody makes. Sign keys: fixedTPM, fixedParent,
// sensitiveDataOrigin, userWithAuth, sign (scheme chosen per signature).
// Decrypt keys: the same with decrypt instead of sign (OAEP per call).
Result<TPM2B_PUBLIC> key_pair_template(KeyType type, KeyPurpose purpose);
// A KEK: AES (mode chosen per call) that may only encrypt, or an HMAC key.
TPM2B_PUBLIC aes_kek_template(unsigned bits);
TPM2B_PUBLIC hmac_kek_template();
// The TCG storage primary key (SRK) templates: restricted decrypt, noDA,
// empty auth, empty unique; RSA 2048 or ECC NIST P-256 with SHA-256 and
// AES-128-CFB, ECC NIST P-384 with SHA-384 and AES-256-CFB.
Result<TPM2B_PUBLIC> srk_template(KeyType type);
// The tpm2-tools command that makes the same primary key (into srk.ctx).
std::string srk_create_command(KeyType type, const std::string& owner_auth);

// The public key of an RSA or ECC public area.
Result<EvpPkeyPtr> public_area_to_pkey(const TPMT_PUBLIC& pub, const std::string& label, const SoftwareContext& sw);
// ObjectInfo for a key's public area: private_key or secret_key, with the
// attributes that say it cannot leave the TPM.
ObjectInfo public_area_info(const TPMT_PUBLIC& pub, const std::string& label);
// The TPM object name: nameAlg || H_nameAlg(public area) (Part 1 §16);
// empty for a name algorithm other than SHA-1/2.
Bytes public_area_name(const TPMT_PUBLIC& pub);
// OpenSSL's group name of a TPM curve ("P-256"); nullptr for curves other than NIST P-256/384/521.
const char* tpm_curve_group(TPMI_ECC_CURVE curve);

// A TPM handle as tpm2-tools write it: "0x81000001".
std::string tpm_handle_hex(std::uint32_t handle);

}  // namespace certcustody
