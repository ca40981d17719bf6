// Memory for secrets (PINs, passwords, plaintext key material).
//
// Pages are locked in RAM where the system allows it (so they are not
// swapped out) and always zeroed before they are released, including on
// vector growth. Never copy the contents into a std::string.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace certcustody {

void secure_wipe(void* p, std::size_t n) noexcept;

template <class T>
struct ZeroingAllocator {
  using value_type = T;
  ZeroingAllocator() noexcept = default;
  template <class U>
  ZeroingAllocator(const ZeroingAllocator<U>&) noexcept {}  // NOLINT

  T* allocate(std::size_t n);
  void deallocate(T* p, std::size_t n) noexcept;

  template <class U>
  bool operator==(const ZeroingAllocator<U>&) const noexcept { return true; }
};

void* secure_allocate(std::size_t bytes);
void secure_deallocate(void* p, std::size_t bytes) noexcept;

template <class T>
T* ZeroingAllocator<T>::allocate(std::size_t n) {
  return static_cast<T*>(secure_allocate(n * sizeof(T)));
}
template <class T>
void ZeroingAllocator<T>::deallocate(T* p, std::size_t n) noexcept {
  secure_deallocate(p, n * sizeof(T));
}

using SecureBytes = std::vector<std::uint8_t, ZeroingAllocator<std::uint8_t>>;

inline std::string_view as_string_view(const SecureBytes& b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// Stops this process from writing core dumps and from being ptrace-attached
// by unprivileged peers, so secrets in memory do not end up on disk.
void harden_process() noexcept;

}  // namespace certcustody
