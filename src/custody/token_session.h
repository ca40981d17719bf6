// One open PKCS#11 session and the operations the connector needs on it.
// A TokenSession is borrowed from the TokenSessionPool for one task at a time;
// every error it returns is a named error with the CK_RV in Error::native.
#pragma once

#include <p11-kit/pkcs11.h>

#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/ossl.h"
#include "common/secure_buffer.h"
#include "custody/ck_error.h"
#include "custody/key_custody.h"
#include "custody/pkcs11_module.h"

namespace certcustody {

class TokenSession {
 public:
  TokenSession(Pkcs11Module& module, CK_SESSION_HANDLE handle, const CkContext& context,
               std::uint64_t generation = 0, const SoftwareContext* software = nullptr)
      : module_(&module), handle_(handle), context_(&context), generation_(generation), software_(software) {}

  CK_SESSION_HANDLE handle() const { return handle_; }
  // Which connection of the pool this session belongs to; object handles
  // cached under one generation are void in the next.
  std::uint64_t generation() const { return generation_; }
  Pkcs11Module& module() const { return *module_; }

  // Objects matching `tmpl` (at most `max`).
  Result<std::vector<CK_OBJECT_HANDLE>> find(std::span<CK_ATTRIBUTE> tmpl, CK_ULONG max = 256);
  // The one object of `cls` with this label; nullopt when none; an error when
  // several objects share the label (ambiguous).
  Result<std::optional<CK_OBJECT_HANDLE>> find_by_label(CK_OBJECT_CLASS cls, const std::string& label);
  // The same by label and/or CKA_ID (at least one of them given).
  Result<std::optional<CK_OBJECT_HANDLE>> find_one(CK_OBJECT_CLASS cls, const std::optional<std::string>& label,
                                                   const std::optional<Bytes>& id);
  // Every object of `cls` with this label and/or id (unset: any).
  Result<std::vector<CK_OBJECT_HANDLE>> find_all(CK_OBJECT_CLASS cls, const std::optional<std::string>& label,
                                                 const std::optional<Bytes>& id);

  Result<Bytes> attribute(CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type, const std::string& what);
  Result<ObjectInfo> describe(CK_OBJECT_HANDLE obj);
  // Public key of a key pair as an OpenSSL key (public parameters only).
  Result<EvpPkeyPtr> public_key(CK_OBJECT_HANDLE public_key_object, const std::string& label);
  // The subject public key of a DER certificate (a key pair known by its certificate).
  Result<EvpPkeyPtr> certificate_public_key(std::span<const std::uint8_t> der, const std::string& label) const;

  // Token objects: private key sensitive, non-extractable; both halves share id and label.
  Result<std::pair<CK_OBJECT_HANDLE, CK_OBJECT_HANDLE>> generate_key_pair(const std::string& label,
                                                                          const Bytes& id, KeyType type,
                                                                          KeyPurpose purpose);
  // AES key. A token key is sensitive and non-extractable; a session key
  // (token=false) is a transient content key that may be wrapped out, never read.
  Result<CK_OBJECT_HANDLE> generate_aes_key(const std::string& label, const Bytes& id, unsigned bits, bool token);

  // One-shot operations. `size_hint` avoids the length-query round trip when
  // the output size is known (signature length of the key).
  Result<Bytes> sign(CK_OBJECT_HANDLE key, CK_MECHANISM& mech, std::span<const std::uint8_t> data,
                     std::size_t size_hint, const std::string& label);
  Result<Bytes> encrypt(CK_OBJECT_HANDLE key, CK_MECHANISM& mech, std::span<const std::uint8_t> data,
                        const std::string& label);
  Result<SecureBytes> decrypt(CK_OBJECT_HANDLE key, CK_MECHANISM& mech, std::span<const std::uint8_t> data,
                              const std::string& label);
  Result<Bytes> wrap(CK_OBJECT_HANDLE wrapping_key, CK_MECHANISM& mech, CK_OBJECT_HANDLE key,
                     const std::string& label);
  // Unwraps into a session AES key usable for encrypt/decrypt.
  Result<CK_OBJECT_HANDLE> unwrap_aes(CK_OBJECT_HANDLE unwrapping_key, CK_MECHANISM& mech,
                                      std::span<const std::uint8_t> wrapped, const std::string& label);

  Result<CK_OBJECT_HANDLE> create_object(std::span<CK_ATTRIBUTE> tmpl, const std::string& what);
  Status destroy_object(CK_OBJECT_HANDLE obj, const std::string& what);
  Result<Bytes> random(std::size_t n);
  // The token's mechanisms and what each allows (no login needed).
  Result<std::map<CK_MECHANISM_TYPE, CK_MECHANISM_INFO>> mechanisms();

  Error error(CK_RV rv, const std::string& operation, const std::string& object = {}) const;

 private:
  Pkcs11Module* module_;
  CK_SESSION_HANDLE handle_;
  const CkContext* context_;
  std::uint64_t generation_;
  const SoftwareContext* software_;
};

// Destroys a session object (a transient content key) when it goes out of scope.
class ScopedObject {
 public:
  ScopedObject(TokenSession& s, CK_OBJECT_HANDLE h) : s_(&s), h_(h) {}
  ScopedObject(ScopedObject&& o) noexcept : s_(o.s_), h_(o.h_) { o.h_ = CK_INVALID_HANDLE; }
  ScopedObject& operator=(ScopedObject&&) = delete;
  ~ScopedObject() {
    if (h_ != CK_INVALID_HANDLE) (void)s_->destroy_object(h_, "transient key");
  }
  CK_OBJECT_HANDLE get() const { return h_; }

 private:
  TokenSession* s_;
  CK_OBJECT_HANDLE h_;
};

}  // namespace certcustody
