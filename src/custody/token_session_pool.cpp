#include "custody/token_session_pool.h"

#include <pthread.h>

#include <algorithm>
#include <new>
#include <set>
#include <thread>

namespace certcustody {
namespace {

constexpr std::chrono::milliseconds kMaxReconnectDelay{8000};
// A token a module reports missing may be mid-rewrite by another process
// (SoftHSM rewrites token.object at every C_Login, and a C_Initialize that
// reads it then sees no initialised token): look again for ~0.8 s.
constexpr std::chrono::milliseconds kRescanDelays[] = {std::chrono::milliseconds(25), std::chrono::milliseconds(50),
                                                       std::chrono::milliseconds(100), std::chrono::milliseconds(200),
                                                       std::chrono::milliseconds(400)};

// The pools of this process, for the fork handlers. Never destroyed: a pool
// may outlive the static destructors (the provider's pool goes in
// OPENSSL_cleanup, an atexit handler that runs after them).
std::mutex& pools_mutex() {
  static auto* m = new std::mutex;
  return *m;
}
std::set<TokenSessionPool*>& pools() {
  static auto* p = new std::set<TokenSessionPool*>;
  return *p;
}

}  // namespace

TokenSessionPool::TokenSessionPool(std::shared_ptr<Pkcs11Module> module, TokenUri uri, PinSource pin, Options options)
    : module_(std::move(module)), uri_(std::move(uri)), pin_(std::move(pin)), options_(options) {
  context_.token = uri_.text();
  context_.pin_source = pin_.describe();
  register_fork_handlers(this, true);
}

// fork() happens with no operation in flight (prepare takes every pool's
// locks, waiting for running calls); the child then drops the parent's
// sessions and login without calling the module (its handles are the
// parent's) and re-initialises the module on first use. A thread that forks
// while it holds a Lease deadlocks here: certcustody never does.
void TokenSessionPool::register_fork_handlers(TokenSessionPool* pool, bool add) {
  static std::once_flag once;
  std::call_once(once, [] {
    pthread_atfork(
        [] {
          pools_mutex().lock();
          for (TokenSessionPool* p : pools()) p->before_fork();
        },
        [] {
          for (TokenSessionPool* p : pools()) p->after_fork(false);
          pools_mutex().unlock();
        },
        [] {
          for (TokenSessionPool* p : pools()) p->after_fork(true);
          pools_mutex().unlock();
        });
  });
  std::lock_guard l(pools_mutex());
  if (add) {
    pools().insert(pool);
  } else {
    pools().erase(pool);
  }
}

void TokenSessionPool::before_fork() {
  module_mu_.lock();
  mu_.lock();
}

void TokenSessionPool::after_fork(bool child) {
  if (!child) {
    mu_.unlock();
    module_mu_.unlock();
    return;
  }
  if (ready_) {
    ready_ = false;
    idle_.clear();
    open_ = 0;
    anchor_ = CK_INVALID_HANDLE;
    ++generation_;
    reinit_before_connect_ = true;
    last_connect_error_.reset();
    connect_failures_ = 0;
  }
  recovering_ = false;
  // The parent's threads that waited on these count in them still (a
  // waiting reader is a reader to glibc's rwlock) and will never leave: the
  // child, alone with them, starts from fresh ones. Placement-new without
  // destroying: they hold no resources, and the old state must not be woken.
  new (&module_mu_) std::shared_mutex;
  new (&mu_) std::mutex;
  new (&cv_) std::condition_variable;
}

Result<std::unique_ptr<TokenSessionPool>> TokenSessionPool::open(std::shared_ptr<Pkcs11Module> module, TokenUri uri,
                                                                 PinSource pin, Options options) {
  if (options.max_sessions == 0) options.max_sessions = 1;
  CC_TRY(module->initialize());
  return std::unique_ptr<TokenSessionPool>(
      new TokenSessionPool(std::move(module), std::move(uri), std::move(pin), options));
}

TokenSessionPool::~TokenSessionPool() {
  register_fork_handlers(this, false);
  std::unique_lock mod(module_mu_);
  std::lock_guard l(mu_);
  if (abandoned_) return;
  if (ready_) {
    for (CK_SESSION_HANDLE h : idle_) (void)P11_CALL(*module_, C_CloseSession, h);
    (void)P11_CALL(*module_, C_Logout, anchor_);
    (void)P11_CALL(*module_, C_CloseSession, anchor_);
  }
  idle_.clear();
  module_->finalize();
}

TokenSessionPool::Lease::Lease(TokenSessionPool* pool, CK_SESSION_HANDLE h, std::uint64_t gen,
                               std::shared_lock<std::shared_mutex> lk)
    : pool_(pool), session_(*pool->module_, h, pool->context_, gen, &pool->options_.software), generation_(gen), module_lock_(std::move(lk)) {}

TokenSessionPool::Lease::Lease(Lease&& o) noexcept
    : pool_(o.pool_), session_(o.session_), generation_(o.generation_), broken_(o.broken_),
      module_lock_(std::move(o.module_lock_)) {
  o.pool_ = nullptr;
}

TokenSessionPool::Lease::~Lease() {
  // Give the session back while still holding the module lock.
  if (pool_ != nullptr) pool_->release(session_.handle(), generation_, broken_);
}

void TokenSessionPool::release(CK_SESSION_HANDLE h, std::uint64_t gen, bool broken) {
  {
    std::lock_guard l(mu_);
    if (gen != generation_) return;  // handle belongs to a torn-down connection: never reuse or close it
    if (!broken) {
      idle_.push_back(h);
      cv_.notify_one();
      return;
    }
  }
  // Called with the module lock still shared, so no recovery runs meanwhile.
  (void)P11_CALL(*module_, C_CloseSession, h);
  std::lock_guard l(mu_);
  if (gen == generation_) --open_;
  cv_.notify_one();
}

std::uint64_t TokenSessionPool::generation() const {
  std::lock_guard l(mu_);
  return generation_;
}

unsigned TokenSessionPool::login_attempts() const {
  std::lock_guard l(mu_);
  return login_attempts_;
}

Status TokenSessionPool::connect() { return ensure_ready(); }

Status TokenSessionPool::ensure_ready() {
  {
    std::lock_guard l(mu_);
    if (ready_) return {};
  }
  std::unique_lock mod(module_mu_);
  {
    std::lock_guard l(mu_);
    if (ready_) return {};
    if (last_connect_error_ && std::chrono::steady_clock::now() - last_connect_failure_ < retry_delay_locked())
      return *last_connect_error_;
  }
  Status s = connect_locked();
  std::lock_guard l(mu_);
  note_connect_result_locked(s);
  return s;
}

void TokenSessionPool::note_connect_result_locked(const Status& s) {
  if (s) {
    last_connect_error_.reset();
    connect_failures_ = 0;
    return;
  }
  if (!last_connect_error_) unavailable_since_ = std::chrono::system_clock::now();
  last_connect_error_ = s.error();
  last_connect_failure_ = std::chrono::steady_clock::now();
  ++connect_failures_;
}

// reconnect_interval after the first failed reconnect, then doubling up to
// 8 s (or reconnect_interval, if longer): an absent HSM is not hammered, and
// a token back after a minute is found within seconds.
std::chrono::milliseconds TokenSessionPool::retry_delay_locked() const {
  const unsigned doublings = std::min(connect_failures_ == 0 ? 0u : connect_failures_ - 1, 4u);
  return std::min(options_.reconnect_interval * (1u << doublings),
                  std::max(options_.reconnect_interval, kMaxReconnectDelay));
}

TokenSessionPool::Health TokenSessionPool::health() const {
  std::lock_guard l(mu_);
  if (ready_ || !last_connect_error_) return {};
  return Health{false, last_connect_error_, unavailable_since_};
}

TokenSessionPool::Loss TokenSessionPool::classify(CK_RV rv) {
  if (ck_is_token_loss(rv)) return Loss::token;
  if (ck_is_session_loss(rv)) return Loss::session;
  if (!ck_may_be_token_loss(rv)) return Loss::none;
  return token_still_there() ? Loss::none : Loss::token;
}

// The token the URI names is still in its slot and initialised, and the
// login's anchor session is still known. Asked twice, 50 ms apart, before a
// loss is concluded: a module may show a token half-written by another
// process for a moment (see kRescanDelays).
bool TokenSessionPool::token_still_there() {
  CK_SLOT_ID slot = 0;
  CK_SESSION_HANDLE anchor = CK_INVALID_HANDLE;
  {
    std::lock_guard l(mu_);
    if (!ready_) return false;
    slot = slot_;
    anchor = anchor_;
  }
  for (int probe = 0; probe < 2; ++probe) {
    if (probe > 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CK_SESSION_INFO session{};
    CK_SLOT_INFO si{};
    CK_TOKEN_INFO ti{};
    if (P11_CALL(*module_, C_GetSessionInfo, anchor, &session) == CKR_OK &&
        P11_CALL(*module_, C_GetSlotInfo, slot, &si) == CKR_OK && (si.flags & CKF_TOKEN_PRESENT) &&
        P11_CALL(*module_, C_GetTokenInfo, slot, &ti) == CKR_OK && (ti.flags & CKF_TOKEN_INITIALIZED) &&
        uri_.matches(slot, si, ti))
      return true;
  }
  return false;
}

Status TokenSessionPool::check() {
  std::uint64_t gen = 0;
  bool ready = false;
  {
    std::lock_guard l(mu_);
    if (recovering_) return {};
    gen = generation_;
    ready = ready_;
  }
  if (!ready) return ensure_ready();
  bool there = false;
  {
    std::shared_lock mod(module_mu_);
    if (generation() != gen) return {};  // reconnected meanwhile
    there = token_still_there();
  }
  if (there) return {};
  recover(gen, true);
  return ensure_ready();
}

Result<TokenSessionPool::Lease> TokenSessionPool::acquire() {
  for (int round = 0;; ++round) {
    CC_TRY(ensure_ready());
    // Wait for a free session without holding the module lock, and step
    // aside while a recovery is under way (writer preference).
    std::unique_lock l(mu_);
    cv_.wait(l, [&] { return !recovering_ && (!ready_ || !idle_.empty() || open_ < options_.max_sessions); });
    if (!ready_) continue;
    const std::uint64_t gen = generation_;
    const CK_SLOT_ID slot = slot_;
    CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
    if (!idle_.empty()) {
      h = idle_.back();
      idle_.pop_back();
    } else {
      ++open_;
    }
    l.unlock();
    std::shared_lock mod(module_mu_);
    if (generation() != gen) continue;  // a recovery ran in between: the handle (and count) are void
    if (h != CK_INVALID_HANDLE) return Lease(this, h, gen, std::move(mod));
    CK_RV rv = P11_CALL(*module_, C_OpenSession, slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &h);
    if (rv == CKR_OK) return Lease(this, h, gen, std::move(mod));
    l.lock();
    if (generation_ == gen) --open_;
    cv_.notify_one();
    l.unlock();
    const Loss loss = round == 0 ? classify(rv) : Loss::none;
    mod.unlock();
    if (loss != Loss::none) {
      recover(gen, loss == Loss::token);
      continue;
    }
    CkContext c = context_;
    c.operation = "C_OpenSession";
    return ck_error(rv, c);
  }
}

void TokenSessionPool::recover(std::uint64_t broken_gen, bool reinit_module) {
  {
    std::lock_guard l(mu_);
    // Someone else already reconnected, or is doing it now.
    if (generation_ != broken_gen || !ready_ || recovering_) return;
    recovering_ = true;
  }
  std::unique_lock mod(module_mu_);
  disconnect_locked(reinit_module);
  Status s = connect_locked();  // a failure shows up on the next acquire()
  std::lock_guard l(mu_);
  note_connect_result_locked(s);
  recovering_ = false;
  cv_.notify_all();
}

void TokenSessionPool::disconnect_locked(bool reinit_module) {
  std::lock_guard l(mu_);
  if (reinit_module) {
    module_->finalize();  // every handle is void now; do not close them one by one
  } else {
    (void)P11_CALL(*module_, C_CloseAllSessions, slot_);
  }
  idle_.clear();
  open_ = 0;
  anchor_ = CK_INVALID_HANDLE;
  ready_ = false;
  ++generation_;
  cv_.notify_all();
}

Result<CK_SLOT_ID> TokenSessionPool::find_slot_locked() {
  std::vector<CK_SLOT_ID> ids;
  CK_RV rv = module_->slot_ids(true, ids);
  if (rv == CKR_CRYPTOKI_NOT_INITIALIZED) {  // finalised under us: initialise again
    CC_TRY(module_->initialize());
    rv = module_->slot_ids(true, ids);
  }
  if (rv != CKR_OK) {
    CkContext c = context_;
    c.operation = "C_GetSlotList";
    return ck_error(rv, c);
  }
  std::vector<CK_SLOT_ID> matches = matching_slots(ids);
  if (matches.empty())
    return Error{"custody.token_not_present",
                 "no initialised token matching " + uri_.text() + " in " + module_->path(),
                 "check [custody] token against `certcustody token info` (slots and labels), and that the HSM "
                 "is connected; certcustody reconnects by itself when the token returns",
                 CKR_TOKEN_NOT_PRESENT};
  if (matches.size() > 1)
    return Error{"custody.token_ambiguous", uri_.text() + " matches " + std::to_string(matches.size()) + " tokens",
                 "make [custody] token unique, e.g. add ;serial=<serial> from `certcustody token info`"};
  return matches.front();
}

Status TokenSessionPool::login_locked(CK_SESSION_HANDLE anchor, const CK_TOKEN_INFO& info) {
  std::string fp = pin_.fingerprint();
  {
    std::lock_guard l(mu_);
    if (rejected_pin_fingerprint_ && *rejected_pin_fingerprint_ == fp) return *rejected_pin_error_;
  }
  if (info.flags & CKF_USER_PIN_LOCKED) {
    CkContext c = context_;
    c.operation = "login";
    return ck_error(CKR_PIN_LOCKED, c);
  }
  if (info.flags & CKF_USER_PIN_FINAL_TRY)
    return Error{"custody.pin_final_try",
                 "the token will lock the user PIN after one more wrong attempt, so certcustody does not try",
                 "verify " + pin_.describe() + " by hand with the HSM vendor's tool, or have the Security "
                 "Officer reset the PIN"};
  CC_TRY_ASSIGN(SecureBytes pin, pin_.read());
  CK_RV rv = P11_CALL(*module_, C_Login, anchor, CKU_USER, pin.data(), static_cast<CK_ULONG>(pin.size()));
  std::lock_guard l(mu_);
  ++login_attempts_;
  if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN) return {};
  CkContext c = context_;
  c.operation = "C_Login";
  Error e = ck_error(rv, c);
  if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LEN_RANGE || rv == CKR_PIN_INVALID) {
    rejected_pin_fingerprint_ = fp;
    rejected_pin_error_ = e;
  }
  return e;
}

// A failure while connecting that a token mid-rewrite, or one just back,
// gives: looked at again on a freshly initialised module (SoftHSM scans its
// token directory only in C_Initialize).
namespace {
bool connect_failure_may_pass(const Error& e) {
  return e.code == "custody.token_not_present" || e.code == "custody.module_unavailable" ||
         ck_is_token_loss(e.native) || ck_may_be_token_loss(e.native);
}
}  // namespace

Status TokenSessionPool::connect_locked() {
  {
    std::lock_guard l(mu_);
    if (reinit_before_connect_) {  // a forked child: C_Initialize of its own, never the parent's state
      module_->finalize();
      reinit_before_connect_ = false;
    }
  }
  Status s = connect_once_locked();
  for (const auto delay : kRescanDelays) {
    if (s || !connect_failure_may_pass(s.error())) return s;
    module_->finalize();
    std::this_thread::sleep_for(delay);
    s = connect_once_locked();
  }
  return s;
}

Status TokenSessionPool::connect_once_locked() {
  CC_TRY_ASSIGN(CK_SLOT_ID slot, find_slot_locked());
  CK_TOKEN_INFO ti{};
  CK_RV rv = P11_CALL(*module_, C_GetTokenInfo, slot, &ti);
  CkContext c = context_;
  if (rv != CKR_OK) {
    c.operation = "C_GetTokenInfo";
    return ck_error(rv, c);
  }
  if (!(ti.flags & CKF_USER_PIN_INITIALIZED)) {
    c.operation = "login";
    return ck_error(CKR_USER_PIN_NOT_INITIALIZED, c);
  }
  CK_SESSION_HANDLE anchor = CK_INVALID_HANDLE;
  rv = P11_CALL(*module_, C_OpenSession, slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &anchor);
  if (rv != CKR_OK) {
    c.operation = "C_OpenSession";
    return ck_error(rv, c);
  }
  if (Status s = login_locked(anchor, ti); !s) {
    (void)P11_CALL(*module_, C_CloseSession, anchor);
    return s;
  }
  std::lock_guard l(mu_);
  slot_ = slot;
  anchor_ = anchor;
  ready_ = true;
  ++generation_;
  cv_.notify_all();
  return {};
}

Result<std::vector<SlotDescription>> TokenSessionPool::slots() {
  std::shared_lock mod(module_mu_);
  std::vector<CK_SLOT_ID> ids;
  if (CK_RV rv = module_->slot_ids(false, ids); rv != CKR_OK) {
    CkContext c = context_;
    c.operation = "C_GetSlotList";
    return ck_error(rv, c);
  }
  std::vector<SlotDescription> out;
  for (CK_SLOT_ID id : ids) {
    SlotDescription d;
    d.id = id;
    CK_SLOT_INFO si{};
    if (P11_CALL(*module_, C_GetSlotInfo, id, &si) != CKR_OK) continue;
    d.description = p11_text(si.slotDescription, sizeof si.slotDescription);
    d.token_present = (si.flags & CKF_TOKEN_PRESENT) != 0;
    CK_TOKEN_INFO ti{};
    if (d.token_present && P11_CALL(*module_, C_GetTokenInfo, id, &ti) == CKR_OK) {
      d.token_label = p11_text(ti.label, sizeof ti.label);
      d.token_model = p11_text(ti.model, sizeof ti.model);
      d.token_serial = p11_text(ti.serialNumber, sizeof ti.serialNumber);
      d.token_manufacturer = p11_text(ti.manufacturerID, sizeof ti.manufacturerID);
      d.token_flags = ti.flags;
      d.selected = (ti.flags & CKF_TOKEN_INITIALIZED) && uri_.matches(id, si, ti);
    }
    out.push_back(std::move(d));
  }
  return out;
}

std::vector<CK_SLOT_ID> TokenSessionPool::matching_slots(const std::vector<CK_SLOT_ID>& ids) {
  std::vector<CK_SLOT_ID> matches;
  for (CK_SLOT_ID id : ids) {
    CK_SLOT_INFO si{};
    CK_TOKEN_INFO ti{};
    if (P11_CALL(*module_, C_GetSlotInfo, id, &si) != CKR_OK) continue;
    if (P11_CALL(*module_, C_GetTokenInfo, id, &ti) != CKR_OK) continue;
    if ((ti.flags & CKF_TOKEN_INITIALIZED) && uri_.matches(id, si, ti)) matches.push_back(id);
  }
  return matches;
}

std::unique_ptr<TokenSessionPool::PublicLease> TokenSessionPool::public_lease() {
  std::shared_lock mod(module_mu_);
  std::uint64_t gen = 0;
  {
    std::lock_guard l(mu_);
    if (ready_ || recovering_ || abandoned_) return nullptr;
    gen = generation_;
  }
  std::vector<CK_SLOT_ID> ids;
  if (module_->slot_ids(true, ids) != CKR_OK) return nullptr;
  std::vector<CK_SLOT_ID> slots = matching_slots(ids);
  CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
  if (slots.size() != 1 ||
      P11_CALL(*module_, C_OpenSession, slots.front(), CKF_SERIAL_SESSION, nullptr, nullptr, &h) != CKR_OK)
    return nullptr;
  return std::make_unique<PublicLease>(this, h, gen, std::move(mod));
}

}  // namespace certcustody
