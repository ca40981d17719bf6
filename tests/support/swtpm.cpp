#include "support/swtpm.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <stdexcept>

namespace certcustody::testing {
namespace {

bool port_free(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

std::string random_auth_value() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) throw std::runtime_error("RAND_bytes failed");
  std::string out;
  char hex[3];
  for (unsigned char c : b) {
    std::snprintf(hex, sizeof hex, "%02x", c);
    out += hex;
  }
  return out;
}

Swtpm::Swtpm() {
  ::mkdir((dir_ / "tpm").c_str(), 0700);
  ::mkdir(key_dir().c_str(), 0700);
  auth_value_ = random_auth_value();
  write_file(auth_file(), auth_value_ + "\n", 0600);
  start();
}

Swtpm::~Swtpm() { stop(); }

void Swtpm::start() {
  const bool fixed_port = port_ != 0;
  for (int attempt = 0; attempt < 50; ++attempt) {
    if (!fixed_port) {
      // A pair below the kernel's ephemeral range (32768+), where client
      // sockets in TIME_WAIT (tpm2-tools runs, benchmarks) would collide.
      unsigned char r[2];
      if (RAND_bytes(r, sizeof r) != 1) throw std::runtime_error("RAND_bytes failed");
      port_ = 20000 + ((r[0] << 8 | r[1]) % 12000);
      if (!port_free(port_) || !port_free(port_ + 1)) continue;
    }
    const std::string p = std::to_string(port_), c = std::to_string(port_ + 1);
    process_ = std::make_unique<Process>(
        std::vector<std::string>{"swtpm", "socket", "--tpm2", "--server", "type=tcp,port=" + p + ",bindaddr=127.0.0.1",
                                 "--ctrl", "type=tcp,port=" + c + ",bindaddr=127.0.0.1", "--tpmstate",
                                 "dir=" + (dir_ / "tpm"), "--flags", "not-need-init,startup-clear"},
        std::vector<std::string>{}, dir_ / "swtpm.log");
    // Both ports accept once swtpm is up; it serves the command port one
    // client at a time, and a probe's connection is closed at once. (A zombie
    // still answers kill(pid, 0): wait(0) is what sees an early exit.)
    for (int i = 0; i < 100 && process_->wait(0) == -1; ++i) {
      if (wait_for_port(port_ + 1, 50) && wait_for_port(port_, 50)) return;
    }
    process_.reset();
    if (fixed_port) break;
  }
  throw std::runtime_error("swtpm did not start: " + read_file(dir_ / "swtpm.log"));
}

void Swtpm::stop() { process_.reset(); }

std::string Swtpm::tcti() const { return "swtpm:host=127.0.0.1,port=" + std::to_string(port_); }

std::vector<std::string> Swtpm::env() const {
  return {"TPM2TOOLS_TCTI=" + tcti(), "TPM2OPENSSL_TCTI=" + tcti()};
}

std::string Swtpm::make_auth_file(const std::string& name, std::string* value) const {
  std::string v = random_auth_value();
  write_file(dir_ / name, v + "\n", 0600);
  if (value != nullptr) *value = v;
  return dir_ / name;
}

std::string Swtpm::write_config_file(const std::string& state_dir, const std::string& auth_file,
                                     const std::string& name, const std::string& extra,
                                     const std::string& custody_extra) const {
  const std::string path = dir_ / name;
  write_file(path, "[custody]\nbackend = \"tpm2\"\ntcti = \"" + tcti() + "\"\nauth_file = \"" +
                       (auth_file.empty() ? this->auth_file() : auth_file) + "\"\nkey_dir = \"" + key_dir() +
                       "\"\n" + custody_extra + "\n[state]\ndir = \"" + state_dir + "\"\n" +
                       (extra.empty() ? "" : "\n" + extra));
  return path;
}

CustodyConfig Swtpm::custody_config() const {
  CustodyConfig c;
  c.backend = "tpm2";
  c.tcti = tcti();
  c.auth_file = auth_file();
  c.key_dir = key_dir();
  c.srk_handle = 0x81000001;
  return c;
}

RunResult Swtpm::tool(std::vector<std::string> argv) const { return run(argv, env()); }

long Swtpm::lockout_counter() const {
  RunResult r = tool({"tpm2_getcap", "properties-variable"});
  if (r.exit_code != 0) return -1;
  const std::string key = "TPM2_PT_LOCKOUT_COUNTER:";
  auto at = r.output.find(key);
  if (at == std::string::npos) return -1;
  return std::strtol(r.output.c_str() + at + key.size(), nullptr, 0);
}

std::string Swtpm::transient_handles() const {
  RunResult r = tool({"tpm2_getcap", "handles-transient"});
  return r.exit_code == 0 ? r.output : "tpm2_getcap failed: " + r.output;
}

std::string Swtpm::persistent_handles() const {
  RunResult r = tool({"tpm2_getcap", "handles-persistent"});
  return r.exit_code == 0 ? r.output : "tpm2_getcap failed: " + r.output;
}

bool Swtpm::create_srk_with_tools(const std::vector<std::string>& key, const std::string& handle) const {
  std::vector<std::string> argv = {"tpm2_createprimary", "-C", "o"};
  argv.insert(argv.end(), key.begin(), key.end());
  argv.insert(argv.end(), {"-a", "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|restricted|decrypt", "-c",
                           path("srk.ctx")});
  if (tool(argv).exit_code != 0) return false;
  RunResult e = tool({"tpm2_evictcontrol", "-C", "o", "-c", path("srk.ctx"), handle});
  tool({"tpm2_flushcontext", "-t"});
  return e.exit_code == 0;
}

std::string Swtpm::name_with_tools(const std::string& handle) const {
  RunResult r = tool({"tpm2_readpublic", "-c", handle});
  const std::string text = "\n" + r.output, key = "\nname: ";
  const auto at = text.find(key);
  if (r.exit_code != 0 || at == std::string::npos) return "";
  const auto begin = at + key.size();
  return text.substr(begin, text.find('\n', begin) - begin);
}

}  // namespace certcustody::testing
