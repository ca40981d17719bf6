// Shared by the benchmarks: start-up (initialize) and fixtures made on first
// use and torn down explicitly by main() (SoftHSM must be closed before
// OpenSSL's exit cleanup).
#pragma once

#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

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

// benchmark::Initialize with a default of 1 s per benchmark (a later
// --benchmark_min_time wins), so a whole run stays within a few minutes.
// False when the command line has arguments Google Benchmark does not know.
inline bool initialize(int argc, char** argv, const char* name) {
  static std::vector<char*> args;
  static char default_min_time[] = "--benchmark_min_time=1";
  args.assign(argv, argv + argc);
  args.insert(args.begin() + (argc > 0 ? 1 : 0), default_min_time);
  int nargs = static_cast<int>(args.size());
  args.push_back(nullptr);
  benchmark::Initialize(&nargs, args.data());
  if (benchmark::ReportUnrecognizedArguments(nargs, args.data())) return false;
  if (const char* t = std::getenv("CERTCUSTODY_P11_TRACE"); t != nullptr && *t == '1')
    std::fprintf(stderr, "%s: CERTCUSTODY_P11_TRACE=1 traces every call; the figures are meaningless\n", name);
  return true;
}

}  // namespace certcustody::bench
