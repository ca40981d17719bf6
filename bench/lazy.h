// Shared by the benchmarks: fixtures made on first use and torn down
// explicitly by main() (SoftHSM must be closed before OpenSSL's exit cleanup).
#pragma once

#include <exception>
#include <memory>
#include <mutex>
#include <string>

namespace certcustody::bench {

// Made on first use (so --benchmark_filter/--benchmark_list_tests make no
// token), torn down by main().
template <class T>
class Lazy {
 public:
  // The object, or nullptr with `error` set when it could not be made.
  T* get(std::string& error) {
    std::lock_guard l(mu_);
    if (!value_ && error_.empty()) {
      try {
        value_ = std::make_unique<T>();
      } catch (const std::exception& e) {
        error_ = e.what();
      }
    }
    error = error_;
    return value_.get();
  }
  void reset() {
    std::lock_guard l(mu_);
    value_.reset();
  }
  bool failed() {
    std::lock_guard l(mu_);
    return !error_.empty();
  }

 private:
  std::mutex mu_;
  std::unique_ptr<T> value_;
  std::string error_;
};

}  // namespace certcustody::bench
