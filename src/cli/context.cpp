#include "cli/context.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>

namespace certcustody::cli {

Result<Config> load(const Globals& g) {
  CC_TRY_ASSIGN(std::string path, resolve_config_path(g.config));
  return load_config(path);
}

Result<std::unique_ptr<Pkcs11Custody>> open_custody(const Config& cfg) {
  return Pkcs11Custody::open(cfg.custody);
}

Status write_file_atomic(const std::string& path, const std::string& data, unsigned mode) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0)
    return Error{"cli.output_unwritable", "cannot create " + tmp, "check that the directory exists and is writable"};
  bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()) && ::fsync(fd) == 0;
  ok = (::close(fd) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return Error{"cli.output_unwritable", "cannot write " + path, "check free space and permissions"};
  }
  return {};
}

}  // namespace certcustody::cli
