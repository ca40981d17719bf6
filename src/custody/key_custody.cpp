#include "custody/key_custody.h"

namespace certcustody {

Result<KeyType> parse_key_type(const std::string& s) {
  if (s == "rsa2048") return KeyType::rsa2048;
  if (s == "rsa3072") return KeyType::rsa3072;
  if (s == "rsa4096") return KeyType::rsa4096;
  if (s == "ec-p256") return KeyType::ec_p256;
  if (s == "ec-p384") return KeyType::ec_p384;
  return Error{"custody.key_type_invalid", "\"" + s + "\" is not a key type",
               "use one of rsa2048, rsa3072, rsa4096, ec-p256, ec-p384"};
}

std::string key_type_name(KeyType t) {
  switch (t) {
    case KeyType::rsa2048: return "rsa2048";
    case KeyType::rsa3072: return "rsa3072";
    case KeyType::rsa4096: return "rsa4096";
    case KeyType::ec_p256: return "ec-p256";
    case KeyType::ec_p384: return "ec-p384";
  }
  return "?";
}

const char* hash_name(HashAlg h) {
  switch (h) {
    case HashAlg::sha1: return "SHA1";
    case HashAlg::sha256: return "SHA256";
    case HashAlg::sha384: return "SHA384";
    case HashAlg::sha512: return "SHA512";
  }
  return "SHA256";
}

std::size_t hash_size(HashAlg h) {
  switch (h) {
    case HashAlg::sha1: return 20;
    case HashAlg::sha256: return 32;
    case HashAlg::sha384: return 48;
    case HashAlg::sha512: return 64;
  }
  return 0;
}

Status check_digest_length(HashAlg hash, std::span<const std::uint8_t> digest) {
  if (digest.size() == hash_size(hash)) return {};
  return Error{"custody.digest_length", "a " + std::string(hash_name(hash)) + " digest has " +
                                            std::to_string(hash_size(hash)) + " bytes, not " +
                                            std::to_string(digest.size()),
               "pass the digest of the message, not the message"};
}

Result<Bytes> KeyCustody::sign(const std::string& label, SignScheme scheme, HashAlg hash,
                               std::span<const std::uint8_t> message) {
  CC_TRY_ASSIGN(Bytes d, digest(hash_name(hash), message));
  return sign_digest(label, scheme, hash, d);
}

}  // namespace certcustody
