#include "common/ossl.h"

#include <openssl/err.h>

namespace certcustody {

std::string drain_openssl_errors() {
  std::string out;
  unsigned long e;
  char buf[256];
  while ((e = ERR_get_error()) != 0) {
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

Error openssl_error(const std::string& code, const std::string& what, const std::string& remedy) {
  std::string detail = drain_openssl_errors();
  return Error{code, detail.empty() ? what : what + " (" + detail + ")", remedy};
}

static std::string to_hex(std::span<const std::uint8_t> bytes, const char* digits) {
  std::string s;
  s.reserve(bytes.size() * 2);
  for (std::uint8_t b : bytes) {
    s.push_back(digits[b >> 4]);
    s.push_back(digits[b & 0xF]);
  }
  return s;
}

std::string to_hex_upper(std::span<const std::uint8_t> bytes) { return to_hex(bytes, "0123456789ABCDEF"); }
std::string to_hex_lower(std::span<const std::uint8_t> bytes) { return to_hex(bytes, "0123456789abcdef"); }

Result<Bytes> digest(const char* md_name, std::span<const std::uint8_t> data) {
  Bytes out(EVP_MAX_MD_SIZE);
  unsigned int len = 0;
  EVP_MD* md = EVP_MD_fetch(nullptr, md_name, nullptr);
  bool ok = md != nullptr && EVP_Digest(data.data(), data.size(), out.data(), &len, md, nullptr) == 1;
  EVP_MD_free(md);
  if (!ok) return openssl_error("crypto.digest_failed", std::string("digest ") + md_name + " failed",
                                "check that the OpenSSL default provider is available");
  out.resize(len);
  return out;
}

Bytes public_key_der(EVP_PKEY* key) {
  int n = i2d_PUBKEY(key, nullptr);
  if (n <= 0) return {};
  Bytes der(static_cast<std::size_t>(n));
  unsigned char* p = der.data();
  i2d_PUBKEY(key, &p);
  return der;
}

}  // namespace certcustody
