// flock(2) on an open file for the life of the object: processes sharing a
// file (the daemon and CLI commands) take turns. The descriptor stays the
// caller's.
#pragma once

#include <sys/file.h>

#include <cerrno>

namespace certcustody {

class FileLock {
 public:
  explicit FileLock(int fd) : fd_(fd) {
    while (::flock(fd_, LOCK_EX) != 0 && errno == EINTR) {
    }
  }
  ~FileLock() { ::flock(fd_, LOCK_UN); }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_;
};

}  // namespace certcustody
