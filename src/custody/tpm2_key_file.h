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
// The TCG storage primary key (SRK) template: RSA 2048, AES-128-CFB,
// restricted decrypt, noDA.
TPM2B_PUBLIC srk_template();

// The public key of an RSA or ECC public area.
Result<EvpPkeyPtr> public_area_to_pkey(const TPMT_PUBLIC& pub, const std::string& label, const SoftwareContext& sw);
// ObjectInfo for a key's public area: private_key or secret_key, with the
// attributes that say it cannot leave the TPM.
ObjectInfo public_area_info(const TPMT_PUBLIC& pub, const std::string& label);
// The TPM object name (nameAlg || H(public area)).
Bytes public_area_name(const TPMT_PUBLIC& pub);

// A TPM handle as tpm2-tools write it: "0x81000001".
std::string tpm_handle_hex(std::uint32_t handle);

}  // namespace certcustody
