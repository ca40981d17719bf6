// Secrets at rest (the user key, the PFX and its password): AES-256-GCM under
// the token's PFX encryption key, the request id and purpose bound in as AAD,
// so a sealed blob cannot be swapped between requests or purposes.
// Stored form: "ccs1" || 12-byte IV || ciphertext || 16-byte tag.
#pragma once

#include <string>

#include "common/error.h"
#include "common/secure_buffer.h"
#include "custody/key_custody.h"

namespace certcustody::pipeline {

Result<std::string> seal_at_rest(KeyCustody& custody, const std::string& kek, const std::string& request_id,
                                 const char* purpose, std::span<const std::uint8_t> plaintext);
Result<SecureBytes> unseal_at_rest(KeyCustody& custody, const std::string& kek, const std::string& request_id,
                                   const char* purpose, const std::string& sealed);

}  // namespace certcustody::pipeline
