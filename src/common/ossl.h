// Owning handles for OpenSSL objects and the translation of OpenSSL's error
// queue into our named errors.
#pragma once

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/error.h"

namespace certcustody {

using Bytes = std::vector<std::uint8_t>;

template <auto Fn>
struct OsslDeleter {
  template <class T>
  void operator()(T* p) const noexcept { Fn(p); }
};

using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, OsslDeleter<EVP_PKEY_free>>;
using EvpPkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, OsslDeleter<EVP_PKEY_CTX_free>>;
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, OsslDeleter<EVP_MD_CTX_free>>;
using X509Ptr = std::unique_ptr<X509, OsslDeleter<X509_free>>;
using X509ReqPtr = std::unique_ptr<X509_REQ, OsslDeleter<X509_REQ_free>>;
using X509NamePtr = std::unique_ptr<X509_NAME, OsslDeleter<X509_NAME_free>>;
using BioPtr = std::unique_ptr<BIO, OsslDeleter<BIO_free_all>>;

// Drains OpenSSL's error queue into one line (empty when the queue is empty).
std::string drain_openssl_errors();

// An Error for a failed OpenSSL call, carrying the drained queue.
Error openssl_error(const std::string& code, const std::string& what, const std::string& remedy);

// Upper-case hex without separators, as Windows prints thumbprints.
std::string to_hex_upper(std::span<const std::uint8_t> bytes);
std::string to_hex_lower(std::span<const std::uint8_t> bytes);

// Message digest by name ("SHA256"...), computed in software.
Result<Bytes> digest(const char* md_name, std::span<const std::uint8_t> data);

// Public key as DER SubjectPublicKeyInfo; empty on failure.
Bytes public_key_der(EVP_PKEY* key);

}  // namespace certcustody
