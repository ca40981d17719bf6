// KeyCustody on a TPM 2.0 (tpm2-tss ESYS): the host's TPM through the kernel
// resource manager, tpm2-abrmd, or a simulator (swtpm) in tests. docs/tpm.md.
//
// Keys live under the storage primary key (SRK, TCG template, persistent at
// [custody] srk_handle) as TSS2 PRIVATE KEY blobs in [custody] key_dir
// (<label>.tss2, the form tpm2-openssl and tpm2-tools read), or at a
// persistent handle made by an officer with tpm2-tools. A label names a key:
//   "ra"                      <key_dir>/ra.tss2
//   "tpm2:object=ra"          the same
//   "tpm2:file=/abs/ra.tss2"  that blob
//   "tpm2:handle=0x81000002"  a persistent key
// One ESYS context per custody, guarded by a mutex (the TPM runs one command
// at a time anyway), with one salted HMAC session and the keys in use kept
// loaded; everything it loads is flushed when it closes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "custody/key_custody.h"

namespace certcustody {

// Where a label's key is.
struct TpmKeyLocation {
  enum class Kind { file, handle } kind = Kind::file;
  std::string label;      // as the caller named it
  std::string path;       // the blob (Kind::file)
  std::uint32_t handle = 0;  // the persistent handle (Kind::handle)
  std::string cert_path;  // the certificate kept beside the key (PEM)
  std::string describe() const;
};
Result<TpmKeyLocation> locate_tpm_key(const std::string& label, const std::string& key_dir);

// The NV index of a counter label: "tpm2:nv=0x01300001", or one derived from
// the label in the owner range 0x01300000-0x0130FFFF.
Result<std::uint32_t> tpm_counter_index(const std::string& label);

// What `token info` shows of a TPM (no secrets).
struct TpmDeviceInfo {
  std::string manufacturer;
  std::string firmware;
  std::string spec;              // "2.0 rev 1.59"
  std::uint32_t lockout_counter = 0;
  std::uint32_t max_auth_fail = 0;
  std::uint32_t lockout_interval_s = 0;
  std::uint32_t lockout_recovery_s = 0;
  bool in_lockout = false;
  bool encrypt_decrypt = false;  // TPM2_EncryptDecrypt(2): KEKs are AES keys, else HMAC keys
  std::string srk_type;          // the storage key: "rsa2048", "ec-p256", ...
  std::string srk_name;          // its TPM name (hex), as `tpm2_readpublic -c <srk_handle>` prints it
  bool srk_pinned = false;       // checked against [custody] srk_name
  std::vector<std::uint32_t> persistent;
  std::vector<std::uint32_t> transient;
};

class Tpm2Custody final : public KeyCustody {
 public:
  // Prepares; the TPM is opened on first use (or connect()).
  static Result<std::unique_ptr<Tpm2Custody>> open(const CustodyConfig& config, SoftwareContext software = {});
  ~Tpm2Custody() override;
  Tpm2Custody(const Tpm2Custody&) = delete;
  Tpm2Custody& operator=(const Tpm2Custody&) = delete;

  Status connect() override;
  std::string location() const override;
  void abandon() override;
  CustodyHealth health() const override;
  Status check() override;  // reconnects a lost TPM (with the backoff); a connected one is not asked

  Result<ObjectInfo> generate_key_pair(const std::string& label, KeyType type, KeyPurpose purpose) override;
  Result<ObjectInfo> generate_secret_key(const std::string& label, unsigned bits) override;
  Result<std::vector<ObjectInfo>> list_objects() override;
  Result<ObjectInfo> find_key(const std::string& label) override;
  Result<EvpPkeyPtr> public_key(const std::string& label) override;
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

  Result<TpmDeviceInfo> device_info();
  // Transient objects this custody holds loaded now (keys in use).
  std::size_t loaded_objects() const;

  struct Impl;

 private:
  explicit Tpm2Custody(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace certcustody
