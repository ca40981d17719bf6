// A pool of logged-in sessions on one token, safe for many threads.
//
// The pool finds the token by its RFC 7512 URI, logs in once (the login is
// shared by every session of the process) and lends sessions out. When a
// call fails because the session, the login, the token or the module went
// away (CKR_SESSION_HANDLE_INVALID, CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT,
// CKR_CRYPTOKI_NOT_INITIALIZED, ...), run() reconnects — re-initialising the
// module and finding the token again if need be — and runs the task once
// more. A token that comes back is therefore used again without a restart.
// Network HSMs, remote p11-kit modules and SoftHSM losing its directory fail
// differently: CKR_GENERAL_ERROR, CKR_FUNCTION_FAILED, a handle or a key that
// is suddenly gone. After such an error the pool probes the token (slot and
// token info still those the URI names); if it is not there, that is a loss.
// Reconnecting backs off (reconnect_interval, doubling up to 8 s) while the
// token stays away; health() says whether it is away and why.
//
// After fork() the child never uses the parent's sessions (PKCS#11 §5.1.4):
// the child's pool re-initialises the module and logs in again on first use.
//
// A PIN the token rejected is never tried again until the PIN file changes,
// so a wrong PIN cannot lock the token through retries.
//
// One pool per module per process: recovery, and a token that cannot be
// found, C_Finalize the module, which ends every other session of the process
// on that module. Other code uses the token through this pool.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "custody/ck_error.h"
#include "custody/pin_source.h"
#include "custody/pkcs11_module.h"
#include "custody/token_session.h"
#include "custody/token_uri.h"

namespace certcustody {

struct SlotDescription {
  CK_SLOT_ID id = 0;
  std::string description;
  bool token_present = false;
  std::string token_label;
  std::string token_model;
  std::string token_serial;
  std::string token_manufacturer;
  CK_FLAGS token_flags = 0;
  bool selected = false;  // matches the configured URI
};

class TokenSessionPool {
 public:
  struct Options {
    unsigned max_sessions = 8;
    // After a failed reconnect, operations fail fast with the same error for
    // this long instead of hammering an absent HSM.
    std::chrono::milliseconds reconnect_interval{1000};
    SoftwareContext software{};  // for public keys made from token attributes
  };

  // Initialises the module; the first login happens on first use (or connect()).
  static Result<std::unique_ptr<TokenSessionPool>> open(std::shared_ptr<Pkcs11Module> module, TokenUri uri,
                                                        PinSource pin, Options options);
  ~TokenSessionPool();
  TokenSessionPool(const TokenSessionPool&) = delete;
  TokenSessionPool& operator=(const TokenSessionPool&) = delete;

  // A borrowed session; goes back to the pool when destroyed.
  class Lease {
   public:
    Lease(Lease&& o) noexcept;
    Lease& operator=(Lease&&) = delete;
    ~Lease();
    TokenSession& session() { return session_; }
    std::uint64_t generation() const { return generation_; }
    // The session is unusable (it is closed instead of returned).
    void mark_broken() { broken_ = true; }

   private:
    friend class TokenSessionPool;
    Lease(TokenSessionPool* pool, CK_SESSION_HANDLE h, std::uint64_t gen, std::shared_lock<std::shared_mutex> lk);
    TokenSessionPool* pool_;
    TokenSession session_;
    std::uint64_t generation_;
    bool broken_ = false;
    std::shared_lock<std::shared_mutex> module_lock_;
  };

  Result<Lease> acquire();

  // Runs f(TokenSession&) -> Result<T>. If f fails because the token or its
  // session went away, reconnects and runs f once more.
  template <class F>
  auto run(F&& f) -> std::invoke_result_t<F, TokenSession&> {
    for (int attempt = 0;; ++attempt) {
      auto lease = acquire();
      if (!lease) return lease.error();
      auto r = f(lease->session());
      if (r.ok() || attempt > 0) return r;
      const Loss loss = classify(r.error().native);
      if (loss == Loss::none) return r;
      std::uint64_t gen = lease->generation();
      lease->mark_broken();
      { auto drop = std::move(lease.value()); }
      recover(gen, loss == Loss::token);
    }
  }

  // Whether the token is usable now, and if not since when and why (the
  // last reconnect's error). Never blocks on the token.
  struct Health {
    bool available = true;
    std::optional<Error> error{};
    std::chrono::system_clock::time_point since{};  // away since (when not available)
  };
  Health health() const;
  // Probes a connected token (a loss found is reconnected, as in run());
  // reconnects one that is away, subject to the backoff. For the daemon's
  // timer: notices a token that left while nothing used it.
  Status check();
  // Runs f(TokenSession&) for public objects (public keys, certificates),
  // which need no PIN. Before the pool has logged in, f gets a session of its
  // own that is not logged in (opened for f and closed after it; no
  // recovery), so no PIN is read; once logged in, or when that session cannot
  // be had, this is run().
  template <class F>
  auto run_public(F&& f) -> std::invoke_result_t<F, TokenSession&> {
    if (auto lease = public_lease()) return f(lease->session());
    return run(std::forward<F>(f));
  }

  // At process exit some modules (SoftHSM 2.6.1) crash in C_CloseSession or
  // C_Finalize once OpenSSL has cleaned up; an abandoned pool leaves its
  // sessions to die with the process instead of closing them.
  void abandon() {
    std::lock_guard l(mu_);
    abandoned_ = true;
  }

  // Logs in now (instead of on first use), to report PIN problems early.
  Status connect();

  // Every slot of the module, marking the one the URI selects. No login needed.
  Result<std::vector<SlotDescription>> slots();

  const CkContext& context() const { return context_; }
  const TokenUri& uri() const { return uri_; }
  Pkcs11Module& module() { return *module_; }
  std::uint64_t generation() const;
  // How often C_Login was called (tests check that a bad PIN is not retried).
  unsigned login_attempts() const;

 private:
  TokenSessionPool(std::shared_ptr<Pkcs11Module> module, TokenUri uri, PinSource pin, Options options);
  void release(CK_SESSION_HANDLE h, std::uint64_t gen, bool broken);
  Status ensure_ready();
  Status connect_locked();                 // holds module_mu_ exclusively; looks again for ~0.8 s
  Status connect_once_locked();
  void disconnect_locked(bool reinit_module);
  enum class Loss { none, session, token };
  // What a failed call means for the connection; a call that only may mean
  // a lost token (ck_may_be_token_loss) is decided by probing the token.
  Loss classify(CK_RV rv);
  bool token_still_there();               // holds module_mu_ shared
  void recover(std::uint64_t broken_gen, bool reinit_module);
  std::chrono::milliseconds retry_delay_locked() const;  // holds mu_
  static void register_fork_handlers(TokenSessionPool* pool, bool add);
  void before_fork();
  void after_fork(bool child);
  Result<CK_SLOT_ID> find_slot_locked();
  std::vector<CK_SLOT_ID> matching_slots(const std::vector<CK_SLOT_ID>& ids);
  // A session that is not logged in, closed when it goes (run_public).
  class PublicLease {
   public:
    PublicLease(TokenSessionPool* pool, CK_SESSION_HANDLE h, std::uint64_t gen, std::shared_lock<std::shared_mutex> lk)
        : pool_(pool), session_(*pool->module_, h, pool->context_, gen, &pool->options_.software),
          module_lock_(std::move(lk)) {}
    PublicLease(const PublicLease&) = delete;
    PublicLease& operator=(const PublicLease&) = delete;
    ~PublicLease() { (void)P11_CALL(*pool_->module_, C_CloseSession, session_.handle()); }
    TokenSession& session() { return session_; }

   private:
    TokenSessionPool* pool_;
    TokenSession session_;
    std::shared_lock<std::shared_mutex> module_lock_;
  };
  // nullopt when logged in already, or when no session can be opened now.
  std::unique_ptr<PublicLease> public_lease();
  Status login_locked(CK_SESSION_HANDLE anchor, const CK_TOKEN_INFO& info);
  void note_connect_result_locked(const Status& s);  // holds mu_

  std::shared_ptr<Pkcs11Module> module_;
  TokenUri uri_;
  PinSource pin_;
  Options options_;
  CkContext context_;

  // Shared while a session is in use, exclusive while (re)connecting: no
  // C_Finalize/C_CloseAllSessions ever races an operation.
  mutable std::shared_mutex module_mu_;

  mutable std::mutex mu_;  // everything below
  std::condition_variable cv_;
  bool ready_ = false;
  bool recovering_ = false;
  bool abandoned_ = false;  // a thread is reconnecting; new acquirers wait
  std::uint64_t generation_ = 0;
  CK_SLOT_ID slot_ = 0;
  CK_SESSION_HANDLE anchor_ = CK_INVALID_HANDLE;  // keeps the login alive
  std::vector<CK_SESSION_HANDLE> idle_;
  unsigned open_ = 0;  // sessions lent out or idle (anchor not counted)
  std::optional<std::string> rejected_pin_fingerprint_;
  std::optional<Error> rejected_pin_error_;
  unsigned login_attempts_ = 0;
  std::optional<Error> last_connect_error_;
  std::chrono::steady_clock::time_point last_connect_failure_{};
  unsigned connect_failures_ = 0;                            // in a row: the backoff
  std::chrono::system_clock::time_point unavailable_since_{};  // set with the first failure
  bool reinit_before_connect_ = false;                       // a forked child: the module state is the parent's
};

}  // namespace certcustody
