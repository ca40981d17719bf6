#include "common/durable_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

namespace certcustody {

int write_file_durably(const std::string& path, std::string_view data, unsigned mode, Existing existing) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) return errno;
  int err = 0;
  if (::write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size()) || ::fsync(fd) != 0) err = errno ? errno : EIO;
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err == 0) {
    // link() refuses an existing name, so a key or file already there is kept.
    const int rc = existing == Existing::replace ? std::rename(tmp.c_str(), path.c_str()) : ::link(tmp.c_str(), path.c_str());
    if (rc != 0) err = errno;
  }
  if (err != 0 || existing == Existing::keep) ::unlink(tmp.c_str());
  if (err != 0) return err;
  const auto slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return 0;
}

}  // namespace certcustody
