// Fuzzer for the configuration parser: any text yields a Config or a named
// config.* error that points at the file; it never crashes or throws.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "config/config.h"

namespace {

// A pinned SRK name: lower-case hex, a SHA-1/2 algorithm id and a digest of its size.
bool valid_srk_name(const std::string& n) {
  if (n.empty()) return true;
  if (n.find_first_not_of("0123456789abcdef") != std::string::npos) return false;
  const std::string alg = n.substr(0, 4);
  const std::size_t digest = alg == "0004" ? 20 : alg == "000b" ? 32 : alg == "000c" ? 48 : alg == "000d" ? 64 : 0;
  return digest != 0 && n.size() == 4 + 2 * digest;
}

void check_tpm2(const certcustody::CustodyConfig& c) {
  if (c.tcti.empty() || c.auth_file.empty() || c.key_dir.empty()) std::abort();
  if (c.srk_handle < 0x81000000u || c.srk_handle > 0x817FFFFFu) std::abort();
  if (!c.srk_type.empty() && c.srk_type != "rsa2048" && c.srk_type != "ec-p256" && c.srk_type != "ec-p384") std::abort();
  if (!valid_srk_name(c.srk_name)) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto c = certcustody::parse_config(text, "/fuzz/certcustody.toml");
  if (c) {
    if (c->custody.backend == "tpm2") {
      check_tpm2(c->custody);
      return 0;
    }
    if (c->custody.backend != "pkcs11" || c->custody.token.rfind("pkcs11:", 0) != 0) std::abort();
    if (c->custody.sessions < 1 || c->custody.sessions > 256) std::abort();
    return 0;
  }
  const auto& e = c.error();
  if (e.code.rfind("config.", 0) != 0 || e.remedy.empty()) std::abort();
  if (e.what.find("/fuzz/certcustody.toml") == std::string::npos) std::abort();
  return 0;
}
