#include "custody/tpm2_key_file.h"

#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <tss2/tss2_mu.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "custody/tpm2_session_crypto.h"
#include "custody/tss2_key_asn1.h"

namespace certcustody {
namespace {

constexpr const char* kPemName = "TSS2 PRIVATE KEY";
constexpr std::size_t kMaxFileBytes = 16384;

Error blob_invalid(const std::string& path, const std::string& why) {
  return Error{"custody.key_file_invalid", "the TPM key file " + path + " is not usable: " + why,
               "restore the file from backup, or generate the key again (`certcustody ra keygen` / `kek create`)"};
}

TPMA_OBJECT base_attributes() {
  return TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
         TPMA_OBJECT_USERWITHAUTH;
}

TPM2B_PUBLIC empty_public(TPMI_ALG_PUBLIC type, TPMA_OBJECT attributes) {
  TPM2B_PUBLIC p{};
  p.publicArea.type = type;
  p.publicArea.nameAlg = TPM2_ALG_SHA256;
  p.publicArea.objectAttributes = attributes;
  return p;
}

using ParamBldPtr = std::unique_ptr<OSSL_PARAM_BLD, OsslDeleter<OSSL_PARAM_BLD_free>>;
using ParamsPtr = std::unique_ptr<OSSL_PARAM, OsslDeleter<OSSL_PARAM_free>>;
using PkeyCtxPtr = EvpPkeyCtxPtr;
using BnPtr = std::unique_ptr<BIGNUM, OsslDeleter<BN_free>>;

Result<EvpPkeyPtr> pkey_from(const char* type, OSSL_PARAM_BLD* bld, const std::string& label,
                             const SoftwareContext& sw) {
  ParamsPtr params(OSSL_PARAM_BLD_to_param(bld));
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(sw.libctx, type, sw.propq));
  EVP_PKEY* key = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params.get()) != 1)
    return openssl_error("custody.public_key_invalid", "the TPM public area of '" + label + "' is not a valid key",
                         "generate the key again");
  return EvpPkeyPtr(key);
}

}  // namespace

Result<std::string> encode_tss2_pem(const TpmKeyBlob& blob) {
  std::uint8_t pub[sizeof(TPM2B_PUBLIC)];
  std::uint8_t priv[sizeof(TPM2B_PRIVATE)];
  std::size_t pub_len = 0, priv_len = 0;
  if (Tss2_MU_TPM2B_PUBLIC_Marshal(&blob.pub, pub, sizeof pub, &pub_len) != TSS2_RC_SUCCESS ||
      Tss2_MU_TPM2B_PRIVATE_Marshal(&blob.priv, priv, sizeof priv, &priv_len) != TSS2_RC_SUCCESS)
    return Error{"custody.key_file_invalid", "the TPM returned a key that cannot be marshalled",
                 "report this as a certcustody bug"};
  unsigned char* der = nullptr;
  const int der_len = cc_tss2_key_encode(blob.empty_auth ? 1 : 0, blob.parent, pub, pub_len, priv, priv_len, &der);
  if (der_len <= 0) return openssl_error("crypto.encode_failed", "cannot encode the TPM key file", "retry; check memory");
  BioPtr bio(BIO_new(BIO_s_mem()));
  const int ok = bio ? PEM_write_bio(bio.get(), kPemName, "", der, der_len) : 0;
  OPENSSL_free(der);
  if (ok <= 0) return openssl_error("crypto.encode_failed", "cannot write the TPM key file PEM", "retry; check memory");
  char* text = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &text);
  return std::string(text, static_cast<std::size_t>(n));
}

Result<TpmKeyBlob> read_tss2_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return Error{"custody.key_not_found", "the TPM key file " + path + " does not exist or cannot be read",
                 "list the keys with `certcustody token info`; create the key (`certcustody ra keygen` / "
                 "`certcustody kek create`) or fix the label (check [custody] key_dir and its permissions)"};
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_tss2_pem(ss.str(), path);
}

Result<TpmKeyBlob> parse_tss2_pem(const std::string& text, const std::string& path) {
  if (text.size() > kMaxFileBytes) return blob_invalid(path, "it is larger than any TPM key file");
  BioPtr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
  char* name = nullptr;
  char* header = nullptr;
  unsigned char* der = nullptr;
  long der_len = 0;
  if (!bio || PEM_read_bio(bio.get(), &name, &header, &der, &der_len) != 1) {
    ERR_clear_error();
    return blob_invalid(path, "it holds no PEM block");
  }
  const bool right_name = std::strcmp(name, kPemName) == 0;
  OPENSSL_free(name);
  OPENSSL_free(header);
  if (!right_name) {
    OPENSSL_free(der);
    return blob_invalid(path, std::string("it is not a \"") + kPemName + "\" PEM file");
  }
  auto parts = std::make_unique<cc_tss2_key_parts>();
  const int decoded = cc_tss2_key_decode(der, static_cast<std::size_t>(der_len), parts.get());
  OPENSSL_free(der);
  ERR_clear_error();
  if (decoded < 0) return blob_invalid(path, "it is a TPM key of another kind (importable or sealed data), not a loadable key");
  if (decoded == 0) return blob_invalid(path, "its ASN.1 is malformed");
  TpmKeyBlob blob;
  blob.parent = static_cast<std::uint32_t>(parts->parent);
  blob.empty_auth = parts->empty_auth != 0;
  std::size_t off = 0;
  if (parts->parent > 0xFFFFFFFFu ||
      Tss2_MU_TPM2B_PUBLIC_Unmarshal(parts->pub, parts->pub_len, &off, &blob.pub) != TSS2_RC_SUCCESS ||
      off != parts->pub_len)
    return blob_invalid(path, "its public area is malformed");
  off = 0;
  if (Tss2_MU_TPM2B_PRIVATE_Unmarshal(parts->priv, parts->priv_len, &off, &blob.priv) != TSS2_RC_SUCCESS ||
      off != parts->priv_len)
    return blob_invalid(path, "its private part is malformed");
  return blob;
}

Result<TPM2B_PUBLIC> key_pair_template(KeyType type, KeyPurpose purpose) {
  const bool sign = purpose == KeyPurpose::sign;
  const TPMA_OBJECT attrs = base_attributes() | (sign ? TPMA_OBJECT_SIGN_ENCRYPT : TPMA_OBJECT_DECRYPT);
  switch (type) {
    case KeyType::rsa2048:
    case KeyType::rsa3072:
    case KeyType::rsa4096: {
      TPM2B_PUBLIC p = empty_public(TPM2_ALG_RSA, attrs);
      auto& d = p.publicArea.parameters.rsaDetail;
      d.symmetric.algorithm = TPM2_ALG_NULL;
      d.scheme.scheme = TPM2_ALG_NULL;
      d.keyBits = type == KeyType::rsa2048 ? 2048 : type == KeyType::rsa3072 ? 3072 : 4096;
      d.exponent = 0;  // 65537
      return p;
    }
    case KeyType::ec_p256:
    case KeyType::ec_p384: {
      if (!sign)
        return Error{"custody.key_type_invalid", "decryption keys must be RSA (" + key_type_name(type) + " was asked)",
                     "use rsa2048 or rsa3072 for a decryption key"};
      TPM2B_PUBLIC p = empty_public(TPM2_ALG_ECC, attrs);
      auto& d = p.publicArea.parameters.eccDetail;
      d.symmetric.algorithm = TPM2_ALG_NULL;
      d.scheme.scheme = TPM2_ALG_NULL;
      d.curveID = type == KeyType::ec_p256 ? TPM2_ECC_NIST_P256 : TPM2_ECC_NIST_P384;
      d.kdf.scheme = TPM2_ALG_NULL;
      return p;
    }
  }
  return Error{"custody.key_type_invalid", "unknown key type", "use rsa2048, rsa3072, ec-p256 or ec-p384"};
}

TPM2B_PUBLIC aes_kek_template(unsigned bits) {
  // Encrypt only (TPM2_EncryptDecrypt2 needs `sign` to encrypt, `decrypt` to decrypt).
  TPM2B_PUBLIC p = empty_public(TPM2_ALG_SYMCIPHER, base_attributes() | TPMA_OBJECT_SIGN_ENCRYPT);
  auto& s = p.publicArea.parameters.symDetail.sym;
  s.algorithm = TPM2_ALG_AES;
  s.keyBits.aes = static_cast<TPMI_AES_KEY_BITS>(bits);
  s.mode.aes = TPM2_ALG_NULL;
  return p;
}

TPM2B_PUBLIC hmac_kek_template() {
  TPM2B_PUBLIC p = empty_public(TPM2_ALG_KEYEDHASH, base_attributes() | TPMA_OBJECT_SIGN_ENCRYPT);
  auto& s = p.publicArea.parameters.keyedHashDetail.scheme;
  s.scheme = TPM2_ALG_HMAC;
  s.details.hmac.hashAlg = TPM2_ALG_SHA256;
  return p;
}

Result<TPM2B_PUBLIC> srk_template(KeyType type) {
  const TPMA_OBJECT attrs = base_attributes() | TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
  if (type == KeyType::rsa2048) {
    TPM2B_PUBLIC p = empty_public(TPM2_ALG_RSA, attrs);
    auto& d = p.publicArea.parameters.rsaDetail;
    d.symmetric.algorithm = TPM2_ALG_AES;
    d.symmetric.keyBits.aes = 128;
    d.symmetric.mode.aes = TPM2_ALG_CFB;
    d.scheme.scheme = TPM2_ALG_NULL;
    d.keyBits = 2048;
    d.exponent = 0;
    return p;
  }
  if (type != KeyType::ec_p256 && type != KeyType::ec_p384)
    return Error{"config.invalid_value", "a storage key is rsa2048, ec-p256 or ec-p384, not " + key_type_name(type),
                 "set [custody] srk_type to one of those"};
  const bool p384 = type == KeyType::ec_p384;
  TPM2B_PUBLIC p = empty_public(TPM2_ALG_ECC, attrs);
  p.publicArea.nameAlg = p384 ? TPM2_ALG_SHA384 : TPM2_ALG_SHA256;
  auto& d = p.publicArea.parameters.eccDetail;
  d.symmetric.algorithm = TPM2_ALG_AES;
  d.symmetric.keyBits.aes = p384 ? 256 : 128;
  d.symmetric.mode.aes = TPM2_ALG_CFB;
  d.scheme.scheme = TPM2_ALG_NULL;
  d.curveID = p384 ? TPM2_ECC_NIST_P384 : TPM2_ECC_NIST_P256;
  d.kdf.scheme = TPM2_ALG_NULL;
  return p;
}

std::string srk_create_command(KeyType type, const std::string& owner_auth) {
  const char* alg = type == KeyType::ec_p384   ? "-g sha384 -G ecc384:null:aes256cfb"
                    : type == KeyType::ec_p256 ? "-g sha256 -G ecc256:null:aes128cfb"
                                               : "-g sha256 -G rsa2048:null:aes128cfb";
  return std::string("tpm2_createprimary -C o") + (owner_auth.empty() ? "" : " -P " + owner_auth) + " " + alg +
         " -a 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|decrypt' -c srk.ctx";
}

Result<EvpPkeyPtr> public_area_to_pkey(const TPMT_PUBLIC& pub, const std::string& label, const SoftwareContext& sw) {
  ParamBldPtr bld(OSSL_PARAM_BLD_new());
  if (!bld) return openssl_error("crypto.alloc_failed", "out of memory", "retry; check memory");
  if (pub.type == TPM2_ALG_RSA) {
    const auto& n = pub.unique.rsa;
    const std::uint32_t exp = pub.parameters.rsaDetail.exponent == 0 ? 65537 : pub.parameters.rsaDetail.exponent;
    BnPtr bn_n(BN_bin2bn(n.buffer, n.size, nullptr));
    BnPtr bn_e(BN_new());
    if (!bn_n || !bn_e || BN_set_word(bn_e.get(), exp) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) != 1)
      return openssl_error("crypto.alloc_failed", "out of memory", "retry; check memory");
    return pkey_from("RSA", bld.get(), label, sw);
  }
  if (pub.type == TPM2_ALG_ECC) {
    const char* group = tpm_curve_group(pub.parameters.eccDetail.curveID);
    if (group == nullptr)
      return Error{"custody.public_key_invalid", "key '" + label + "' is on a curve certcustody does not use",
                   "use a P-256 or P-384 key"};
    const std::size_t field = pub.parameters.eccDetail.curveID == TPM2_ECC_NIST_P256 ? 32
                              : pub.parameters.eccDetail.curveID == TPM2_ECC_NIST_P384 ? 48 : 66;
    const auto& x = pub.unique.ecc.x;
    const auto& y = pub.unique.ecc.y;
    if (x.size > field || y.size > field)
      return Error{"custody.public_key_invalid", "key '" + label + "' has a malformed EC point", "generate the key again"};
    Bytes point(1 + 2 * field, 0);
    point[0] = 0x04;  // uncompressed
    std::memcpy(point.data() + 1 + field - x.size, x.buffer, x.size);
    std::memcpy(point.data() + 1 + 2 * field - y.size, y.buffer, y.size);
    if (OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) != 1)
      return openssl_error("crypto.alloc_failed", "out of memory", "retry; check memory");
    return pkey_from("EC", bld.get(), label, sw);
  }
  return Error{"custody.key_type_unsupported", "key '" + label + "' is neither RSA nor EC",
               "use an RSA or EC key pair"};
}

const char* tpm_curve_group(TPMI_ECC_CURVE curve) {
  switch (curve) {
    case TPM2_ECC_NIST_P256: return "P-256";
    case TPM2_ECC_NIST_P384: return "P-384";
    case TPM2_ECC_NIST_P521: return "P-521";
    default: return nullptr;
  }
}

std::string tpm_handle_hex(std::uint32_t handle) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", handle);
  return buf;
}

Bytes public_area_name(const TPMT_PUBLIC& pub) {
  std::uint8_t buf[sizeof(TPMT_PUBLIC)];
  std::size_t len = 0;
  if (Tss2_MU_TPMT_PUBLIC_Marshal(&pub, buf, sizeof buf, &len) != TSS2_RC_SUCCESS) return {};
  const char* md = tpm_hash_name(pub.nameAlg);
  auto h = md != nullptr ? digest(md, {buf, len}) : Result<Bytes>(Error{});
  if (!h) return {};
  Bytes name{static_cast<std::uint8_t>(pub.nameAlg >> 8), static_cast<std::uint8_t>(pub.nameAlg & 0xFF)};
  name.insert(name.end(), h->begin(), h->end());
  return name;
}

ObjectInfo public_area_info(const TPMT_PUBLIC& pub, const std::string& label) {
  ObjectInfo info;
  info.label = label;
  info.id = public_area_name(pub);
  const TPMA_OBJECT a = pub.objectAttributes;
  const bool fixed = (a & TPMA_OBJECT_FIXEDTPM) && (a & TPMA_OBJECT_FIXEDPARENT);
  info.local = (a & TPMA_OBJECT_SENSITIVEDATAORIGIN) != 0;
  info.sensitive = true;  // a TPM never returns a private area in clear
  info.extractable = !fixed;
  info.never_extractable = fixed;
  info.always_sensitive = true;
  switch (pub.type) {
    case TPM2_ALG_RSA:
      info.kind = ObjectKind::private_key;
      info.algorithm = "RSA";
      info.bits = pub.parameters.rsaDetail.keyBits;
      break;
    case TPM2_ALG_ECC:
      info.kind = ObjectKind::private_key;
      info.algorithm = "EC";
      info.curve = tpm_curve_group(pub.parameters.eccDetail.curveID) ? tpm_curve_group(pub.parameters.eccDetail.curveID) : "unknown";
      info.bits = pub.parameters.eccDetail.curveID == TPM2_ECC_NIST_P384 ? 384 : 256;
      break;
    case TPM2_ALG_SYMCIPHER:
      info.kind = ObjectKind::secret_key;
      info.algorithm = "AES";
      info.bits = pub.parameters.symDetail.sym.keyBits.aes;
      break;
    case TPM2_ALG_KEYEDHASH:
      info.kind = ObjectKind::secret_key;
      info.algorithm = "HMAC";
      info.bits = 256;
      break;
    default:
      info.algorithm = "other";
  }
  return info;
}

}  // namespace certcustody
