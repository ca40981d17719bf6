#include "pfx/pkcs12_builder.h"

#include <openssl/crypto.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>

#include <algorithm>
#include <memory>

namespace certcustody::pfx {
namespace {

constexpr int kIterations = PKCS12_DEFAULT_ITER;  // 2048
constexpr std::size_t kPasswordEntropyBytes = 24;  // 192 bits -> 32 base64url characters

using Pkcs12Ptr = std::unique_ptr<PKCS12, OsslDeleter<PKCS12_free>>;

struct X509StackView {  // frees the stack only: the certificates belong to the caller
  void operator()(STACK_OF(X509) * s) const noexcept { sk_X509_free(s); }
};
using X509StackViewPtr = std::unique_ptr<STACK_OF(X509), X509StackView>;

struct Protection {
  int bag_nid;         // PKCS12_create: a PBE (PKCS#12 PBE) or a cipher (then PBES2/PBKDF2)
  const EVP_MD* (*mac_md)();
};

Protection protection(PfxFormat f) {
  if (f == PfxFormat::compat_3des_sha1) return {NID_pbe_WithSHA1And3_Key_TripleDES_CBC, EVP_sha1};
  return {NID_aes_256_cbc, EVP_sha256};
}

Error build_failed(const std::string& what) {
  return openssl_error("pfx.build_failed", what, "check that the OpenSSL default provider is loaded");
}

Result<X509StackViewPtr> chain_stack(const std::vector<X509Ptr>& chain) {
  X509StackViewPtr stack(sk_X509_new_null());
  if (!stack) return build_failed("no memory for the certificate chain");
  for (const X509Ptr& c : chain) {
    if (!c || sk_X509_push(stack.get(), c.get()) <= 0) return build_failed("the certificate chain has an empty entry");
  }
  return stack;
}

Result<SecureBytes> to_der(PKCS12* p12) {
  unsigned char* buf = nullptr;
  const int n = i2d_PKCS12(p12, &buf);
  if (n <= 0) return build_failed("the PKCS#12 cannot be encoded");
  SecureBytes out(buf, buf + n);
  OPENSSL_clear_free(buf, static_cast<std::size_t>(n));
  return out;
}

}  // namespace

Result<PfxFormat> parse_pfx_format(const std::string& s) {
  if (s == "aes256-sha256") return PfxFormat::aes256_sha256;
  if (s == "3des-sha1") return PfxFormat::compat_3des_sha1;
  return Error{"config.pfx_format_invalid", "pfx_format '" + s + "' is not known",
               "use \"aes256-sha256\" (the default) or \"3des-sha1\" (for older iOS/macOS/Android)"};
}

std::string pfx_format_name(PfxFormat f) {
  return f == PfxFormat::compat_3des_sha1 ? "3des-sha1" : "aes256-sha256";
}

SecureBytes random_password() {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  SecureBytes raw(kPasswordEntropyBytes);
  if (RAND_priv_bytes(raw.data(), static_cast<int>(raw.size())) != 1) return {};
  SecureBytes out;
  out.reserve(raw.size() / 3 * 4);
  for (std::size_t i = 0; i < raw.size(); i += 3) {
    const unsigned v = (unsigned{raw[i]} << 16) | (unsigned{raw[i + 1]} << 8) | raw[i + 2];
    for (int shift = 18; shift >= 0; shift -= 6) out.push_back(static_cast<std::uint8_t>(kAlphabet[(v >> shift) & 63]));
  }
  return out;
}

Result<SecureBytes> build_pkcs12(EVP_PKEY* key, X509* cert, const std::vector<X509Ptr>& chain,
                                 const std::string& friendly_name, const SecureBytes& password, PfxFormat format) {
  if (password.empty() || std::find(password.begin(), password.end(), 0) != password.end())
    return Error{"pfx.password_empty", "the PKCS#12 password is empty or contains a NUL byte",
                 "use pfx::random_password(); an empty result means the random generator failed"};
  if (key == nullptr || cert == nullptr || X509_check_private_key(cert, key) != 1)
    return openssl_error("pfx.key_mismatch", "the private key does not belong to the certificate",
                         "pass the key pair the certificate was issued for");
  CC_TRY_ASSIGN(X509StackViewPtr ca, chain_stack(chain));
  SecureBytes pass(password);
  pass.push_back(0);
  const Protection p = protection(format);
  const char* name = friendly_name.empty() ? nullptr : friendly_name.c_str();
  // mac_iter -1: no MAC from PKCS12_create_ex, which would use SHA-1; it is set below.
  Pkcs12Ptr p12(PKCS12_create_ex(reinterpret_cast<const char*>(pass.data()), name, key, cert, ca.get(), p.bag_nid,
                                 p.bag_nid, kIterations, -1, 0, nullptr, nullptr));
  if (!p12) return build_failed("the PKCS#12 (" + pfx_format_name(format) + ") cannot be built");
  if (PKCS12_set_mac(p12.get(), reinterpret_cast<const char*>(pass.data()), -1, nullptr, 0, kIterations,
                     p.mac_md()) != 1)
    return build_failed("the PKCS#12 MAC cannot be computed");
  return to_der(p12.get());
}

}  // namespace certcustody::pfx
