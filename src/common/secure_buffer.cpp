#include "common/secure_buffer.h"

#include <openssl/crypto.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <new>

namespace certcustody {

void secure_wipe(void* p, std::size_t n) noexcept {
  if (p != nullptr && n != 0) OPENSSL_cleanse(p, n);
}

void* secure_allocate(std::size_t bytes) {
  void* p = ::operator new(bytes == 0 ? 1 : bytes);
  // Best effort: RLIMIT_MEMLOCK may be small; zeroing on release still holds.
  if (bytes != 0) (void)::mlock(p, bytes);
  return p;
}

void secure_deallocate(void* p, std::size_t bytes) noexcept {
  if (p == nullptr) return;
  secure_wipe(p, bytes);
  if (bytes != 0) (void)::munlock(p, bytes);
  ::operator delete(p);
}

void harden_process() noexcept {
  rlimit none{0, 0};
  (void)::setrlimit(RLIMIT_CORE, &none);
  (void)::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

}  // namespace certcustody
