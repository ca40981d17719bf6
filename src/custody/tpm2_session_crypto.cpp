#include "custody/tpm2_session_crypto.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <tss2/tss2_mu.h>

#include <array>
#include <memory>

#include "custody/tpm2_key_file.h"

namespace certcustody {
namespace {

using KdfPtr = std::unique_ptr<EVP_KDF, OsslDeleter<EVP_KDF_free>>;
using KdfCtxPtr = std::unique_ptr<EVP_KDF_CTX, OsslDeleter<EVP_KDF_CTX_free>>;
using MacCtxPtr = std::unique_ptr<EVP_MAC_CTX, OsslDeleter<EVP_MAC_CTX_free>>;
using BnPtr = std::unique_ptr<BIGNUM, OsslDeleter<BN_clear_free>>;

constexpr unsigned char kSaltLabel[] = "SECRET";  // with its NUL: the label of a session salt

std::array<std::uint8_t, 4> be32(std::uint32_t v) {
  return {static_cast<std::uint8_t>(v >> 24), static_cast<std::uint8_t>(v >> 16), static_cast<std::uint8_t>(v >> 8),
          static_cast<std::uint8_t>(v)};
}

Bytes concat(std::initializer_list<ByteSpan> parts) {
  Bytes out;
  for (ByteSpan p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

bool derive(const SoftwareContext& sw, const char* kdf_name, OSSL_PARAM* params, std::span<std::uint8_t> out) {
  KdfPtr kdf(EVP_KDF_fetch(sw.libctx, kdf_name, sw.propq));
  KdfCtxPtr ctx(kdf ? EVP_KDF_CTX_new(kdf.get()) : nullptr);
  return ctx && !out.empty() && EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) == 1;
}

bool rsa_oaep_salt(const SoftwareContext& sw, const TPMT_PUBLIC& key, SessionSalt& out) {
  auto pkey = public_area_to_pkey(key, "storage key", sw);
  if (!pkey) return false;
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(sw.libctx, pkey->get(), sw.propq));
  const char* md = tpm_hash_name(key.nameAlg);
  auto* label = static_cast<unsigned char*>(OPENSSL_memdup(kSaltLabel, sizeof kSaltLabel));
  const bool ok = ctx && md != nullptr && label != nullptr && EVP_PKEY_encrypt_init(ctx.get()) == 1 &&
                  EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_OAEP_PADDING) == 1 &&
                  EVP_PKEY_CTX_set_rsa_oaep_md_name(ctx.get(), md, nullptr) == 1 &&
                  EVP_PKEY_CTX_set_rsa_mgf1_md_name(ctx.get(), md, nullptr) == 1 &&
                  EVP_PKEY_CTX_set0_rsa_oaep_label(ctx.get(), label, sizeof kSaltLabel) == 1;
  if (!ok) {
    OPENSSL_free(label);
    return false;
  }
  out.salt.assign(tpm_hash_size(key.nameAlg), 0);
  std::size_t len = sizeof out.encrypted.secret;
  if (RAND_priv_bytes(out.salt.data(), static_cast<int>(out.salt.size())) != 1 ||
      EVP_PKEY_encrypt(ctx.get(), out.encrypted.secret, &len, out.salt.data(), out.salt.size()) != 1)
    return false;
  out.encrypted.size = static_cast<UINT16>(len);
  return true;
}

// x or y of an EC key, left-padded to the field size as the TPM writes them.
bool ec_coordinate(const EVP_PKEY* key, const char* which, std::size_t field, TPM2B_ECC_PARAMETER& out) {
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(key, which, &raw) != 1) return false;
  BnPtr bn(raw);
  if (field > sizeof out.buffer || BN_bn2binpad(bn.get(), out.buffer, static_cast<int>(field)) < 0) return false;
  out.size = static_cast<UINT16>(field);
  return true;
}

}  // namespace

const char* tpm_hash_name(TPMI_ALG_HASH alg) {
  switch (alg) {
    case TPM2_ALG_SHA1: return "SHA1";
    case TPM2_ALG_SHA256: return "SHA256";
    case TPM2_ALG_SHA384: return "SHA384";
    case TPM2_ALG_SHA512: return "SHA512";
    default: return nullptr;
  }
}

std::size_t tpm_hash_size(TPMI_ALG_HASH alg) {
  switch (alg) {
    case TPM2_ALG_SHA1: return 20;
    case TPM2_ALG_SHA256: return 32;
    case TPM2_ALG_SHA384: return 48;
    case TPM2_ALG_SHA512: return 64;
    default: return 0;
  }
}

bool tpm_kdfa(const SoftwareContext& sw, TPMI_ALG_HASH alg, ByteSpan key, const std::string& label,
              ByteSpan context_u, ByteSpan context_v, std::span<std::uint8_t> out) {
  const char* md = tpm_hash_name(alg);
  if (md == nullptr) return false;
  Bytes context = concat({context_u, context_v});
  std::string label_copy = label;
  char mac[] = "HMAC";
  std::string md_name = md;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_MAC, mac, 0),
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, md_name.data(), 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<std::uint8_t*>(key.data()), key.size()),
      // KBKDF adds the 00 separator after the label and [L]32 after the context.
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, label_copy.data(), label_copy.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, context.data(), context.size()),
      OSSL_PARAM_construct_end()};
  return derive(sw, "KBKDF", params, out);
}

bool tpm_kdfe(const SoftwareContext& sw, TPMI_ALG_HASH alg, ByteSpan z, const std::string& label, ByteSpan party_u,
              ByteSpan party_v, std::span<std::uint8_t> out) {
  const char* md = tpm_hash_name(alg);
  if (md == nullptr) return false;
  const std::uint8_t nul = 0;
  Bytes fixed_info = concat({{reinterpret_cast<const std::uint8_t*>(label.data()), label.size()}, {&nul, 1}, party_u,
                             party_v});
  std::string md_name = md;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, md_name.data(), 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SECRET, const_cast<std::uint8_t*>(z.data()), z.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, fixed_info.data(), fixed_info.size()),
      OSSL_PARAM_construct_end()};
  return derive(sw, "SSKDF", params, out);
}

void strip_trailing_zeros(SecureBytes& auth) {
  while (!auth.empty() && auth.back() == 0) auth.pop_back();
}

std::optional<std::string> session_salt_unsupported(const TPMT_PUBLIC& key) {
  if (tpm_hash_name(key.nameAlg) == nullptr)
    return "its name algorithm (TPM algorithm " + std::to_string(key.nameAlg) + ") is not SHA-1, SHA-256, SHA-384 or SHA-512";
  if (key.type == TPM2_ALG_RSA) return std::nullopt;
  if (key.type != TPM2_ALG_ECC) return "it is neither an RSA nor an ECC key";
  if (tpm_curve_group(key.parameters.eccDetail.curveID) == nullptr)
    return "its curve (TPM curve " + std::to_string(key.parameters.eccDetail.curveID) +
           ") is not NIST P-256, P-384 or P-521";
  return std::nullopt;
}

bool ecdh_session_salt(const SoftwareContext& sw, const TPMT_PUBLIC& key, EVP_PKEY* ephemeral, SessionSalt& out) {
  auto peer = public_area_to_pkey(key, "storage key", sw);
  if (!peer || ephemeral == nullptr) return false;
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(sw.libctx, ephemeral, sw.propq));
  std::size_t z_len = 0;
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 || EVP_PKEY_derive_set_peer(ctx.get(), peer->get()) != 1 ||
      EVP_PKEY_derive(ctx.get(), nullptr, &z_len) != 1)
    return false;
  SecureBytes z(z_len);
  if (EVP_PKEY_derive(ctx.get(), z.data(), &z_len) != 1) return false;
  z.resize(z_len);  // the x-coordinate of d·Q, padded to the field size
  const std::size_t field = (static_cast<std::size_t>(EVP_PKEY_get_bits(ephemeral)) + 7) / 8;
  TPMS_ECC_POINT point{};
  std::size_t offset = 0;
  if (!ec_coordinate(ephemeral, OSSL_PKEY_PARAM_EC_PUB_X, field, point.x) ||
      !ec_coordinate(ephemeral, OSSL_PKEY_PARAM_EC_PUB_Y, field, point.y) ||
      Tss2_MU_TPMS_ECC_POINT_Marshal(&point, out.encrypted.secret, sizeof out.encrypted.secret, &offset) !=
          TSS2_RC_SUCCESS)
    return false;
  out.encrypted.size = static_cast<UINT16>(offset);
  out.salt.assign(tpm_hash_size(key.nameAlg), 0);
  return tpm_kdfe(sw, key.nameAlg, z, reinterpret_cast<const char*>(kSaltLabel), {point.x.buffer, point.x.size},
                  {key.unique.ecc.x.buffer, key.unique.ecc.x.size}, out.salt);
}

bool make_session_salt(const SoftwareContext& sw, const TPMT_PUBLIC& key, SessionSalt& out) {
  if (session_salt_unsupported(key)) return false;
  if (key.type == TPM2_ALG_RSA) return rsa_oaep_salt(sw, key, out);
  EvpPkeyPtr ephemeral(EVP_PKEY_Q_keygen(sw.libctx, sw.propq, "EC", tpm_curve_group(key.parameters.eccDetail.curveID)));
  return ecdh_session_salt(sw, key, ephemeral.get(), out);
}

SessionDigests::SessionDigests(const SoftwareContext& sw)
    : sha256_(EVP_MD_fetch(sw.libctx, "SHA256", sw.propq)), hmac_(EVP_MAC_fetch(sw.libctx, "HMAC", sw.propq)) {}

SessionDigests::~SessionDigests() {
  EVP_MD_free(sha256_);
  EVP_MAC_free(hmac_);
}

bool SessionDigests::hash(std::initializer_list<ByteSpan> parts, Bytes& out) const {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || sha256_ == nullptr || EVP_DigestInit_ex2(ctx.get(), sha256_, nullptr) != 1) return false;
  for (ByteSpan p : parts)
    if (EVP_DigestUpdate(ctx.get(), p.data(), p.size()) != 1) return false;
  out.resize(size());
  unsigned int n = 0;
  return EVP_DigestFinal_ex(ctx.get(), out.data(), &n) == 1 && n == size();
}

bool SessionDigests::cp_hash(TPM2_CC cc, std::initializer_list<ByteSpan> names, ByteSpan parameters, Bytes& out) const {
  const auto code = be32(cc);
  const Bytes all_names = concat(names);
  return hash({code, all_names, parameters}, out);
}

bool SessionDigests::rp_hash(TPM2_RC rc, TPM2_CC cc, ByteSpan parameters, Bytes& out) const {
  const auto code = be32(rc);
  const auto command = be32(cc);
  return hash({code, command, parameters}, out);
}

bool SessionDigests::session_hmac(ByteSpan key, ByteSpan p_hash, ByteSpan nonce_newer, ByteSpan nonce_older,
                                  TPMA_SESSION attributes, Bytes& out) const {
  MacCtxPtr ctx(hmac_ ? EVP_MAC_CTX_new(hmac_) : nullptr);
  char md[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, md, 0), OSSL_PARAM_construct_end()};
  if (!ctx || EVP_MAC_init(ctx.get(), key.data(), key.size(), params) != 1) return false;
  for (ByteSpan p : {p_hash, nonce_newer, nonce_older, ByteSpan(&attributes, 1)})
    if (EVP_MAC_update(ctx.get(), p.data(), p.size()) != 1) return false;
  out.resize(size());
  std::size_t n = 0;
  return EVP_MAC_final(ctx.get(), out.data(), &n, out.size()) == 1 && n == size();
}

}  // namespace certcustody
