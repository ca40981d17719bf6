// CMS EnvelopedData (RFC 5652 §6) for one recipient, built from the outputs of
// KeyCustody::seal_for_recipient. OpenSSL's CMS_encrypt cannot be used: it
// makes the content key in host memory. Here the key is made, used and
// wrapped in the token, and only the structure around it is encoded here.
#pragma once

#include <cstdint>
#include <span>

#include "common/error.h"
#include "common/ossl.h"
#include "custody/key_custody.h"

namespace certcustody::pfx {

// ContentInfo { id-envelopedData, EnvelopedData v0 {
//   one KeyTransRecipientInfo v0 { issuerAndSerialNumber of `recipient`,
//     id-RSAES-OAEP with default (SHA-1) parameters, encryptedKey = wrapped_key },
//   EncryptedContentInfo { id-data, aes256-CBC with the IV as parameter,
//     [0] IMPLICIT encryptedContent } } }, DER.
// Decrypts with `openssl cms -decrypt` and CMS_decrypt. Errors: pfx.sealed_invalid
// (IV not 16 bytes, empty key or ciphertext), pfx.encode_failed.
Result<Bytes> encode_enveloped_data(X509* recipient, const SealedContent& sealed);

// The checks a recipient certificate must pass before anything is sealed for it:
//   pfx.recipient_unsupported  not RSA, or RSA under 2048 bits
//   pfx.recipient_expired      outside its validity period now (expired or not yet valid)
//   pfx.recipient_key_usage    a keyUsage extension without keyEncipherment
Status check_recipient(X509* recipient);

// check_recipient, then seals `plaintext` in the token (custody.seal_for_recipient)
// and encodes the EnvelopedData.
Result<Bytes> envelope_for(KeyCustody& custody, X509* recipient, std::span<const std::uint8_t> plaintext);

}  // namespace certcustody::pfx
