#include "pipeline/spool.h"

#include <openssl/rand.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "common/ossl.h"
#include "pipeline/fault.h"
#include "pipeline/owner.h"

namespace certcustody::pipeline {
namespace {

Error spool_error(const std::string& what) {
  return Error{"spool.unwritable", what + ": " + std::strerror(errno),
               "let the service user read and write the state directory, and free space on its file system"};
}

Status fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return spool_error("cannot open " + dir);
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return spool_error("cannot sync " + dir);
  return {};
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Regular *.json files of `dir` by modification time, oldest first.
Result<std::vector<std::string>> json_files(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return spool_error("cannot read the spool directory " + dir);
  std::vector<std::pair<timespec, std::string>> files;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.empty() || name[0] == '.' || !ends_with(name, ".json")) continue;
    struct stat st{};
    if (::fstatat(::dirfd(d), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) continue;
    files.emplace_back(st.st_mtim, name);
  }
  ::closedir(d);
  std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) {
    if (a.first.tv_sec != b.first.tv_sec) return a.first.tv_sec < b.first.tv_sec;
    if (a.first.tv_nsec != b.first.tv_nsec) return a.first.tv_nsec < b.first.tv_nsec;
    return a.second < b.second;
  });
  std::vector<std::string> out;
  out.reserve(files.size());
  for (auto& f : files) out.push_back(std::move(f.second));
  return out;
}

}  // namespace

SpoolPaths spool_paths(const std::string& state_dir) {
  const std::string root = state_dir + "/requests";
  return {root, root + "/incoming", root + "/claimed", root + "/rejected", root + "/outgoing", root + "/tmp"};
}

Status ensure_spool(const SpoolPaths& p) {
  const std::string state = p.root.substr(0, p.root.rfind('/'));
  for (const std::string* dir : {&state, &p.root, &p.incoming, &p.claimed, &p.rejected, &p.outgoing, &p.tmp})
    if (::mkdir(dir->c_str(), 0700) != 0 && errno != EEXIST) return spool_error("cannot create " + *dir);
  return {};
}

bool valid_request_id(std::string_view id) {
  if (id.empty() || id.size() > 128 || id[0] == '.') return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '@' || c == '-';
  });
}

namespace {

// <name>.<pid>-<start time>.<random>: unique (O_EXCL, a new random part on a
// clash), and a leftover's writer can be told dead (clean_temp_files).
Result<std::pair<std::string, int>> create_temp(const SpoolPaths& p, const std::string& name) {
  static const std::string token = this_process_token();
  for (int attempt = 0; attempt < 8; ++attempt) {
    unsigned char r[6];
    if (RAND_bytes(r, sizeof r) != 1) return Error{"spool.unwritable", "no random bytes for a temporary name", "retry"};
    const std::string tmp = p.tmp + "/" + name + "." + token + "." + to_hex_lower(r);
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0) return std::pair{tmp, fd};
    if (errno != EEXIST) return spool_error("cannot create " + tmp);
  }
  return spool_error("cannot create a temporary file in " + p.tmp);
}

}  // namespace

Status clean_temp_files(const SpoolPaths& p) {
  DIR* d = ::opendir(p.tmp.c_str());
  if (d == nullptr) return spool_error("cannot read " + p.tmp);
  std::vector<std::string> dead;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    const auto last = name.rfind('.');
    const auto token_at = last == std::string::npos || last == 0 ? std::string::npos : name.rfind('.', last - 1);
    if (name == "." || name == "..") continue;
    if (token_at == std::string::npos || !process_token_alive(name.substr(token_at + 1, last - token_at - 1)))
      dead.push_back(p.tmp + "/" + name);
  }
  ::closedir(d);
  for (const std::string& f : dead) ::unlink(f.c_str());
  return {};
}

Status write_atomic(const SpoolPaths& p, const std::string& dir, const std::string& name, std::string_view data) {
  CC_TRY_ASSIGN(auto created, create_temp(p, name));
  const auto& [tmp, fd] = created;
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
  const bool ok = done == data.size() && ::fsync(fd) == 0;
  if (::close(fd) != 0 || !ok) {
    Error e = spool_error("cannot write " + tmp);
    ::unlink(tmp.c_str());
    return e;
  }
  fault_point("spool_tmp_written");
  const std::string target = dir + "/" + name;
  if (std::rename(tmp.c_str(), target.c_str()) != 0) {
    Error e = spool_error("cannot move " + tmp + " to " + target);
    ::unlink(tmp.c_str());
    return e;
  }
  return fsync_dir(dir);
}

Status spool_submit(const SpoolPaths& p, const std::string& id, std::string_view text) {
  if (!valid_request_id(id))
    return Error{"request.id_invalid", "request id \"" + id + "\" is not 1-128 characters of A-Z a-z 0-9 . _ @ -",
                 "give the request an id of those characters (or none: submit makes one)"};
  const std::string name = id + ".json";
  for (const std::string* dir : {&p.incoming, &p.claimed})
    if (::access((*dir + "/" + name).c_str(), F_OK) == 0)
      return Error{"request.already_queued", "request " + id + " is already waiting in " + *dir,
                   "wait for it (certcustody status " + id + ") or use another id"};
  return write_atomic(p, p.incoming, name, text);
}

Result<std::vector<std::string>> spool_claim(const SpoolPaths& p) {
  CC_TRY_ASSIGN(std::vector<std::string> incoming, json_files(p.incoming));
  bool moved = false;
  for (const std::string& name : incoming) {
    const std::string from = p.incoming + "/" + name, to = p.claimed + "/" + name;
    // rename(2) is atomic: of two claimers, one moves the file, the other gets ENOENT.
    if (std::rename(from.c_str(), to.c_str()) == 0) {
      moved = true;
    } else if (errno != ENOENT) {
      return spool_error("cannot claim " + from);
    }
  }
  if (moved) CC_TRY(fsync_dir(p.claimed));
  CC_TRY_ASSIGN(std::vector<std::string> claimed, json_files(p.claimed));
  for (std::string& name : claimed) name = p.claimed + "/" + name;
  return claimed;
}

Result<std::string> read_spool_file(const std::string& path, std::size_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return spool_error("cannot open " + path);
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Error{"spool.not_a_file", path + " is not a regular file", "put request files (JSON) only in the spool"};
  }
  if (static_cast<std::size_t>(st.st_size) > max_bytes) {
    ::close(fd);
    return Error{"request.too_large",
                 path + " has " + std::to_string(st.st_size) + " bytes; requests are at most " +
                     std::to_string(max_bytes),
                 "send one request per file (a request is a few hundred bytes), or raise pipeline.max_request_bytes"};
  }
  std::string text(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::read(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
  text.resize(done);
  return text;
}

}  // namespace certcustody::pipeline
