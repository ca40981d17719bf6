#include "audit/token_signer.h"

#include <openssl/evp.h>

namespace certcustody::audit {

Result<CheckpointSigner> token_signer(KeyCustody& custody, const std::string& key_label,
                                      const std::string& counter_label) {
  auto pub = custody.public_key(key_label);
  if (!pub)
    return Error{"audit.key_unusable", "the audit key '" + key_label + "' cannot be used: " + pub.error().what,
                 "have the HSM officer create it (certcustody audit keygen) and export its public key for auditors"};
  const bool ec = EVP_PKEY_is_a(pub->get(), "EC") == 1;
  CC_TRY_ASSIGN(Bytes spki_hash, digest("SHA256", public_key_der(pub->get())));
  CheckpointSigner s;
  s.key_id = to_hex_lower(spki_hash);
  s.advance_counter = [&custody, counter_label] { return custody.advance_counter(counter_label); };
  s.sign = [&custody, key_label, ec](std::span<const std::uint8_t> sha256) {
    return custody.sign_digest(key_label, ec ? SignScheme::ecdsa : SignScheme::rsa_pkcs1, HashAlg::sha256, sha256);
  };
  return s;
}

}  // namespace certcustody::audit
