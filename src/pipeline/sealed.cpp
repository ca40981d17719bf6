#include "pipeline/sealed.h"

namespace certcustody::pipeline {
namespace {

constexpr std::string_view kMagic = "ccs1";
constexpr std::size_t kIv = 12;

Bytes aad_of(const std::string& request_id, const char* purpose) {
  const std::string s = std::string("certcustody/") + purpose + "/" + request_id;
  return Bytes(s.begin(), s.end());
}

}  // namespace

Result<std::string> seal_at_rest(KeyCustody& custody, const std::string& kek, const std::string& request_id,
                                 const char* purpose, std::span<const std::uint8_t> plaintext) {
  CC_TRY_ASSIGN(GcmCiphertext c, custody.aes_gcm_encrypt(kek, plaintext, aad_of(request_id, purpose)));
  std::string out(kMagic);
  out.append(c.iv.begin(), c.iv.end());
  out.append(c.ciphertext_and_tag.begin(), c.ciphertext_and_tag.end());
  return out;
}

Result<SecureBytes> unseal_at_rest(KeyCustody& custody, const std::string& kek, const std::string& request_id,
                                   const char* purpose, const std::string& sealed) {
  if (sealed.size() < kMagic.size() + kIv + 16 || sealed.compare(0, kMagic.size(), kMagic) != 0)
    return Error{"pipeline.sealed_invalid", "the sealed " + std::string(purpose) + " of request " + request_id +
                                                " is not in the ccs1 form",
                 "the request store is damaged: restore it from backup"};
  GcmCiphertext c;
  c.iv.assign(sealed.begin() + kMagic.size(), sealed.begin() + kMagic.size() + kIv);
  c.ciphertext_and_tag.assign(sealed.begin() + kMagic.size() + kIv, sealed.end());
  auto plain = custody.aes_gcm_decrypt(kek, c, aad_of(request_id, purpose));
  if (!plain)
    return Error{plain.error().code,
                 "opening the sealed " + std::string(purpose) + " of request " + request_id + " with key '" + kek +
                     "': " + plain.error().what,
                 plain.error().remedy + " (a blob opens only with the token and [pipeline] kek it was sealed with)",
                 plain.error().native};
  return std::move(plain).value();
}

}  // namespace certcustody::pipeline
