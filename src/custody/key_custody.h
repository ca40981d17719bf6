// The backend-neutral face of key custody: the only way the rest of
// certcustody uses a private or secret key. Keys are named by label; their
// values never leave the token — only public keys, signatures and ciphertexts do.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/ossl.h"
#include "common/secure_buffer.h"

namespace certcustody {

enum class KeyType { rsa2048, rsa3072, rsa4096, ec_p256, ec_p384 };
enum class SignScheme { rsa_pkcs1, rsa_pss, ecdsa };
// The digests token keys sign with (hashing is done in software). MD5 and the
// like are not among them.
enum class HashAlg {
  sha1, sha224, sha256, sha384, sha512, sha512_224, sha512_256, sha3_224, sha3_256, sha3_384, sha3_512
};
// What a key pair may do. One purpose per key: an RA (signing) key can never
// serve as a decryption oracle, and a recipient key never signs.
enum class KeyPurpose { sign, decrypt };

Result<KeyType> parse_key_type(const std::string& s);  // "rsa2048", "ec-p256", ...
std::string key_type_name(KeyType t);
const char* hash_name(HashAlg h);                      // OpenSSL name, "SHA256"
std::size_t hash_size(HashAlg h);
int hash_nid(HashAlg h);                               // NID_sha256, ...
// The hash of an OpenSSL digest NID; nullopt for digests token keys are not used with.
std::optional<HashAlg> hash_by_nid(int nid);
// custody.digest_length unless `digest` has the size of a `hash` digest.
Status check_digest_length(HashAlg hash, std::span<const std::uint8_t> digest);

enum class ObjectKind { private_key, public_key, secret_key, certificate, other };

// What a token object is, without any secret.
struct ObjectInfo {
  ObjectKind kind = ObjectKind::other;
  std::string label;
  Bytes id;                   // CKA_ID
  std::string algorithm;      // "RSA", "EC", "AES", "X.509"
  unsigned bits = 0;          // RSA modulus / AES key / EC field size
  std::string curve;          // "P-256" for EC keys
  bool sensitive = false;
  bool extractable = false;
  bool always_sensitive = false;
  bool never_extractable = false;
  bool local = false;         // generated inside the token
};

// AES-GCM output: the IV chosen by the token side, and ciphertext || tag.
struct GcmCiphertext {
  Bytes iv;
  Bytes ciphertext_and_tag;
};

// Content encrypted under a one-time AES-256 key that the token generates,
// uses and wraps for a recipient's RSA public key: the content key is never
// in host memory in clear. The parts of a CMS EnvelopedData (RFC 5652 §6).
struct SealedContent {
  Bytes iv;           // 16 bytes
  Bytes ciphertext;   // AES-256-CBC, PKCS#7 padding (CKM_AES_CBC_PAD)
  Bytes wrapped_key;  // RSAES-OAEP with SHA-1 / MGF1-SHA-1, no label (CKM_RSA_PKCS_OAEP)
};

// How a signature is made.
//  - hash: the digest the input is (its length is checked). Unset, the input is
//    signed as given, as OpenSSL does without a digest: RSA PKCS#1 v1.5 pads
//    these bytes (no DigestInfo; at most modulus size - 11 of them), ECDSA
//    takes them as the hash. RSA-PSS needs a digest.
//  - mgf1, salt_len: RSA-PSS only; unset, the digest and its length.
struct SignParams {
  SignScheme scheme = SignScheme::rsa_pkcs1;
  std::optional<HashAlg> hash;
  std::optional<HashAlg> mgf1;
  std::optional<std::size_t> salt_len;
};

// Which token objects a pkcs11: URI (RFC 7512) selects; unset fields match any.
struct ObjectQuery {
  std::optional<std::string> label;  // object=
  std::optional<Bytes> id;           // id=
  bool private_keys = true;          // type=private
  bool public_keys = true;           // type=public
  bool certificates = true;          // type=cert
};

// A key or certificate that a query found. Nothing secret: a private key is
// named, never read.
struct FoundObject {
  ObjectInfo info;
  std::string key_name;   // private keys: the label sign/decrypt take for this key
  EvpPkeyPtr public_key;  // keys: the public half; certificates: the subject's key
  Bytes certificate;      // certificates: DER
};

// Where OpenSSL objects made from token data (public keys) live: a library
// context and property query, so that the provider can keep them in its own
// default-provider context and never fetch itself.
struct SoftwareContext {
  OSSL_LIB_CTX* libctx = nullptr;
  const char* propq = nullptr;
};

// Whether the keys can be used now; when not, since when and why.
struct CustodyHealth {
  bool available = true;
  std::optional<Error> error{};                    // the last reconnect's error
  std::int64_t since_ms = 0;                       // away since (Unix epoch, ms)
};

class KeyCustody {
 public:
  virtual ~KeyCustody() = default;

  // What the last operations and reconnects found; never blocks on the token.
  virtual CustodyHealth health() const { return {}; }
  // For a timer: notices a token that went away while unused (and reconnects
  // one that is away, with backoff). A lost token comes back by itself
  // either way: operations reconnect too. Backends that cannot probe cheaply
  // leave it to their operations.
  virtual Status check() { return {}; }

  // Reaches the token now (PKCS#11: logs in; TPM: opens the TPM and its
  // storage key), so that a refused PIN or a missing device is seen here.
  virtual Status connect() = 0;
  // Where the keys are, for messages and the audit log: the token URI, or
  // "tpm2 <tcti>".
  virtual std::string location() const = 0;
  // At process exit: drop the connection without calls a module may crash in
  // (SoftHSM at OpenSSL teardown). The object must not be used afterwards.
  virtual void abandon() {}

  // Key pairs and secret keys are generated inside the token, sensitive and
  // non-extractable. Fails with custody.label_exists when the label is taken.
  virtual Result<ObjectInfo> generate_key_pair(const std::string& label, KeyType type,
                                              KeyPurpose purpose) = 0;
  virtual Result<ObjectInfo> generate_secret_key(const std::string& label, unsigned bits) = 0;

  virtual Result<std::vector<ObjectInfo>> list_objects() = 0;
  // The private (or secret) key with this label.
  virtual Result<ObjectInfo> find_key(const std::string& label) = 0;
  virtual Result<EvpPkeyPtr> public_key(const std::string& label) = 0;
  // The keys and certificates `query` selects, private keys first, then
  // public keys, then certificates. Public objects need no login: the PIN is
  // read only when private keys are asked for. This default serves backends
  // whose objects have labels only (query.label required).
  virtual Result<std::vector<FoundObject>> find_objects(const ObjectQuery& query);

  // Signs `input` (see SignParams) in the token; a scheme, digest, MGF1 or
  // salt the token's mechanisms cannot do is custody.mechanism_unsupported.
  // ECDSA signatures are returned DER-encoded (ECDSA-Sig-Value).
  virtual Result<Bytes> sign_input(const std::string& label, const SignParams& params,
                                   std::span<const std::uint8_t> input) = 0;
  // `digest` is the hash of the message, computed by the caller in software;
  // PSS with MGF1 of the same digest and a salt of its length.
  Result<Bytes> sign_digest(const std::string& label, SignScheme scheme, HashAlg hash,
                            std::span<const std::uint8_t> digest) {
    return sign_input(label, SignParams{scheme, hash, std::nullopt, std::nullopt}, digest);
  }
  // Hashes `message` in software, then signs the digest in the token.
  Result<Bytes> sign(const std::string& label, SignScheme scheme, HashAlg hash,
                     std::span<const std::uint8_t> message);

  virtual Result<Bytes> rsa_oaep_encrypt(const std::string& label, HashAlg hash,
                                         std::span<const std::uint8_t> plaintext) = 0;
  virtual Result<SecureBytes> rsa_oaep_decrypt(const std::string& label, HashAlg hash,
                                               std::span<const std::uint8_t> ciphertext) = 0;
  virtual Result<GcmCiphertext> aes_gcm_encrypt(const std::string& label, std::span<const std::uint8_t> plaintext,
                                                std::span<const std::uint8_t> aad) = 0;
  virtual Result<SecureBytes> aes_gcm_decrypt(const std::string& label, const GcmCiphertext& in,
                                              std::span<const std::uint8_t> aad) = 0;

  // Seals `plaintext` for the holder of `recipient_rsa_public` (RSA, 2048 bits
  // or more; else pfx.recipient_unsupported). The content key exists only as
  // a session object in the token and is destroyed before this returns.
  virtual Result<SealedContent> seal_for_recipient(const EVP_PKEY* recipient_rsa_public,
                                                   std::span<const std::uint8_t> plaintext) = 0;

  // A monotonic counter held in the token (private data objects labelled
  // `label`, value 8 bytes big-endian; pkcs11_counter.cpp). Advanced by one
  // and returned (1 when there was none); it never goes back while the token
  // keeps its objects. Advance from one process at a time (the daemon).
  virtual Result<std::uint64_t> advance_counter(const std::string& label) = 0;
  // Its value now; 0 when there is no such counter yet.
  virtual Result<std::uint64_t> read_counter(const std::string& label) = 0;

  // Stores a certificate (DER) beside the key pair `label` (same CKA_ID and
  // label). The caller has checked that the certificate matches the key.
  virtual Status store_certificate(const std::string& label, std::span<const std::uint8_t> der, bool replace) = 0;
  virtual Result<std::optional<Bytes>> find_certificate(const std::string& label) = 0;
};

}  // namespace certcustody
