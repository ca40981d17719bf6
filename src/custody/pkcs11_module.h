// A loaded PKCS#11 module and the one choke point every C_* call goes through
// (presence check, optional trace with timing, call counting).
#pragma once

#include <p11-kit/pkcs11.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"

namespace certcustody {

class Pkcs11Module {
 public:
  // dlopen()s the module and fetches its function list; does not initialise.
  static Result<std::shared_ptr<Pkcs11Module>> load(const std::string& path);
  ~Pkcs11Module();
  Pkcs11Module(const Pkcs11Module&) = delete;
  Pkcs11Module& operator=(const Pkcs11Module&) = delete;

  // C_Initialize with OS locking (we call the module from many threads).
  Status initialize();
  // C_Finalize; handles from before are void afterwards.
  void finalize() noexcept;

  // C_GetSlotList (both calls of the length convention); with
  // token_present, only slots holding a token. CKR_OK or the failing CK_RV.
  CK_RV slot_ids(bool token_present, std::vector<CK_SLOT_ID>& out);

  const std::string& path() const { return path_; }
  CK_FUNCTION_LIST* functions() const { return fns_; }

  // Calls one PKCS#11 function: CKR_FUNCTION_NOT_SUPPORTED when the module
  // lacks it; traced to stderr (name, CK_RV, time) when CERTCUSTODY_P11_TRACE=1.
  template <class Fn, class... Args>
  CK_RV call(Fn CK_FUNCTION_LIST::*member, const char* name, Args&&... args) {
    Fn fn = fns_->*member;
    if (fn == nullptr) return CKR_FUNCTION_NOT_SUPPORTED;
    calls_.fetch_add(1, std::memory_order_relaxed);
    if (!trace_) return fn(std::forward<Args>(args)...);
    auto t0 = std::chrono::steady_clock::now();
    CK_RV rv = fn(std::forward<Args>(args)...);
    trace(name, rv, std::chrono::steady_clock::now() - t0);
    return rv;
  }

  // Total C_* calls made through call(); lets tests and benchmarks see cost.
  std::uint64_t call_count() const { return calls_.load(std::memory_order_relaxed); }

 private:
  Pkcs11Module() = default;
  void trace(const char* name, CK_RV rv, std::chrono::steady_clock::duration d) const;

  std::string path_;
  void* dl_ = nullptr;
  CK_FUNCTION_LIST* fns_ = nullptr;
  bool trace_ = false;
  std::atomic<std::uint64_t> calls_{0};
};

#define P11_CALL(module, fn, ...) (module).call(&CK_FUNCTION_LIST::fn, #fn, __VA_ARGS__)

// Trims the blank padding of fixed-size PKCS#11 text fields.
std::string p11_text(const unsigned char* field, std::size_t size);

}  // namespace certcustody
