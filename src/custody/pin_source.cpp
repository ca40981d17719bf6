#include "custody/pin_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>

namespace certcustody {
namespace {

constexpr off_t kMaxPinFileSize = 256;

bool valid_credential_name(const std::string& s) {
  if (s.empty() || s == "." || s == "..") return false;
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' || c == '@')) return false;
  return true;
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

Result<PinSource> PinSource::from_config(const std::string& value) {
  PinSource s;
  s.value_ = value;
  s.credential_ = value.find('/') == std::string::npos;
  if (s.credential_ && !valid_credential_name(value))
    return Error{"custody.pin_source_invalid", "pin_file \"" + value + "\" is neither a path nor a credential name",
                 "give an absolute path to a 0600 PIN file, or a systemd credential name (letters, digits, _ - .)"};
  return s;
}

Result<std::string> PinSource::resolve_path() const {
  if (!credential_) return value_;
  const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
  if (dir == nullptr || *dir == '\0')
    return Error{"custody.credentials_directory_unset",
                 "pin_file names the systemd credential '" + value_ + "' but CREDENTIALS_DIRECTORY is not set",
                 "run certcustody under systemd with LoadCredential=" + value_ +
                     ":/path/to/pin (or LoadCredentialEncrypted=), or set pin_file to a file path"};
  return std::string(dir) + "/" + value_;
}

std::string PinSource::describe(const char* noun) const {
  if (!credential_) return std::string(noun) + " " + value_;
  return "systemd credential '" + value_ + "' ($CREDENTIALS_DIRECTORY/" + value_ + ")";
}

std::string PinSource::fingerprint() const {
  auto path = resolve_path();
  struct stat st {};
  if (!path || ::stat(path->c_str(), &st) != 0) return "absent";
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" + std::to_string(st.st_size) + ":" +
         std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
}

Result<SecureBytes> PinSource::read() const {
  CC_TRY_ASSIGN(std::string path, resolve_path());
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY)};
  if (f.fd < 0)
    return Error{"custody.pin_file_unreadable", "cannot open " + describe(),
                 "check that " + path + " exists and is readable by the certcustody service user"};
  struct stat st {};
  if (::fstat(f.fd, &st) != 0 || !S_ISREG(st.st_mode))
    return Error{"custody.pin_file_unreadable", describe() + " is not a regular file",
                 "point pin_file at a regular file holding only the PIN"};
  if (!credential_ && (st.st_mode & 0077) != 0)
    return Error{"custody.pin_file_too_open", describe() + " is readable or writable by group or others",
                 "run: chmod 600 " + path + " (owned by the certcustody service user)"};
  if (st.st_size <= 0 || st.st_size > kMaxPinFileSize)
    return Error{"custody.pin_file_invalid", describe() + " is empty or larger than 256 bytes",
                 "write only the PIN (one line) to " + path};
  SecureBytes pin(static_cast<std::size_t>(st.st_size));
  std::size_t got = 0;
  while (got < pin.size()) {
    ssize_t n = ::read(f.fd, pin.data() + got, pin.size() - got);
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  pin.resize(got);
  while (!pin.empty() && (pin.back() == '\n' || pin.back() == '\r')) pin.pop_back();
  if (pin.empty())
    return Error{"custody.pin_file_invalid", describe() + " holds no PIN", "write the PIN (one line) to " + path};
  return pin;
}

}  // namespace certcustody
