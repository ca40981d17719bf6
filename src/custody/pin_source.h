// Where a token PIN comes from: a file (mode 0600) or a systemd credential
// ($CREDENTIALS_DIRECTORY/<name>). Never argv, never a plain environment value.
#pragma once

#include <string>

#include "common/error.h"
#include "common/secure_buffer.h"

namespace certcustody {

class PinSource {
 public:
  // A value containing '/' is a file path; otherwise a systemd credential name.
  static Result<PinSource> from_config(const std::string& value);

  // The PIN without a trailing newline, in wiped memory.
  Result<SecureBytes> read() const;

  // Identity of what read() would return now (device, inode, size, mtime); it
  // changes when the operator rewrites the file, and never reveals the PIN.
  std::string fingerprint() const;

  // "PIN file /etc/certcustody/user.pin" or "systemd credential 'user-pin' (...)";
  // `noun` names a file of another kind ("auth file").
  std::string describe(const char* noun = "PIN file") const;

 private:
  Result<std::string> resolve_path() const;

  bool credential_ = false;
  std::string value_;
};

}  // namespace certcustody
