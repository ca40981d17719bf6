#include "custody/pkcs11_module.h"

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>

#include "custody/ck_error.h"

namespace certcustody {

Result<std::shared_ptr<Pkcs11Module>> Pkcs11Module::load(const std::string& path) {
  std::shared_ptr<Pkcs11Module> m(new Pkcs11Module());
  m->path_ = path;
  // RTLD_NODELETE: some modules (SoftHSM) register atexit handlers; keeping the
  // code mapped avoids a crash when they run after we released the module.
  m->dl_ = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (m->dl_ == nullptr) {
    const char* why = ::dlerror();
    return Error{"custody.module_unloadable",
                 "cannot load PKCS#11 module " + path + ": " + (why != nullptr ? why : "unknown error"),
                 "set [custody] module to the HSM vendor's PKCS#11 library (for SoftHSM: "
                 "/usr/lib/softhsm/libsofthsm2.so) and check it is installed"};
  }
  auto get = reinterpret_cast<CK_C_GetFunctionList>(::dlsym(m->dl_, "C_GetFunctionList"));
  if (get == nullptr || get(&m->fns_) != CKR_OK || m->fns_ == nullptr)
    return Error{"custody.module_invalid", path + " is not a PKCS#11 module (no C_GetFunctionList)",
                 "set [custody] module to the HSM vendor's PKCS#11 library"};
  const char* t = std::getenv("CERTCUSTODY_P11_TRACE");
  m->trace_ = t != nullptr && *t == '1';
  return m;
}

Pkcs11Module::~Pkcs11Module() {
  if (dl_ != nullptr) ::dlclose(dl_);
}

Status Pkcs11Module::initialize() {
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  CK_RV rv = P11_CALL(*this, C_Initialize, &args);
  if (rv == CKR_OK || rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) return {};
  if (rv == CKR_CANT_LOCK)
    return Error{"custody.module_not_thread_safe", path_ + " cannot use OS locking (CKR_CANT_LOCK)",
                 "use a thread-safe build of the HSM's PKCS#11 module", rv};
  // Its configuration, its token store (SoftHSM's token directory) or, for a
  // network HSM, its connection: the token is out of reach, not refused.
  return Error{"custody.module_unavailable", "C_Initialize of " + path_ + " failed: " + ck_rv_name(rv),
               "check the module's configuration and that its token store or HSM is reachable (its own logs say "
               "which); certcustody retries by itself and requests wait meanwhile",
               rv};
}

CK_RV Pkcs11Module::slot_ids(bool token_present, std::vector<CK_SLOT_ID>& out) {
  const CK_BBOOL present = token_present ? CK_TRUE : CK_FALSE;
  for (;;) {  // the list can grow between the two calls (hot-plug)
    CK_ULONG n = 0;
    CK_RV rv = P11_CALL(*this, C_GetSlotList, present, nullptr, &n);
    if (rv != CKR_OK) return rv;
    out.resize(n);
    if (n == 0) return CKR_OK;
    rv = P11_CALL(*this, C_GetSlotList, present, out.data(), &n);
    if (rv == CKR_BUFFER_TOO_SMALL) continue;
    out.resize(n);
    return rv;
  }
}

void Pkcs11Module::finalize() noexcept { (void)P11_CALL(*this, C_Finalize, nullptr); }

void Pkcs11Module::trace(const char* name, CK_RV rv, std::chrono::steady_clock::duration d) const {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  std::fprintf(stderr, "p11-trace %s -> %s (%lld us)\n", name, ck_rv_name(rv).c_str(), static_cast<long long>(us));
}

std::string p11_text(const unsigned char* field, std::size_t size) {
  std::string s(reinterpret_cast<const char*>(field), size);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

}  // namespace certcustody
