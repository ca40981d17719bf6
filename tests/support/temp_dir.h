// Test helpers shared by every suite and by bench/: temporary directories,
// files, and running real peer programs (openssl, pkcs11-tool, certcustody).
#pragma once

#include <string>
#include <vector>

namespace certcustody::testing {

// A fresh directory under $TMPDIR, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void write_file(const std::string& path, const std::string& content, unsigned mode = 0600);
std::string read_file(const std::string& path);
// True under CI (CI=true), where ../shared is beside the clone: a test that
// needs its third-party vectors fails there instead of skipping.
bool running_in_ci();

struct RunResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// This process's environment with `env` entries ("NAME=value") added or
// replacing those of the same name.
std::vector<std::string> environment_with(const std::vector<std::string>& env);
// NULL-terminated pointers into `strings`, for exec-style calls.
std::vector<char*> c_strings(const std::vector<std::string>& strings);

// Runs argv (no shell), with `env` entries ("NAME=value") added to the
// environment, stdin from /dev/null.
RunResult run(const std::vector<std::string>& argv, const std::vector<std::string>& env = {});

}  // namespace certcustody::testing
