// Private to the TPM backend: the ESYS connection of a Tpm2Custody, the keys
// it holds loaded, and the rules for auth failures (tpm2_connection.cpp).
#pragma once

#include <openssl/crypto.h>
#include <tss2/tss2_esys.h>

#include <chrono>
#include <map>
#include <mutex>
#include <optional>

#include "custody/pin_source.h"
#include "custody/tpm2_custody.h"
#include "custody/tpm2_error.h"
#include "custody/tpm2_key_file.h"
#include "custody/tpm2_sign_session.h"

namespace certcustody {

struct EsysFree {
  void operator()(void* p) const noexcept { Esys_Free(p); }
};
template <class T>
using EsysPtr = std::unique_ptr<T, EsysFree>;

struct LoadedKey {
  ESYS_TR tr = ESYS_TR_NONE;
  TPM2B_PUBLIC pub{};
  Bytes name;               // the TPM object name (for the sign session's cpHash)
  bool empty_auth = false;  // a blob that says its auth value is empty
  bool transient = true;  // loaded from a blob (flushed when evicted); else a persistent handle
  std::uint64_t last_use = 0;
};

// The backend's mutex, held for every ESYS call, together with the backend's
// software context made the thread's default OpenSSL library context.
// tpm2-tss 3.2 does its own session crypto (the ECDH salt to an ECC storage
// key, HMACs, parameter encryption) in the default context, which inside our
// provider lists certcustody itself, possibly first: tpm2-tss would then make
// its ephemeral ECDH key with our key management and fail. The previous
// default is restored when the lock is released.
class EsysLock {
 public:
  EsysLock(std::mutex& mu, OSSL_LIB_CTX* software)
      : lock_(mu), previous_(software != nullptr ? OSSL_LIB_CTX_set0_default(software) : nullptr) {}
  ~EsysLock() {
    if (previous_ != nullptr) OSSL_LIB_CTX_set0_default(previous_);
  }
  EsysLock(const EsysLock&) = delete;
  EsysLock& operator=(const EsysLock&) = delete;

 private:
  std::lock_guard<std::mutex> lock_;
  OSSL_LIB_CTX* previous_;
};

struct Tpm2Custody::Impl {
  CustodyConfig cfg;
  SoftwareContext sw;
  PinSource auth_source;
  std::mutex mu;  // every ESYS call, and everything below (taken through lock())

  TSS2_TCTI_CONTEXT* tcti = nullptr;
  ESYS_CONTEXT* esys = nullptr;
  ESYS_TR srk = ESYS_TR_NONE;
  ESYS_TR session = ESYS_TR_NONE;
  TPMT_PUBLIC srk_public{};  // as ESYS holds it (salts its sessions), checked against the name
  Bytes srk_name;
  std::unique_ptr<TpmSignSession> sign_session;  // TPM2_Sign's own salted session (tpm2_sign_session.h)
  bool encrypt_decrypt2 = false;
  bool encrypt_decrypt = false;
  std::size_t capacity = 2;  // transient keys kept loaded at once
  std::map<std::string, LoadedKey> keys;
  std::map<std::uint32_t, ESYS_TR> counters;
  std::uint64_t tick = 0;
  SecureBytes auth;  // without trailing zero bytes, as the TPM uses it
  std::string auth_fingerprint;
  // An auth value the TPM refused and the file it came from: not sent again
  // until the file holds another value (not merely other trailing zero
  // bytes), so one mistake costs one lockout count.
  struct Refusal {
    std::string fingerprint;
    SecureBytes value;
  };
  std::optional<Refusal> refused;
  std::chrono::steady_clock::time_point retry_connect_at{};
  std::optional<Error> connect_error;
  // What the last ready() found, for the daemon's health() (its own mutex:
  // never waits for a TPM command in progress).
  mutable std::mutex health_mu;
  CustodyHealth last_health;

  Impl(CustodyConfig c, SoftwareContext s, PinSource p)
      : cfg(std::move(c)), sw(s), auth_source(std::move(p)), sign_session(std::make_unique<TpmSignSession>(sw)) {}
  ~Impl() { disconnect(); }

  EsysLock lock() { return EsysLock(mu, sw.libctx); }

  TpmContext context(std::string operation, std::string object = {}) const {
    return TpmContext{std::move(operation), cfg.tcti, std::move(object)};
  }

  // Runs f() with the TPM connected, under the mutex. A lost connection is
  // re-opened and f() run once more; an auth failure never is.
  template <class F>
  auto run(F&& f) -> std::invoke_result_t<F> {
    EsysLock held = lock();
    for (int attempt = 0;; ++attempt) {
      if (Status s = ready(); !s) return s.error();
      auto r = f();
      if (r.ok() || attempt > 0 || !tpm_is_tcti_failure(static_cast<TSS2_RC>(r.error().native)) ||
          r.error().native == 0)
        return r;
    }
  }

  Status ready();  // auth not refused, connected; the outcome kept for health()
  Status ready_once();
  // The auth file's value as the TPM uses it (trailing zero bytes removed).
  Result<SecureBytes> read_auth() const;
  // Proves the auth value with TPM2_PolicySecret on a key of key_dir (no
  // side effect), so that a wrong value is seen when the daemon starts.
  Status verify_auth();
  Status connect();
  void disconnect() noexcept;
  // The named error for rc; records an auth failure, drops a lost connection.
  Error failed(TSS2_RC rc, const TpmContext& ctx);

  Result<LoadedKey*> load(const TpmKeyLocation& loc);
  // The HMAC session for a command, with parameter encryption as asked
  // (TPMA_SESSION_DECRYPT: the command's first parameter; _ENCRYPT: the response's).
  ESYS_TR auth_session(TPMA_SESSION encryption);
  // TPM2_Sign with a loaded key through the sign session.
  Result<TPMT_SIGNATURE> sign(const LoadedKey& k, const TpmKeyLocation& loc, const TPM2B_DIGEST& digest,
                              const TPMT_SIG_SCHEME& scheme);
  Result<TPMS_CAPABILITY_DATA*> capability(TPM2_CAP cap, std::uint32_t property, std::uint32_t count);
  Result<TpmDeviceInfo> device_info();

 private:
  // Without a resource manager (a bare TPM or a simulator), objects and
  // sessions a killed process had loaded stay in the TPM's few slots. When a
  // load or a session start finds them full, those (not ours) are flushed:
  // a bare TPM has one user at a time anyway. Returns how many.
  std::size_t flush_leftovers(TPM2_HANDLE first);
  bool behind_resource_manager() const;
  Status open_srk();
  Status create_srk();
  // The storage key as ESYS holds it: a restricted decryption key of the
  // configured type that sessions can be salted to, whose name is the hash
  // of its public area and, when [custody] srk_name pins it, that name.
  Status check_srk();
  Status start_session();
  Status read_commands();
  void evict_lru();
};

}  // namespace certcustody
