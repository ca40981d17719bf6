#include "custody/key_custody.h"

#include <openssl/obj_mac.h>

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

namespace {

struct HashInfo {
  HashAlg alg;
  const char* name;  // OpenSSL's name
  std::size_t size;
  int nid;
};
constexpr HashInfo kHashes[] = {
    {HashAlg::sha1, "SHA1", 20, NID_sha1},
    {HashAlg::sha224, "SHA224", 28, NID_sha224},
    {HashAlg::sha256, "SHA256", 32, NID_sha256},
    {HashAlg::sha384, "SHA384", 48, NID_sha384},
    {HashAlg::sha512, "SHA512", 64, NID_sha512},
    {HashAlg::sha512_224, "SHA512-224", 28, NID_sha512_224},
    {HashAlg::sha512_256, "SHA512-256", 32, NID_sha512_256},
    {HashAlg::sha3_224, "SHA3-224", 28, NID_sha3_224},
    {HashAlg::sha3_256, "SHA3-256", 32, NID_sha3_256},
    {HashAlg::sha3_384, "SHA3-384", 48, NID_sha3_384},
    {HashAlg::sha3_512, "SHA3-512", 64, NID_sha3_512},
};

const HashInfo& info(HashAlg h) {
  for (const HashInfo& i : kHashes)
    if (i.alg == h) return i;
  return kHashes[2];
}

}  // namespace

const char* hash_name(HashAlg h) { return info(h).name; }
std::size_t hash_size(HashAlg h) { return info(h).size; }
int hash_nid(HashAlg h) { return info(h).nid; }

std::optional<HashAlg> hash_by_nid(int nid) {
  for (const HashInfo& i : kHashes)
    if (i.nid == nid) return i.alg;
  return std::nullopt;
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

Result<std::vector<FoundObject>> KeyCustody::find_objects(const ObjectQuery& query) {
  if (!query.label)
    return Error{"custody.label_invalid", "keys of " + location() + " are found by label only",
                 "name the key by its label (object=)"};
  const std::string& label = *query.label;
  std::vector<FoundObject> out;
  if (query.private_keys || query.public_keys) {
    auto pub = public_key(label);
    if (!pub && pub.error().code != "custody.key_not_found") return pub.error();
    if (pub && query.private_keys) {
      auto key = find_key(label);
      if (key) {
        FoundObject o{std::move(key.value()), label, EvpPkeyPtr(EVP_PKEY_dup(pub->get())), {}};
        out.push_back(std::move(o));
      } else if (key.error().code != "custody.key_not_found") {
        return key.error();
      }
    }
    if (pub && query.public_keys) {
      FoundObject o;
      o.info.kind = ObjectKind::public_key;
      o.info.label = label;
      o.public_key = std::move(pub.value());
      out.push_back(std::move(o));
    }
  }
  if (query.certificates) {
    CC_TRY_ASSIGN(auto der, find_certificate(label));
    if (der) {
      FoundObject o;
      o.info.kind = ObjectKind::certificate;
      o.info.label = label;
      o.certificate = std::move(*der);
      out.push_back(std::move(o));
    }
  }
  return out;
}

}  // namespace certcustody
