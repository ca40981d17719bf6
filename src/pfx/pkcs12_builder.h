// PKCS#12 (RFC 7292) files for recipients: a key, its certificate and chain,
// protected by a random password. The file itself travels only inside a CMS
// EnvelopedData (enveloped_data.h), so the password protects it at rest on the
// recipient's side, not in transit.
#pragma once

#include <string>
#include <vector>

#include "common/error.h"
#include "common/ossl.h"
#include "common/secure_buffer.h"

namespace certcustody::pfx {

// The PKCS#12 protection of a profile (`pfx_format` in [profile.<name>]).
//   aes256_sha256     key and certificate bags PBES2 (PBKDF2-HMAC-SHA-256,
//                     AES-256-CBC), MAC HMAC-SHA-256.
//   compat_3des_sha1  both bags pbeWithSHA1And3-KeyTripleDES-CBC, MAC
//                     HMAC-SHA-1, for older iOS/macOS/Android. Never RC2-40.
enum class PfxFormat { aes256_sha256, compat_3des_sha1 };

// "aes256-sha256" | "3des-sha1"; anything else is config.pfx_format_invalid.
Result<PfxFormat> parse_pfx_format(const std::string& s);
std::string pfx_format_name(PfxFormat f);

// 32 characters of base64url (RFC 4648 §5) from RAND_priv_bytes: 192 bits.
// Empty only when the random generator fails; build_pkcs12 refuses an empty
// password, so that failure cannot produce an unprotected file.
SecureBytes random_password();

// key + cert + chain -> DER PKCS#12 protected by `password` (ASCII/UTF-8).
// 2048 iterations (OpenSSL's default) for encryption and MAC: the passwords
// are 192-bit random, so stretching adds nothing. Errors: pfx.key_mismatch
// (the key is not the certificate's), pfx.password_empty, pfx.build_failed.
Result<SecureBytes> build_pkcs12(EVP_PKEY* key, X509* cert, const std::vector<X509Ptr>& chain,
                                 const std::string& friendly_name, const SecureBytes& password, PfxFormat format);

}  // namespace certcustody::pfx
