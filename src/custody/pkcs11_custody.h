// KeyCustody on a PKCS#11 token (an HSM in production, SoftHSM in tests).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>

#include "config/config.h"
#include "custody/key_custody.h"
#include "custody/mechanisms.h"
#include "custody/token_session_pool.h"

namespace certcustody {

class Pkcs11Custody final : public KeyCustody {
 public:
  // Loads the module and prepares the pool; logs in on first use.
  static Result<std::unique_ptr<Pkcs11Custody>> open(const CustodyConfig& config, SoftwareContext software = {});

  TokenSessionPool& pool() { return *pool_; }

  Status connect() override { return pool_->connect(); }
  std::string location() const override { return pool_->uri().text(); }
  void abandon() override { pool_->abandon(); }
  CustodyHealth health() const override;
  Status check() override { return pool_->check(); }

  Result<ObjectInfo> generate_key_pair(const std::string& label, KeyType type, KeyPurpose purpose) override;
  Result<ObjectInfo> generate_secret_key(const std::string& label, unsigned bits) override;
  Result<std::vector<ObjectInfo>> list_objects() override;
  Result<ObjectInfo> find_key(const std::string& label) override;
  Result<EvpPkeyPtr> public_key(const std::string& label) override;
  Result<std::vector<FoundObject>> find_objects(const ObjectQuery& query) override;
  Result<Bytes> sign_input(const std::string& label, const SignParams& params,
                           std::span<const std::uint8_t> input) override;
  Result<Bytes> rsa_oaep_encrypt(const std::string& label, HashAlg hash,
                                 std::span<const std::uint8_t> plaintext) override;
  Result<SecureBytes> rsa_oaep_decrypt(const std::string& label, HashAlg hash,
                                       std::span<const std::uint8_t> ciphertext) override;
  Result<GcmCiphertext> aes_gcm_encrypt(const std::string& label, std::span<const std::uint8_t> plaintext,
                                        std::span<const std::uint8_t> aad) override;
  Result<SecureBytes> aes_gcm_decrypt(const std::string& label, const GcmCiphertext& in,
                                      std::span<const std::uint8_t> aad) override;
  Result<SealedContent> seal_for_recipient(const EVP_PKEY* recipient_rsa_public,
                                           std::span<const std::uint8_t> plaintext) override;
  Result<std::uint64_t> advance_counter(const std::string& label) override;
  Result<std::uint64_t> read_counter(const std::string& label) override;
  Status store_certificate(const std::string& label, std::span<const std::uint8_t> der, bool replace) override;
  Result<std::optional<Bytes>> find_certificate(const std::string& label) override;

  // What a cached key handle knows; valid for one pool generation.
  struct KeyHandle {
    CK_OBJECT_HANDLE handle = CK_INVALID_HANDLE;
    CK_KEY_TYPE type = 0;
    std::size_t signature_size = 0;  // RSA modulus bytes, or 2 x EC field bytes
    unsigned bits = 0;               // RSA modulus / EC curve size
    std::uint64_t generation = 0;
  };
  // Looks a key up by class and name, from the cache when still valid. A name
  // is a label, or a pkcs11: URI naming the object by object= and/or id=
  // (what find_objects() gives as key_name).
  Result<KeyHandle> key(TokenSession& s, CK_OBJECT_CLASS cls, const std::string& label);

  // Runs f(session, key) with the key `label`; a stale cached handle is looked
  // up again once, a lost token or session is reconnected once (pool.run).
  template <class F>
  auto with_key(CK_OBJECT_CLASS cls, const std::string& label, F&& f)
      -> std::invoke_result_t<F, TokenSession&, const KeyHandle&> {
    return pool_->run([&](TokenSession& s) -> std::invoke_result_t<F, TokenSession&, const KeyHandle&> {
      for (int attempt = 0;; ++attempt) {
        auto k = key(s, cls, label);
        if (!k) return k.error();
        auto r = f(s, k.value());
        if (r.ok() || attempt > 0 || !ck_is_stale_handle(r.error().native)) return r;
        forget(cls, label);
      }
    });
  }

 private:
  explicit Pkcs11Custody(std::unique_ptr<TokenSessionPool> pool) : pool_(std::move(pool)) {}
  void forget(CK_OBJECT_CLASS cls, const std::string& label);
 public:
  struct CounterObjects;  // pkcs11_counter.cpp
 private:
  Result<CounterObjects> counter_now(TokenSession& s, const std::string& label);  // holds counter_mu_
  Status require_free_label(TokenSession& s, const std::string& label);
  // The token's mechanism list, read once per connection (pool generation).
  Result<std::shared_ptr<const MechanismTable>> mechanisms(TokenSession& s);
  // The public half of a key pair: its public-key object, else its
  // certificate, else (RSA) the private key `priv`'s modulus and exponent.
  Result<EvpPkeyPtr> public_half(TokenSession& s, const ObjectInfo& pair, const std::string& name,
                                 std::optional<CK_OBJECT_HANDLE> priv);
  Result<std::vector<FoundObject>> find_objects_in(TokenSession& s, const ObjectQuery& query);

  std::unique_ptr<TokenSessionPool> pool_;
  std::mutex cache_mu_;
  std::mutex counter_mu_;  // advance_counter: read, add one, write as one step in this process
  std::map<std::string, std::uint64_t> counter_seen_;  // the largest value of each counter seen (counter_mu_)
  std::map<std::pair<CK_OBJECT_CLASS, std::string>, KeyHandle> cache_;
  // Keys found before: one not found later vanished (a token partly or
  // wrongly restored, or away and misreporting), custody.key_vanished.
  std::set<std::pair<CK_OBJECT_CLASS, std::string>> seen_;
  std::shared_ptr<const MechanismTable> mechanisms_;  // under cache_mu_
  std::uint64_t mechanisms_generation_ = 0;
};

// Security Officer set-up of a fresh token (SoftHSM, or an HSM partition that
// supports C_InitToken): initialises the first uninitialised token with
// `label`, then sets the user PIN. PINs come from the caller's secure buffers.
Status init_token(Pkcs11Module& module, const std::string& label, const SecureBytes& so_pin,
                  const SecureBytes& user_pin);

}  // namespace certcustody
